//! Why the engine wakes up. Every entry in the engine's timer heap names its reason (as
//! quinn's timer table and str0m's timeouts do): a transaction's RFC 3261 timer, one of a
//! call's deadlines, an agent's registration or state timer, a callback's retry. A handler
//! runs for exactly the reason that fired; none has to work out which deadline it was.
//!
//! Deadlines themselves live with what they belong to (a call's `ring_deadline`, a
//! transaction's machine, the ACD's agent state). The heap holds one entry per armed
//! reason; each reason has an `armed` slot, so an entry that a re-arm to an earlier time
//! superseded, or whose deadline was cleared, is recognised and skipped when it comes due.

use super::{Call, Engine, Side};
use crate::acd::{AgentIdx, CallKey, OfferFailure};
use crate::sip::transaction::{ClientTimeout, TxId, TxRef};
use crate::sip::Flow;
use bytes::Bytes;
use std::cmp::Reverse;
use std::time::Instant;

/// An entry in the timer heap: the reason it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Wake {
    /// A transaction's timer (A, B, D–K, L, M): retransmit, time out, or reclaim it.
    Transaction(TxRef),
    Call(CallKey, CallTimer),
    Agent(AgentIdx, AgentTimer),
    /// A callback that failed waits to rejoin its queue for another attempt.
    CallbackRetry(CallKey),
    /// A text conversation's idle or waiting deadline.
    Text(super::text::ConvKey),
}

/// A call's deadlines, in the order they are handled when several fall at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum CallTimer {
    /// Our 2xx to either leg is retransmitted until ACKed (RFC 3261 13.3.1.4), and the
    /// call ends if no ACK comes in 64*T1.
    Ack2xx,
    /// The queue's `max_wait_s`.
    MaxWait,
    /// The spoken callback offer after `callback_offer_after_s`.
    CallbackOffer,
    /// The post-call survey's wait for a rating.
    SurveyRating,
    /// The 120+9 menu's digit timeout.
    Menu,
    /// The next position / wait announcement.
    Announce,
    /// The queue's `overflow.after_s`.
    Overflow,
    /// The next routing step (wider proficiency).
    RoutingStep,
    /// The agent's phone rang `ring_timeout_s` without an answer (RONA).
    RingTimeout,
}

impl CallTimer {
    const ALL: [CallTimer; 9] = [
        CallTimer::Ack2xx,
        CallTimer::MaxWait,
        CallTimer::CallbackOffer,
        CallTimer::SurveyRating,
        CallTimer::Menu,
        CallTimer::Announce,
        CallTimer::Overflow,
        CallTimer::RoutingStep,
        CallTimer::RingTimeout,
    ];
}

/// An agent's deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum AgentTimer {
    /// The registration's expiry: the agent is logged out.
    Registration,
    /// A state that ends by itself (wrap-up, busy delay).
    State,
}

/// What changed and needs its deadlines armed again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TimerRef {
    Server(TxId),
    Client(TxId),
    Call(CallKey),
    Agent(AgentIdx),
    Callback(CallKey),
    Text(super::text::ConvKey),
}

/// The instants armed in the heap, one slot per reason.
#[derive(Debug, Clone, Copy)]
pub(super) struct Armed<const N: usize>([Option<Instant>; N]);

impl<const N: usize> Default for Armed<N> {
    fn default() -> Self {
        Armed([None; N])
    }
}

impl<const N: usize> Armed<N> {
    /// Whether `next` needs a heap entry for reason `i` (none armed, or a later one);
    /// records it as armed.
    fn arm(&mut self, i: usize, next: Option<Instant>) -> Option<Instant> {
        let t = next?;
        let slot = &mut self.0[i];
        if slot.is_none_or(|a| t < a) {
            *slot = Some(t);
            return Some(t);
        }
        None
    }

    /// An entry for reason `i` at `at` came due: true if it is the armed one (now disarmed).
    fn fire(&mut self, i: usize, at: Instant) -> bool {
        let slot = &mut self.0[i];
        if *slot == Some(at) {
            *slot = None;
            return true;
        }
        false
    }
}

pub(super) type CallArmed = Armed<{ CallTimer::ALL.len() }>;
pub(super) type AgentArmed = Armed<2>;

