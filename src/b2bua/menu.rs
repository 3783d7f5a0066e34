//! 120+9: digits while a caller waits, the language menu, queue announcements, and the
//! re-INVITEs an anchored call answers itself.
//!
//! Zero-ARS adds no delay: a call is offered to an agent the moment it arrives. Until a
//! human answers, a digit the caller's queue maps to a menu (`9` → `languages` in the
//! default dialplan) withdraws any ringing offer (the agent stays ready, keeping its place)
//! and takes the call out of the queue while the menu plays; the chosen option moves it to
//! that queue. Digits come from RFC 4733, SIP INFO and in-band detection and are merged per
//! call, so one key press counts once.

use super::leg::tag_of;
use super::leg::Pending2xx;
use super::{Engine, MenuState, Outcome, Side, TimerRef, ALLOW};
use crate::acd::{CallKey, OfferFailure, QueueIdx};
use crate::dialplan::{MenuRun, MenuStep};
use crate::media::bridge::LegId;
use crate::media::dtmf::DigitSource;
use crate::sip::build::response;
use crate::sip::message::{Header, Message};
use crate::sip::Method;
use std::time::Instant;

impl Engine {
    /// A digit from the caller, from any source.
    pub(super) fn on_digit(&mut self, now: Instant, key: CallKey, digit: char, src: DigitSource) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.survey.is_some() {
            if call.digits.on_digit(now, digit, src).is_some() {
                self.survey_digit(now, key, digit);
            }
            return;
        }
        if call.answered || call.digits.on_digit(now, digit, src).is_none() {
            return;
        }
        if call.limit == Some(super::limits::LimitState::Message) {
            return; // the max-wait message plays: the call is on its way out
        }
        tracing::debug!(call = key, %digit, ?src, "digit");
        let id = call.record.clone();
        self.record(crate::records::RecordEvent::Digit { id, digit });
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Some(m) = call.menu.as_mut() {
            let Some(menu) = self.dialplan.menu(&m.name) else {
                return;
            };
            let step = m.run.on_digit(menu, digit);
            self.menu_step(now, key, step);
            return;
        }
        // Outside a queue's hours, its callback digit asks for a call when it opens.
        if let Some(origin) = call.closed_from.filter(|o| {
            call.menu.is_none()
                && self.cfg.queues[*o]
                    .callback
                    .is_some_and(|(d, _, _)| d == digit)
                && self.cfg.outbound.is_some()
        }) {
            let opens = self.next_opening(origin, now).unwrap_or(now);
            self.accept_callback(now, key, Some((origin, opens)));
            return;
        }
        if call.menu.is_none()
            && self.cfg.queues[call.queue]
                .callback
                .is_some_and(|(d, _, _)| d == digit)
            && self.cfg.outbound.is_some()
        {
            self.accept_callback(now, key, None);
            return;
        }
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let queue = self.acd.queue_name(call.queue);
        if let Some(menu) = self.dialplan.digit_while_waiting(queue, digit) {
            let (menu, q) = (menu.to_string(), call.queue);
            // Stop ringing the agent (it stays ready) and leave the queue for the menu.
            self.withdraw_agent_leg(now, key, OfferFailure::Withdrawn, false);
            self.acd.leave(q, key);
            self.queue_gauge(q);
            self.enter_menu(now, key, &menu, q);
            self.dispatch(now, q);
        }
    }

    /// Starts menu `name` for a call that is in no queue; `back_to` takes it if the caller
    /// chooses nothing.
    pub(super) fn enter_menu(&mut self, now: Instant, key: CallKey, name: &str, back_to: QueueIdx) {
        let Some(menu) = self.dialplan.menu(name) else {
            // Validated at load; if it is gone, the caller still reaches a human.
            self.join_queue(now, key, back_to);
            return;
        };
        let (run, step) = MenuRun::start(menu);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let previous = call.menu.replace(MenuState {
            name: name.to_string(),
            run,
            back_to,
        });
        if let Some(p) = previous {
            self.release_menu_seat(p.back_to);
        }
        if self.menu_seats.len() <= back_to {
            self.menu_seats.resize(back_to + 1, 0);
        }
        self.menu_seats[back_to] += 1;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.announce_at = None;
        self.menu_step(now, key, step);
    }

    fn menu_step(&mut self, now: Instant, key: CallKey, step: MenuStep) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        match step {
            MenuStep::Play(prompts) => {
                self.media_out.push_back(super::MediaCommand::Play {
                    call: key,
                    prompts,
                    then: super::MusicRef::Silence,
                });
            }
            MenuStep::Queue(name) => {
                let q = self.acd.queue_index(&name).unwrap_or(call.queue);
                self.join_queue(now, key, q);
            }
            MenuStep::GiveUp => {
                let q = call.menu.as_ref().map_or(call.queue, |m| m.back_to);
                self.join_queue(now, key, q);
            }
        }
        self.arm(TimerRef::Call(key));
    }

    /// The call leaves its menu (if any) and waits in queue `q`, hearing that queue's audio.
    pub(super) fn join_queue(&mut self, now: Instant, key: CallKey, q: QueueIdx) {
        let asked = q;
        let Some((q, closed_prompt)) = self.open_queue(q, now) else {
            // Closed, and nowhere open to go: the caller is told so.
            self.end_unanswered(now, key, 480, Outcome::Rejected);
            return;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let left_menu = call.menu.take().map(|m| m.back_to);
        let back_to = left_menu.unwrap_or(call.queue);
        if let Some(b) = left_menu {
            self.release_menu_seat(b);
        }
        let q = if self.try_enqueue(q, key, now) {
            q
        } else if let Ok(t) = self.when_full(q, key, now) {
            t
        } else if q != back_to && self.try_enqueue(back_to, key, now) {
            back_to
        } else {
            // Every queue the caller could go to is full.
            self.end_unanswered(now, key, 480, Outcome::Rejected);
            return;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.queue != q {
            let ev = crate::records::RecordEvent::Queue {
                id: call.record.clone(),
                queue: self.acd.queue_name(q).to_string(),
                language: self.acd.queue_skill(q).to_string(),
            };
            self.record(ev);
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.queue = q;
        call.queued_at = now;
        let heard_closed = closed_prompt.is_some() && call.early_media && call.media.is_some();
        call.closed_from = (asked != q && heard_closed).then_some(asked);
        let offer = self.callback_offer_time(key, q, now);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.callback_offer_at = offer.filter(|_| call.early_media);
        let timing = &self.cfg.queues[q];
        call.announce_at = timing.announce.as_ref().map(|a| now + a.every);
        tracing::debug!(
            call = key,
            queue = self.acd.queue_name(q),
            "call joins queue"
        );
        self.media_out.push_back(super::MediaCommand::Play {
            call: key,
            prompts: closed_prompt.into_iter().collect(),
            then: timing.music.clone(),
        });
        self.set_queue_timers(now, key);
        self.windows[q].offered(now);
        self.queue_gauge(q);
        self.dispatch(now, q);
        self.arm(TimerRef::Call(key));
    }

    /// The call waited its queue's overflow time: it moves to the overflow queue (not
    /// while an agent's phone rings for it: then a second later).
    pub(super) fn overflow(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.agent.is_some() {
            call.overflow_at = Some(now + std::time::Duration::from_secs(1));
            self.arm(TimerRef::Call(key));
            return;
        }
        let q = call.queue;
        let Some((_, target)) = self.cfg.queues[q].overflow else {
            return;
        };
        tracing::debug!(
            call = key,
            from = self.acd.queue_name(q),
            to = self.acd.queue_name(target),
            "overflow"
        );
        self.acd.leave(q, key);
        self.queue_gauge(q);
        self.join_queue(now, key, target);
    }

    pub(super) fn on_prompts_done(&mut self, now: Instant, key: CallKey) {
        if self.limit_prompts_done(now, key) {
            return;
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Some(deadline @ None) = call.survey.as_mut() {
            let wait = self.cfg.queues[call.queue]
                .survey
                .as_ref()
                .map_or(std::time::Duration::from_secs(10), |(_, t)| *t);
            *deadline = Some(now + wait);
        }
        if let Some(m) = call.menu.as_mut() {
            if let Some(menu) = self.dialplan.menu(&m.name) {
                m.run.prompts_done(menu, now);
            }
        }
        self.arm(TimerRef::Call(key));
    }

    pub(super) fn menu_timeout(&mut self, now: Instant, key: CallKey) {
        let Some(m) = self.calls.get_mut(&key).and_then(|c| c.menu.as_mut()) else {
            return;
        };
        let Some(menu) = self.dialplan.menu(&m.name) else {
            return;
        };
        if let Some(step) = m.run.handle_timeout(menu, now) {
            self.menu_step(now, key, step);
        }
    }

    /// The queue's periodic announcement (message, place, expected wait), then its music.
    pub(super) fn announce(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let q = call.queue;
        let timing = &self.cfg.queues[q];
        let Some(a) = timing.announce.clone() else {
            call.announce_at = None;
            return;
        };
        call.announce_at = Some(now + a.every);
        // Not over an agent's ringing: the answer could cut it off mid-word anyway.
        if call.agent.is_some() || call.menu.is_some() {
            return;
        }
        let music = timing.music.clone();
        let l = &a.language;
        let number = |n: usize| {
            if (1..=10).contains(&n) {
                n.to_string()
            } else {
                "many".to_string()
            }
        };
        let mut prompts: Vec<String> = a.prompt.into_iter().collect();
        let position = self.acd.position(q, key);
        if let (true, Some(p)) = (a.position, position) {
            prompts.push(format!("queue-position-{l}"));
            prompts.push(format!("pos-{l}-{}", number(p)));
        }
        if let (true, Some(p)) = (a.wait, position) {
            let staff = self.acd.staffed(q).max(1) as f64;
            let secs = p as f64 * self.talk_avg[q].as_secs_f64() / staff;
            let minutes = ((secs / 60.0).ceil() as usize).max(1);
            prompts.push(format!("queue-ewt-{l}"));
            prompts.push(format!("min-{l}-{}", number(minutes)));
        }
        if !prompts.is_empty() {
            self.media_out.push_back(super::MediaCommand::Play {
                call: key,
                prompts,
                then: music,
            });
        }
    }

    /// A re-INVITE or UPDATE on an anchored call: answered here for that leg alone.
    pub(super) fn reanswer(
        &mut self,
        now: Instant,
        tx: u64,
        key: CallKey,
        side: Side,
        msg: Message,
    ) {
        let local = self.cfg.local;
        let (t1, t2, give_up) = (
            self.cfg.timers.t1,
            self.cfg.timers.t2,
            now + self.cfg.timers.t1x64(),
        );
        // The offer's source: the dialog's peer (matched by Call-ID and both tags).
        let Some(signalling) = self
            .tx
            .server(tx)
            .map(|t| t.flow)
            .or_else(|| {
                let call = self.calls.get(&key)?;
                match side {
                    Side::Caller => Some(call.caller.flow),
                    Side::Agent => call.agent.as_ref().map(|a| a.leg.flow),
                }
            })
            .map(|f| f.remote.ip())
        else {
            return;
        };
        let Some(mut cm) = self.calls.get_mut(&key).and_then(|c| c.media.take()) else {
            return;
        };
        let leg_id = match side {
            Side::Caller => LegId::Caller,
            Side::Agent => LegId::Agent,
        };
        let answer = self.anchor_reanswer(key, &mut cm, leg_id, &msg, signalling);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.media = Some(cm);
        let leg = match side {
            Side::Caller => &mut call.caller,
            Side::Agent => match call.agent.as_mut() {
                Some(a) => &mut a.leg,
                None => return,
            },
        };
        leg.learn_target(&msg, false);
        let tag = tag_of(&leg.local);
        let body = match answer {
            Ok(b) => b,
            Err(code) => {
                self.reply(now, tx, &msg, code, Some(&tag));
                return;
            }
        };
        let mut ok = response(&msg, 200, None, Some(&tag));
        ok.headers.push(Header {
            name: "Contact".into(),
            value: leg.contact(local, "dasan"),
        });
        ok.headers.push(Header {
            name: "Allow".into(),
            value: ALLOW.into(),
        });
        ok.headers.push(Header {
            name: "Content-Type".into(),
            value: "application/sdp".into(),
        });
        ok.body = body;
        if msg.method() == Some(&Method::Invite) {
            leg.pending_2xx = Some(Pending2xx {
                bytes: ok.to_bytes(),
                cseq: msg.cseq().map(|(n, _)| n).unwrap_or(0),
                next: now + t1,
                interval: t1.min(t2),
                give_up,
            });
        }
        self.respond(now, tx, ok);
        self.arm(TimerRef::Call(key));
    }

    /// Ends a call for a media reason: BYE with `reason` when answered, else `code` to the
    /// caller.
    pub(super) fn end_call(&mut self, now: Instant, key: CallKey, code: u16, reason: &str) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.answered {
            self.end_answered(now, key, None, Some(reason));
        } else {
            let outcome = if code == 408 {
                Outcome::TimedOut
            } else {
                Outcome::Rejected
            };
            self.end_unanswered(now, key, code, outcome);
        }
    }
}
