//! A queue's limits and the callback offers: what a caller gets at `max_wait_s`
//! (`when_max_wait`), what a new call gets when `max_length` calls wait (`when_full`), the
//! spoken callback offer after `callback_offer_after_s`, and the callback asked for outside
//! opening hours, placed when the queue opens.
//!
//! Zero-ARS stays the default: every one of these is off until a queue configures it, and
//! the defaults (480 at max wait, 503 when full) are what the engine did before.

use super::{Engine, Limit, MediaCommand, MusicRef, Outcome, TimerRef};
use crate::acd::{CallKey, OfferFailure, QueueIdx};
use std::time::{Duration, Instant};

/// After the callback is offered at max wait, how long the caller has to press the digit.
const CALLBACK_GRACE: Duration = Duration::from_secs(20);
/// The longest a max-wait message may take before the call ends anyway.
const MESSAGE_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LimitState {
    /// The callback was offered at max wait; the call ends when the grace runs out.
    CallbackOffered,
    /// The max-wait message plays (the call has left its queue); 480 when it has played.
    Message,
}

impl Engine {
    /// The call has waited its queue's max_wait_s (or the grace after an offer ran out).
    pub(super) fn max_wait_reached(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let q = call.queue;
        // Only a caller who gets our early media can hear a message or an offer.
        let can_play = call.media.is_some() && call.early_media;
        let action = match call.limit {
            Some(_) => Limit::Reject(480),
            None => self.cfg.queues[q].when_max_wait.clone(),
        };
        match action {
            Limit::Queue(t) => {
                if call.agent.is_some() {
                    // An agent's phone rings for it: give that a second.
                    call.max_wait_at = Some(now + Duration::from_secs(1));
                    self.arm(TimerRef::Call(key));
                    return;
                }
                call.max_wait_at = Some(now + self.cfg.queues[t].max_wait);
                tracing::debug!(call = key, "max wait: moves to another queue");
                self.acd.leave(q, key);
                self.queue_gauge(q);
                self.join_queue(now, key, t);
            }
            Limit::Message(p) if can_play => {
                self.withdraw_agent_leg(now, key, OfferFailure::Withdrawn, false);
                self.acd.leave(q, key);
                self.queue_gauge(q);
                let Some(call) = self.calls.get_mut(&key) else {
                    return;
                };
                call.limit = Some(LimitState::Message);
                call.max_wait_at = Some(now + MESSAGE_LIMIT);
                call.announce_at = None;
                call.step_at = None;
                call.overflow_at = None;
                call.callback_offer_at = None;
                self.media_out.push_back(MediaCommand::Play {
                    call: key,
                    prompts: vec![p],
                    then: MusicRef::Silence,
                });
                self.arm(TimerRef::Call(key));
            }
            Limit::Callback if can_play && self.cfg.outbound.is_some() => {
                call.limit = Some(LimitState::CallbackOffered);
                call.max_wait_at = Some(now + CALLBACK_GRACE);
                call.callback_offer_at = None;
                self.play_callback_offer(key);
                self.arm(TimerRef::Call(key));
            }
            Limit::Reject(code) => self.end_unanswered(now, key, code, Outcome::TimedOut),
            _ => self.end_unanswered(now, key, 480, Outcome::TimedOut),
        }
    }

    /// The prompts have played: a max-wait message ends the call.
    pub(super) fn limit_prompts_done(&mut self, now: Instant, key: CallKey) -> bool {
        let ending = self
            .calls
            .get(&key)
            .is_some_and(|c| c.limit == Some(LimitState::Message));
        if ending {
            self.end_unanswered(now, key, 480, Outcome::TimedOut);
        }
        ending
    }

    /// The caller hears the callback offer once, then the queue's audio again.
    pub(super) fn play_callback_offer(&mut self, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.callback_offered = true;
        call.callback_offer_at = None;
        if call.media.is_none() || !call.early_media || call.answered {
            return;
        }
        let timing = &self.cfg.queues[call.queue];
        self.media_out.push_back(MediaCommand::Play {
            call: key,
            prompts: vec![timing.callback_offer.1.clone()],
            then: timing.music.clone(),
        });
    }

    /// When the spoken offer is due for a call waiting in `q` (None: not configured, or
    /// already heard).
    pub(super) fn callback_offer_time(
        &self,
        key: CallKey,
        q: QueueIdx,
        now: Instant,
    ) -> Option<Instant> {
        let call = self.calls.get(&key)?;
        if call.callback_offered || self.cfg.outbound.is_none() {
            return None;
        }
        let after = self.cfg.queues[q].callback_offer.0?;
        Some((call.arrived + after).max(now))
    }

    /// A new call found queue `q` full: where it waits instead, or the status it gets.
    pub(super) fn when_full(
        &mut self,
        q: QueueIdx,
        key: CallKey,
        now: Instant,
    ) -> Result<QueueIdx, u16> {
        match self.cfg.queues[q].when_full.clone() {
            Limit::Queue(t) if self.try_enqueue(t, key, now) => Ok(t),
            Limit::Reject(code) => Err(code),
            _ => Err(503),
        }
    }
}
