//! The zero-ARS call flow: trunk INVITE → queue → longest-idle agent → bridged → BYE.

use super::leg::{contact_value, copy_body, Leg, Pending2xx};
use super::{
    AgentLeg, Call, Engine, MusicRef, Outcome, Owner, Relay, RouteTarget, Side, TimerRef, ALLOW,
};
use crate::acd::{CallKey, OfferFailure, QueueIdx};
use crate::records::RecordEvent;
use crate::sip::build::response;
use crate::sip::message::{Header, Message, NameAddr, StartLine};
use crate::sip::transaction::{ClientInviteState, ClientKind, ServerInviteState, ServerKind};
use crate::sip::{Flow, Method};
use crate::util::mask_number;
use std::time::Instant;

impl Engine {
    pub(super) fn on_new_invite(&mut self, now: Instant, tx: u64, flow: Flow, msg: Message) {
        let dialled = msg.request_uri().and_then(crate::sip::uri::dialled_number);
        if let Some(code) = dialled
            .filter(|n| *n == self.cfg.features.toggle_ready || *n == self.cfg.features.logout)
        {
            self.on_feature_code(now, tx, msg, &code);
            return;
        }
        let trunk = self
            .cfg
            .trusted
            .iter()
            .find(|(n, _, _)| n.contains(&flow.remote.ip()));
        let Some((_, early_media, trunk_name)) = trunk.cloned() else {
            tracing::debug!(src = %flow.remote, "INVITE from untrusted source refused");
            self.reply(now, tx, &msg, 403, None);
            return;
        };
        // We implement no option tags: any Require (e.g. 100rel) gets 420 (RFC 3261 8.2.2.3).
        let required: Vec<String> = msg.header_values("Require").map(str::to_string).collect();
        if !required.is_empty() {
            let mut r = response(&msg, 420, None, Some(&self.ids.token(10)));
            r.set_header("Unsupported", required.join(", "));
            self.respond(now, tx, r);
            return;
        }
        let scheme = msg
            .request_uri()
            .and_then(|u| u.split_once(':'))
            .map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("sip" | "sips" | "tel")) {
            self.reply(now, tx, &msg, 416, None);
            return;
        }
        let number = msg.request_uri().and_then(crate::sip::uri::dialled_number);
        let Some(target) = number
            .as_ref()
            .and_then(|n| self.cfg.routes.get(n))
            .cloned()
        else {
            self.reply(now, tx, &msg, 404, None);
            return;
        };
        let (q, menu) = match target {
            RouteTarget::Queue(q) => (q, None),
            RouteTarget::Menu(m, fallback) => (fallback, Some(m)),
        };
        // Outside opening hours: the closed queue's fallback takes the call, after the
        // closed prompt; with no open fallback, 480.
        let asked = q;
        let (mut q, closed_prompt) = if menu.is_some() {
            (q, None)
        } else {
            match self.open_queue(q, now) {
                Some(x) => x,
                None => {
                    self.reply(now, tx, &msg, 480, None);
                    return;
                }
            }
        };
        if !msg.body.is_empty()
            && !msg
                .content_type()
                .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/sdp"))
        {
            let mut r = response(&msg, 415, None, Some(&self.ids.token(10)));
            r.set_header("Accept", "application/sdp");
            self.respond(now, tx, r);
            return;
        }
        let key = tx;
        let mut media = match self.anchor_caller(&msg) {
            Ok(m) => m,
            Err(code) => {
                let mut r = response(&msg, code, None, Some(&self.ids.token(10)));
                if code == 503 {
                    r.set_header("Retry-After", self.cfg.retry_after_s.to_string());
                }
                self.respond(now, tx, r);
                return;
            }
        };
        // A call for a menu joins a queue only once the caller chose (or gave up); without
        // anchored media (a late-offer INVITE) it cannot hear digits: straight to the queue.
        let menu = menu.filter(|_| media.is_some());
        let refused = if self.overloaded || self.draining || self.calls.len() >= self.cfg.max_calls
        {
            Some(503)
        } else if menu.is_some() || self.acd.enqueue(q, key, now).is_ok() {
            None
        } else {
            match self.when_full(q, key, now) {
                Ok(t) => {
                    q = t;
                    None
                }
                Err(code) => Some(code),
            }
        };
        if let Some(code) = refused {
            let mut r = response(&msg, code, None, Some(&self.ids.token(10)));
            if code == 503 {
                r.set_header("Retry-After", self.cfg.retry_after_s.to_string());
            }
            self.respond(now, tx, r);
            if let Some(m) = media {
                self.anchor_release(key, m);
            }
            let id = new_record_id(&mut self.ids);
            self.record_arrival(now, &id, &msg, &trunk_name, number.as_deref(), q);
            self.record(RecordEvent::Ended {
                id,
                outcome: crate::records::Outcome::Rejected,
                side: "engine",
                sip_cause: code,
                at_ms: self.unix_ms(now),
            });
            let qn = self.acd.queue_name(q).to_string();
            self.metrics
                .calls
                .with_label_values(&[&qn, Outcome::Rejected.label()])
                .inc();
            return;
        }
        let caller_num = msg
            .header("From")
            .and_then(|f| crate::sip::uri::dialled_number(NameAddr::parse(f).uri))
            .unwrap_or_default();
        tracing::debug!(caller = %mask_number(&caller_num), call = key, "call queued");
        let record = new_record_id(&mut self.ids);
        self.record_arrival(now, &record, &msg, &trunk_name, number.as_deref(), q);
        let local_tag = self.ids.token(12);
        let mut caller = Leg {
            flow,
            call_id: msg.call_id().to_string(),
            local: format!("{};tag={local_tag}", msg.header("To").unwrap_or("")),
            remote: msg.header("From").unwrap_or("").to_string(),
            remote_target: msg.request_uri().unwrap_or("").to_string(),
            route_set: Vec::new(),
            local_cseq: 0,
            pending_2xx: None,
        };
        caller.learn_target(&msg, false);
        if let Some(t) = self.tx.server_mut(tx) {
            t.tu = Some(key);
        }
        // The caller heard the closed queue's prompt: its callback digit stays live.
        let closed_prompt_heard = closed_prompt.is_some() && early_media && media.is_some();
        let trying = response(&msg, 100, None, None);
        self.respond(now, tx, trying);
        if let Some(m) = media.as_mut() {
            // Without early media the caller has no SDP of ours yet: nothing to send.
            let music = match menu {
                Some(_) => MusicRef::Silence,
                None if !early_media => MusicRef::Silence,
                None => self.cfg.queues[q].music.clone(),
            };
            self.anchor_begin(key, m, music.clone());
            if let Some(p) = closed_prompt.filter(|_| early_media) {
                self.media_out.push_back(super::MediaCommand::Play {
                    call: key,
                    prompts: vec![p],
                    then: music,
                });
            }
        }
        let max_wait = self.cfg.queues[q].max_wait;
        let announce_at = self.cfg.queues[q]
            .announce
            .as_ref()
            .filter(|_| media.is_some() && menu.is_none() && early_media)
            .map(|a| now + a.every);
        self.dialogs
            .insert(caller.call_id.clone(), (key, Side::Caller));
        self.calls.insert(
            key,
            Call {
                queue: q,
                arrived: self.received,
                caller,
                caller_invite_tx: tx,
                caller_invite: Some(msg),
                agent: None,
                ringing_sent: false,
                early_media,
                answered: false,
                ring_deadline: None,
                max_wait_at: Some(now + max_wait),
                relay: None,
                media,
                answered_at: None,
                record,
                menu: None,
                digits: Default::default(),
                announce_at,
                queued_at: now,
                step_at: None,
                overflow_at: None,
                callback_offer_at: None,
                callback_offered: false,
                closed_from: None,
                limit: None,
                forks: Vec::new(),
                survey_for: None,
                survey: None,
                callback: None,
                armed: Default::default(),
            },
        );
        if menu.is_none() {
            self.set_queue_timers(now, key);
            self.windows[q].offered(now);
            let offer = self.callback_offer_time(key, q, now);
            if let Some(call) = self.calls.get_mut(&key) {
                call.callback_offer_at = offer.filter(|_| early_media);
                call.closed_from = (asked != q && closed_prompt_heard).then_some(asked);
            }
        }
        self.metrics.calls_active.inc();
        let anchored = self
            .calls
            .get(&key)
            .is_some_and(|c| c.media.is_some() && c.early_media);
        if anchored {
            // Early media at once: the caller hears the queue's audio (ringback by default)
            // from the engine, and can press 9 while waiting.
            self.send_ringing(now, key);
        }
        match menu {
            Some(m) => self.enter_menu(now, key, &m, q),
            None => {
                self.queue_gauge(q);
                self.dispatch(now, q);
            }
        }
        if self.calls.get(&key).is_some_and(|c| c.agent.is_none()) {
            // No agent free: the caller waits in the queue, hearing ringing.
            self.send_ringing(now, key);
        }
        self.arm(TimerRef::Call(key));
    }

    fn record_arrival(
        &mut self,
        now: Instant,
        id: &str,
        msg: &Message,
        trunk: &str,
        dialled: Option<&str>,
        q: QueueIdx,
    ) {
        let caller = msg
            .header("From")
            .and_then(|f| crate::sip::uri::dialled_number(NameAddr::parse(f).uri))
            .unwrap_or_default();
        let ev = RecordEvent::Arrived {
            id: id.to_string(),
            sip_call_id: msg.call_id().to_string(),
            trunk: trunk.to_string(),
            caller,
            dialled: dialled.unwrap_or_default().to_string(),
            channel: "voice",
            queue: self.acd.queue_name(q).to_string(),
            language: self.acd.queue_skill(q).to_string(),
            at_ms: self.unix_ms(now),
        };
        self.record(ev);
    }

    /// The call's routing-step and overflow times in its current queue.
    pub(super) fn set_queue_timers(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let q = call.queue;
        call.step_at = self.acd.params(q).next_step(call.queued_at, now);
        call.overflow_at = self.cfg.queues[q]
            .overflow
            .map(|(after, _)| call.queued_at + after);
    }

    pub(super) fn queue_gauge(&self, q: QueueIdx) {
        self.metrics
            .queue_waiting
            .with_label_values(&[self.acd.queue_name(q)])
            .set(self.acd.members(q) as i64);
    }

    fn send_ringing(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.ringing_sent {
            return;
        }
        let Some(inv) = call.caller_invite.as_ref() else {
            return;
        };
        call.ringing_sent = true;
        let tag = tag_of(&call.caller.local);
        // Anchored: 183 with our SDP, the engine plays the ringback itself (RFC 3960).
        let early = call
            .media
            .as_ref()
            .filter(|_| call.early_media)
            .map(|m| m.caller_sdp.clone());
        let code = if early.is_some() { 183 } else { 180 };
        let mut r = response(inv, code, None, Some(&tag));
        r.headers.push(Header {
            name: "Contact".into(),
            value: contact_value(call.caller.flow, self.cfg.local, "dasan"),
        });
        if let Some(body) = early {
            r.headers.push(Header {
                name: "Content-Type".into(),
                value: "application/sdp".into(),
            });
            r.body = body;
        }
        let tx = call.caller_invite_tx;
        self.respond(now, tx, r);
    }

    /// Offers waiting calls of queue `q` to ready agents while both exist.
    pub(super) fn dispatch(&mut self, now: Instant, q: QueueIdx) {
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
                Some(b) => (b.flow, b.uri.clone(), format!("<sip:{agent_id}@{local}>")),
                None => {
                    // Ready without a binding cannot happen through the registrar; be safe.
                    fail(self, OfferFailure::Error);
                    self.acd.logout(agent, now);
                    return None;
                }
            },
        };
        let Some(call) = self.calls.get_mut(&key) else {
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
        let mut leg = Leg {
            flow,
            call_id: format!("{}@dasan", self.ids.token(20)),
            local: match display {
                Some(d) => format!("{d} <sip:{caller_user}@{local}>;tag={}", self.ids.token(12)),
                None => format!("<sip:{caller_user}@{local}>;tag={}", self.ids.token(12)),
            },
            remote,
            remote_target: target,
            route_set: Vec::new(),
            local_cseq: 0,
            pending_2xx: None,
        };
        let mut req = leg.request(Method::Invite, local, None, &mut self.ids);
        req.headers.push(Header {
            name: "Contact".into(),
            value: contact_value(leg.flow, local, "dasan"),
        });
        req.headers.push(Header {
            name: "Allow".into(),
            value: ALLOW.into(),
        });
        // What an agent's desktop shows with the offer (the browser gateway reads these;
        // other phones ignore X- headers).
        for (name, value) in [
            ("X-Dasan-Record", call.record.clone()),
            ("X-Dasan-Queue", self.acd.queue_name(q).to_string()),
            ("X-Dasan-Language", self.acd.queue_skill(q).to_string()),
            (
                "X-Dasan-Wait-Ms",
                now.saturating_duration_since(call.arrived)
                    .as_millis()
                    .to_string(),
            ),
        ] {
            req.headers.push(Header {
                name: name.into(),
                value,
            });
        }
        let anchored = match (&call.media, &self.anchor) {
            (Some(m), Some(a)) => Some(super::anchor::agent_offer(a, m)),
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
        })
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

    fn agent_answered(&mut self, now: Instant, key: CallKey, tx_id: u64, msg: Message) {
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
        let caller_flow = call.caller.flow;
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
            if let Some(mut cm) = self.calls.get_mut(&key).and_then(|c| c.media.take()) {
                let record = self.cfg.queues[q]
                    .record
                    .then(|| recording_name(&caller_call_id, key));
                if let Err(e) = self.anchor_attach(key, &mut cm, &msg, record) {
                    tracing::warn!(call = key, "agent SDP unusable ({e}): no media");
                }
                if let Some(c) = self.calls.get_mut(&key) {
                    c.media = Some(cm);
                }
            }
            self.arm(TimerRef::Call(key));
            return;
        };
        let mut ok = response(&inv, 200, None, Some(&tag));
        ok.headers.push(Header {
            name: "Contact".into(),
            value: contact_value(caller_flow, local, "dasan"),
        });
        ok.headers.push(Header {
            name: "Allow".into(),
            value: ALLOW.into(),
        });
        let media = self.calls.get_mut(&key).and_then(|c| c.media.take());
        match media {
            Some(mut cm) => {
                let record = self.cfg.queues[q]
                    .record
                    .then(|| recording_name(inv.call_id(), key));
                if let Err(e) = self.anchor_attach(key, &mut cm, &msg, record) {
                    tracing::warn!(call = key, "agent SDP unusable ({e}): no media");
                }
                ok.headers.push(Header {
                    name: "Content-Type".into(),
                    value: "application/sdp".into(),
                });
                ok.body = cm.caller_sdp.clone();
                if let Some(c) = self.calls.get_mut(&key) {
                    c.media = Some(cm);
                }
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

    /// The current agent attempt failed; the call goes back to the head of the queue.
    fn agent_leg_failed(&mut self, now: Instant, key: CallKey, why: OfferFailure) {
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

    /// CANCEL our INVITE if it got a provisional; otherwise stop retransmitting it and
    /// CANCEL once a provisional shows up (RFC 3261 9.1).
    pub(super) fn cancel_invite(&mut self, now: Instant, tx_id: u64) {
        if let Some(tx) = self.tx.client_mut(tx_id) {
            if let ClientKind::Invite(ci) = &mut tx.kind {
                match ci.state() {
                    ClientInviteState::Proceeding => {
                        if let Some(req) = tx.request.as_ref() {
                            let cancel = crate::sip::build::cancel_for(req);
                            let flow = tx.flow;
                            self.start_client(now, flow, cancel, Owner::Fire, None);
                        }
                    }
                    ClientInviteState::Calling => {
                        ci.stop_retransmissions();
                        tx.cancel_on_provisional = true;
                    }
                    _ => {}
                }
            }
        }
        self.arm(TimerRef::Client(tx_id));
    }

    pub(super) fn on_non_invite_response(&mut self, now: Instant, tx_id: u64, msg: Message) {
        let Some(status) = msg.status() else { return };
        if status < 200 {
            return;
        }
        if let Some(Owner::Relay { call, server_tx }) = self.tx.client(tx_id).map(|t| t.owner) {
            self.relay_final(now, call, server_tx, tx_id, msg);
        }
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
        }
    }

    /// An ACK: for a non-2xx it belongs to the INVITE server transaction; for a 2xx it
    /// belongs to the dialog (RFC 6026).
    pub(super) fn on_ack(&mut self, now: Instant, msg: Message) {
        if let Some(key) = crate::sip::transaction::server_key(&msg, &Method::Ack) {
            if let Some(id) = self.tx.find_server(&key) {
                if let Some(tx) = self.tx.server_mut(id) {
                    if let ServerKind::Invite(si) = &mut tx.kind {
                        if si.on_ack(now) == crate::sip::transaction::AckAction::Absorb {
                            self.arm(TimerRef::Server(id));
                            return;
                        }
                    }
                }
            }
        }
        let Some(&(key, side)) = self.dialogs.get(msg.call_id()) else {
            return;
        };
        let cseq = msg.cseq().map(|(n, _)| n);
        let local = self.cfg.local;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let leg = match side {
            Side::Caller => &mut call.caller,
            Side::Agent => match call.agent.as_mut() {
                Some(a) => &mut a.leg,
                None => return,
            },
        };
        if leg.pending_2xx.as_ref().map(|p| p.cseq) == cseq && cseq.is_some() {
            leg.pending_2xx = None;
        }
        // Late offer: the caller's ACK carries the answer the agent is waiting for.
        if side == Side::Caller {
            if let Some(a) = call
                .agent
                .as_mut()
                .filter(|a| a.answered && a.ack_waits_for_caller)
            {
                a.ack_waits_for_caller = false;
                let mut ack = a
                    .leg
                    .request(Method::Ack, local, Some(a.invite_cseq), &mut self.ids);
                copy_body(&msg, &mut ack);
                let (flow, bytes, tx) = (a.leg.flow, ack.to_bytes(), a.invite_tx);
                if let Some(t) = self.tx.client_mut(tx) {
                    t.ack_2xx = Some(bytes.clone());
                }
                self.send(flow, bytes);
            }
        }
    }

    pub(super) fn on_cancel(&mut self, now: Instant, tx: u64, msg: Message) {
        let invite_key = crate::sip::transaction::server_key(&msg, &Method::Invite);
        let invite_tx = invite_key.and_then(|k| self.tx.find_server(&k));
        let Some(invite_tx) = invite_tx else {
            self.reply(now, tx, &msg, 481, None);
            return;
        };
        // RFC 3261 9.2: the CANCEL's To tag must match the INVITE response's; reuse ours.
        let call_key = self.tx.server(invite_tx).and_then(|t| t.tu);
        let tag = call_key
            .and_then(|k| self.calls.get(&k))
            .map(|c| tag_of(&c.caller.local));
        self.reply(now, tx, &msg, 200, tag.as_deref());
        let proceeding = self.tx.server(invite_tx).is_some_and(|t| {
            matches!(&t.kind, ServerKind::Invite(si) if si.state() == ServerInviteState::Proceeding)
        });
        if let (Some(key), true) = (call_key, proceeding) {
            self.end_unanswered(now, key, 487, Outcome::Abandoned);
        }
    }

    /// Ends a call that no agent has answered: the caller gets `code`.
    pub(super) fn end_unanswered(
        &mut self,
        now: Instant,
        key: CallKey,
        code: u16,
        outcome: Outcome,
    ) {
        self.withdraw_agent_leg(now, key, OfferFailure::Withdrawn, false);
        let Some(call) = self.calls.remove(&key) else {
            return;
        };
        if call.menu.is_none() {
            self.acd.leave(call.queue, key);
        }
        self.queue_gauge(call.queue);
        self.dialogs.remove(&call.caller.call_id);
        let mut call = call;
        if let Some(m) = call.media.take() {
            self.anchor_release(key, m);
        }
        if outcome == Outcome::Abandoned {
            let waited = now.saturating_duration_since(call.queued_at);
            self.windows[call.queue].abandoned(now, waited);
        }
        self.metrics
            .call_wait
            .with_label_values(&[self.acd.queue_name(call.queue), outcome.label()])
            .observe(now.saturating_duration_since(call.arrived).as_secs_f64());
        self.record(RecordEvent::Ended {
            id: call.record.clone(),
            outcome: outcome.record(),
            side: if outcome == Outcome::Abandoned {
                "caller"
            } else {
                "engine"
            },
            sip_cause: code,
            at_ms: self.unix_ms(now),
        });
        if let Some(inv) = call.caller_invite.as_ref() {
            let r = response(inv, code, None, Some(&tag_of(&call.caller.local)));
            let tx = call.caller_invite_tx;
            self.after_records(|e| e.respond(now, tx, r));
        } else if outcome != Outcome::Abandoned {
            // A transferred call is past its INVITE: its caller gets a BYE instead.
            let local = self.cfg.local;
            let mut bye = call.caller.request(Method::Bye, local, None, &mut self.ids);
            bye.set_header("Reason", format!("SIP;cause={code}"));
            let flow = call.caller.flow;
            self.after_records(|e| e.start_client(now, flow, bye, Owner::Fire, None));
        }
        self.finish(call.queue, outcome);
    }

    fn finish(&mut self, q: QueueIdx, outcome: Outcome) {
        self.metrics.calls_active.dec();
        let qn = self.acd.queue_name(q).to_string();
        self.metrics
            .calls
            .with_label_values(&[&qn, outcome.label()])
            .inc();
    }

    /// Ends an answered call: BYE to the side that did not hang up.
    pub(super) fn end_answered(
        &mut self,
        now: Instant,
        key: CallKey,
        bye_to: Option<Side>,
        reason: Option<&str>,
    ) {
        let Some(mut call) = self.calls.remove(&key) else {
            return;
        };
        if let Some(m) = call.media.take() {
            self.anchor_release(key, m);
        }
        self.record(RecordEvent::Ended {
            id: call.record.clone(),
            outcome: crate::records::Outcome::Answered,
            side: match bye_to {
                Some(Side::Agent) => "caller",
                Some(Side::Caller) => "agent",
                None => "engine",
            },
            sip_cause: reason
                .and_then(|r| r.split("cause=").nth(1))
                .and_then(|c| c.split(';').next())
                .and_then(|c| c.parse().ok())
                .unwrap_or(200),
            at_ms: self.unix_ms(now),
        });
        self.schedule_survey_call(now, key, &call);
        // BYEs leave once the record is durable (see on_bye).
        let gate = self.durable_gate.replace(self.records_emitted);
        let local = self.cfg.local;
        self.dialogs.remove(&call.caller.call_id);
        if let Some(relay) = call.relay.take() {
            let r = response(&relay.request, 487, None, None);
            self.respond(now, relay.server_tx, r);
        }
        let mut agent_leg = call.agent.take();
        if let Some(a) = agent_leg.as_mut() {
            self.dialogs.remove(&a.leg.call_id);
            self.acd.call_ended(call.queue, a.agent, key, now);
            self.arm(TimerRef::Agent(a.agent));
        }
        let target = match bye_to {
            Some(Side::Caller) => Some(&mut call.caller),
            Some(Side::Agent) => agent_leg.as_mut().map(|a| &mut a.leg),
            None => None,
        };
        if let Some(leg) = target {
            let mut bye = leg.request(Method::Bye, local, None, &mut self.ids);
            if let Some(r) = reason {
                bye.set_header("Reason", r);
            }
            let flow = leg.flow;
            self.start_client(now, flow, bye, Owner::Fire, None);
        }
        if bye_to.is_none() {
            // Neither side hung up (no ACK): both get a BYE.
            for leg in [
                Some(&mut call.caller),
                agent_leg.as_mut().map(|a| &mut a.leg),
            ]
            .into_iter()
            .flatten()
            {
                let mut bye = leg.request(Method::Bye, local, None, &mut self.ids);
                if let Some(r) = reason {
                    bye.set_header("Reason", r);
                }
                let flow = leg.flow;
                self.start_client(now, flow, bye, Owner::Fire, None);
            }
        }
        self.durable_gate = gate;
        if let Some(a) = agent_leg.as_ref() {
            // The agent may be free: its queues, highest priority first.
            self.dispatch_for_agent(now, a.agent);
        }
        if let Some(t) = call.answered_at {
            // EWMA with weight 1/16: follows a shift in talk times within a few dozen calls.
            let avg = &mut self.talk_avg[call.queue];
            self.windows[call.queue].talked(now, now.saturating_duration_since(t));
            let talk = now.saturating_duration_since(t).as_secs_f64();
            self.metrics
                .call_talk
                .with_label_values(&[self.acd.queue_name(call.queue)])
                .observe(talk);
            *avg =
                std::time::Duration::from_secs_f64(avg.as_secs_f64() * 15.0 / 16.0 + talk / 16.0);
        }
        self.finish(call.queue, Outcome::Answered);
    }

    pub(super) fn on_bye(&mut self, now: Instant, tx: u64, msg: Message) {
        let Some(&(key, side)) = self.dialogs.get(msg.call_id()) else {
            self.reply(now, tx, &msg, 481, None);
            return;
        };
        let Some(call) = self.calls.get(&key) else {
            self.reply(now, tx, &msg, 481, None);
            return;
        };
        let local_tag = match side {
            Side::Caller => Some(tag_of(&call.caller.local)),
            Side::Agent => call.agent.as_ref().map(|a| tag_of(&a.leg.local)),
        };
        if msg.to_tag() != local_tag {
            self.reply(now, tx, &msg, 481, None);
            return;
        }
        let answered = call.answered;
        if side == Side::Agent && answered && call.callback.is_some() {
            // The agent left before the called-back caller answered.
            self.reply(now, tx, &msg, 200, None);
            self.abort_callback_dial(now, key);
            return;
        }
        // The record first: the 200 (and a BYE to the caller) leave once it is durable, so
        // a call its caller saw end is never missing from the store.
        match (side, answered) {
            (Side::Caller, true) => self.end_answered(now, key, Some(Side::Agent), None),
            (Side::Agent, true) if self.survey_applies(key) => self.start_survey(now, key),
            (Side::Agent, true) => self.end_answered(now, key, Some(Side::Caller), None),
            // A BYE before the call is answered ends the attempt like a CANCEL.
            (Side::Caller, false) => self.end_unanswered(now, key, 487, Outcome::Abandoned),
            (Side::Agent, false) => {}
        }
        self.after_records(|e| e.reply(now, tx, &msg, 200, None));
    }

    /// re-INVITE, UPDATE or INFO inside a call: relayed to the other leg.
    pub(super) fn on_relayable(&mut self, now: Instant, tx: u64, msg: Message) {
        let Some(&(key, side)) = self.dialogs.get(msg.call_id()) else {
            self.reply(now, tx, &msg, 481, None);
            return;
        };
        let local = self.cfg.local;
        let Some(call) = self.calls.get_mut(&key) else {
            self.reply(now, tx, &msg, 481, None);
            return;
        };
        let method = msg.method().cloned().unwrap_or(Method::Info);
        if method == Method::Info && side == Side::Caller && !call.answered {
            // SIP INFO DTMF while waiting (application/dtmf-relay or application/dtmf).
            let ct = msg.content_type().unwrap_or("").to_ascii_lowercase();
            let body = std::str::from_utf8(&msg.body).unwrap_or("");
            let digit = if ct.starts_with("application/dtmf-relay") {
                crate::media::dtmf::parse_dtmf_relay(body)
            } else if ct.starts_with("application/dtmf") {
                body.trim().chars().next()
            } else {
                None
            };
            self.reply(now, tx, &msg, 200, None);
            if let Some(d) = digit {
                self.on_digit(now, key, d, crate::media::dtmf::DigitSource::SipInfo);
                self.arm(TimerRef::Call(key));
            }
            return;
        }
        if call
            .media
            .as_ref()
            .is_some_and(|m| m.agent.is_some() || side == Side::Caller)
            && matches!(method, Method::Invite | Method::Update)
            && (call.answered || method == Method::Update)
        {
            self.reanswer(now, tx, key, side, msg);
            return;
        }
        if !call.answered || call.agent.is_none() {
            let r = response(&msg, 500, Some("Call Not Established"), None);
            let mut r = r;
            r.set_header("Retry-After", "1");
            self.respond(now, tx, r);
            return;
        }
        if call.relay.is_some() {
            self.reply(now, tx, &msg, 491, None);
            return;
        }
        let Some(a) = call.agent.as_mut() else { return };
        // Learn a refreshed target from the sender.
        match side {
            Side::Caller => call.caller.learn_target(&msg, false),
            Side::Agent => a.leg.learn_target(&msg, false),
        }
        let other = match side {
            Side::Caller => &mut a.leg,
            Side::Agent => &mut call.caller,
        };
        let mut req = other.request(method.clone(), local, None, &mut self.ids);
        if method == Method::Invite || method == Method::Update {
            req.headers.push(Header {
                name: "Contact".into(),
                value: contact_value(other.flow, local, "dasan"),
            });
        }
        copy_body(&msg, &mut req);
        let flow = other.flow;
        let client = self.start_client(
            now,
            flow,
            req,
            Owner::Relay {
                call: key,
                server_tx: tx,
            },
            None,
        );
        if let Some(call) = self.calls.get_mut(&key) {
            call.relay = Some(Relay {
                client_tx: client,
                server_tx: tx,
                from: side,
                request: msg,
            });
        }
    }

    fn relay_final(
        &mut self,
        now: Instant,
        key: CallKey,
        server_tx: u64,
        client_tx: u64,
        resp: Message,
    ) {
        let local = self.cfg.local;
        let (t1, t2, give_up) = (
            self.cfg.timers.t1,
            self.cfg.timers.t2,
            now + self.cfg.timers.t1x64(),
        );
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(relay) = call.relay.take_if(|r| r.client_tx == client_tx) else {
            return;
        };
        let status = resp.status().unwrap_or(500);
        let reason = match &resp.start {
            StartLine::Response { reason, .. } => reason.clone(),
            _ => String::new(),
        };
        let Some(a) = call.agent.as_mut() else { return };
        let (origin, other) = match relay.from {
            Side::Caller => (&mut call.caller, &mut a.leg),
            Side::Agent => (&mut a.leg, &mut call.caller),
        };
        let is_invite = relay.request.method() == Some(&Method::Invite);
        let mut ack = None;
        if is_invite && (200..300).contains(&status) {
            other.learn_target(&resp, true);
            let cseq = resp.cseq().map(|(n, _)| n).unwrap_or(other.local_cseq);
            let bytes = other
                .request(Method::Ack, local, Some(cseq), &mut self.ids)
                .to_bytes();
            ack = Some((other.flow, bytes));
        }
        let tag = tag_of(&origin.local);
        let mut r = response(&relay.request, status, Some(&reason), Some(&tag));
        if (200..300).contains(&status)
            && (is_invite || relay.request.method() == Some(&Method::Update))
        {
            r.headers.push(Header {
                name: "Contact".into(),
                value: contact_value(origin.flow, local, "dasan"),
            });
        }
        copy_body(&resp, &mut r);
        if is_invite && (200..300).contains(&status) {
            origin.pending_2xx = Some(Pending2xx {
                bytes: r.to_bytes(),
                cseq: relay.request.cseq().map(|(n, _)| n).unwrap_or(0),
                next: now + t1,
                interval: t1.min(t2),
                give_up,
            });
        }
        if let Some((flow, bytes)) = ack {
            if let Some(t) = self.tx.client_mut(client_tx) {
                t.ack_2xx = Some(bytes.clone());
            }
            self.send(flow, bytes);
        }
        self.respond(now, server_tx, r);
        self.arm(TimerRef::Call(key));
    }
}

/// A record id that stays unique across restarts: time and randomness, no state.
fn new_record_id(ids: &mut crate::sip::build::Ids) -> String {
    format!("{:016x}", ids.u64())
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

/// The tag parameter of a From/To value.
pub(super) fn tag_of(v: &str) -> String {
    NameAddr::parse(v).param("tag").unwrap_or("").to_string()
}
