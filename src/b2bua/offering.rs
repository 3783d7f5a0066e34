//! Offering: the router picks an agent, the engine INVITEs its phone, and the agent's
//! answer, refusal or silence decides what happens next (bridge, next agent, RONA).

use super::leg::{copy_body, tag_of, Leg, Pending2xx};
use super::{AgentLeg, Engine, Owner, Side, TimerRef, ALLOW};
use crate::acd::{CallKey, OfferFailure, QueueIdx};
use crate::records::RecordEvent;
use crate::sip::build::response;
use crate::sip::message::{Header, Message, NameAddr};
use crate::sip::transaction::{ClientInviteState, ClientKind};
use crate::sip::{Flow, Method};
use std::time::Instant;

impl Engine {
    /// Offers waiting calls of queue `q` to ready agents while both exist.
    pub(super) fn dispatch(&mut self, now: Instant, q: QueueIdx) {
        // A queue that keeps agents back does so only while open.
        let reserving: Vec<QueueIdx> = self.acd.reserving_queues().collect();
        for r in reserving {
            let open = self.queue_open(r, now);
            self.acd.set_open(r, open);
        }
        self.text_dispatch(now, q);
        while let Some((key, agent)) = self.acd.next_offer(q, now) {
            if !self.calls.contains_key(&key) && self.callbacks.contains_key(&key) {
                // A callback's turn: its call is set up now, the agent offered first.
                if !self.prepare_callback(now, q, key) {
                    self.acd
                        .offer_failed(q, key, agent, OfferFailure::Withdrawn, now, false);
                    continue;
                }
            }
            let Some(leg) = self.invite_agent(now, q, key, agent, false) else {
                continue;
            };
            let ring = self.cfg.queues[q].ring_timeout;
            let Some(call) = self.calls.get_mut(&key) else {
                continue;
            };
            call.agent = Some(leg);
            call.ring_deadline = Some(now + ring);
            let callback = call.callback.is_some();
            self.arm(TimerRef::Call(key));
            if self.acd.params(q).strategy == crate::acd::Strategy::RingAll && !callback {
                self.ring_all_others(now, q, key);
            }
        }
        if self.acd.params(q).strategy == crate::acd::Strategy::RingAll {
            self.ring_all_join(now, q);
        }
    }

    /// Sends agent `agent` the INVITE for call `key` and records the offer. On failure the
    /// offer is undone in the ACD (`fork`: as one of ring-all's other phones) and None.
    pub(super) fn invite_agent(
        &mut self,
        now: Instant,
        q: QueueIdx,
        key: CallKey,
        agent: crate::acd::AgentIdx,
        fork: bool,
    ) -> Option<AgentLeg> {
        self.invite_leg(now, q, key, agent, fork, None)
    }

