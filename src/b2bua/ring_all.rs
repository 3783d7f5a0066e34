//! Ring-all: every eligible ready agent's phone rings at once and the first to answer
//! takes the call. The call's `agent` leg is one of the ringing phones; the others are its
//! `forks`. A fork that answers is swapped in as `agent` before the answer is handled, so
//! the rest of the call path sees one agent as with every other strategy. Phones that lose
//! the race get a CANCEL and stay ready, keeping their place (RFC 3261 9.1); a fork that
//! fails (busy, error) only moves its own agent on; the call goes back to the queue only
//! when no phone rings for it any more.

use super::{Engine, TimerRef};
use crate::acd::{CallKey, OfferFailure, QueueIdx, RING_ALL_MAX};
use crate::sip::message::Message;
use std::time::Instant;

impl Engine {
    /// The first agent's phone rings for `key`: ring the other eligible ones too.
    pub(super) fn ring_all_others(&mut self, now: Instant, q: QueueIdx, key: CallKey) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.agent.as_ref().is_none_or(|a| a.answered) || call.callback.is_some() {
            return;
        }
        // offer_more counts the first phone in its maximum.
        let room = RING_ALL_MAX.saturating_sub(call.forks.len());
        if room <= 1 {
            return;
        }
        for agent in self.acd.offer_more(q, key, now, room) {
            if let Some(leg) = self.invite_agent(now, q, key, agent, true) {
                if let Some(call) = self.calls.get_mut(&key) {
                    call.forks.push(leg);
                }
            }
        }
    }

    /// Agents who became ready join the phones already ringing for the queue's calls
    /// (oldest call first: it was offered first).
    pub(super) fn ring_all_join(&mut self, now: Instant, q: QueueIdx) {
        if self.acd.ready_in_queue(q) == 0 {
            return;
        }
        let mut ringing = self.acd.offered_calls(q);
        ringing.sort_by_key(|k| self.calls.get(k).map(|c| c.arrived));
        for key in ringing {
            self.ring_all_others(now, q, key);
        }
    }

    /// A response on one of ring-all's other phones; false if `tx_id` is not one.
    pub(super) fn fork_response(
        &mut self,
        now: Instant,
        key: CallKey,
        tx_id: u64,
        msg: &Message,
    ) -> bool {
        let Some(call) = self.calls.get_mut(&key) else {
            return false;
        };
        let Some(i) = call.forks.iter().position(|f| f.invite_tx == tx_id) else {
            return false;
        };
        let Some(status) = msg.status() else {
            return true;
        };
        match status {
            100 => {}
            101..=199 => {
                if msg.to_tag().is_some() {
                    call.forks[i].leg.remote = msg.header("To").unwrap_or("").to_string();
                }
            }
            200..=299 => {
                // This phone won: it becomes the call's agent leg, then is answered as such.
                let won = call.forks.remove(i);
                if let Some(first) = call.agent.replace(won) {
                    call.forks.push(first);
                }
                self.on_invite_response(now, tx_id, msg.clone());
            }
            _ => {
                let f = call.forks.remove(i);
                let q = call.queue;
                self.dialogs.remove(&f.leg.call_id);
                let why = match status {
                    486 | 600 | 603 | 480 => OfferFailure::Busy,
                    408 => OfferFailure::NoAnswer,
                    _ => OfferFailure::Error,
                };
                self.acd.fork_failed(q, key, f.agent, why, now);
                self.arm(TimerRef::Agent(f.agent));
            }
        }
        true
    }

    /// A fork's INVITE got no final response (Timer B).
    pub(super) fn fork_timed_out(&mut self, now: Instant, key: CallKey, tx_id: u64) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(i) = call.forks.iter().position(|f| f.invite_tx == tx_id) else {
            return;
        };
        let f = call.forks.remove(i);
        let q = call.queue;
        self.dialogs.remove(&f.leg.call_id);
        self.acd
            .fork_failed(q, key, f.agent, OfferFailure::NoAnswer, now);
        self.arm(TimerRef::Agent(f.agent));
    }

    /// Every other phone stops ringing for `key` (`why` for their agents: Withdrawn when
    /// one of them answered or the caller left, NoAnswer at the ring timeout).
    /// Returns their agents.
    pub(super) fn cancel_forks(
        &mut self,
        now: Instant,
        key: CallKey,
        why: OfferFailure,
    ) -> Vec<crate::acd::AgentIdx> {
        let Some(call) = self.calls.get_mut(&key) else {
            return Vec::new();
        };
        let q = call.queue;
        let forks = std::mem::take(&mut call.forks);
        let agents = forks.iter().map(|f| f.agent).collect();
        for f in forks {
            self.dialogs.remove(&f.leg.call_id);
            self.cancel_invite(now, f.invite_tx);
            self.acd.fork_failed(q, key, f.agent, why, now);
            self.arm(TimerRef::Agent(f.agent));
        }
        agents
    }
}
