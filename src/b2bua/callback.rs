//! Callback keeping the place in line (virtual hold). A waiting caller presses the queue's
//! callback digit: the call ends (480 "Callback Scheduled", record outcome `callback`) but
//! its key stays where it was in the ACD queue. When it reaches the head, the engine sets
//! the call up again from our side: the agent is reserved first (offered and answered as
//! any call), then the caller's number is dialled through `[outbound] trunk`; when the
//! caller answers, the two are bridged. A caller who does not answer (busy, no answer,
//! unreachable) frees the agent and the callback rejoins the back of the queue after
//! `callback_retry_s`, up to `callback_attempts` times. Every attempt has its own record
//! (channel `callback`).

use super::anchor::CallMedia;
use super::leg::Leg;
use super::{Call, Engine, MediaCommand, MusicRef, Outcome, Owner, Side, TimerRef};
use crate::acd::{CallKey, OfferFailure, QueueIdx};
use crate::media::sdp::{self, Codec, Direction, Negotiated, Sdp};
use crate::records::RecordEvent;
use crate::sip::build::response;
use crate::sip::message::{Header, Message, NameAddr};
use crate::sip::{Flow, Method};
use bytes::Bytes;
use std::time::Instant;

/// A callback keeping its place.
pub(super) struct Job {
    number: String,
    queue: QueueIdx,
    attempts: u32,
    pub retry_at: Option<Instant>,
    pub armed: Option<Instant>,
    /// A scheduled survey call (not a callback to an agent): the record it rates.
    survey_for: Option<String>,
}

impl Job {
    pub(super) fn survey(number: String, queue: QueueIdx, at: Instant, record: String) -> Job {
        Job {
            number,
            queue,
            attempts: 0,
            retry_at: Some(at),
            armed: None,
            survey_for: Some(record),
        }
    }
}

/// A callback being placed: the agent's SDP once it answered, our INVITE to the caller.
pub(super) struct Dialling {
    agent: Option<Negotiated>,
    /// Our INVITE to the caller, once sent: only its responses are this attempt's.
    invite_tx: Option<u64>,
}

