//! Automatic call distribution: waiting calls per queue and agents by state and skill.
//!
//! Pure and sans-IO: every method takes the time it should act at.
//!
//! Concurrency design: the engine owns one `Acd` on its single signalling task, so the hot
//! path takes no lock at all — not a global lock, not a sharded one. The design brief names
//! dashmap and a lock-free core; a single owner is the stronger form of the same goal
//! (no contention, no atomics on the routing path, decisions deterministic and testable
//! under virtual time), and it keeps the invariants below true by construction rather than
//! by careful ordering of atomic operations. Scaling past one core is by sharding queues
//! across engine tasks, not by sharing one structure. (dashmap is where state really is
//! shared between threads: the browser agents' logins, `web::Sessions`.)
//!
//! Routing: every queue keeps its ready agents in five `BTreeSet`s, one per proficiency
//! level (1–5) of the queue's skill, ordered by the queue's strategy key
//! (longest-idle: idle since; fewest-calls: calls taken, then idle since; round-robin: the
//! last time the agent was offered a call; top-down: configuration order). A routing
//! decision looks at the first element of at most five sets: O(log n) in the number of
//! agents, independent of how many calls wait. Routing steps widen the proficiency an
//! agent needs as the head call waits longer; within the levels allowed, the strategy
//! decides (steps express preference, the strategy fairness).
//!
//! Invariants (property-tested): a call is offered to at most one agent at a time; an agent
//! is offered at most one call at a time; no call is lost or duplicated; calls of a queue
//! are offered in arrival order. Ring-all is the one deliberate exception to the first:
//! `offer_more` rings several agents for one call (each still Offered that one call only),
//! and the engine keeps the call offered once until the last phone stops.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// (skill, proficiency 1-5).
    skills: Vec<(usize, u8)>,
    /// (queue, proficiency in that queue's skill), queues in priority order.
    queues: Vec<(QueueIdx, u8)>,
    state: AgentState,
    idle_since: Instant,
    logout_pending: bool,
    calls_taken: u64,
    /// When the agent was last offered a call (round-robin order).
    last_offer: u64,
    /// Ring-no-answers in a row (reset by an answer).
    no_answers: u32,
    /// The queue whose call the agent is wrapping up, and since when.
    wrap: Option<(QueueIdx, Instant)>,
    /// Ready, but not for calls (busy with text conversations): kept out of the queues'
    /// ready sets.
    voice_held: bool,
}

/// How a queue picks among eligible ready agents (the dialplan names them in kebab case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Offer each call to the ready agent that has waited longest since their last call.
    #[default]
    #[serde(rename = "longest-idle-agent")]
    LongestIdle,
    /// The ready agent who has answered the fewest calls (then longest idle).
    FewestCalls,
    /// The ready agent who has gone longest without being offered a call.
    RoundRobin,
    /// Always the first ready agent in configuration order.
    TopDown,
    /// Every eligible ready agent's phone rings at once (longest idle first, up to
    /// [`RING_ALL_MAX`]); the first to answer takes the call. The one exception to "a call
    /// is offered to one agent at a time": see [`Acd::offer_more`].
    RingAll,
}

/// Not an agent: the party on an outside line the engine dialled for a call (a department
/// an agent transferred the caller to). Every per-agent method ignores it.
pub const OUTSIDE: AgentIdx = AgentIdx::MAX;

/// The most phones ring-all rings for one call.
pub const RING_ALL_MAX: usize = 32;

#[derive(Debug, Clone)]
pub struct QueueParams {
    pub name: String,
    pub skill: String,
    pub max_length: usize,
    pub wrap_up: Duration,
    pub busy_delay: Duration,
    pub strategy: Strategy,
    /// (waited at least, minimum proficiency), by increasing wait; empty: any proficiency.
    pub steps: Vec<(Duration, u8)>,
    /// Higher first when one agent serves several queues.
    pub priority: i32,
    /// Ring-no-answers in a row before the agent becomes not-ready (RONA); below it the
    /// agent is only skipped for the busy delay.
    pub max_no_answer: u32,
    /// Ready agents with this queue's skill kept back from other queues' calls: while no
    /// more than this many are ready, none of them is offered another queue's call (for a
    /// scarce skill whose callers would otherwise find every such agent busy with calls
    /// anyone could take). 0: none kept.
    pub reserve: u32,
    /// How long another queue's call may be held back by the reservation: once it has
    /// waited this long, a kept agent may take it.
    pub reserve_max_hold: Duration,
}

/// Which waiting call an agent who becomes free takes first, among the queues it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FreeAgentOrder {
    /// The queue with the highest `priority` first (configuration order among equals).
    #[default]
    Priority,
    /// The queue whose skill the fewest ready agents have first (then priority): a caller
    /// only a few agents can serve is not left waiting behind calls anyone can take.
    ScarcestSkill,
}

impl QueueParams {
    /// Defaults for everything but the name and skill.
    pub fn new(name: &str, skill: &str) -> QueueParams {
        QueueParams {
            name: name.into(),
            skill: skill.into(),
            max_length: 1000,
            wrap_up: Duration::ZERO,
            busy_delay: Duration::from_secs(5),
            strategy: Strategy::LongestIdle,
            steps: Vec::new(),
            priority: 0,
            max_no_answer: 1,
            reserve: 0,
            reserve_max_hold: Duration::from_secs(10),
        }
    }

    /// The proficiency a call that has waited `waited` needs.
    pub fn min_proficiency(&self, waited: Duration) -> u8 {
        self.steps
            .iter()
            .take_while(|(after, _)| *after <= waited)
            .last()
            .map_or(1, |(_, p)| *p)
            .clamp(1, 5)
    }

    /// When a call that joined at `since` next gets a wider step (if it ever does).
    pub fn next_step(&self, since: Instant, now: Instant) -> Option<Instant> {
        let waited = now.saturating_duration_since(since);
        self.steps
            .iter()
            .find(|(after, _)| *after > waited)
            .map(|(after, _)| since + *after)
    }
}

type ReadyKey = (u64, u64, AgentIdx);

/// A queue's calls in order: O(log n) to add at either end, take the head, or remove any
/// call (an abandon deep in a long queue), instead of a scan.
#[derive(Default)]
struct WaitList {
    order: BTreeMap<i64, (CallKey, Instant)>,
    index: HashMap<CallKey, i64>,
    /// Calls being offered to an agent, with the time they joined the queue.
    offered: HashMap<CallKey, Instant>,
    front: i64,
    back: i64,
}