    /// `invite_agent`, or with `outside` = a number, the INVITE goes to that number
    /// through the outbound trunk (agent [`crate::acd::OUTSIDE`]).
    pub(super) fn invite_leg(
        &mut self,
        now: Instant,
        q: QueueIdx,
        key: CallKey,
        agent: crate::acd::AgentIdx,
        fork: bool,
        outside: Option<&str>,
    ) -> Option<AgentLeg> {
        let fail = |e: &mut Engine, why: OfferFailure| {
            if fork {
                e.acd.fork_failed(q, key, agent, why, now);
            } else {
                e.acd
                    .offer_failed(q, key, agent, why, now, why != OfferFailure::Withdrawn);
            }
        };
        let local = self.cfg.local;
        let agent_id = self.acd.agent_id(agent).to_string();
        let (flow, target, remote) = match (outside, self.cfg.outbound.as_ref()) {
            (Some(number), Some((trunk, _))) => (
                Flow::udp(*trunk),
                format!("sip:{number}@{trunk}"),
                format!("<sip:{number}@{trunk}>"),
            ),
            (Some(_), None) => return None,
            (None, _) => match self.registrar.best_binding(agent) {
                Some(b) => (
                    b.flow,
                    b.uri.clone(),
                    format!("<sip:{agent_id}@{}>", local.for_transport(b.flow.transport)),
                ),
                None => {
                    // Ready without a binding cannot happen through the registrar; be safe.
                    fail(self, OfferFailure::Error);
                    self.acd.logout(agent, now);
                    return None;
                }
            },
        };
        let Some(call) = self.calls.get(&key) else {
            fail(self, OfferFailure::Withdrawn);
            return None;
        };
        // A transferred call has no pending INVITE any more: without anchored media
        // there would be no SDP to offer the new agent.
        let inv = call.caller_invite.as_ref();
        if inv.is_none() && call.media.is_none() {
            fail(self, OfferFailure::Withdrawn);
            return None;
        }
        let from = NameAddr::parse(&call.caller.remote);
        let caller_user =
            crate::sip::uri::dialled_number(from.uri).unwrap_or_else(|| "anonymous".into());
        let display = from.display.map(str::to_string);
        let host = local.for_transport(flow.transport);
        let mut leg = Leg {
            flow,
            call_id: format!("{}@dasan", self.ids.token(20)),
            local: match display {
                Some(d) => format!("{d} <sip:{caller_user}@{host}>;tag={}", self.ids.token(12)),
                None => format!("<sip:{caller_user}@{host}>;tag={}", self.ids.token(12)),
            },
            remote,
            remote_target: target,
            route_set: Vec::new(),
            local_cseq: 0,
            pending_2xx: None,
            sips: false,
        };
        leg.sips = super::leg::is_sips(&leg.remote_target);
        let mut req = leg.request(Method::Invite, local, None, &mut self.ids);
        let waited = now.saturating_duration_since(call.arrived);
        self.offer_headers(&mut req, &leg, q, &call.record, waited);
        let srtp = match outside {
            Some(_) => super::anchor::SrtpOffer::default(),
            None => match self.agent_srtp_offer(agent, flow, &leg.remote_target) {
                Some(o) => o,
                None => {
                    fail(self, OfferFailure::Error);
                    return None;
                }
            },
        };
        let Some(call) = self.calls.get(&key) else {
            fail(self, OfferFailure::Withdrawn);
            return None;
        };
        let inv = call.caller_invite.as_ref();
        let anchored = match (&call.media, &self.anchor) {
            (Some(m), Some(a)) => Some(super::anchor::agent_offer(a, m, &srtp)),
            _ => None,
        };
        let late_offer = inv.is_some_and(|i| i.body.is_empty()) && anchored.is_none();
        match (anchored, inv) {
            (Some(body), _) => {
                req.headers.push(Header {
                    name: "Content-Type".into(),
                    value: "application/sdp".into(),
                });
                req.body = body;
            }
            (None, Some(inv)) => copy_body(inv, &mut req),
            (None, None) => {}
        }
        let arrived = call.arrived;
        let record = call.record.clone();
        let cseq = leg.local_cseq;
        let flow = leg.flow;
        self.dialogs.insert(leg.call_id.clone(), (key, Side::Agent));
        let tx = self.start_client(now, flow, req, Owner::AgentInvite(key), Some(arrived));
        self.record(RecordEvent::Offered {
            id: record,
            agent: outside.map_or(agent_id, |n| format!("outside:{n}")),
            at_ms: self.unix_ms(now),
        });
        Some(AgentLeg {
            agent,
            leg,
            invite_tx: tx,
            answered: false,
            ack_waits_for_caller: late_offer,
            invite_cseq: cseq,
            srtp,
        })
    }