impl Engine {
    /// The caller asked to be called back.
    /// `when_open`: asked outside that queue's hours — the call leaves the queue it waits in
    /// and the callback joins the closed queue's line when it opens.
    pub(super) fn accept_callback(
        &mut self,
        now: Instant,
        key: CallKey,
        when_open: Option<(QueueIdx, Instant)>,
    ) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let number = crate::sip::uri::dialled_number(NameAddr::parse(&call.caller.remote).uri)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit() || b == b'+'));
        let Some(number) = number else {
            tracing::info!(
                call = key,
                "callback asked by a caller without a number: ignored"
            );
            return;
        };
        if !self.cfg.outbound_rules.permits(&number) {
            // A caller whose number may not be dialled (abroad, premium rate, or forged to
            // be): it keeps its place in the queue instead.
            self.outbound_refused(now, &number, "callback", "caller");
            return;
        }
        let waiting_in = call.queue;
        // The place stays: a ringing offer is withdrawn and the key goes back to the head.
        self.withdraw_agent_leg(now, key, OfferFailure::Withdrawn, true);
        let (q, retry_at) = match when_open {
            Some((origin, opens)) => {
                self.acd.leave(waiting_in, key);
                self.queue_gauge(waiting_in);
                (origin, Some(opens))
            }
            None => (waiting_in, None),
        };
        let Some(mut call) = self.take_call(key) else {
            return;
        };
        self.dialogs.remove(&call.caller.call_id);
        if let Some(m) = call.media.take() {
            self.anchor_release(key, m);
        }
        self.record(RecordEvent::Ended {
            id: call.record.clone(),
            outcome: crate::records::Outcome::Callback,
            side: "caller",
            sip_cause: 480,
            at_ms: self.unix_ms(now),
        });
        if let Some(inv) = call.caller_invite.as_ref() {
            let r = response(
                inv,
                480,
                Some("Callback Scheduled"),
                Some(&super::leg::tag_of(&call.caller.local)),
            );
            let tx = call.caller_invite_tx;
            self.after_records(|e| e.respond(now, tx, r));
        }
        self.metrics.calls_active.dec();
        self.metrics
            .calls
            .with_label_values(&[self.acd.queue_name(q), Outcome::Callback.as_str()])
            .inc();
        tracing::info!(call = key, "callback scheduled, place in line kept");
        self.callbacks.insert(
            key,
            Job {
                number,
                queue: q,
                attempts: 0,
                retry_at,
                armed: None,
                survey_for: None,
            },
        );
        self.queue_gauge(q);
        self.arm(TimerRef::Callback(key));
    }

    /// The callback's turn: set up its call (our own outbound leg towards the caller, not
    /// dialled yet) so that the agent can be offered it. False if it cannot be (no ports).
    pub(super) fn prepare_callback(&mut self, now: Instant, q: QueueIdx, key: CallKey) -> bool {
        if self.calls.len() >= self.cfg.max_calls || self.draining {
            return false;
        }
        if let Some(job) = self.callbacks.get(&key) {
            let (number, kind) = (
                job.number.clone(),
                if job.survey_for.is_some() {
                    "survey"
                } else {
                    "callback"
                },
            );
            if !self.outbound_audited(now, &number, kind, "caller") {
                return false;
            }
        }
        let Some((trunk, caller_id)) = self.cfg.outbound.clone() else {
            return false;
        };
        let Some((number, survey_for)) = self
            .callbacks
            .get(&key)
            .map(|j| (j.number.clone(), j.survey_for.clone()))
        else {
            return false;
        };
        let Some(a) = self.anchor.as_mut() else {
            return false;
        };
        let Ok(caller_port) = a.pool.allocate() else {
            return false;
        };
        let Ok(agent_port) = a.pool.allocate() else {
            a.pool.release(caller_port);
            return false;
        };
        let ip = a.ip;
        let media = CallMedia {
            caller_port,
            agent_port,
            // Until the caller answers we only know what we will offer it.
            caller: Negotiated {
                codec: Codec::Pcmu,
                pt: 0,
                dtmf: Some((101, 8000)),
                direction: Direction::SendRecv,
                remote: (ip, 0),
                savp: false,
                crypto: None,
                srtp: None,
            },
            caller_sdp: Bytes::new(),
            agent: None,
            video: None,
            session: self.ids.u32() as u64,
            versions: [1, 1],
            started: false,
        };
        let local = self.cfg.local;
        let leg = Leg {
            flow: Flow::udp(trunk),
            call_id: format!("{}@dasan", self.ids.token(20)),
            local: format!(
                "<sip:{caller_id}@{}>;tag={}",
                local.plain,
                self.ids.token(12)
            ),
            remote: format!("<sip:{number}@{trunk}>"),
            remote_target: format!("sip:{number}@{trunk}"),
            route_set: Vec::new(),
            local_cseq: 0,
            pending_2xx: None,
            sips: false,
        };
        let record = format!("{:016x}", self.ids.u64());
        self.record(RecordEvent::Arrived {
            id: record.clone(),
            sip_call_id: leg.call_id.clone(),
            trunk: "callback".into(),
            caller: number.clone(),
            dialled: number,
            channel: if survey_for.is_some() {
                "survey"
            } else {
                "callback"
            },
            queue: self.acd.queue_name(q).to_string(),
            language: self.acd.queue_skill(q).to_string(),
            at_ms: self.unix_ms(now),
        });
        // Our own outgoing call: no trunk INVITE to answer, ringing already heard.
        let mut call = Call::waiting(q, now, leg, 0, None, Some(media), record);
        call.ringing_sent = true;
        call.survey_for = survey_for;
        call.callback = Some(Dialling {
            agent: None,
            invite_tx: None,
        });
        self.calls.insert(key, call);
        self.metrics.calls_active.inc();
        true
    }

    /// The reserved agent answered: dial the caller with our SDP, the agent's codec first.
    pub(super) fn dial_callback(&mut self, now: Instant, key: CallKey, agent_answer: &Message) {
        let agent = std::str::from_utf8(&agent_answer.body)
            .ok()
            .and_then(|t| Sdp::parse(t).ok())
            .and_then(|s| sdp::negotiate(&s, &[Codec::Pcmu, Codec::Pcma, Codec::Opus]).ok());
        let Some(agent) = agent else {
            tracing::warn!(call = key, "agent SDP unusable: callback not placed");
            self.callback_failed(now, key, 488);
            return;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Some(d) = call.callback.as_mut() {
            d.agent = Some(agent.clone());
        }
        self.send_caller_invite(now, key, Some(agent.codec));
    }

    /// Dials the caller with our SDP offer (`first`: the codec to prefer, the agent's).
    pub(super) fn send_caller_invite(&mut self, now: Instant, key: CallKey, first: Option<Codec>) {
        let local = self.cfg.local;
        let Some(ip) = self.anchor.as_ref().map(|a| a.sdp_ip) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(cm) = call.media.as_ref() else {
            return;
        };
        let pt = |c: Codec| match c {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::Opus => 111,
        };
        let all = [Codec::Pcmu, Codec::Pcma, Codec::Opus];
        let first = first.unwrap_or(Codec::Pcmu);
        let codecs: Vec<(Codec, u8)> = std::iter::once(first)
            .chain(all.into_iter().filter(|c| *c != first))
            .map(|c| (c, pt(c)))
            .collect();
        let offer = sdp::build(
            cm.session,
            1,
            ip,
            cm.caller_port,
            &codecs,
            Some((101, 8000)),
            Direction::SendRecv,
        );
        let mut req = call
            .caller
            .request(Method::Invite, local, None, &mut self.ids);
        req.headers.push(Header {
            name: "Contact".into(),
            value: call.caller.contact(local, "dasan"),
        });
        req.headers.push(Header {
            name: "Content-Type".into(),
            value: "application/sdp".into(),
        });
        req.body = Bytes::from(offer);
        let flow = call.caller.flow;
        let tx = self.start_client(now, flow, req, Owner::CallbackInvite(key), None);
        if let Some(d) = self.calls.get_mut(&key).and_then(|c| c.callback.as_mut()) {
            d.invite_tx = Some(tx);
        }
        self.arm(TimerRef::Call(key));
    }

    /// A response to our INVITE to the caller.
    pub(super) fn callback_response(&mut self, now: Instant, key: CallKey, tx: u64, msg: Message) {
        let Some(status) = msg.status() else { return };
        let current = self
            .calls
            .get(&key)
            .and_then(|c| c.callback.as_ref())
            .is_some_and(|d| d.invite_tx == Some(tx));
        if !current {
            // An attempt given up (the agent left): CANCEL on its first provisional, ACK
            // and BYE a late 2xx.
            self.orphan_invite_response(now, tx, &msg);
            return;
        }
        if status < 200 {
            return;
        }
        if status >= 300 {
            self.callback_failed(now, key, status);
            return;
        }
        let local = self.cfg.local;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(dialling) = call.callback.take() else {
            return;
        };
        call.caller.remote = msg.header("To").unwrap_or("").to_string();
        call.caller.learn_target(&msg, true);
        let cseq = msg.cseq().map(|(n, _)| n).unwrap_or(1);
        let ack = call
            .caller
            .request(Method::Ack, local, Some(cseq), &mut self.ids)
            .to_bytes();
        let flow = call.caller.flow;
        call.answered_at = Some(now);
        let caller_id = call.caller.call_id.clone();
        let caller = std::str::from_utf8(&msg.body)
            .ok()
            .and_then(|t| Sdp::parse(t).ok())
            .and_then(|s| sdp::negotiate(&s, &[Codec::Pcmu, Codec::Pcma, Codec::Opus]).ok());
        if let Some(t) = self.tx.client_mut(tx) {
            t.ack_2xx = Some(ack.clone());
        }
        self.send(flow, ack);
        self.dialogs.insert(caller_id, (key, Side::Caller));
        if let Some(job) = self.callbacks.remove(&key) {
            tracing::info!(call = key, attempt = job.attempts + 1, "callback answered");
        }
        let survey = self.calls.get(&key).is_some_and(|c| c.survey_for.is_some());
        let (Some(caller), true) = (caller, survey || dialling.agent.is_some()) else {
            tracing::warn!(call = key, "caller's SDP unusable: callback ended");
            self.end_answered(now, key, None, Some("SIP;cause=488"));
            return;
        };
        let Some(a) = self.anchor.as_ref() else {
            return;
        };
        let (ip, timeout) = (a.ip, a.timeout);
        let Some(cm) = self.calls.get_mut(&key).and_then(|c| c.media.as_mut()) else {
            return;
        };
        cm.caller = caller.clone();
        cm.agent = dialling.agent.clone();
        cm.started = true;
        let (caller_port, agent_port) = (cm.caller_port, cm.agent_port);
        let start = MediaCommand::Start {
            call: key,
            ip,
            caller_port,
            agent_port,
            caller,
            signalling: flow.remote.ip(),
            timeout,
            music: MusicRef::Silence,
        };
        let Some(agent) = dialling.agent else {
            self.survey_call_answered(key, start);
            return;
        };
        // The reserved agent's phone answered over its leg's flow (without one, only its
        // SDP's host is trusted).
        let signalling = self
            .calls
            .get(&key)
            .and_then(|c| c.agent.as_ref())
            .map_or(agent.remote.0, |a| a.leg.flow.remote.ip());
        self.media_out.push_back(start);
        self.media_out.push_back(MediaCommand::Attach {
            call: key,
            agent,
            signalling,
            record: None,
        });
    }

    /// The attempt failed (`status` from the trunk, or 408): free the agent, try again
    /// later or give up.
    pub(super) fn callback_failed(&mut self, now: Instant, key: CallKey, status: u16) {
        let Some(mut call) = self.take_call(key) else {
            return;
        };
        let q = call.queue;
        let local = self.cfg.local;
        if let Some(m) = call.media.take() {
            self.anchor_release(key, m);
        }
        self.record(RecordEvent::Ended {
            id: call.record.clone(),
            outcome: crate::records::Outcome::Callback,
            side: "engine",
            sip_cause: status,
            at_ms: self.unix_ms(now),
        });
        if let Some(mut a) = call.agent.take() {
            let bye = a.leg.request(Method::Bye, local, None, &mut self.ids);
            let flow = a.leg.flow;
            self.start_client(now, flow, bye, Owner::Fire, None);
            self.dialogs.remove(&a.leg.call_id);
            self.agent_call_ended(q, a.agent, key, call.record.clone(), now);
            self.arm(TimerRef::Agent(a.agent));
            self.dispatch_for_agent(now, a.agent);
        }
        self.metrics.calls_active.dec();
        let Some(job) = self.callbacks.get_mut(&key) else {
            return;
        };
        job.attempts += 1;
        if job.survey_for.is_some() {
            tracing::info!(call = key, status, "survey call not answered");
            self.callbacks.remove(&key);
            return;
        }
        let (max, retry) = self.cfg.queues[job.queue]
            .callback
            .map(|(_, n, r)| (n, r))
            .unwrap_or((1, std::time::Duration::from_secs(60)));
        if job.attempts >= max {
            tracing::info!(
                call = key,
                attempts = job.attempts,
                status,
                "callback given up"
            );
            self.callbacks.remove(&key);
            return;
        }
        tracing::info!(
            call = key,
            attempt = job.attempts,
            status,
            "callback not answered: retry later"
        );
        job.retry_at = Some(now + retry);
        self.arm(TimerRef::Callback(key));
    }

    /// The reserved agent hung up while the caller's phone was still being dialled: the
    /// INVITE is cancelled (RFC 3261 9.1) and the attempt counts as failed.
    pub(super) fn abort_callback_dial(&mut self, now: Instant, key: CallKey) {
        // This attempt's INVITE (earlier attempts' transactions may still linger).
        let invite = self
            .calls
            .get(&key)
            .and_then(|c| c.callback.as_ref())
            .and_then(|d| d.invite_tx);
        if let Some(id) = invite {
            self.cancel_invite(now, id);
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Some(a) = call.agent.take() {
            let (q, record) = (call.queue, call.record.clone());
            self.dialogs.remove(&a.leg.call_id);
            self.agent_call_ended(q, a.agent, key, record, now);
            self.arm(TimerRef::Agent(a.agent));
            self.dispatch_for_agent(now, a.agent);
        }
        self.callback_failed(now, key, 487);
    }

    /// A callback's pause between attempts is over: it rejoins its queue.
    pub(super) fn callback_retry(&mut self, now: Instant, key: CallKey) {
        let Some(job) = self.callbacks.get_mut(&key) else {
            return;
        };
        if job.retry_at.is_none_or(|t| t > now) {
            return;
        }
        job.retry_at = None;
        let q = job.queue;
        if job.survey_for.is_some() {
            // A survey call: no agent to reserve, the caller is dialled at once.
            if self.prepare_callback(now, q, key) {
                self.send_caller_invite(now, key, None);
            } else {
                self.callbacks.remove(&key);
            }
            return;
        }
        if !self.try_enqueue(q, key, now) {
            tracing::warn!(call = key, "queue full: callback given up");
            self.callbacks.remove(&key);
            return;
        }
        self.queue_gauge(q);
        self.dispatch(now, q);
    }
}
