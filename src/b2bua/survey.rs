//! The post-call survey ("happy call"): when the agent hangs up first and the queue has a
//! survey, the caller is not released at once. The agent's leg ends (the agent is free for
//! the next call), the caller's media goes on alone, hears the survey prompt and rates the
//! call 1–5 by DTMF; the score goes to the record, then the caller gets the BYE. No rating
//! within the queue's `survey_timeout_s` after the prompt: the BYE all the same.

use super::{Engine, MediaCommand, MusicRef, Side, TimerRef};
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
                && self.cfg.queues[c.queue].survey.is_some()
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
        self.acd.call_ended(q, a.agent, key, now);
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
        let id = call.record.clone();
        self.record(RecordEvent::Survey {
            id,
            score: score as u8,
        });
        self.end_answered(now, key, Some(Side::Caller), None);
    }
}
