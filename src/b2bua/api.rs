//! What the HTTP API reads from and asks of the engine: views of agents, queues and
//! calls, agent state changes, and hanging up a call. All of it runs on the engine's own
//! task (the driver passes the requests in), so nothing here takes a lock.

use super::{Engine, TimerRef};
use crate::acd::{AgentState, NotReadyReason};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub id: String,
    pub state: &'static str,
    /// Why the agent is not ready: "rona" or the reason given with the change.
    pub reason: Option<String>,
    pub skills: Vec<String>,
    pub calls_taken: u64,
    /// The consultation record id of the call the agent is ringing with or talking on.
    pub call: Option<String>,
    /// Text conversations open, and how many the agent may have (`max_chats`).
    pub chats: u32,
    pub max_chats: u32,
    /// The dialplan's display name, if it gives one.
    pub name: Option<String>,
    /// The queues the agent serves (those whose skill it has).
    pub queues: Vec<String>,
    /// When the agent entered this state (Unix ms).
    pub since_ms: i64,
    /// When its after-call work ends, while in wrap-up (Unix ms).
    pub wrap_up_until_ms: Option<i64>,
}

/// A queue's text channel: conversations waiting and with agents, the oldest wait, and
/// the window's figures (answered = first replies, ASA = average first response).
#[derive(Debug, Clone, Serialize)]
pub struct TextQueueView {
    pub waiting: usize,
    pub oldest_wait_ms: u64,
    pub open: usize,
    pub window: super::stats::Figures,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaitingCall {
    pub call_id: String,
    pub position: usize,
    pub wait_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueView {
    pub name: String,
    pub skill: String,
    /// Waiting plus ringing an agent.
    pub calls: usize,
    pub waiting: Vec<WaitingCall>,
    pub longest_wait_ms: u64,
    pub agents_ready: usize,
    pub agents_staffed: usize,
    /// Service figures over the last 15 minutes.
    pub window: super::stats::Figures,
    /// The text channel, for a queue that takes text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<TextQueueView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    pub call_id: String,
    pub sip_call_id: String,
    pub queue: String,
    /// "waiting", "menu", "ringing" or "talking".
    pub state: &'static str,
    pub agent: Option<String>,
    pub caller: String,
    pub wait_ms: u64,
    pub talk_ms: Option<u64>,
}

/// An agent state asked for through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    Ready,
    NotReady(String),
    Logout,
}

/// Refusals the API turns into 404 / 409.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiRefusal {
    #[error("no such agent")]
    NoAgent,
    #[error("no such call in progress")]
    NoCall,
    #[error(transparent)]
    State(#[from] crate::acd::StateError),
}

impl Engine {
    fn agent_view(&self, a: crate::acd::AgentIdx) -> AgentView {
        let state = self.acd.agent_state(a);
        let reason = match state {
            AgentState::NotReady(NotReadyReason::Rona) => Some("rona".to_string()),
            AgentState::NotReady(NotReadyReason::Manual) => self.not_ready_reasons.get(&a).cloned(),
            _ => None,
        };
        let call = match state {
            AgentState::Offered(k) | AgentState::OnCall(k) => {
                self.calls.get(k).map(|c| c.record.clone())
            }
            _ => None,
        };
        AgentView {
            id: self.acd.agent_id(a).to_string(),
            state: state.name(),
            reason,
            skills: self
                .acd
                .agent_skills(a)
                .into_iter()
                .map(str::to_string)
                .collect(),
            calls_taken: self.acd.calls_taken(a),
            call,
            chats: self.text.chats(a),
            max_chats: self.text.max_chats(a),
            name: self.agent_names.get(a as usize).cloned().flatten(),
            queues: self
                .acd
                .queues_for_agent(a)
                .map(|q| self.acd.queue_name(q).to_string())
                .collect(),
            since_ms: self.unix_ms(self.agent_since(a).unwrap_or(self.start)),
            wrap_up_until_ms: match state {
                AgentState::WrapUp(t) => Some(self.unix_ms(*t)),
                _ => None,
            },
        }
    }

    pub fn agents_view(&self) -> Vec<AgentView> {
        (0..self.acd.agent_count() as crate::acd::AgentIdx)
            .map(|a| self.agent_view(a))
            .collect()
    }

