//! Automatic call distribution: waiting calls per queue and agents by state and skill.
//!
//! Pure and sans-IO: every method takes the time it should act at. The engine owns one
//! `Acd` on its single signalling thread, so the hot path takes no lock at all; ready
//! agents are kept per skill in a `BTreeSet` ordered by idle-since, which makes
//! "longest-idle ready agent with skill S" an O(log n) lookup instead of a scan.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

pub type AgentIdx = u32;
pub type CallKey = u64;
pub type QueueIdx = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    LoggedOut,
    Ready,
    /// Ringing with this call.
    Offered(CallKey),
    OnCall(CallKey),
    /// After-call work until the given time.
    WrapUp(Instant),
    /// Skipped after answering busy until the given time.
    BusyDelay(Instant),
    NotReady(NotReadyReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReadyReason {
    /// Ring-no-answer: the agent did not pick up within the ring timeout.
    Rona,
    /// Set by the agent or a supervisor (the engine keeps the reason text).
    Manual,
}

/// Why a state change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the agent is ringing or on a call; change the state after the call")]
    Busy,
    #[error("the agent is logged out: the phone must register first")]
    LoggedOut,
}

impl AgentState {
    pub fn name(&self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged-out",
            AgentState::Ready => "ready",
            AgentState::Offered(_) => "offered",
            AgentState::OnCall(_) => "on-call",
            AgentState::WrapUp(_) => "wrap-up",
            AgentState::BusyDelay(_) => "busy-delay",
            AgentState::NotReady(_) => "not-ready",
        }
    }
}

/// Why an offer did not become a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferFailure {
    /// 486/600/603/480: skip the agent for the queue's busy delay.
    Busy,
    /// Ring timeout or no response at all: RONA, agent becomes not-ready.
    NoAnswer,
    /// The caller went away or the call moved on: the agent is ready again, keeping its place.
    Withdrawn,
    /// The agent's phone failed the request (4xx/5xx other than busy): skip like busy.
    Error,
}

struct Agent {
    id: String,
    skills: Vec<usize>,
    state: AgentState,
    idle_since: Instant,
    logout_pending: bool,
    calls_taken: u64,
}

pub struct QueueParams {
    pub name: String,
    pub skill: String,
    pub max_length: usize,
    pub wrap_up: Duration,
    pub busy_delay: Duration,
}

struct Queue {
    p: QueueParams,
    skill: usize,
    /// Calls waiting for an agent (not currently offered), in order.
    waiting: VecDeque<CallKey>,
    /// Calls in the queue: waiting plus being offered.
    members: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

pub struct Acd {
    agents: Vec<Agent>,
    skill_ids: HashMap<String, usize>,
    ready: Vec<BTreeSet<(Instant, AgentIdx)>>,
    queues: Vec<Queue>,
}

impl Acd {
    /// `agents` are (id, skills) in agent-index order (the registrar uses the same order).
    pub fn new(now: Instant, agents: &[(String, Vec<String>)], queues: Vec<QueueParams>) -> Acd {
        let mut skill_ids: HashMap<String, usize> = HashMap::new();
        let mut intern = |s: &str| {
            let n = skill_ids.len();
            *skill_ids.entry(s.to_string()).or_insert(n)
        };
        let agents: Vec<Agent> = agents
            .iter()
            .map(|(id, skills)| Agent {
                id: id.clone(),
                skills: skills.iter().map(|s| intern(s)).collect(),
                state: AgentState::LoggedOut,
                idle_since: now,
                logout_pending: false,
                calls_taken: 0,
            })
            .collect();
        let queues: Vec<Queue> = queues
            .into_iter()
            .map(|p| Queue {
                skill: intern(&p.skill),
                p,
                waiting: VecDeque::new(),
                members: 0,
            })
            .collect();
        Acd {
            ready: vec![BTreeSet::new(); skill_ids.len()],
            agents,
            skill_ids,
            queues,
        }
    }

    pub fn queue_index(&self, name: &str) -> Option<QueueIdx> {
        self.queues.iter().position(|q| q.p.name == name)
    }

    pub fn queue_name(&self, q: QueueIdx) -> &str {
        &self.queues[q].p.name
    }

    /// The skill name a queue routes on (its language, for the 120+9 queues).
    pub fn queue_skill(&self, q: QueueIdx) -> &str {
        &self.queues[q].p.skill
    }

    pub fn agent_id(&self, a: AgentIdx) -> &str {
        &self.agents[a as usize].id
    }