impl Call {
    /// When the call's `t` is due, if it is set.
    fn deadline(&self, t: CallTimer) -> Option<Instant> {
        match t {
            CallTimer::Ack2xx => [
                self.caller.pending_2xx.as_ref().map(|p| p.next),
                self.agent
                    .as_ref()
                    .and_then(|a| a.leg.pending_2xx.as_ref().map(|p| p.next)),
            ]
            .into_iter()
            .flatten()
            .min(),
            CallTimer::MaxWait => self.max_wait_at,
            CallTimer::CallbackOffer => self.callback_offer_at,
            CallTimer::SurveyRating => self.survey.flatten(),
            CallTimer::Menu => self.menu.as_ref().and_then(|m| m.run.poll_timeout()),
            CallTimer::Announce => self.announce_at,
            CallTimer::Overflow => self.overflow_at,
            CallTimer::RoutingStep => self.step_at,
            CallTimer::RingTimeout => self.ring_deadline,
        }
    }
}

impl Engine {
    /// Arms the heap for whatever `r` names, for every reason whose deadline is earlier
    /// than the one armed.
    pub(super) fn arm(&mut self, r: TimerRef) {
        match r {
            TimerRef::Server(id) => self.arm_transaction(TxRef::Server(id)),
            TimerRef::Client(id) => self.arm_transaction(TxRef::Client(id)),
            TimerRef::Call(k) => {
                let Some(c) = self.calls.get_mut(&k) else {
                    return;
                };
                for (i, t) in CallTimer::ALL.into_iter().enumerate() {
                    if let Some(at) = c.armed.arm(i, c.deadline(t)) {
                        self.timers.push(Reverse((at, Wake::Call(k, t))));
                    }
                }
            }
            // Not a real agent (an outside number a transfer dialled).
            TimerRef::Agent(a) if a as usize >= self.acd.agent_count() => {}
            TimerRef::Agent(a) => {
                let deadlines = [
                    (AgentTimer::Registration, self.registrar.next_expiry(a)),
                    (AgentTimer::State, self.acd.agent_deadline(a)),
                ];
                let Some(armed) = self.agent_armed.get_mut(a as usize) else {
                    return;
                };
                for (i, (t, next)) in deadlines.into_iter().enumerate() {
                    if let Some(at) = armed.arm(i, next) {
                        self.timers.push(Reverse((at, Wake::Agent(a, t))));
                    }
                }
            }
            TimerRef::Text(k) => {
                let idle = self.text.settings.idle_close;
                let Some(c) = self.text.convs.get_mut(&k) else {
                    return;
                };
                let t = c.deadline(idle);
                if c.armed.is_none_or(|a| t < a) {
                    c.armed = Some(t);
                    self.timers.push(Reverse((t, Wake::Text(k))));
                }
            }
            TimerRef::Callback(k) => {
                let Some(j) = self.callbacks.get_mut(&k) else {
                    return;
                };
                let Some(t) = j.retry_at else { return };
                if j.armed.is_none_or(|a| t < a) {
                    j.armed = Some(t);
                    self.timers.push(Reverse((t, Wake::CallbackRetry(k))));
                }
            }
        }
    }