    pub fn set_agent_state(
        &mut self,
        now: Instant,
        id: &str,
        change: StateChange,
    ) -> Result<AgentView, ApiRefusal> {
        let a = self.acd.agent_index(id).ok_or(ApiRefusal::NoAgent)?;
        match change {
            StateChange::Ready => {
                self.acd.make_ready(a, now)?;
                self.not_ready_reasons.remove(&a);
                let queues: Vec<_> = self.acd.queues_for_agent(a).collect();
                for q in queues {
                    self.dispatch(now, q);
                }
            }
            StateChange::NotReady(reason) => {
                self.acd.make_not_ready(a, now)?;
                self.not_ready_reasons.insert(a, reason);
            }
            StateChange::Logout => {
                self.acd.logout(a, now);
                self.not_ready_reasons.remove(&a);
            }
        }
        tracing::info!(
            agent = id,
            state = self.acd.agent_state(a).name(),
            "agent state set by API"
        );
        self.arm(TimerRef::Agent(a));
        self.note_wrap_ups(now);
        Ok(self.agent_view(a))
    }

    pub fn queues_view(&self, now: Instant) -> Vec<QueueView> {
        (0..self.acd.queue_count())
            .map(|q| {
                let waiting: Vec<WaitingCall> = self
                    .acd
                    .waiting_calls(q)
                    .enumerate()
                    .filter_map(|(i, k)| {
                        let c = self.calls.get(&k)?;
                        Some(WaitingCall {
                            call_id: c.record.clone(),
                            position: i + 1,
                            wait_ms: now.saturating_duration_since(c.arrived).as_millis() as u64,
                        })
                    })
                    .collect();
                let longest = self
                    .calls
                    .values()
                    .filter(|c| c.queue == q && !c.answered && c.menu.is_none())
                    .map(|c| now.saturating_duration_since(c.arrived).as_millis() as u64)
                    .max()
                    .unwrap_or(0);
                QueueView {
                    name: self.acd.queue_name(q).to_string(),
                    skill: self.acd.queue_skill(q).to_string(),
                    calls: self.acd.members(q),
                    waiting,
                    longest_wait_ms: longest,
                    agents_ready: self.acd.ready_in_queue(q),
                    agents_staffed: self.acd.staffed(q),
                    window: self.windows[q].figures(now),
                    text: self.cfg.queues[q].text.then(|| {
                        let (waiting, oldest) = self.text.waiting_in(q, now);
                        TextQueueView {
                            waiting,
                            oldest_wait_ms: oldest.as_millis() as u64,
                            open: self.text.open_in(q),
                            window: self.text.windows[q].figures(now),
                        }
                    }),
                }
            })
            .collect()
    }

    /// Calls in progress. `numbers` false masks the callers' numbers.
    pub fn calls_view(&self, now: Instant, numbers: bool) -> Vec<CallView> {
        let mut v: Vec<CallView> = self
            .calls
            .values()
            .map(|c| {
                let state = if c.answered {
                    "talking"
                } else if c.menu.is_some() {
                    "menu"
                } else if c.agent.is_some() {
                    "ringing"
                } else {
                    "waiting"
                };
                let caller = crate::sip::message::NameAddr::parse(&c.caller.remote);
                let number = crate::sip::uri::dialled_number(caller.uri).unwrap_or_default();
                CallView {
                    call_id: c.record.clone(),
                    sip_call_id: c.caller.call_id.clone(),
                    queue: self.acd.queue_name(c.queue).to_string(),
                    state,
                    agent: c
                        .agent
                        .as_ref()
                        .map(|a| self.acd.agent_id(a.agent).to_string()),
                    caller: if numbers {
                        number
                    } else {
                        crate::util::mask_number(&number)
                    },
                    wait_ms: c
                        .answered_at
                        .unwrap_or(now)
                        .saturating_duration_since(c.arrived)
                        .as_millis() as u64,
                    talk_ms: c
                        .answered_at
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                }
            })
            .collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.wait_ms));
        v
    }

    /// Ends a call in progress (a supervisor's hang-up): BYE to both legs with a Reason
    /// when answered, 480 to the caller when not.
    pub fn hang_up(&mut self, now: Instant, call_id: &str) -> Result<(), ApiRefusal> {
        let key = self
            .calls
            .iter()
            .find(|(_, c)| c.record == call_id)
            .map(|(k, _)| *k)
            .ok_or(ApiRefusal::NoCall)?;
        let answered = self.calls.get(&key).is_some_and(|c| c.answered);
        if answered {
            self.end_answered(
                now,
                key,
                None,
                Some("SIP;cause=200;text=\"ended by a supervisor\""),
            );
        } else {
            self.end_unanswered(now, key, 480, super::Outcome::Rejected);
        }
        Ok(())
    }
}