impl WaitList {
    fn push_back(&mut self, call: CallKey, since: Instant) {
        self.back += 1;
        self.order.insert(self.back, (call, since));
        self.index.insert(call, self.back);
    }

    fn push_front(&mut self, call: CallKey, since: Instant) {
        self.front -= 1;
        self.order.insert(self.front, (call, since));
        self.index.insert(call, self.front);
    }

    fn front(&self) -> Option<(CallKey, Instant)> {
        self.order.first_key_value().map(|(_, v)| *v)
    }

    /// The head call leaves the line to be offered.
    fn pop_front_offered(&mut self) -> Option<(CallKey, Instant)> {
        let (_, (call, since)) = self.order.pop_first()?;
        self.index.remove(&call);
        self.offered.insert(call, since);
        Some((call, since))
    }

    /// Removes a call, waiting or being offered; false if it was neither.
    fn remove(&mut self, call: CallKey) -> bool {
        match self.index.remove(&call) {
            Some(seq) => self.order.remove(&seq).is_some(),
            None => self.offered.remove(&call).is_some(),
        }
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn iter(&self) -> impl Iterator<Item = (CallKey, Instant)> + '_ {
        self.order.values().copied()
    }

    fn position(&self, call: CallKey) -> Option<usize> {
        let seq = *self.index.get(&call)?;
        Some(self.order.range(..seq).count() + 1)
    }
}

struct Queue {
    p: QueueParams,
    skill: usize,
    /// Calls waiting for an agent (not currently offered), in order, with the time each
    /// joined (routing steps count from it).
    waiting: WaitList,
    /// Calls in the queue: waiting plus being offered.
    members: usize,
    /// Ready agents by proficiency (index 0 = level 1), in strategy order.
    ready: [BTreeSet<ReadyKey>; 5],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

pub struct Acd {
    agents: Vec<Agent>,
    skill_ids: HashMap<String, usize>,
    queues: Vec<Queue>,
    epoch: Instant,
    offers: u64,
    /// Finished wrap-ups not yet taken by the figures (see `take_wrap_ups`).
    wrap_log: Vec<(QueueIdx, AgentIdx, Duration)>,
    /// Agents whose state changed since the engine last looked (see `take_changed`).
    changed: Vec<AgentIdx>,
    /// Per queue: the reserving queues whose agents it shares (empty: the fast path).
    reserved_by: Vec<Vec<QueueIdx>>,
    /// Per queue: whether it is open (a closed queue keeps no agents back).
    open: Vec<bool>,
    order: FreeAgentOrder,
}

impl Acd {
    /// `agents` are (id, [(skill, proficiency)]) in agent-index order (the registrar uses
    /// the same order).
    pub fn new(
        now: Instant,
        agents: &[(String, Vec<(String, u8)>)],
        queues: Vec<QueueParams>,
    ) -> Acd {
        let mut skill_ids: HashMap<String, usize> = HashMap::new();
        let mut intern = |s: &str| {
            let n = skill_ids.len();
            *skill_ids.entry(s.to_string()).or_insert(n)
        };
        let mut agents: Vec<Agent> = agents
            .iter()
            .map(|(id, skills)| Agent {
                id: id.clone(),
                skills: skills
                    .iter()
                    .map(|(s, p)| (intern(s), (*p).clamp(1, 5)))
                    .collect(),
                queues: Vec::new(),
                state: AgentState::LoggedOut,
                idle_since: now,
                logout_pending: false,
                calls_taken: 0,
                last_offer: 0,
                no_answers: 0,
                wrap: None,
                voice_held: false,
            })
            .collect();
        let queues: Vec<Queue> = queues
            .into_iter()
            .map(|p| Queue {
                skill: intern(&p.skill),
                p,
                waiting: WaitList::default(),
                members: 0,
                ready: Default::default(),
            })
            .collect();
        for ag in &mut agents {
            let mut qs: Vec<(QueueIdx, u8)> = queues
                .iter()
                .enumerate()
                .filter_map(|(i, q)| {
                    ag.skills
                        .iter()
                        .find(|(s, _)| *s == q.skill)
                        .map(|(_, p)| (i, *p))
                })
                .collect();
            qs.sort_by_key(|(q, _)| std::cmp::Reverse(queues[*q].p.priority));
            ag.queues = qs;
        }
        let reserved_by = (0..queues.len())
            .map(|q| {
                (0..queues.len())
                    .filter(|&r| {
                        r != q
                            && queues[r].p.reserve > 0
                            && agents.iter().any(|a| {
                                a.queues.iter().any(|(x, _)| *x == q)
                                    && a.queues.iter().any(|(x, _)| *x == r)
                            })
                    })
                    .collect()
            })
            .collect();
        let open = vec![true; queues.len()];
        Acd {
            agents,
            skill_ids,
            queues,
            epoch: now,
            offers: 0,
            wrap_log: Vec::new(),
            changed: Vec::new(),
            reserved_by,
            open,
            order: FreeAgentOrder::Priority,
        }
    }

    /// How a free agent picks among its queues ([`Acd::queues_for_agent`]).
    pub fn with_order(mut self, order: FreeAgentOrder) -> Acd {
        self.order = order;
        self
    }

    /// Opens or closes a queue for the reservation (`reserve`): a queue outside its
    /// opening hours keeps no agents back.
    pub fn set_open(&mut self, q: QueueIdx, open: bool) {
        if let Some(o) = self.open.get_mut(q) {
            *o = open;
        }
    }

    /// Queues that keep agents back from others' calls.
    pub fn reserving_queues(&self) -> impl Iterator<Item = QueueIdx> + '_ {
        (0..self.queues.len()).filter(|&q| self.queues[q].p.reserve > 0)
    }

    /// Whether agent `a` is kept back from a call of queue `q` that has waited `waited`:
    /// one of its other queues reserves agents, is open, has no more than its reserve
    /// ready, and the call has not yet waited that queue's longest hold.
    fn kept_from(&self, a: AgentIdx, q: QueueIdx, waited: Duration) -> bool {
        self.reserved_by[q].iter().any(|&r| {
            let p = &self.queues[r].p;
            self.open[r]
                && waited < p.reserve_max_hold
                && self.ready_in_queue(r) <= p.reserve as usize
                && self.agents[a as usize].queues.iter().any(|(x, _)| *x == r)
        })
    }

