//! Blind transfer (RFC 3515): an agent sends REFER on its leg with `Refer-To` naming a
//! queue (by name, e.g. `sip:en@…`) or a number routed to a queue. The engine accepts it
//! (202), reports the outcome to the agent with a NOTIFY carrying a `message/sipfrag`
//! (RFC 3515 2.4.5), releases the agent, and puts the caller in the target queue: the
//! caller hears that queue's audio, and the next agent who answers is bridged into the
//! same call (one record, both queues and agents in it). A `Refer-To` with any other
//! number (a department's line) is dialled through `[outbound] trunk`: the caller hears
//! ringback, the department's answer is bridged into the same call and record
//! (`outside:<number>`); busy, no answer within 60 s or an error sends the caller back to
//! the queue it came from, to the next counsellor. Without an outbound trunk, or for a
//! target that is not a number, 603. Attended transfer (Replaces, RFC 3891) is not
//! implemented.

use super::leg::tag_of;
use super::{Engine, MediaCommand, MusicRef, Owner, RouteTarget, Side, TimerRef};
use crate::acd::{CallKey, OUTSIDE};
use crate::sip::build::response;
use crate::sip::message::{Header, Message, NameAddr};
use crate::sip::Method;
use std::time::Instant;

impl Engine {
    pub(super) fn on_refer(&mut self, now: Instant, tx: u64, msg: Message) {
        let Some((key, side)) = self.dialog_of(now, tx, &msg) else {
            return;
        };
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let Some(a) = call.agent.as_ref() else {
            self.reply(now, tx, &msg, 481, None);
            return;
        };
        let tag = tag_of(&a.leg.local);
        if side != Side::Agent || !call.answered || msg.to_tag().as_deref() != Some(&tag) {
            // Only the agent of an answered call transfers it.
            self.reply(now, tx, &msg, 403, Some(&tag));
            return;
        }
        if call.media.is_none() {
            let mut r = response(&msg, 488, Some("Transfer Needs Anchored Media"), Some(&tag));
            r.set_header(
                "Warning",
                "399 dasan \"transfer needs [media] anchor = true\"",
            );
            self.respond(now, tx, r);
            return;
        }
        let target = msg
            .header("Refer-To")
            .map(NameAddr::parse)
            .and_then(|na| crate::sip::uri::dialled_number(na.uri));
        let Some(target) = target else {
            self.reply(now, tx, &msg, 400, Some(&tag));
            return;
        };
        let q = self
            .acd
            .queue_index(&target)
            .or_else(|| match self.cfg.routes.get(&target) {
                Some(RouteTarget::Queue(q)) => Some(*q),
                Some(RouteTarget::Menu(_, q)) => Some(*q),
                None => None,
            });
        let is_number = target.len() <= 20
            && target
                .bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'+'))
            && target.bytes().any(|b| b.is_ascii_digit());
        let outside = q.is_none() && is_number && self.cfg.outbound.is_some();
        if q.is_none() && !outside {
            tracing::info!(call = key, "REFER to an unknown queue or number: declined");
            self.reply(now, tx, &msg, 603, Some(&tag));
            return;
        }
        let (agent, agent_contact) = (a.agent, a.leg.contact(self.cfg.local, "dasan"));
        if outside {
            let agent_id = self.acd.agent_id(agent).to_string();
            // Audited first, so that refused destinations are on record too; only
            // transfers that would dial count against the rate.
            if !self.outbound_audited(now, &target, "transfer", &agent_id)
                || !self.transfer_rate_ok(now, agent)
            {
                let r = response(&msg, 403, Some("Destination Not Allowed"), Some(&tag));
                self.respond(now, tx, r);
                return;
            }
        }
        if q.is_some_and(|q| self.queue_full(q)) {
            // The caller stays with the agent rather than being dropped by a full queue.
            let mut r = response(&msg, 503, Some("Queue Full"), Some(&tag));
            r.set_header("Retry-After", self.cfg.retry_after_s.to_string());
            self.respond(now, tx, r);
            return;
        }
        let mut accepted = response(&msg, 202, None, Some(&tag));
        accepted.headers.push(Header {
            name: "Contact".into(),
            value: agent_contact,
        });
        self.respond(now, tx, accepted);
        let local = self.cfg.local;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(mut a) = call.agent.take() else {
            return;
        };
        let from_q = call.queue;
        call.answered = false;
        call.answered_at = None;
        call.ringing_sent = true;
        call.ring_deadline = None;
        call.max_wait_at = q.map(|q| now + self.cfg.queues[q].max_wait);
        // The transferor learns it worked, then its leg is closed.
        let mut notify = a.leg.request(Method::Notify, local, None, &mut self.ids);
        notify.set_header("Event", "refer");
        notify.set_header("Subscription-State", "terminated;reason=noresource");
        notify.set_header("Content-Type", "message/sipfrag;version=2.0");
        notify.body = bytes::Bytes::from_static(b"SIP/2.0 200 OK\r\n");
        let bye = a.leg.request(Method::Bye, local, None, &mut self.ids);
        let flow = a.leg.flow;
        self.start_client(now, flow, notify, Owner::Fire, None);
        self.start_client(now, flow, bye, Owner::Fire, None);
        self.dialogs.remove(&a.leg.call_id);
        let record = self
            .calls
            .get(&key)
            .map(|c| c.record.clone())
            .unwrap_or_default();
        self.agent_call_ended(from_q, a.agent, key, record, now);
        self.arm(TimerRef::Agent(a.agent));
        tracing::info!(
            call = key,
            from = self.acd.queue_name(from_q),
            to = q.map_or("outside", |q| self.acd.queue_name(q)),
            "blind transfer"
        );
        self.media_out.push_back(MediaCommand::Detach { call: key });
        match q {
            Some(q) => self.join_queue(now, key, q),
            None => self.dial_outside(now, key, from_q, &target),
        }
        self.dispatch_for_agent(now, a.agent);
        self.arm(TimerRef::Call(key));
    }

    /// The caller, transferred to an outside number, hears ringback while the engine dials
    /// it through the outbound trunk as the call's "agent" leg.
    fn dial_outside(&mut self, now: Instant, key: CallKey, q: crate::acd::QueueIdx, number: &str) {
        self.media_out.push_back(MediaCommand::Play {
            call: key,
            prompts: Vec::new(),
            then: MusicRef::Ringback,
        });
        match self.invite_leg(now, q, key, OUTSIDE, false, Some(number)) {
            Some(leg) => {
                if let Some(call) = self.calls.get_mut(&key) {
                    call.agent = Some(leg);
                    call.ring_deadline = Some(now + OUTSIDE_RING);
                }
            }
            None => self.join_queue(now, key, q),
        }
    }

    /// The outside number did not answer (busy, error, ring timeout): the caller goes back
    /// to its queue for the next counsellor. False when the call's leg is an agent's.
    pub(super) fn outside_failed(&mut self, now: Instant, key: CallKey) -> bool {
        let Some(call) = self.calls.get_mut(&key) else {
            return false;
        };
        if call
            .agent
            .as_ref()
            .is_none_or(|a| a.agent != OUTSIDE || a.answered)
        {
            return false;
        }
        let Some(a) = call.agent.take() else {
            return false;
        };
        call.ring_deadline = None;
        let q = call.queue;
        tracing::info!(
            call = key,
            "transfer to an outside number failed: back to the queue"
        );
        self.dialogs.remove(&a.leg.call_id);
        self.cancel_invite(now, a.invite_tx);
        self.join_queue(now, key, q);
        true
    }
}

/// How long an outside number rings before the caller goes back to the queue.
const OUTSIDE_RING: std::time::Duration = std::time::Duration::from_secs(60);