    /// What SRTP to offer `agent`'s phone on `flow` (its Contact `target`); `None` when its
    /// policy cannot be met (mandatory, but the phone is not registered over TLS, where
    /// alone SDES keys may go). A browser agent's leg ends at the engine's own WebRTC
    /// bridge (DTLS-SRTP to the browser): plain in this process, whatever the policy.
    fn agent_srtp_offer(
        &mut self,
        agent: crate::acd::AgentIdx,
        flow: Flow,
        target: &str,
    ) -> Option<super::anchor::SrtpOffer> {
        use crate::config::SrtpPolicy;
        let policy = self
            .cfg
            .agent_srtp
            .get(agent as usize)
            .copied()
            .unwrap_or_default();
        let browser = flow.remote.ip().is_loopback()
            && crate::sip::uri::parse_sip_uri(target)
                .and_then(|u| u.user)
                .is_some_and(|u| u.ends_with("-web"));
        let tls = flow.transport == crate::sip::Transport::Tls;
        match policy {
            _ if browser => Some(Default::default()),
            SrtpPolicy::Off => Some(Default::default()),
            SrtpPolicy::Optional if !tls => Some(Default::default()),
            SrtpPolicy::Optional => Some(super::anchor::SrtpOffer::new(&mut self.ids, false)),
            SrtpPolicy::Mandatory if tls => {
                Some(super::anchor::SrtpOffer::new(&mut self.ids, true))
            }
            SrtpPolicy::Mandatory => {
                tracing::warn!(
                    agent = self.acd.agent_id(agent),
                    "agent has srtp = \"mandatory\" but is not registered over TLS: not offered the call"
                );
                None
            }
        }
    }

    /// Contact and Allow, and what an agent's desktop shows with the offer (the browser
    /// gateway reads these; other phones ignore X- headers).
    fn offer_headers(
        &self,
        req: &mut Message,
        leg: &Leg,
        q: QueueIdx,
        record: &str,
        waited: std::time::Duration,
    ) {
        let local = self.cfg.local;
        for (name, value) in [
            ("Contact", leg.contact(local, "dasan")),
            ("Allow", ALLOW.into()),
            ("X-Dasan-Record", record.to_string()),
            ("X-Dasan-Queue", self.acd.queue_name(q).to_string()),
            ("X-Dasan-Language", self.acd.queue_skill(q).to_string()),
            ("X-Dasan-Wait-Ms", waited.as_millis().to_string()),
        ] {
            req.headers.push(Header {
                name: name.into(),
                value,
            });
        }
    }

    /// A response to one of our INVITEs reached the TU.
    pub(super) fn on_invite_response(&mut self, now: Instant, tx_id: u64, msg: Message) {
        let Some(status) = msg.status() else { return };
        let owner = self.tx.client(tx_id).map(|t| t.owner);
        match owner {
            Some(Owner::AgentInvite(key)) => {
                let current = self
                    .calls
                    .get(&key)
                    .and_then(|c| c.agent.as_ref())
                    .is_some_and(|a| a.invite_tx == tx_id && !a.answered);
                if !current {
                    if !self.fork_response(now, key, tx_id, &msg) {
                        self.orphan_invite_response(now, tx_id, &msg);
                    }
                    return;
                }
                match status {
                    101..=199 => {
                        if let Some(a) = self.calls.get_mut(&key).and_then(|c| c.agent.as_mut()) {
                            if msg.to_tag().is_some() {
                                a.leg.remote = msg.header("To").unwrap_or("").to_string();
                            }
                        }
                        self.send_ringing(now, key);
                    }
                    100 => {}
                    200..=299 => {
                        // An answer the anchored media cannot use (no codec in common, or
                        // plain RTP where SRTP was required) would make a call without
                        // sound: the phone is hung up and the call tries another agent.
                        if let Err(e) = self.agent_answer_usable(key, &msg) {
                            tracing::warn!(
                                call = key,
                                "agent's answer unusable ({e}): hung up, next agent"
                            );
                            self.metrics
                                .security
                                .with_label_values(&["agent_answer_unusable"])
                                .inc();
                            self.orphan_invite_response(now, tx_id, &msg);
                            self.agent_leg_failed(now, key, OfferFailure::Error);
                            return;
                        }
                        // Ring-all: the other phones stop ringing; their agents, ready
                        // again, may take the next call.
                        let freed = self.cancel_forks(now, key, OfferFailure::Withdrawn);
                        self.agent_answered(now, key, tx_id, msg);
                        for a in freed {
                            self.dispatch_for_agent(now, a);
                        }
                    }
                    _ => {
                        let why = match status {
                            486 | 600 | 603 | 480 => OfferFailure::Busy,
                            408 => OfferFailure::NoAnswer,
                            _ => OfferFailure::Error,
                        };
                        self.agent_leg_failed(now, key, why);
                    }
                }
            }
            Some(Owner::Relay { call, server_tx }) if status >= 200 => {
                self.relay_final(now, call, server_tx, tx_id, msg);
            }
            Some(Owner::CallbackInvite(key)) => self.callback_response(now, key, tx_id, msg),
            _ => {}
        }
    }