    /// When a call of `q` that joined at `since` should be routed again: its next routing
    /// step, or the end of the longest hold a reservation may put on it.
    pub fn call_wake(&self, q: QueueIdx, since: Instant, now: Instant) -> Option<Instant> {
        let step = self.queues[q].p.next_step(since, now);
        let waited = now.saturating_duration_since(since);
        let release = self.reserved_by[q]
            .iter()
            .map(|&r| self.queues[r].p.reserve_max_hold)
            .filter(|h| *h > waited)
            .max()
            .map(|h| since + h);
        match (step, release) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
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
        self.agents.get(a as usize).map_or("outside", |ag| &ag.id)
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

    pub fn max_length(&self, q: QueueIdx) -> usize {
        self.queues[q].p.max_length
    }

    pub fn members(&self, q: QueueIdx) -> usize {
        self.queues[q].members
    }

    /// Whether the call waits in `q` (not offered, not gone).
    pub fn is_waiting(&self, q: QueueIdx, call: CallKey) -> bool {
        self.queues[q].waiting.index.contains_key(&call)
    }

    /// 1-based place of a waiting call in its queue (None once offered or gone).
    pub fn position(&self, q: QueueIdx, call: CallKey) -> Option<usize> {
        self.queues[q].waiting.position(call)
    }

    /// Agents logged in with the queue's skill, whatever they are doing now: the people
    /// who will work through the queue (for an expected-wait estimate).
    pub fn staffed(&self, q: QueueIdx) -> usize {
        let skill = self.queues[q].skill;
        self.agents
            .iter()
            .filter(|a| {
                a.skills.iter().any(|(s, _)| *s == skill)
                    && !matches!(a.state, AgentState::LoggedOut | AgentState::NotReady(_))
            })
            .count()
    }

    /// The agent's place in queue `q`'s ready order. Computed from fields that only change
    /// while the agent is not ready, so insertion and removal agree.
    fn key(&self, q: QueueIdx, a: AgentIdx) -> ReadyKey {
        let ag = &self.agents[a as usize];
        let idle = ag
            .idle_since
            .saturating_duration_since(self.epoch)
            .as_nanos() as u64;
        match self.queues[q].p.strategy {
            Strategy::LongestIdle | Strategy::RingAll => (idle, 0, a),
            Strategy::FewestCalls => (ag.calls_taken, idle, a),
            Strategy::RoundRobin => (ag.last_offer, 0, a),
            Strategy::TopDown => (a as u64, 0, a),
        }
    }

    fn set_ready(&mut self, a: AgentIdx, idle_since: Instant) {
        let ag = &mut self.agents[a as usize];
        ag.state = AgentState::Ready;
        ag.idle_since = idle_since;
        self.changed.push(a);
        if ag.voice_held {
            return;
        }
        for i in 0..self.agents[a as usize].queues.len() {
            let (q, p) = self.agents[a as usize].queues[i];
            let k = self.key(q, a);
            self.queues[q].ready[(p - 1) as usize].insert(k);
        }
    }

    fn leave_ready(&mut self, a: AgentIdx) {
        if self.agents[a as usize].state != AgentState::Ready {
            return;
        }
        for i in 0..self.agents[a as usize].queues.len() {
            let (q, p) = self.agents[a as usize].queues[i];
            let k = self.key(q, a);
            self.queues[q].ready[(p - 1) as usize].remove(&k);
        }
    }

    /// Keeps a ready agent from calls (`held`: its text conversations take it) or lets it
    /// take them again; the agent's state does not change. True when a held agent was
    /// released while ready (the caller should dispatch).
    pub fn hold_voice(&mut self, a: AgentIdx, held: bool) -> bool {
        let Some(ag) = self.agents.get(a as usize) else {
            return false;
        };
        if ag.voice_held == held {
            return false;
        }
        let ready = ag.state == AgentState::Ready;
        if held {
            self.leave_ready(a);
            self.agents[a as usize].voice_held = true;
            false
        } else {
            self.agents[a as usize].voice_held = false;
            if ready {
                let since = self.agents[a as usize].idle_since;
                self.set_ready(a, since);
            }
            ready
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
                self.close_wrap(a, now);
                self.set_ready(a, now);
                Ok(())
            }
        }
    }

