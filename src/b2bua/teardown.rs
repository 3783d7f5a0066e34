//! Teardown: CANCEL, BYE and the engine's own hang-ups; the record is ended and the
//! messages that tell the caller wait until it is durable.

use super::leg::tag_of;
use super::{Engine, Outcome, Owner, Side, TimerRef};
use crate::acd::{CallKey, OfferFailure, QueueIdx};
use crate::records::RecordEvent;
use crate::sip::build::response;
use crate::sip::message::Message;
use crate::sip::transaction::{ServerInviteState, ServerKind};
use crate::sip::Method;
use std::time::Instant;

impl Engine {
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
        let Some(call) = self.take_call(key) else {
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
            .with_label_values(&[self.acd.queue_name(call.queue), outcome.as_str()])
            .observe(now.saturating_duration_since(call.arrived).as_secs_f64());
        self.record(RecordEvent::Ended {
            id: call.record.clone(),
            outcome,
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

    pub(super) fn finish(&mut self, q: QueueIdx, outcome: Outcome) {
        self.metrics.calls_active.dec();
        let qn = self.acd.queue_name(q).to_string();
        self.metrics
            .calls
            .with_label_values(&[&qn, outcome.as_str()])
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
        let Some(mut call) = self.take_call(key) else {
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
            self.agent_call_ended(call.queue, a.agent, key, call.record.clone(), now);
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
            self.metrics
                .handle
                .with_label_values(&[self.acd.queue_name(call.queue), "voice"])
                .observe(talk);
            *avg =
                std::time::Duration::from_secs_f64(avg.as_secs_f64() * 15.0 / 16.0 + talk / 16.0);
        }
        self.finish(call.queue, Outcome::Answered);
    }

    pub(super) fn on_bye(&mut self, now: Instant, tx: u64, msg: Message) {
        let Some((key, side)) = self.dialog_of(now, tx, &msg) else {
            return;
        };
        let Some(call) = self.calls.get(&key) else {
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
}