    /// A response on an agent INVITE we no longer want (withdrawn, RONA, call gone).
    pub(super) fn orphan_invite_response(&mut self, now: Instant, tx_id: u64, msg: &Message) {
        let Some(status) = msg.status() else { return };
        let Some(tx) = self.tx.client_mut(tx_id) else {
            return;
        };
        if (101..200).contains(&status) && std::mem::take(&mut tx.cancel_on_provisional) {
            if let ClientKind::Invite(ci) = &mut tx.kind {
                ci.cancelled(now);
            }
            if let Some(req) = tx.request.as_ref() {
                let cancel = crate::sip::build::cancel_for(req);
                let flow = tx.flow;
                self.start_client(now, flow, cancel, Owner::Fire, None);
            }
            return;
        }
        if !(200..300).contains(&status) {
            return;
        }
        // The agent answered too late: ACK its 2xx, then hang up (RFC 3261 15).
        let Some(req) = tx.request.clone() else {
            return;
        };
        let flow = tx.flow;
        let mut leg = Leg {
            flow,
            call_id: req.call_id().to_string(),
            local: req.header("From").unwrap_or("").to_string(),
            remote: msg.header("To").unwrap_or("").to_string(),
            remote_target: req.request_uri().unwrap_or("").to_string(),
            route_set: Vec::new(),
            local_cseq: req.cseq().map(|(n, _)| n).unwrap_or(1),
            pending_2xx: None,
            sips: req.request_uri().is_some_and(super::leg::is_sips),
        };
        leg.learn_target(msg, true);
        let ack = leg
            .request(
                Method::Ack,
                self.cfg.local,
                Some(leg.local_cseq),
                &mut self.ids,
            )
            .to_bytes();
        if let Some(tx) = self.tx.client_mut(tx_id) {
            tx.ack_2xx = Some(ack.clone());
        }
        self.send(flow, ack);
        let bye = leg.request(Method::Bye, self.cfg.local, None, &mut self.ids);
        self.start_client(now, flow, bye, Owner::Fire, None);
    }