    pub fn agent_state(&self, a: AgentIdx) -> &AgentState {
        &self.agents[a as usize].state
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    pub fn calls_taken(&self, a: AgentIdx) -> u64 {
        self.agents[a as usize].calls_taken
    }

    pub fn waiting(&self, q: QueueIdx) -> usize {
        self.queues[q].waiting.len()
    }

    pub fn members(&self, q: QueueIdx) -> usize {
        self.queues[q].members
    }

    /// 1-based place of a waiting call in its queue (None once offered or gone).
    pub fn position(&self, q: QueueIdx, call: CallKey) -> Option<usize> {
        self.queues[q]
            .waiting
            .iter()
            .position(|c| *c == call)
            .map(|i| i + 1)
    }

    /// Agents logged in with the queue's skill, whatever they are doing now: the people
    /// who will work through the queue (for an expected-wait estimate).
    pub fn staffed(&self, q: QueueIdx) -> usize {
        let skill = self.queues[q].skill;
        self.agents
            .iter()
            .filter(|a| {
                a.skills.contains(&skill)
                    && !matches!(a.state, AgentState::LoggedOut | AgentState::NotReady(_))
            })
            .count()
    }

    pub fn ready_count(&self) -> usize {
        self.agents
            .iter()
            .filter(|a| a.state == AgentState::Ready)
            .count()
    }

    pub fn skill_known(&self, s: &str) -> bool {
        self.skill_ids.contains_key(s)
    }

    fn set_ready(&mut self, a: AgentIdx, idle_since: Instant) {
        let ag = &mut self.agents[a as usize];
        ag.state = AgentState::Ready;
        ag.idle_since = idle_since;
        for &s in &ag.skills {
            self.ready[s].insert((idle_since, a));
        }
    }

    fn leave_ready(&mut self, a: AgentIdx) {
        let ag = &self.agents[a as usize];
        if ag.state == AgentState::Ready {
            for &s in &ag.skills {
                self.ready[s].remove(&(ag.idle_since, a));
            }
        }
    }

    /// A registration logged the agent in. A not-ready or logged-out agent becomes ready;
    /// an agent in a call keeps its state.
    pub fn login(&mut self, a: AgentIdx, now: Instant) {
        let ag = &mut self.agents[a as usize];
        ag.logout_pending = false;
        match ag.state {
            AgentState::LoggedOut | AgentState::NotReady(_) => self.set_ready(a, now),
            _ => {}
        }
    }

    /// The agent's registrations are gone. An agent in a call is logged out when it ends.
    /// Ready again (from not-ready, wrap-up or busy delay), keeping no idle credit: the
    /// agent joins the back of the longest-idle order.
    pub fn make_ready(&mut self, a: AgentIdx, now: Instant) -> Result<(), StateError> {
        match self.agents[a as usize].state {
            AgentState::Ready => Ok(()),
            AgentState::LoggedOut => Err(StateError::LoggedOut),
            AgentState::Offered(_) | AgentState::OnCall(_) => Err(StateError::Busy),
            AgentState::WrapUp(_) | AgentState::BusyDelay(_) | AgentState::NotReady(_) => {
                self.set_ready(a, now);
                Ok(())
            }
        }
    }

    pub fn make_not_ready(&mut self, a: AgentIdx) -> Result<(), StateError> {
        match self.agents[a as usize].state {
            AgentState::LoggedOut => Err(StateError::LoggedOut),
            AgentState::Offered(_) | AgentState::OnCall(_) => Err(StateError::Busy),
            _ => {
                self.leave_ready(a);
                self.agents[a as usize].state = AgentState::NotReady(NotReadyReason::Manual);
                Ok(())
            }
        }
    }

    pub fn agent_index(&self, id: &str) -> Option<AgentIdx> {
        self.agents
            .iter()
            .position(|a| a.id == id)
            .map(|i| i as AgentIdx)
    }

    pub fn agent_skills(&self, a: AgentIdx) -> Vec<&str> {
        let names: HashMap<usize, &str> = self
            .skill_ids
            .iter()
            .map(|(k, v)| (*v, k.as_str()))
            .collect();
        self.agents[a as usize]
            .skills
            .iter()
            .filter_map(|s| names.get(s).copied())
            .collect()
    }

    /// Ready agents with the queue's skill.
    pub fn ready_in_queue(&self, q: QueueIdx) -> usize {
        self.ready[self.queues[q].skill].len()
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Calls waiting (not being offered) in `q`, in order.
    pub fn waiting_calls(&self, q: QueueIdx) -> impl Iterator<Item = CallKey> + '_ {
        self.queues[q].waiting.iter().copied()
    }

    pub fn logout(&mut self, a: AgentIdx) {
        match self.agents[a as usize].state {
            AgentState::Offered(_) | AgentState::OnCall(_) => {
                self.agents[a as usize].logout_pending = true;
            }
            _ => {
                self.leave_ready(a);
                self.agents[a as usize].state = AgentState::LoggedOut;
            }
        }
    }

    pub fn enqueue(&mut self, q: QueueIdx, call: CallKey) -> Result<(), QueueFull> {
        let queue = &mut self.queues[q];
        if queue.members >= queue.p.max_length {
            return Err(QueueFull);
        }
        queue.members += 1;
        queue.waiting.push_back(call);
        Ok(())
    }

    /// The call leaves the queue (answered, abandoned, timed out). Only call this once per
    /// enqueued call; an offered call is not in `waiting` and just stops counting.
    pub fn leave(&mut self, q: QueueIdx, call: CallKey) {
        let queue = &mut self.queues[q];
        if let Some(i) = queue.waiting.iter().position(|c| *c == call) {
            queue.waiting.remove(i);
        }
        queue.members = queue.members.saturating_sub(1);
    }

    /// The next (call, agent) pair to offer in queue `q`, if both exist. The agent becomes
    /// Offered and the call stops waiting (it stays a member until [`Acd::leave`]).
    pub fn next_offer(&mut self, q: QueueIdx) -> Option<(CallKey, AgentIdx)> {
        let queue = &self.queues[q];
        let call = *queue.waiting.front()?;
        let &(_, agent) = self.ready[queue.skill].first()?;
        self.queues[q].waiting.pop_front();
        self.leave_ready(agent);
        self.agents[agent as usize].state = AgentState::Offered(call);
        Some((call, agent))
    }

    /// An offer failed; the call goes back to the head of its queue unless it is gone.
    pub fn offer_failed(
        &mut self,
        q: QueueIdx,
        call: CallKey,
        a: AgentIdx,
        why: OfferFailure,
        now: Instant,
        call_still_waiting: bool,
    ) {
        if call_still_waiting {
            self.queues[q].waiting.push_front(call);
        }
        if self.agents[a as usize].state != AgentState::Offered(call) {
            return;
        }
        if std::mem::take(&mut self.agents[a as usize].logout_pending) {
            self.agents[a as usize].state = AgentState::LoggedOut;
            return;
        }
        let busy = self.queues[q].p.busy_delay;
        match why {
            OfferFailure::Busy | OfferFailure::Error => {
                self.agents[a as usize].state = AgentState::BusyDelay(now + busy)
            }
            OfferFailure::NoAnswer => {
                self.agents[a as usize].state = AgentState::NotReady(NotReadyReason::Rona)
            }
            OfferFailure::Withdrawn => {
                let since = self.agents[a as usize].idle_since;
                self.set_ready(a, since);
            }
        }
    }

    pub fn answered(&mut self, a: AgentIdx, call: CallKey) {
        let ag = &mut self.agents[a as usize];
        if ag.state == AgentState::Offered(call) {
            ag.state = AgentState::OnCall(call);
            ag.calls_taken += 1;
        }
    }

    /// The agent's call ended: wrap-up, or ready at once when the queue has none.
    pub fn call_ended(&mut self, q: QueueIdx, a: AgentIdx, call: CallKey, now: Instant) {
        if self.agents[a as usize].state != AgentState::OnCall(call) {
            return;
        }
        if std::mem::take(&mut self.agents[a as usize].logout_pending) {
            self.agents[a as usize].state = AgentState::LoggedOut;
            return;
        }
        let wrap = self.queues[q].p.wrap_up;
        if wrap.is_zero() {
            self.set_ready(a, now);
        } else {
            self.agents[a as usize].state = AgentState::WrapUp(now + wrap);
        }
    }

    /// When the agent's current timed state (wrap-up, busy delay) ends.
    pub fn agent_deadline(&self, a: AgentIdx) -> Option<Instant> {
        match self.agents[a as usize].state {
            AgentState::WrapUp(t) | AgentState::BusyDelay(t) => Some(t),
            _ => None,
        }
    }

    /// Ends a timed state that is due; returns true if the agent became ready.
    pub fn agent_timer(&mut self, a: AgentIdx, now: Instant) -> bool {
        match self.agents[a as usize].state {
            AgentState::WrapUp(t) | AgentState::BusyDelay(t) if t <= now => {
                self.set_ready(a, now);
                true
            }
            _ => false,
        }
    }

    /// Queues whose skill the agent has: the ones to dispatch after it becomes ready.
    pub fn queues_for_agent(&self, a: AgentIdx) -> impl Iterator<Item = QueueIdx> + '_ {
        let skills = &self.agents[a as usize].skills;
        self.queues
            .iter()
            .enumerate()
            .filter(move |(_, q)| skills.contains(&q.skill))
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acd(now: Instant) -> Acd {
        let agents = vec![
            ("1001".to_string(), vec!["ko".to_string()]),
            ("1002".to_string(), vec!["ko".to_string()]),
            ("1011".to_string(), vec!["ko".to_string(), "en".to_string()]),
        ];
        let q = |name: &str, skill: &str| QueueParams {
            name: name.into(),
            skill: skill.into(),
            max_length: 2,
            wrap_up: Duration::ZERO,
            busy_delay: Duration::from_secs(5),
        };
        Acd::new(now, &agents, vec![q("general", "ko"), q("en", "en")])
    }

    #[test]
    fn longest_idle_first_and_fifo() {
        let t0 = Instant::now();
        let mut a = acd(t0);
        a.login(1, t0);
        a.login(0, t0 + Duration::from_secs(1));
        a.enqueue(0, 10).unwrap();
        a.enqueue(0, 11).unwrap();
        assert_eq!(a.enqueue(0, 12), Err(QueueFull));
        assert_eq!(a.next_offer(0), Some((10, 1)), "1002 has been idle longest");
        assert_eq!(a.next_offer(0), Some((11, 0)));
        assert_eq!(a.next_offer(0), None);
    }

    #[test]
    fn skill_filter() {
        let t0 = Instant::now();
        let mut a = acd(t0);
        a.login(0, t0);
        a.enqueue(1, 1).unwrap();
        assert_eq!(
            a.next_offer(1),
            None,
            "a ko-only agent never takes an en call"
        );
        a.login(2, t0);
        assert_eq!(a.next_offer(1), Some((1, 2)));
    }

    #[test]
    fn rona_busy_withdrawn_and_wrap() {
        let t0 = Instant::now();
        let mut a = acd(t0);
        a.login(0, t0);
        a.login(1, t0 + Duration::from_secs(1));
        a.enqueue(0, 7).unwrap();
        let (c, ag) = a.next_offer(0).unwrap();
        a.offer_failed(0, c, ag, OfferFailure::NoAnswer, t0, true);
        assert_eq!(
            a.agent_state(0),
            &AgentState::NotReady(NotReadyReason::Rona)
        );
        let (c, ag) = a.next_offer(0).unwrap();
        assert_eq!(ag, 1);
        a.offer_failed(0, c, ag, OfferFailure::Busy, t0, true);
        assert_eq!(a.agent_deadline(1), Some(t0 + Duration::from_secs(5)));
        assert_eq!(a.next_offer(0), None);
        assert!(a.agent_timer(1, t0 + Duration::from_secs(5)));
        let (c, ag) = a.next_offer(0).unwrap();
        a.offer_failed(0, c, ag, OfferFailure::Withdrawn, t0, false);
        assert_eq!(a.agent_state(1), &AgentState::Ready);
        assert_eq!(a.waiting(0), 0);
        a.enqueue(0, 8).unwrap();
        let (c, ag) = a.next_offer(0).unwrap();
        a.answered(ag, c);
        a.call_ended(0, ag, c, t0);
        a.leave(0, c);
        assert_eq!(a.agent_state(1), &AgentState::Ready);
        assert_eq!(a.calls_taken(1), 1);
    }

    #[test]
    fn wrap_up_then_ready() {
        let t0 = Instant::now();
        let agents = vec![("1001".to_string(), vec!["ko".to_string()])];
        let mut a = Acd::new(
            t0,
            &agents,
            vec![QueueParams {
                name: "q".into(),
                skill: "ko".into(),
                max_length: 5,
                wrap_up: Duration::from_secs(10),
                busy_delay: Duration::from_secs(5),
            }],
        );
        a.login(0, t0);
        a.enqueue(0, 1).unwrap();
        let (c, ag) = a.next_offer(0).unwrap();
        a.answered(ag, c);
        a.call_ended(0, ag, c, t0);
        assert_eq!(
            a.agent_state(0),
            &AgentState::WrapUp(t0 + Duration::from_secs(10))
        );
        a.enqueue(0, 2).unwrap();
        assert_eq!(a.next_offer(0), None, "no offers during wrap-up");
        assert!(!a.agent_timer(0, t0 + Duration::from_secs(9)));
        assert!(a.agent_timer(0, t0 + Duration::from_secs(10)));
        assert_eq!(a.next_offer(0), Some((2, 0)));
    }

    #[test]
    fn logout_during_call_takes_effect_after() {
        let t0 = Instant::now();
        let mut a = acd(t0);
        a.login(0, t0);
        a.enqueue(0, 1).unwrap();
        let (c, ag) = a.next_offer(0).unwrap();
        a.answered(ag, c);
        a.logout(ag);
        assert_eq!(a.agent_state(0), &AgentState::OnCall(1));
        a.call_ended(0, ag, c, t0);
        assert_eq!(a.agent_state(0), &AgentState::LoggedOut);
        a.enqueue(0, 2).unwrap();
        assert_eq!(a.next_offer(0), None);
    }
}
