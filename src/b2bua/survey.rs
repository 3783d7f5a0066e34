//! The post-call survey ("happy call"): when the agent hangs up first and the queue has a
//! survey, the caller is not released at once. The agent's leg ends (the agent is free for
//! the next call), the caller's media goes on alone, hears the survey prompt and rates the
//! call 1–5 by DTMF; the score goes to the record, then the caller gets the BYE. No rating
//! within the queue's `survey_timeout_s` after the prompt: the BYE all the same.
//!
//! With `survey_call_after_s` the survey is a call instead: that long after an answered
//! call ends, the engine dials the caller through the outbound trunk (the callback
//! machinery, with no agent), plays the prompt when they answer, and writes the rating to
//! the consultation's record. One attempt; the survey call keeps its own record.

use super::{Call, Engine, MediaCommand, MusicRef, Side, TimerRef};
use crate::acd::CallKey;
use crate::records::RecordEvent;
use std::time::Instant;

impl Engine {
    /// The call's queue has a survey and its caller can hear one (anchored early media).
    pub(super) fn survey_applies(&self, key: CallKey) -> bool {
        self.calls.get(&key).is_some_and(|c| {
            c.answered
                && c.media.is_some()
                && c.early_media
                && c.survey.is_none()
                && c.survey_for.is_none()
                && self.cfg.queues[c.queue].survey.is_some()
                && self.cfg.queues[c.queue].survey_call.is_none()
        })
    }

    /// The agent hung up: release the agent, keep the caller for the survey.
    pub(super) fn start_survey(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(a) = call.agent.take() else {
            return;
        };
        call.survey = Some(None);
        let (q, record) = (call.queue, call.record.clone());
        let prompt = self.cfg.queues[q].survey.as_ref().map(|(p, _)| p.clone());
        self.dialogs.remove(&a.leg.call_id);
        self.agent_call_ended(q, a.agent, key, record.clone(), now);
        self.arm(TimerRef::Agent(a.agent));
        // The consultation itself ended now: its talk time stops here.
        self.record(RecordEvent::Ended {
            id: record,
            outcome: crate::records::Outcome::Answered,
            side: "agent",
            sip_cause: 200,
            at_ms: self.unix_ms(now),
        });
        self.media_out.push_back(MediaCommand::Detach { call: key });
        self.media_out.push_back(MediaCommand::Play {
            call: key,
            prompts: prompt.into_iter().collect(),
            then: MusicRef::Silence,
        });
        self.dispatch_for_agent(now, a.agent);
        self.arm(TimerRef::Call(key));
    }

    /// A digit during the survey: 1-5 is the rating; anything else is ignored.
    pub(super) fn survey_digit(&mut self, now: Instant, key: CallKey, digit: char) {
        let Some(score) = digit.to_digit(10).filter(|d| (1..=5).contains(d)) else {
            return;
        };
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let id = call
            .survey_for
            .clone()
            .unwrap_or_else(|| call.record.clone());
        self.record(RecordEvent::Survey {
            id,
            score: score as u8,
        });
        self.end_answered(now, key, Some(Side::Caller), None);
    }

    /// An answered call ended: book its survey call, if the queue makes one.
    pub(super) fn schedule_survey_call(&mut self, now: Instant, key: CallKey, call: &Call) {
        let Some(after) = self.cfg.queues[call.queue].survey_call else {
            return;
        };
        if call.answered_at.is_none() || call.survey_for.is_some() || call.survey.is_some() {
            return;
        }
        let number = crate::sip::uri::dialled_number(
            crate::sip::message::NameAddr::parse(&call.caller.remote).uri,
        )
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit() || b == b'+'))
        .filter(|n| self.cfg.outbound_rules.permits(n));
        let Some(number) = number else {
            return;
        };
        tracing::debug!(call = key, "survey call booked");
        self.callbacks.insert(
            key,
            super::callback::Job::survey(number, call.queue, now + after, call.record.clone()),
        );
        self.arm(TimerRef::Callback(key));
    }

    /// The survey call was answered: its media starts with the caller alone, the prompt
    /// plays, and the rating is awaited as in the in-call survey.
    pub(super) fn survey_call_answered(&mut self, key: CallKey, start: MediaCommand) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.survey = Some(None);
        call.answered = true;
        let prompt = self.cfg.queues[call.queue]
            .survey
            .as_ref()
            .map(|(p, _)| p.clone());
        self.media_out.push_back(start);
        self.media_out.push_back(MediaCommand::Play {
            call: key,
            prompts: prompt.into_iter().collect(),
            then: MusicRef::Silence,
        });
        self.arm(TimerRef::Call(key));
    }
}