    pub(super) fn agent_answered(&mut self, now: Instant, key: CallKey, tx_id: u64, msg: Message) {
        let local = self.cfg.local;
        let t2 = self.cfg.timers.t2;
        let t1 = self.cfg.timers.t1;
        let give_up = now + self.cfg.timers.t1x64();
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(a) = call.agent.as_mut() else { return };
        a.answered = true;
        let agent = a.agent;
        // (The number we dialled, before the answer's Contact replaces the target.)
        let label = match agent {
            crate::acd::OUTSIDE => format!(
                "outside:{}",
                crate::sip::uri::dialled_number(&a.leg.remote_target).unwrap_or_default()
            ),
            _ => self.acd.agent_id(agent).to_string(),
        };
        a.leg.remote = msg.header("To").unwrap_or("").to_string();
        a.leg.learn_target(&msg, true);
        let mut ack_bytes = None;
        if !a.ack_waits_for_caller {
            let cseq = a.invite_cseq;
            let ack = a
                .leg
                .request(Method::Ack, local, Some(cseq), &mut self.ids)
                .to_bytes();
            ack_bytes = Some((a.leg.flow, ack));
        }
        call.answered = true;
        call.answered_at = Some(now);
        call.announce_at = None;
        call.step_at = None;
        call.overflow_at = None;
        call.ring_deadline = None;
        call.max_wait_at = None;
        let q = call.queue;
        let inv = call.caller_invite.take();
        let caller_tx = call.caller_invite_tx;
        let caller_contact = call.caller.contact(local, "dasan");
        let tag = tag_of(&call.caller.local);
        let record = call.record.clone();
        let arrived = call.arrived;
        let caller_call_id = call.caller.call_id.clone();
        if let Some((flow, ack)) = ack_bytes {
            if let Some(tx) = self.tx.client_mut(tx_id) {
                tx.ack_2xx = Some(ack.clone());
            }
            self.send(flow, ack);
        }
        self.acd.answered(agent, key);
        self.acd.leave(q, key);
        let wait = now.saturating_duration_since(arrived);
        self.windows[q].answered(now, wait);
        self.metrics
            .call_wait
            .with_label_values(&[self.acd.queue_name(q), "answered"])
            .observe(wait.as_secs_f64());
        self.metrics
            .first_response
            .with_label_values(&[self.acd.queue_name(q), "voice"])
            .observe(wait.as_secs_f64());
        self.record(RecordEvent::Answered {
            id: record,
            agent: label,
            at_ms: self.unix_ms(now),
        });
        self.queue_gauge(q);
        if self.calls.get(&key).is_some_and(|c| c.callback.is_some()) {
            self.dial_callback(now, key, &msg);
            return;
        }
        let Some(inv) = inv else {
            // A transferred call: the caller's dialog exists already; bridge the new agent.
            self.attach_agent_media(key, q, &msg, &caller_call_id);
            self.arm(TimerRef::Call(key));
            return;
        };
        let mut ok = response(&inv, 200, None, Some(&tag));
        ok.headers.push(Header {
            name: "Contact".into(),
            value: caller_contact,
        });
        ok.headers.push(Header {
            name: "Allow".into(),
            value: ALLOW.into(),
        });
        match self.attach_agent_media(key, q, &msg, inv.call_id()) {
            Some(sdp) => {
                ok.headers.push(Header {
                    name: "Content-Type".into(),
                    value: "application/sdp".into(),
                });
                ok.body = sdp;
            }
            None => copy_body(&msg, &mut ok),
        }
        let bytes = ok.to_bytes();
        let cseq = inv.cseq().map(|(n, _)| n).unwrap_or(1);
        self.respond(now, caller_tx, ok);
        if let Some(call) = self.calls.get_mut(&key) {
            call.caller.pending_2xx = Some(Pending2xx {
                bytes,
                cseq,
                next: now + t1,
                interval: t1.min(t2),
                give_up,
            });
        }
        self.arm(TimerRef::Call(key));
    }

    /// Connects the answering agent's SDP to the call's anchored media (recording from
    /// now if the queue records); the SDP the caller gets, None when media is not anchored.
    fn attach_agent_media(
        &mut self,
        key: CallKey,
        q: QueueIdx,
        answer: &Message,
        caller_call_id: &str,
    ) -> Option<bytes::Bytes> {
        let call = self.calls.get_mut(&key)?;
        // The agent's phone answered over its leg's flow: its RTP may come from that host.
        let signalling = call.agent.as_ref().map(|a| a.leg.flow.remote.ip());
        let mut cm = call.media.take()?;
        let record = self.cfg.queues[q]
            .record
            .then(|| recording_name(caller_call_id, key));
        let srtp = call
            .agent
            .as_ref()
            .map(|a| a.srtp.clone())
            .unwrap_or_default();
        if let Err(e) = self.anchor_attach(key, &mut cm, answer, signalling, record, &srtp) {
            tracing::warn!(call = key, "agent SDP unusable ({e}): no media");
        }
        let sdp = cm.caller_sdp.clone();
        if let Some(c) = self.calls.get_mut(&key) {
            c.media = Some(cm);
        }
        Some(sdp)
    }