    fn arm_transaction(&mut self, t: TxRef) {
        if let Some(at) = self.tx.arm(t) {
            self.timers.push(Reverse((at, Wake::Transaction(t))));
        }
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((t, wake))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            if self.disarm(wake, t) {
                self.wake(now, wake);
            }
        }
        self.note_wrap_ups(now);
    }

    /// True if `wake` at `at` is the entry armed for its reason (and disarms it).
    fn disarm(&mut self, wake: Wake, at: Instant) -> bool {
        match wake {
            Wake::Transaction(t) => self.tx.fire(t, at),
            Wake::Call(k, t) => self
                .calls
                .get_mut(&k)
                .is_some_and(|c| c.armed.fire(t as usize, at)),
            Wake::Agent(a, t) => self
                .agent_armed
                .get_mut(a as usize)
                .is_some_and(|s| s.fire(t as usize, at)),
            Wake::Text(k) => match self.text.convs.get_mut(&k) {
                Some(c) if c.armed == Some(at) => {
                    c.armed = None;
                    true
                }
                _ => false,
            },
            Wake::CallbackRetry(k) => match self.callbacks.get_mut(&k) {
                Some(j) if j.armed == Some(at) => {
                    j.armed = None;
                    true
                }
                _ => false,
            },
        }
    }

    fn wake(&mut self, now: Instant, wake: Wake) {
        match wake {
            Wake::Transaction(TxRef::Server(id)) => {
                self.server_timeout(now, id);
                self.arm(TimerRef::Server(id));
            }
            Wake::Transaction(TxRef::Client(id)) => {
                self.client_timeout(now, id);
                self.arm(TimerRef::Client(id));
            }
            Wake::Call(k, t) => {
                self.call_timer(now, k, t);
                self.arm(TimerRef::Call(k));
            }
            Wake::Agent(a, t) => {
                self.agent_timer(now, a, t);
                self.arm(TimerRef::Agent(a));
            }
            Wake::CallbackRetry(k) => {
                self.callback_retry(now, k);
                self.arm(TimerRef::Callback(k));
            }
            Wake::Text(k) => {
                self.text_timer(now, k);
                self.arm(TimerRef::Text(k));
            }
        }
    }

    fn server_timeout(&mut self, now: Instant, id: TxId) {
        let mut resend = Vec::new();
        let reclaimed = self.tx.server_timeout(id, now, &mut resend);
        self.resend(resend);
        if reclaimed {
            self.metrics.sip_transactions.dec();
        }
    }

    fn client_timeout(&mut self, now: Instant, id: TxId) {
        let mut resend = Vec::new();
        let outcome = self.tx.client_timeout(id, now, &mut resend);
        self.resend(resend);
        match outcome {
            ClientTimeout::Running => {}
            ClientTimeout::Reclaimed => self.metrics.sip_transactions.dec(),
            ClientTimeout::TimedOut(owner) => {
                self.metrics.sip_transactions.dec();
                self.on_client_timeout(now, id, owner);
            }
        }
    }

    fn resend(&mut self, packets: Vec<(Flow, Bytes)>) {
        for (flow, bytes) in packets {
            self.metrics.sip_retransmissions.inc();
            self.send(flow, bytes);
        }
    }

    fn agent_timer(&mut self, now: Instant, a: AgentIdx, t: AgentTimer) {
        match t {
            AgentTimer::Registration => {
                let due = self.registrar.next_expiry(a).is_some_and(|t| t <= now);
                if due && self.registrar.expire(a, now) {
                    tracing::info!(
                        agent = self.acd.agent_id(a),
                        "registration expired: logged out"
                    );
                    self.acd.logout(a, now);
                }
            }
            AgentTimer::State => {
                if self.acd.agent_timer(a, now) {
                    self.dispatch_for_agent(now, a);
                }
            }
        }
    }

    /// One of a call's deadlines came due; it is checked again here because the call may
    /// have moved on (answered, moved to another queue) since it was armed.
    fn call_timer(&mut self, now: Instant, key: CallKey, t: CallTimer) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.deadline(t).is_none_or(|d| d > now) {
            return;
        }
        let waiting = !call.answered;
        match t {
            CallTimer::Ack2xx => self.retransmit_2xx(now, key),
            CallTimer::MaxWait if waiting => self.max_wait_reached(now, key),
            CallTimer::CallbackOffer if waiting => self.play_callback_offer(key),
            // No rating: goodbye without a thank-you.
            CallTimer::SurveyRating => self.end_answered(now, key, Some(Side::Caller), None),
            CallTimer::Menu => self.menu_timeout(now, key),
            CallTimer::Announce if waiting => self.announce(now, key),
            CallTimer::Overflow if waiting && call.menu.is_none() => self.overflow(now, key),
            CallTimer::RoutingStep if waiting => {
                // A wider routing step: agents of lower proficiency may take it now.
                let q = call.queue;
                self.set_queue_timers(now, key);
                self.dispatch(now, q);
            }
            CallTimer::RingTimeout if waiting => {
                let q = call.queue;
                if self.outside_failed(now, key) {
                    return;
                }
                tracing::info!(call = key, "ring timeout: agent not ready (RONA)");
                self.withdraw_agent_leg(now, key, OfferFailure::NoAnswer, true);
                self.dispatch(now, q);
            }
            _ => {}
        }
    }

    /// RFC 3261 13.3.1.4: our 2xx is sent again, T1 doubling up to T2, until ACKed; with
    /// no ACK after 64*T1 the call ends.
    fn retransmit_2xx(&mut self, now: Instant, key: CallKey) {
        let t2 = self.cfg.timers.t2;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let mut resend = Vec::new();
        let mut no_ack = false;
        let legs = [
            Some(&mut call.caller),
            call.agent.as_mut().map(|a| &mut a.leg),
        ];
        for leg in legs.into_iter().flatten() {
            let Some(p) = leg.pending_2xx.as_mut().filter(|p| p.next <= now) else {
                continue;
            };
            if now >= p.give_up {
                leg.pending_2xx = None;
                no_ack = true;
            } else {
                p.interval = (p.interval * 2).min(t2);
                p.next = now + p.interval;
                resend.push((leg.flow, p.bytes.clone()));
            }
        }
        self.resend(resend);
        if no_ack {
            tracing::info!(call = key, "2xx never ACKed: ending call");
            self.end_answered(now, key, None, None);
        }
    }
}