    pub fn make_not_ready(&mut self, a: AgentIdx, now: Instant) -> Result<(), StateError> {
        self.close_wrap(a, now);
        match self.agents[a as usize].state {
            AgentState::LoggedOut => Err(StateError::LoggedOut),
            AgentState::Offered(_) | AgentState::OnCall(_) => Err(StateError::Busy),
            _ => {
                self.leave_ready(a);
                self.agents[a as usize].state = AgentState::NotReady(NotReadyReason::Manual);
                self.changed.push(a);
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
            .filter_map(|(s, _)| names.get(s).copied())
            .collect()
    }

    /// Ready agents with the queue's skill.
    pub fn ready_in_queue(&self, q: QueueIdx) -> usize {
        self.queues[q].ready.iter().map(BTreeSet::len).sum()
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Calls waiting (not being offered) in `q`, in order.
    pub fn waiting_calls(&self, q: QueueIdx) -> impl Iterator<Item = CallKey> + '_ {
        self.queues[q].waiting.iter().map(|(c, _)| c)
    }

    pub fn params(&self, q: QueueIdx) -> &QueueParams {
        &self.queues[q].p
    }

    /// When the head call of `q` next reaches a wider routing step: the moment to try
    /// routing it again.
    pub fn next_step(&self, q: QueueIdx, now: Instant) -> Option<Instant> {
        let (_, since) = self.queues[q].waiting.front()?;
        self.queues[q].p.next_step(since, now)
    }

    pub fn logout(&mut self, a: AgentIdx, now: Instant) {
        match self.agents[a as usize].state {
            AgentState::Offered(_) | AgentState::OnCall(_) => {
                self.agents[a as usize].logout_pending = true;
            }
            _ => {
                self.close_wrap(a, now);
                self.leave_ready(a);
                self.agents[a as usize].state = AgentState::LoggedOut;
                self.changed.push(a);
            }
        }
    }

    pub fn enqueue(&mut self, q: QueueIdx, call: CallKey, now: Instant) -> Result<(), QueueFull> {
        let queue = &mut self.queues[q];
        if queue.members >= queue.p.max_length {
            return Err(QueueFull);
        }
        queue.members += 1;
        queue.waiting.push_back(call, now);
        Ok(())
    }

    /// The call leaves the queue (answered, abandoned, timed out). Only call this once per
    /// enqueued call; an offered call is not in `waiting` and just stops counting.
    pub fn leave(&mut self, q: QueueIdx, call: CallKey) {
        let queue = &mut self.queues[q];
        if queue.waiting.remove(call) {
            queue.members = queue.members.saturating_sub(1);
        }
    }

    /// The next (call, agent) pair to offer in queue `q`, if both exist. The agent becomes
    /// Offered and the call stops waiting (it stays a member until [`Acd::leave`]).
    pub fn next_offer(&mut self, q: QueueIdx, now: Instant) -> Option<(CallKey, AgentIdx)> {
        let queue = &self.queues[q];
        let (call, since) = queue.waiting.front()?;
        let waited = now.saturating_duration_since(since);
        let min = queue.p.min_proficiency(waited);
        let sets = &queue.ready[(min - 1) as usize..];
        let agent = if self.reserved_by[q].is_empty() {
            sets.iter()
                .filter_map(|set| set.first())
                .min()
                .map(|k| k.2)?
        } else {
            sets.iter()
                .filter_map(|set| set.iter().find(|k| !self.kept_from(k.2, q, waited)))
                .min()
                .map(|k| k.2)?
        };
        self.queues[q].waiting.pop_front_offered();
        self.leave_ready(agent);
        self.offers += 1;
        let ag = &mut self.agents[agent as usize];
        ag.state = AgentState::Offered(call);
        self.changed.push(agent);
        ag.last_offer = self.offers;
        Some((call, agent))
    }

    /// Ring-all: after [`Acd::next_offer`] gave `call` its first agent, the other eligible
    /// ready agents (same proficiency floor) are offered it too, up to `max` in all. Each
    /// is Offered(call), so no agent rings for two calls; the call stays offered once.
    pub fn offer_more(
        &mut self,
        q: QueueIdx,
        call: CallKey,
        now: Instant,
        max: usize,
    ) -> Vec<AgentIdx> {
        let queue = &self.queues[q];
        let Some(since) = queue.waiting.offered.get(&call).copied() else {
            return Vec::new();
        };
        let min = queue
            .p
            .min_proficiency(now.saturating_duration_since(since));
        let mut agents: Vec<(ReadyKey, AgentIdx)> = queue.ready[(min - 1) as usize..]
            .iter()
            .flat_map(|set| set.iter().take(max))
            .map(|k| (*k, k.2))
            .collect();
        agents.sort();
        agents.truncate(max.saturating_sub(1));
        let agents: Vec<AgentIdx> = agents.into_iter().map(|(_, a)| a).collect();
        for &a in &agents {
            self.leave_ready(a);
            self.offers += 1;
            let ag = &mut self.agents[a as usize];
            ag.state = AgentState::Offered(call);
            self.changed.push(a);
            ag.last_offer = self.offers;
        }
        agents
    }

    /// Calls of queue `q` being offered (ringing), in no particular order.
    pub fn offered_calls(&self, q: QueueIdx) -> Vec<CallKey> {
        self.queues[q].waiting.offered.keys().copied().collect()
    }

    /// One of ring-all's other phones stopped ringing (failed, withdrawn, or lost to the
    /// agent who answered): the agent's state moves on; the call is not touched.
    pub fn fork_failed(
        &mut self,
        q: QueueIdx,
        call: CallKey,
        a: AgentIdx,
        why: OfferFailure,
        now: Instant,
    ) {
        self.agent_offer_failed(q, call, a, why, now);
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
        let since = self.queues[q].waiting.offered.remove(&call);
        if call_still_waiting {
            // Back at the head, keeping the time it joined (its routing steps go on).
            self.queues[q]
                .waiting
                .push_front(call, since.unwrap_or(now));
        } else if since.is_some() {
            // Gone with the offer: it no longer counts as a member either.
            self.queues[q].members = self.queues[q].members.saturating_sub(1);
        }
        self.agent_offer_failed(q, call, a, why, now);
    }

    fn agent_offer_failed(
        &mut self,
        q: QueueIdx,
        call: CallKey,
        a: AgentIdx,
        why: OfferFailure,
        now: Instant,
    ) {
        if self.agents.get(a as usize).map(|ag| &ag.state) != Some(&AgentState::Offered(call)) {
            return;
        }
        if std::mem::take(&mut self.agents[a as usize].logout_pending) {
            self.agents[a as usize].state = AgentState::LoggedOut;
            self.changed.push(a);
            return;
        }
        let busy = self.queues[q].p.busy_delay;
        self.changed.push(a);
        match why {
            OfferFailure::Busy | OfferFailure::Error => {
                self.agents[a as usize].state = AgentState::BusyDelay(now + busy)
            }
            OfferFailure::NoAnswer => {
                let ag = &mut self.agents[a as usize];
                ag.no_answers += 1;
                ag.state = if ag.no_answers >= self.queues[q].p.max_no_answer {
                    AgentState::NotReady(NotReadyReason::Rona)
                } else {
                    AgentState::BusyDelay(now + busy)
                };
            }
            OfferFailure::Withdrawn => {
                let since = self.agents[a as usize].idle_since;
                self.set_ready(a, since);
            }
        }
    }

    pub fn answered(&mut self, a: AgentIdx, call: CallKey) {
        let Some(ag) = self.agents.get_mut(a as usize) else {
            return;
        };
        if ag.state == AgentState::Offered(call) {
            ag.state = AgentState::OnCall(call);
            self.changed.push(a);
            ag.calls_taken += 1;
            ag.no_answers = 0;
        }
    }

    /// The agent's call ended: wrap-up, or ready at once when the queue has none.
    pub fn call_ended(&mut self, q: QueueIdx, a: AgentIdx, call: CallKey, now: Instant) {
        if self.agents.get(a as usize).map(|ag| &ag.state) != Some(&AgentState::OnCall(call)) {
            return;
        }
        if std::mem::take(&mut self.agents[a as usize].logout_pending) {
            self.agents[a as usize].state = AgentState::LoggedOut;
            self.changed.push(a);
            return;
        }
        let wrap = self.queues[q].p.wrap_up;
        if wrap.is_zero() {
            self.wrap_log.push((q, a, Duration::ZERO));
            self.set_ready(a, now);
        } else {
            self.agents[a as usize].state = AgentState::WrapUp(now + wrap);
            self.changed.push(a);
            self.agents[a as usize].wrap = Some((q, now));
        }
    }

    /// The agent's wrap-up (if any) ended at `now`: its measured length goes to the log.
    fn close_wrap(&mut self, a: AgentIdx, now: Instant) {
        if let Some((q, since)) = self.agents[a as usize].wrap.take() {
            self.wrap_log
                .push((q, a, now.saturating_duration_since(since)));
        }
    }

    /// Wrap-ups that ended since the last call, by queue: how long agents really took
    /// (an agent may end wrap-up early, or be set not-ready from it).
    pub fn take_wrap_ups(&mut self) -> std::vec::Drain<'_, (QueueIdx, AgentIdx, Duration)> {
        self.wrap_log.drain(..)
    }

    /// Agents whose state changed since the last call, in order (an agent may appear more
    /// than once).
    pub fn take_changed(&mut self) -> Vec<AgentIdx> {
        std::mem::take(&mut self.changed)
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
                self.close_wrap(a, t);
                self.set_ready(a, now);
                true
            }
            _ => false,
        }
    }

    /// Queues whose skill the agent has, highest priority first: the ones it serves.
    pub fn queues_for_agent(&self, a: AgentIdx) -> impl Iterator<Item = QueueIdx> + '_ {
        self.agents
            .get(a as usize)
            .into_iter()
            .flat_map(|ag| ag.queues.iter().map(|(q, _)| *q))
    }

    /// The agent's queues in the order to dispatch them once it is free
    /// ([`FreeAgentOrder`]).
    pub fn dispatch_order(&self, a: AgentIdx) -> Vec<QueueIdx> {
        let mut qs: Vec<QueueIdx> = self.queues_for_agent(a).collect();
        if self.order == FreeAgentOrder::ScarcestSkill {
            // Stable: equal scarcity keeps priority order.
            qs.sort_by_key(|&q| {
                if self.queues[q].waiting.len() == 0 {
                    usize::MAX
                } else {
                    self.ready_in_queue(q)
                }
            });
        }
        qs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, skills: &[(&str, u8)]) -> (String, Vec<(String, u8)>) {
        (
            id.to_string(),
            skills.iter().map(|(s, p)| (s.to_string(), *p)).collect(),
        )
    }

    fn acd(now: Instant) -> Acd {
        let agents = vec![
            agent("1001", &[("ko", 5)]),
            agent("1002", &[("ko", 5)]),
            agent("1011", &[("ko", 5), ("en", 5)]),
        ];
        let q = |name: &str, skill: &str| QueueParams {
            max_length: 2,
            ..QueueParams::new(name, skill)
        };
        Acd::new(now, &agents, vec![q("general", "ko"), q("en", "en")])
    }

    #[test]
    fn longest_idle_first_and_fifo() {
        let t0 = Instant::now();
        let mut a = acd(t0);
        a.login(1, t0);
        a.login(0, t0 + Duration::from_secs(1));
        a.enqueue(0, 10, t0).unwrap();
        a.enqueue(0, 11, t0).unwrap();
        assert_eq!(a.enqueue(0, 12, t0), Err(QueueFull));
        assert_eq!(
            a.next_offer(0, t0),
            Some((10, 1)),
            "1002 has been idle longest"
        );
        assert_eq!(a.next_offer(0, t0), Some((11, 0)));
        assert_eq!(a.next_offer(0, t0), None);
    }

    /// `en` keeps one bilingual agent back: a Korean call does not take the last ready
    /// English speaker until it has waited `reserve_max_hold`, nor while `en` is closed;
    /// with two ready, one may take it.
    #[test]
    fn a_reserve_keeps_the_last_scarce_agent_for_its_queue_within_the_hold() {
        let t0 = Instant::now();
        let agents = vec![
            agent("1001", &[("ko", 5)]),
            agent("1011", &[("ko", 5), ("en", 5)]),
            agent("1012", &[("ko", 5), ("en", 5)]),
        ];
        let queues = vec![
            QueueParams {
                max_length: 10,
                ..QueueParams::new("general", "ko")
            },
            QueueParams {
                max_length: 10,
                reserve: 1,
                reserve_max_hold: Duration::from_secs(10),
                priority: 10,
                ..QueueParams::new("en", "en")
            },
        ];
        let mut a = Acd::new(t0, &agents, queues);
        a.login(1, t0);
        a.login(2, t0 + Duration::from_secs(1));
        a.enqueue(0, 1, t0).unwrap();
        assert_eq!(a.next_offer(0, t0), Some((1, 1)), "two ready: one may go");
        a.answered(1, 1);
        a.leave(0, 1);
        a.enqueue(0, 2, t0).unwrap();
        assert_eq!(
            a.next_offer(0, t0),
            None,
            "the last English speaker is kept"
        );
        assert_eq!(
            a.call_wake(0, t0, t0),
            Some(t0 + Duration::from_secs(10)),
            "route again when the hold ends"
        );
        assert_eq!(a.next_offer(0, t0 + Duration::from_secs(10)), Some((2, 2)));
        a.answered(2, 2);
        a.leave(0, 2);
        // An English call takes a kept agent at once; a closed en keeps nobody.
        a.call_ended(0, 2, 2, t0 + Duration::from_secs(11));
        a.enqueue(1, 3, t0 + Duration::from_secs(11)).unwrap();
        assert_eq!(a.next_offer(1, t0 + Duration::from_secs(11)), Some((3, 2)));
        a.answered(2, 3);
        a.call_ended(0, 1, 1, t0 + Duration::from_secs(12));
        a.enqueue(0, 4, t0 + Duration::from_secs(12)).unwrap();
        assert_eq!(a.next_offer(0, t0 + Duration::from_secs(12)), None);
        a.set_open(1, false);
        assert_eq!(a.next_offer(0, t0 + Duration::from_secs(12)), Some((4, 1)));
        // A Korean-only agent is never kept.
        a.set_open(1, true);
        a.login(0, t0 + Duration::from_secs(13));
        a.enqueue(0, 5, t0 + Duration::from_secs(13)).unwrap();
        assert_eq!(a.next_offer(0, t0 + Duration::from_secs(13)), Some((5, 0)));
    }

    /// A free agent takes the call of the skill fewest ready agents have, under
    /// `ScarcestSkill`; by priority otherwise.
    #[test]
    fn scarcest_skill_first_when_an_agent_is_free() {
        let t0 = Instant::now();
        let agents = vec![
            agent("1001", &[("ko", 5)]),
            agent("1002", &[("ko", 5)]),
            agent("1011", &[("ko", 5), ("en", 5)]),
        ];
        let queues = vec![
            QueueParams {
                priority: 5,
                ..QueueParams::new("general", "ko")
            },
            QueueParams::new("en", "en"),
        ];
        let mut a = Acd::new(t0, &agents, queues.clone());
        for i in 0..3 {
            a.login(i, t0);
        }
        a.enqueue(0, 1, t0).unwrap();
        a.enqueue(1, 2, t0).unwrap();
        assert_eq!(a.dispatch_order(2), vec![0, 1], "priority: general first");
        let mut b = Acd::new(t0, &agents, queues).with_order(FreeAgentOrder::ScarcestSkill);
        for i in 0..3 {
            b.login(i, t0);
        }
        b.enqueue(0, 1, t0).unwrap();
        b.enqueue(1, 2, t0).unwrap();
        assert_eq!(b.dispatch_order(2), vec![1, 0], "one ready English speaker");
    }

    #[test]
    fn skill_filter() {
        let t0 = Instant::now();
        let mut a = acd(t0);
        a.login(0, t0);
        a.enqueue(1, 1, t0).unwrap();
        assert_eq!(
            a.next_offer(1, t0),
            None,
            "a ko-only agent never takes an en call"
        );
        a.login(2, t0);
        assert_eq!(a.next_offer(1, t0), Some((1, 2)));
    }

    #[test]
    fn rona_busy_withdrawn_and_wrap() {
        let t0 = Instant::now();
        let mut a = acd(t0);
        a.login(0, t0);
        a.login(1, t0 + Duration::from_secs(1));
        a.enqueue(0, 7, t0).unwrap();
        let (c, ag) = a.next_offer(0, t0).unwrap();
        a.offer_failed(0, c, ag, OfferFailure::NoAnswer, t0, true);
        assert_eq!(
            a.agent_state(0),
            &AgentState::NotReady(NotReadyReason::Rona)
        );
        let (c, ag) = a.next_offer(0, t0).unwrap();
        assert_eq!(ag, 1);
        a.offer_failed(0, c, ag, OfferFailure::Busy, t0, true);
        assert_eq!(a.agent_deadline(1), Some(t0 + Duration::from_secs(5)));
        assert_eq!(a.next_offer(0, t0), None);
        assert!(a.agent_timer(1, t0 + Duration::from_secs(5)));
        let (c, ag) = a.next_offer(0, t0).unwrap();
        a.offer_failed(0, c, ag, OfferFailure::Withdrawn, t0, false);
        assert_eq!(a.agent_state(1), &AgentState::Ready);
        assert_eq!(a.waiting(0), 0);
        a.enqueue(0, 8, t0).unwrap();
        let (c, ag) = a.next_offer(0, t0).unwrap();
        a.answered(ag, c);
        a.call_ended(0, ag, c, t0);
        a.leave(0, c);
        assert_eq!(a.agent_state(1), &AgentState::Ready);
        assert_eq!(a.calls_taken(1), 1);
    }

    #[test]
    fn wrap_up_then_ready() {
        let t0 = Instant::now();
        let agents = vec![agent("1001", &[("ko", 5)])];
        let mut a = Acd::new(
            t0,
            &agents,
            vec![QueueParams {
                wrap_up: Duration::from_secs(10),
                ..QueueParams::new("q", "ko")
            }],
        );
        a.login(0, t0);
        a.enqueue(0, 1, t0).unwrap();
        let (c, ag) = a.next_offer(0, t0).unwrap();
        a.answered(ag, c);
        a.call_ended(0, ag, c, t0);
        assert_eq!(
            a.agent_state(0),
            &AgentState::WrapUp(t0 + Duration::from_secs(10))
        );
        a.enqueue(0, 2, t0).unwrap();
        assert_eq!(a.next_offer(0, t0), None, "no offers during wrap-up");
        assert!(!a.agent_timer(0, t0 + Duration::from_secs(9)));
        assert!(a.agent_timer(0, t0 + Duration::from_secs(10)));
        assert_eq!(a.next_offer(0, t0), Some((2, 0)));
        // Measured wrap-up: the full 10 s here (the timer ended it even if run late)…
        let log: Vec<_> = a.take_wrap_ups().map(|(q, _, d)| (q, d)).collect();
        assert_eq!(log, vec![(0, Duration::from_secs(10))]);
        // …then an agent who is done after 4 s and says so.
        a.answered(0, 2);
        let t1 = t0 + Duration::from_secs(100);
        a.call_ended(0, 0, 2, t1);
        a.make_ready(0, t1 + Duration::from_secs(4)).unwrap();
        // …and one set not-ready from wrap-up after 7 s.
        a.enqueue(0, 3, t1).unwrap();
        let (c, ag) = a.next_offer(0, t1).unwrap();
        a.answered(ag, c);
        a.call_ended(0, ag, c, t1);
        a.make_not_ready(ag, t1 + Duration::from_secs(7)).unwrap();
        let log: Vec<_> = a.take_wrap_ups().map(|(_, _, d)| d.as_secs()).collect();
        assert_eq!(log, vec![4, 7]);
        assert_eq!(a.take_wrap_ups().count(), 0, "taken once");
    }

    #[test]
    fn logout_during_call_takes_effect_after() {
        let t0 = Instant::now();
        let mut a = acd(t0);
        a.login(0, t0);
        a.enqueue(0, 1, t0).unwrap();
        let (c, ag) = a.next_offer(0, t0).unwrap();
        a.answered(ag, c);
        a.logout(ag, t0);
        assert_eq!(a.agent_state(0), &AgentState::OnCall(1));
        a.call_ended(0, ag, c, t0);
        assert_eq!(a.agent_state(0), &AgentState::LoggedOut);
        a.enqueue(0, 2, t0).unwrap();
        assert_eq!(a.next_offer(0, t0), None);
    }

    /// Three agents; `t0` is the test's own start, so that logins the test times from it
    /// are never earlier than the pool's (two clock readings raced under load).
    fn pool(t0: Instant, strategy: Strategy, steps: Vec<(Duration, u8)>) -> Acd {
        let agents = vec![
            agent("a", &[("ko", 2)]),
            agent("b", &[("ko", 5)]),
            agent("c", &[("ko", 4)]),
        ];
        Acd::new(
            t0,
            &agents,
            vec![QueueParams {
                strategy,
                steps,
                max_length: 100,
                ..QueueParams::new("q", "ko")
            }],
        )
    }

    /// Offers `n` calls one at a time (each answered and ended at once) and returns who took
    /// them.
    fn takers(a: &mut Acd, t: Instant, n: u64) -> Vec<AgentIdx> {
        (0..n)
            .map(|i| {
                a.enqueue(0, 100 + i, t).unwrap();
                let (c, ag) = a.next_offer(0, t).unwrap();
                a.answered(ag, c);
                a.call_ended(0, ag, c, t + Duration::from_millis(i + 1));
                a.leave(0, c);
                ag
            })
            .collect()
    }

    #[test]
    fn every_strategy_picks_as_named() {
        let t0 = Instant::now();
        let login = |a: &mut Acd| {
            a.login(2, t0);
            a.login(0, t0 + Duration::from_millis(1));
            a.login(1, t0 + Duration::from_millis(2));
        };
        let mut a = pool(t0, Strategy::LongestIdle, vec![]);
        login(&mut a);
        let t = t0 + Duration::from_secs(1);
        assert_eq!(
            takers(&mut a, t, 4),
            vec![2, 0, 1, 2],
            "idle longest first, then rotate"
        );
        let mut a = pool(t0, Strategy::TopDown, vec![]);
        login(&mut a);
        assert_eq!(
            takers(&mut a, t, 3),
            vec![0, 0, 0],
            "always the first in order"
        );
        let mut a = pool(t0, Strategy::RoundRobin, vec![]);
        login(&mut a);
        assert_eq!(takers(&mut a, t, 4), vec![0, 1, 2, 0], "in turn");
        let mut a = pool(t0, Strategy::FewestCalls, vec![]);
        // Agent 0 took calls before (set while logged out: keys only change off the sets).
        a.agents[0].calls_taken = 5;
        login(&mut a);
        assert_eq!(takers(&mut a, t, 3), vec![2, 1, 2], "fewest calls first");
    }

    #[test]
    fn ring_all_offers_every_eligible_agent_once() {
        let t0 = Instant::now();
        // First 10 s only proficiency >= 4 (b and c), then anyone.
        let steps = vec![(Duration::ZERO, 4), (Duration::from_secs(10), 1)];
        let mut a = pool(t0, Strategy::RingAll, steps);
        for ag in 0..3 {
            a.login(ag, t0 + Duration::from_millis(ag as u64));
        }
        a.enqueue(0, 1, t0).unwrap();
        a.enqueue(0, 2, t0).unwrap();
        let (c, first) = a.next_offer(0, t0).unwrap();
        assert_eq!((c, first), (1, 1), "b: longest idle of those eligible");
        assert_eq!(
            a.offer_more(0, c, t0, RING_ALL_MAX),
            vec![2],
            "c too, not a (proficiency 2)"
        );
        assert!(
            a.offer_more(0, c, t0, RING_ALL_MAX).is_empty(),
            "nobody twice"
        );
        assert_eq!(a.offered_calls(0), vec![1]);
        // Call 2 finds only a, and only after its wider step.
        assert_eq!(a.next_offer(0, t0), None);
        let t10 = t0 + Duration::from_secs(10);
        let (c2, ag) = a.next_offer(0, t10).unwrap();
        assert_eq!((c2, ag), (2, 0));
        assert!(a.offer_more(0, c2, t10, RING_ALL_MAX).is_empty());
        // c answers call 1: b's phone stops, b is ready again with its old place.
        a.fork_failed(0, c, 1, OfferFailure::Withdrawn, t10);
        a.answered(2, c);
        assert_eq!(a.agent_state(1), &AgentState::Ready);
        assert_eq!(a.agent_state(2), &AgentState::OnCall(1));
        assert_eq!(a.waiting(0), 0, "both calls are being offered, none lost");
        // The cap counts the first phone.
        let mut a = pool(t0, Strategy::RingAll, vec![]);
        for ag in 0..3 {
            a.login(ag, t0);
        }
        a.enqueue(0, 9, t0).unwrap();
        let (c, _) = a.next_offer(0, t0).unwrap();
        assert_eq!(a.offer_more(0, c, t0, 2).len(), 1);
    }

    #[test]
    fn routing_steps_widen_with_waiting_time() {
        let t0 = Instant::now();
        let steps = vec![(Duration::ZERO, 5), (Duration::from_secs(30), 1)];
        let mut a = pool(t0, Strategy::LongestIdle, steps);
        a.login(0, t0); // proficiency 2 only
        a.enqueue(0, 1, t0).unwrap();
        assert_eq!(
            a.next_offer(0, t0 + Duration::from_secs(29)),
            None,
            "only 5 for 30 s"
        );
        assert_eq!(
            a.next_step(0, t0 + Duration::from_secs(29)),
            Some(t0 + Duration::from_secs(30))
        );
        assert_eq!(a.next_offer(0, t0 + Duration::from_secs(30)), Some((1, 0)));
        assert_eq!(a.params(0).min_proficiency(Duration::from_secs(5)), 5);
        // A proficient agent takes a fresh call at once.
        a.login(1, t0);
        a.enqueue(0, 2, t0 + Duration::from_secs(31)).unwrap();
        assert_eq!(a.next_offer(0, t0 + Duration::from_secs(31)), Some((2, 1)));
    }

    #[test]
    fn queue_priority_orders_an_agents_queues() {
        let t0 = Instant::now();
        let agents = vec![agent("x", &[("ko", 5), ("en", 5)])];
        let q = |name: &str, skill: &str, priority| QueueParams {
            priority,
            ..QueueParams::new(name, skill)
        };
        let a = Acd::new(t0, &agents, vec![q("ko", "ko", 0), q("en", "en", 10)]);
        assert_eq!(a.queues_for_agent(0).collect::<Vec<_>>(), vec![1, 0]);
    }

    #[test]
    fn max_no_answer_skips_before_rona() {
        let t0 = Instant::now();
        let agents = vec![agent("x", &[("ko", 5)])];
        let mut a = Acd::new(
            t0,
            &agents,
            vec![QueueParams {
                max_no_answer: 2,
                ..QueueParams::new("q", "ko")
            }],
        );
        a.login(0, t0);
        a.enqueue(0, 1, t0).unwrap();
        let (c, ag) = a.next_offer(0, t0).unwrap();
        a.offer_failed(0, c, ag, OfferFailure::NoAnswer, t0, true);
        assert!(
            matches!(a.agent_state(0), AgentState::BusyDelay(_)),
            "first miss: skipped"
        );
        assert!(a.agent_timer(0, t0 + Duration::from_secs(5)));
        let (c, ag) = a.next_offer(0, t0 + Duration::from_secs(5)).unwrap();
        a.offer_failed(0, c, ag, OfferFailure::NoAnswer, t0, true);
        assert_eq!(
            a.agent_state(0),
            &AgentState::NotReady(NotReadyReason::Rona)
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::{
            prop_assert, prop_assert_eq, prop_oneof, proptest, ProptestConfig,
        };
        use proptest::strategy::Strategy as _;
        use std::collections::HashSet;

        #[derive(Debug, Clone)]
        enum Op {
            Login(u8),
            Logout(u8),
            Arrive(u8),
            Dispatch(u8),
            Answer(u8),
            Fail(u8, u8),
            End(u8),
            Abandon(u8),
            Tick(u16),
        }

        fn op() -> impl proptest::strategy::Strategy<Value = Op> {
            prop_oneof![
                (0u8..6).prop_map(Op::Login),
                (0u8..6).prop_map(Op::Logout),
                (0u8..3).prop_map(Op::Arrive),
                (0u8..3).prop_map(Op::Dispatch),
                (0u8..8).prop_map(Op::Answer),
                ((0u8..8), (0u8..4)).prop_map(|(i, w)| Op::Fail(i, w)),
                (0u8..8).prop_map(Op::End),
                (0u8..8).prop_map(Op::Abandon),
                (1u16..20_000).prop_map(Op::Tick),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            /// Random interleavings of arrivals, offers, answers, failures, hang-ups and
            /// logins never offer a call twice or an agent two calls, never lose or
            /// duplicate a call, and keep each queue's offers in arrival order.
            #[test]
            fn invariants_hold(ops in proptest::collection::vec(op(), 1..200)) {
                let t0 = Instant::now();
                let mut now = t0;
                let agents = vec![
                    agent("0", &[("ko", 5)]),
                    agent("1", &[("ko", 2), ("en", 5)]),
                    agent("2", &[("en", 3)]),
                    agent("3", &[("ko", 4), ("en", 1), ("zh", 5)]),
                    agent("4", &[("zh", 2)]),
                    agent("5", &[("ko", 1)]),
                ];
                let strategies = [
                    super::super::Strategy::LongestIdle,
                    super::super::Strategy::RoundRobin,
                    super::super::Strategy::FewestCalls,
                ];
                let queues = ["ko", "en", "zh"]
                    .iter()
                    .enumerate()
                    .map(|(i, s)| QueueParams {
                        strategy: strategies[i],
                        steps: vec![(Duration::ZERO, 4), (Duration::from_secs(10), 1)],
                        max_length: 50,
                        ..QueueParams::new(s, s)
                    })
                    .collect();
                let mut a = Acd::new(t0, &agents, queues);
                let mut next_call = 1u64;
                // Model: call -> (queue, arrival order), waiting set, offered map.
                let mut queue_of = std::collections::HashMap::new();
                let mut waiting: Vec<Vec<u64>> = vec![vec![]; 3];
                let mut offered: std::collections::HashMap<u64, AgentIdx> = Default::default();
                let mut talking: std::collections::HashMap<u64, AgentIdx> = Default::default();
                for op in ops {
                    match op {
                        Op::Tick(ms) => {
                            now += Duration::from_millis(ms as u64);
                            for ag in 0..6 { a.agent_timer(ag, now); }
                        }
                        Op::Login(i) => a.login(i as AgentIdx, now),
                        Op::Logout(i) => a.logout(i as AgentIdx, now),
                        Op::Arrive(q) => {
                            let q = q as usize;
                            if a.enqueue(q, next_call, now).is_ok() {
                                queue_of.insert(next_call, q);
                                waiting[q].push(next_call);
                            }
                            next_call += 1;
                        }
                        Op::Dispatch(q) => {
                            let q = q as usize;
                            while let Some((c, ag)) = a.next_offer(q, now) {
                                prop_assert_eq!(queue_of.get(&c), Some(&q));
                                prop_assert_eq!(waiting[q].first(), Some(&c), "FIFO");
                                waiting[q].remove(0);
                                prop_assert!(!offered.contains_key(&c), "call offered twice");
                                prop_assert!(!offered.values().any(|x| *x == ag), "agent offered twice");
                                prop_assert!(!talking.values().any(|x| *x == ag), "agent busy");
                                offered.insert(c, ag);
                            }
                        }
                        Op::Answer(i) => {
                            if let Some((&c, &ag)) = offered.iter().nth(i as usize) {
                                offered.remove(&c);
                                a.answered(ag, c);
                                a.leave(queue_of[&c], c);
                                talking.insert(c, ag);
                            }
                        }
                        Op::Fail(i, why) => {
                            if let Some((&c, &ag)) = offered.iter().nth(i as usize) {
                                offered.remove(&c);
                                let why = [OfferFailure::Busy, OfferFailure::NoAnswer, OfferFailure::Withdrawn, OfferFailure::Error][why as usize];
                                let q = queue_of[&c];
                                a.offer_failed(q, c, ag, why, now, true);
                                waiting[q].insert(0, c);
                            }
                        }
                        Op::End(i) => {
                            if let Some((&c, &ag)) = talking.iter().nth(i as usize) {
                                talking.remove(&c);
                                a.call_ended(queue_of[&c], ag, c, now);
                                queue_of.remove(&c);
                            }
                        }
                        Op::Abandon(i) => {
                            let all: Vec<u64> = waiting.iter().flatten().copied().collect();
                            if let Some(&c) = all.get(i as usize) {
                                let q = queue_of[&c];
                                a.leave(q, c);
                                waiting[q].retain(|x| *x != c);
                                queue_of.remove(&c);
                            }
                        }
                    }
                    // No call lost or duplicated: the ACD's queues hold exactly the model's.
                    for (q, model) in waiting.iter().enumerate() {
                        let got: Vec<u64> = a.waiting_calls(q).collect();
                        prop_assert_eq!(&got, model);
                        let ringing = offered.keys().filter(|c| queue_of[c] == q).count();
                        prop_assert_eq!(a.members(q), model.len() + ringing, "members");
                        let unique: HashSet<u64> = got.iter().copied().collect();
                        prop_assert_eq!(unique.len(), got.len());
                    }
                    // Ready agents are in the ready sets exactly once per queue they serve.
                    for q in 0..3 {
                        let in_sets: usize = a.queues[q].ready.iter().map(|s| s.len()).sum();
                        let ready = (0..6).filter(|&ag| a.agent_state(ag) == &AgentState::Ready
                            && a.queues_for_agent(ag).any(|x| x == q)).count();
                        prop_assert_eq!(in_sets, ready);
                    }
                }
            }
        }
    }
}