    /// The current agent attempt failed; the call goes back to the head of the queue.
    pub(super) fn agent_leg_failed(&mut self, now: Instant, key: CallKey, why: OfferFailure) {
        if self.outside_failed(now, key) {
            return;
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(a) = call.agent.take() else { return };
        let q = call.queue;
        self.dialogs.remove(&a.leg.call_id);
        if let Some(next) = call.forks.pop() {
            // Ring-all: another phone still rings; it becomes the one the call waits on.
            call.agent = Some(next);
            self.acd.fork_failed(q, key, a.agent, why, now);
            self.arm(TimerRef::Agent(a.agent));
            return;
        }
        call.ring_deadline = None;
        self.acd.offer_failed(q, key, a.agent, why, now, true);
        self.arm(TimerRef::Agent(a.agent));
        self.dispatch(now, q);
        self.arm(TimerRef::Call(key));
    }

    /// Stops ringing the agent: CANCEL if it sent a provisional, otherwise stop
    /// retransmitting and CANCEL once a provisional shows up (RFC 3261 9.1).
    pub(super) fn withdraw_agent_leg(
        &mut self,
        now: Instant,
        key: CallKey,
        why: OfferFailure,
        still_waiting: bool,
    ) {
        self.cancel_forks(now, key, why);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(a) = call.agent.take() else { return };
        call.ring_deadline = None;
        let q = call.queue;
        self.dialogs.remove(&a.leg.call_id);
        self.cancel_invite(now, a.invite_tx);
        self.acd
            .offer_failed(q, key, a.agent, why, now, still_waiting);
        self.arm(TimerRef::Agent(a.agent));
    }

    /// CANCEL our INVITE if it got a provisional; otherwise CANCEL once a provisional
    /// shows up (RFC 3261 9.1). The INVITE keeps being retransmitted meanwhile: a phone
    /// whose 180 was lost answers the retransmission with it again, and only then can it be
    /// told to stop ringing.
    pub(super) fn cancel_invite(&mut self, now: Instant, tx_id: u64) {
        let Some(tx) = self.tx.client_mut(tx_id) else {
            return;
        };
        let ClientKind::Invite(ci) = &mut tx.kind else {
            return;
        };
        match ci.state() {
            ClientInviteState::Proceeding => {
                ci.cancelled(now);
                if let Some(req) = tx.request.as_ref() {
                    let cancel = crate::sip::build::cancel_for(req);
                    let flow = tx.flow;
                    self.start_client(now, flow, cancel, Owner::Fire, None);
                }
            }
            ClientInviteState::Calling => tx.cancel_on_provisional = true,
            _ => {}
        }
        self.arm(TimerRef::Client(tx_id));
    }

    pub(super) fn on_client_timeout(&mut self, now: Instant, tx_id: u64, owner: Owner) {
        match owner {
            Owner::AgentInvite(key) => {
                let current = self
                    .calls
                    .get(&key)
                    .and_then(|c| c.agent.as_ref())
                    .is_some_and(|a| a.invite_tx == tx_id && !a.answered);
                if current {
                    self.agent_leg_failed(now, key, OfferFailure::NoAnswer);
                } else {
                    self.fork_timed_out(now, key, tx_id);
                }
            }
            Owner::Relay { call, server_tx } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                if let Some(r) = c.relay.take() {
                    let resp = response(&r.request, 408, None, None);
                    self.respond(now, server_tx, resp);
                }
            }
            Owner::CallbackInvite(key) => self.callback_failed(now, key, 408),
            Owner::Fire => {}
            Owner::Text { conv, to_agent } => self.text_delivery(now, conv, to_agent, None),
        }
    }
}

/// A recording's file name: the trunk's Call-ID made safe for a file system, with the
/// engine's call key so that two calls never share a file.
fn recording_name(call_id: &str, key: CallKey) -> String {
    let safe: String = call_id
        .chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{key}")
}
