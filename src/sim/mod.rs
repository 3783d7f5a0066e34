//! A deterministic discrete-event simulation of a contact centre that drives the real
//! router ([`crate::acd::Acd`]) under virtual time: Poisson arrivals per queue (constant or
//! by hour of day), exponential handle times and patience (abandonment), agents on shift by
//! hour, queues open by hour, seeded so that a run is reproducible. It routes as the engine
//! does: a call is routed when it arrives, when an agent becomes free (in the router's
//! [`Acd::dispatch_order`]) and when its routing step or a reservation's hold ends
//! ([`Acd::call_wake`]). Used to compare routing policies by service level, ASA,
//! abandonment and occupancy, and checked against Erlang C for the plain M/M/c case.
//!
//! [`day_120`] is the 120 centre's day; [`Policy`] the routing options it compares.

use crate::acd::{Acd, AgentIdx, AgentState, CallKey, FreeAgentOrder, QueueParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Scenario {
    /// (id, [(skill, proficiency)]).
    pub agents: Vec<(String, Vec<(String, u8)>)>,
    pub queues: Vec<QueueParams>,
    pub order: FreeAgentOrder,
    /// Calls per second arriving at each queue (same order as `queues`): one figure
    /// (constant), or 24 (by hour of the day).
    pub arrival_rate: Vec<Vec<f64>>,
    /// Mean handle time per queue, seconds.
    pub mean_handle_s: Vec<f64>,
    /// Mean patience before a waiting caller hangs up, per queue; None: nobody abandons.
    pub mean_patience_s: Vec<Option<f64>>,
    /// By hour of the day, whether each agent is on shift; empty: everyone, always.
    pub on_duty: Vec<Vec<bool>>,
    /// By hour of the day, whether each queue is open; empty: every queue, always.
    pub open: Vec<Vec<bool>>,
    /// Simulated time, and the first part of it left out of the figures.
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Service-level threshold.
    pub sl_threshold_s: f64,
    pub seed: u64,
    /// Calls arrive at exact intervals and take exactly the mean handle time, as a load
    /// generator (SIPp) makes them, instead of Poisson arrivals and exponential times.
    pub regular: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueReport {
    pub name: String,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// Answered within the threshold / answered.
    pub service_level: f64,
    /// Mean wait of answered calls, seconds.
    pub asa_s: f64,
    /// Calls that waited at all / offered (the quantity Erlang C gives).
    pub waited_share: f64,
    pub abandon_rate: f64,
    /// Of the agents with the queue's skill: time on calls / time on shift.
    pub occupancy: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// An hour of the day begins: shifts and opening hours change, arrival rates too.
    Hour(u32),
    /// A call arrives at a queue (the number: the queue's arrival stream, so a stream
    /// redrawn at an hour's start leaves its old event stale).
    Arrival(usize, u64),
    End(AgentIdx, CallKey),
    Abandon(CallKey),
    /// A waiting call's routing step or reservation hold ends.
    Wake(usize, CallKey),
    /// An agent's wrap-up ends.
    Free(AgentIdx),
}

/// A call in the simulation: where and when it arrived, whether it counts in the figures
/// (after the warm-up), and how long it will take once answered.
#[derive(Debug, Clone, Copy)]
struct SimCall {
    queue: usize,
    arrived: f64,
    counted: bool,
    handle_s: f64,
}

fn exp(rng: &mut StdRng, mean: f64) -> f64 {
    // 1 - U is in (0, 1]: ln never sees 0.
    -mean * (1.0 - rng.gen::<f64>()).ln()
}

struct Run<'a> {
    s: &'a Scenario,
    t0: Instant,
    acd: Acd,
    /// One random stream per queue, for its arrivals and its calls' handle times and
    /// patience, all drawn at arrival: every policy sees the same calls (common random
    /// numbers), so differences between policies are the routing's, not the dice's.
    rngs: Vec<StdRng>,
    /// (time in ns, sequence, event); the sequence breaks ties deterministically.
    heap: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    reports: Vec<QueueReport>,
    within: Vec<u64>,
    wait_sum: Vec<f64>,
    waited: Vec<u64>,
    calls: HashMap<CallKey, SimCall>,
    /// The current arrival stream of each queue.
    stream: Vec<u64>,
    /// Per agent: seconds on calls and on shift, counted after the warm-up.
    busy_s: Vec<f64>,
    shift_s: Vec<f64>,
    answered_at: HashMap<AgentIdx, f64>,
    hour: u32,
}

impl Run<'_> {
    fn push(&mut self, t: f64, e: Event) {
        self.seq += 1;
        self.heap.push(Reverse(((t * 1e9) as u64, self.seq, e)));
    }

    fn now(&self, t: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(t)
    }

    fn rate(&self, q: usize) -> f64 {
        let r = &self.s.arrival_rate[q];
        match r.len() {
            0 => 0.0,
            1 => r[0],
            n => r[self.hour as usize % n],
        }
    }

    /// The queue's next arrival from `t`, in a new stream: at this hour's rate; none when
    /// the rate is 0 or the arrival falls after the hour (the next hour draws afresh:
    /// exponential gaps have no memory).
    fn draw_arrival(&mut self, q: usize, t: f64) {
        self.stream[q] += 1;
        let rate = self.rate(q);
        if rate <= 0.0 {
            return;
        }
        let next = t + if self.s.regular {
            1.0 / rate
        } else {
            exp(&mut self.rngs[q], 1.0 / rate)
        };
        let hourly = self.s.arrival_rate[q].len() > 1;
        if hourly && next >= f64::from(self.hour + 1) * 3600.0 {
            return;
        }
        let stream = self.stream[q];
        self.push(next, Event::Arrival(q, stream));
    }

    /// Offers queue `q`'s calls to ready agents at time `t`; answered at once.
    fn route(&mut self, q: usize, t: f64) {
        let now = self.now(t);
        while let Some((call, agent)) = self.acd.next_offer(q, now) {
            self.acd.answered(agent, call);
            self.acd.leave(q, call);
            let Some(c) = self.calls.get(&call).copied() else {
                continue;
            };
            {
                let (cq, w) = (c.queue, t - c.arrived);
                if c.counted {
                    self.reports[cq].answered += 1;
                    self.wait_sum[cq] += w;
                    if w <= self.s.sl_threshold_s {
                        self.within[cq] += 1;
                    }
                    if w > 1e-9 {
                        self.waited[cq] += 1;
                    }
                }
            }
            self.answered_at.insert(agent, t);
            self.push(t + c.handle_s, Event::End(agent, call));
        }
    }

    /// A call of `q` that joined at `arrived` is still waiting: when to route it again.
    fn wake(&mut self, q: usize, call: CallKey, arrived: f64, t: f64) {
        if let Some(at) = self.acd.call_wake(q, self.now(arrived), self.now(t)) {
            // The clock here is f64 seconds and ns in the heap: a wake that rounds to now
            // would find the call short of its step and ask again at once, for ever.
            let at = at.saturating_duration_since(self.t0).as_secs_f64();
            self.push(at.max(t + 0.001), Event::Wake(q, call));
        }
    }

    fn hour_starts(&mut self, h: u32, t: f64) {
        let s = self.s;
        let prev = self.hour;
        self.hour = h;
        let counted = t > s.warmup_s;
        if counted && h > 0 {
            // The hour that ended: who was on shift in it.
            for (a, on) in self.duty(prev).into_iter().enumerate() {
                if on {
                    self.shift_s[a] += 3600.0;
                }
            }
        }
        let now = self.now(t);
        let duty = self.duty(h);
        for (a, on) in duty.iter().enumerate() {
            let a = a as AgentIdx;
            let logged_out = *self.acd.agent_state(a) == AgentState::LoggedOut;
            if *on {
                self.acd.login(a, now);
            } else if !logged_out {
                self.acd.logout(a, now);
            }
        }
        if !s.open.is_empty() {
            let open = s.open[h as usize % s.open.len()].clone();
            for (q, o) in open.into_iter().enumerate() {
                self.acd.set_open(q, o);
            }
        }
        for q in 0..s.queues.len() {
            // A constant rate's stream runs on; an hourly one starts afresh at this rate.
            if h == 0 || s.arrival_rate[q].len() > 1 {
                self.draw_arrival(q, t);
            }
            self.route(q, t);
        }
        self.push(f64::from(h + 1) * 3600.0, Event::Hour(h + 1));
    }

    fn duty(&self, h: u32) -> Vec<bool> {
        if self.s.on_duty.is_empty() {
            return vec![true; self.s.agents.len()];
        }
        self.s.on_duty[h as usize % self.s.on_duty.len()].clone()
    }
}

/// Runs the scenario; one report per queue.
pub fn run(s: &Scenario) -> Vec<QueueReport> {
    let t0 = Instant::now();
    let acd = Acd::new(t0, &s.agents, s.queues.clone()).with_order(s.order);
    let n = s.queues.len();
    let mut r = Run {
        s,
        t0,
        acd,
        rngs: (0..n as u64)
            .map(|q| StdRng::seed_from_u64(s.seed.wrapping_mul(1_000_003).wrapping_add(q)))
            .collect(),
        heap: BinaryHeap::new(),
        seq: 0,
        reports: s
            .queues
            .iter()
            .map(|q| QueueReport {
                name: q.name.clone(),
                ..Default::default()
            })
            .collect(),
        within: vec![0; n],
        wait_sum: vec![0.0; n],
        waited: vec![0; n],
        calls: HashMap::new(),
        stream: vec![0; n],
        busy_s: vec![0.0; s.agents.len()],
        shift_s: vec![0.0; s.agents.len()],
        answered_at: HashMap::new(),
        hour: 0,
    };
    r.hour_starts(0, 0.0);
    let mut next_call: CallKey = 1;
    while let Some(Reverse((t_ns, _, ev))) = r.heap.pop() {
        let t = t_ns as f64 / 1e9;
        if t > s.duration_s {
            break;
        }
        let now = r.now(t);
        match ev {
            Event::Hour(h) => r.hour_starts(h, t),
            Event::Arrival(q, stream) => {
                if stream != r.stream[q] {
                    continue;
                }
                let call = next_call;
                next_call += 1;
                let counted = t >= s.warmup_s;
                if counted {
                    r.reports[q].offered += 1;
                }
                let handle_s = if s.regular {
                    s.mean_handle_s[q]
                } else {
                    exp(&mut r.rngs[q], s.mean_handle_s[q])
                };
                let patience = s.mean_patience_s[q].map(|p| exp(&mut r.rngs[q], p));
                r.calls.insert(
                    call,
                    SimCall {
                        queue: q,
                        arrived: t,
                        counted,
                        handle_s,
                    },
                );
                if r.acd.enqueue(q, call, now).is_ok() {
                    r.route(q, t);
                    if r.acd.is_waiting(q, call) {
                        if let Some(p) = patience {
                            r.push(t + p, Event::Abandon(call));
                        }
                        r.wake(q, call, t, t);
                    }
                }
                // This stream goes on (a new draw would make a stale event of itself).
                r.stream[q] -= 1;
                r.draw_arrival(q, t);
            }
            Event::End(agent, call) => {
                if let Some(c) = r.calls.remove(&call) {
                    r.acd.call_ended(c.queue, agent, call, now);
                    if let Some(until) = r.acd.agent_deadline(agent) {
                        // A millisecond late: the float clock must not land before the
                        // deadline (the agent would stay in wrap-up).
                        let after = until.saturating_duration_since(now).as_secs_f64();
                        r.push(t + after + 0.001, Event::Free(agent));
                    }
                }
                if let Some(start) = r.answered_at.remove(&agent) {
                    if start >= s.warmup_s {
                        r.busy_s[agent as usize] += t - start;
                    }
                }
                for q in r.acd.dispatch_order(agent) {
                    r.route(q, t);
                }
            }
            Event::Free(agent) => {
                if r.acd.agent_timer(agent, now) {
                    for q in r.acd.dispatch_order(agent) {
                        r.route(q, t);
                    }
                }
            }
            Event::Abandon(call) => {
                if let Some(&SimCall {
                    queue: q, counted, ..
                }) = r.calls.get(&call)
                {
                    if r.acd.is_waiting(q, call) {
                        r.acd.leave(q, call);
                        r.calls.remove(&call);
                        if counted {
                            r.reports[q].abandoned += 1;
                        }
                    }
                }
            }
            Event::Wake(q, call) => {
                if let Some(c) = r.calls.get(&call).copied() {
                    if c.queue == q && r.acd.is_waiting(q, call) {
                        r.route(q, t);
                        if r.acd.is_waiting(q, call) {
                            r.wake(q, call, c.arrived, t);
                        }
                    }
                }
            }
        }
    }
    // The last, partial hour on shift.
    let tail = s.duration_s - f64::from(r.hour) * 3600.0;
    if tail > 0.0 && s.duration_s > s.warmup_s {
        for (a, on) in r.duty(r.hour).into_iter().enumerate() {
            if on {
                r.shift_s[a] += tail;
            }
        }
    }
    let Run {
        mut reports,
        within,
        wait_sum,
        waited,
        busy_s,
        shift_s,
        ..
    } = r;
    for (q, rep) in reports.iter_mut().enumerate() {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        rep.service_level = ratio(within[q] as f64, rep.answered as f64);
        rep.asa_s = ratio(wait_sum[q], rep.answered as f64);
        rep.waited_share = ratio(
            (waited[q] + rep.abandoned) as f64,
            (rep.answered + rep.abandoned) as f64,
        );
        rep.abandon_rate = ratio(rep.abandoned as f64, (rep.answered + rep.abandoned) as f64);
        let skill = &s.queues[q].skill;
        let (busy, shift) = s
            .agents
            .iter()
            .enumerate()
            .filter(|(_, (_, sk))| sk.iter().any(|(x, _)| x == skill))
            .fold((0.0, 0.0), |(b, h), (a, _)| (b + busy_s[a], h + shift_s[a]));
        rep.occupancy = ratio(busy, shift);
    }
    reports
}

/// Erlang C: the probability that a call waits, for `agents` servers and `erlangs`
/// offered load (arrival rate × mean handle time), by the Erlang B recursion.
pub fn erlang_c(agents: u32, erlangs: f64) -> f64 {
    let c = agents as f64;
    if erlangs >= c {
        return 1.0;
    }
    let mut b = 1.0;
    for k in 1..=agents {
        b = erlangs * b / (k as f64 + erlangs * b);
    }
    c * b / (c - erlangs * (1.0 - b))
}

/// Erlang C service level: the share of calls answered within `t_s` seconds with `agents`
/// agents, `erlangs` offered load and mean handle time `aht_s`.
pub fn erlang_sl(agents: u32, erlangs: f64, aht_s: f64, t_s: f64) -> f64 {
    if f64::from(agents) <= erlangs {
        return 0.0;
    }
    1.0 - erlang_c(agents, erlangs) * (-(f64::from(agents) - erlangs) * t_s / aht_s).exp()
}

/// The 120 centre's day, as [`day_120`] models it. Every figure is an input the report
/// prints; those not from the seed documents are assumptions a centre would replace with
/// its own statistics.
pub mod model {
    /// Korean calls a day (seed document 000: 22,000 a day on average).
    pub const KOREAN_PER_DAY: f64 = 22_000.0;
    /// Foreign-language calls a day (seed document 000: 87 a day through 120+9).
    pub const FOREIGN_PER_DAY: f64 = 87.0;
    /// Their split by language (assumption: English most, then Chinese, Japanese,
    /// Vietnamese, Mongolian, as Seoul's foreign residents and visitors).
    pub const FOREIGN_SPLIT: [(&str, f64); 5] = [
        ("en", 0.45),
        ("zh", 0.25),
        ("ja", 0.12),
        ("vi", 0.10),
        ("mn", 0.08),
    ];
    /// Share of the day's calls in each hour from midnight (assumption: a 24-hour
    /// municipal line busiest in office hours, a dip at lunch, quiet at night).
    pub const HOURLY: [f64; 24] = [
        0.8, 0.6, 0.5, 0.4, 0.4, 0.6, 1.2, 2.5, 5.0, 8.0, 9.0, 8.5, 6.0, 7.5, 8.0, 7.5, 7.0, 6.0,
        4.5, 3.5, 3.0, 2.5, 1.9, 1.1,
    ];
    /// Mean handle time, seconds (assumption): Korean calls, foreign-language calls.
    pub const HANDLE_KO_S: f64 = 180.0;
    pub const HANDLE_FOREIGN_S: f64 = 240.0;
    /// Mean patience before hanging up, seconds (assumption, exponential).
    pub const PATIENCE_S: f64 = 120.0;
    /// The staffing plan: Korean-only counsellors each hour, as many as Erlang C says
    /// reach this service level in 20 s for that hour's Korean calls on their own (the
    /// bilingual counsellors come on top).
    pub const PLAN_SL: f64 = 0.80;
}

/// A routing option compared by `dasan simulate`, applied to the dialplan's queues.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// The queues as the dialplan writes them.
    Dialplan,
    /// Every queue at priority 0, nothing reserved, free agents by priority (the engine's
    /// routing before issue 19).
    Plain,
    /// The foreign-language queues at priority 10.
    Priority,
    /// Free agents take the scarcest skill's call first.
    ScarcestSkill,
    /// Priority, and each foreign-language queue keeps `n` of its agents back from Korean
    /// calls for at most `hold_s` of a Korean call's wait.
    Reserve { n: u32, hold_s: u32 },
    /// Reserve and scarcest-skill together.
    ReserveScarcest { n: u32, hold_s: u32 },
}

impl Policy {
    pub fn all() -> Vec<Policy> {
        vec![
            Policy::Plain,
            Policy::Priority,
            Policy::ScarcestSkill,
            Policy::Reserve { n: 1, hold_s: 5 },
            Policy::Reserve { n: 1, hold_s: 10 },
            Policy::Reserve { n: 1, hold_s: 20 },
            Policy::ReserveScarcest { n: 1, hold_s: 10 },
            Policy::Dialplan,
        ]
    }

    pub fn name(&self) -> String {
        match self {
            Policy::Dialplan => "dialplan".into(),
            Policy::Plain => "plain".into(),
            Policy::Priority => "priority".into(),
            Policy::ScarcestSkill => "scarcest-skill".into(),
            Policy::Reserve { n, hold_s } => format!("reserve {n}, hold {hold_s}s"),
            Policy::ReserveScarcest { n, hold_s } => {
                format!("reserve {n}, hold {hold_s}s + scarcest")
            }
        }
    }

    /// The queues and free-agent order under this policy (`foreign`: which queues are the
    /// foreign-language ones).
    fn apply(
        &self,
        queues: &mut [QueueParams],
        foreign: &[bool],
        order: FreeAgentOrder,
    ) -> FreeAgentOrder {
        let set = |queues: &mut [QueueParams], prio: i32, n: u32, hold: u32| {
            for (q, f) in queues.iter_mut().zip(foreign) {
                q.priority = if *f { prio } else { 0 };
                q.reserve = if *f { n } else { 0 };
                q.reserve_max_hold = Duration::from_secs(u64::from(hold));
            }
        };
        match *self {
            Policy::Dialplan => order,
            Policy::Plain => {
                set(queues, 0, 0, 0);
                FreeAgentOrder::Priority
            }
            Policy::Priority => {
                set(queues, 10, 0, 0);
                FreeAgentOrder::Priority
            }
            Policy::ScarcestSkill => {
                set(queues, 0, 0, 0);
                FreeAgentOrder::ScarcestSkill
            }
            Policy::Reserve { n, hold_s } => {
                set(queues, 10, n, hold_s);
                FreeAgentOrder::Priority
            }
            Policy::ReserveScarcest { n, hold_s } => {
                set(queues, 10, n, hold_s);
                FreeAgentOrder::ScarcestSkill
            }
        }
    }
}

/// The 120 centre's day on a dialplan ([`model`] gives the demand): its Korean queue
/// (`skill = "ko"` with no opening hours) and its foreign-language queues (the languages
/// of [`model::FOREIGN_SPLIT`]), with their routing settings under `policy`; its agents
/// with one of those languages (the bilingual counsellors, on shift while their queue is
/// open), and Korean-only counsellors as the dialplan's first Korean-only agent, as many
/// each hour as the staffing plan says. None when the dialplan has no such queues.
pub fn day_120(
    settings: &crate::config::EngineSettings,
    policy: Policy,
    seed: u64,
) -> Option<Scenario> {
    use model::*;
    let general = settings
        .queues
        .iter()
        .find(|q| q.acd.skill == "ko" && q.timing.hours.is_none())?;
    let mut queues = vec![general.acd.clone()];
    let mut hours = vec![None];
    for (lang, _) in FOREIGN_SPLIT {
        let q = settings.queues.iter().find(|q| q.acd.skill == lang)?;
        queues.push(q.acd.clone());
        hours.push(q.timing.hours);
    }
    for q in &mut queues {
        q.max_length = 100_000;
    }
    let foreign: Vec<bool> = (0..queues.len()).map(|i| i > 0).collect();
    let order = policy.apply(&mut queues, &foreign, settings.free_agent_order);
    let open_at = |q: usize, h: u32| {
        hours[q].is_none_or(|(from, to): (u32, u32)| {
            let m = h * 60;
            if from <= to {
                m >= from && m < to
            } else {
                m >= from || m < to
            }
        })
    };
    let total: f64 = HOURLY.iter().sum();
    let share: Vec<f64> = HOURLY.iter().map(|w| w / total).collect();
    // Korean calls by hour; foreign calls only while their queue is open, in the same
    // shape over those hours.
    let mut arrival_rate = vec![share
        .iter()
        .map(|s| KOREAN_PER_DAY * s / 3600.0)
        .collect::<Vec<f64>>()];
    for (i, (_, split)) in FOREIGN_SPLIT.iter().enumerate() {
        let q = i + 1;
        let open_share: f64 = (0..24)
            .filter(|&h| open_at(q, h))
            .map(|h| share[h as usize])
            .sum();
        arrival_rate.push(
            (0..24)
                .map(|h| {
                    if open_at(q, h) && open_share > 0.0 {
                        FOREIGN_PER_DAY * split * share[h as usize] / open_share / 3600.0
                    } else {
                        0.0
                    }
                })
                .collect(),
        );
    }
    // The staffing plan for Korean-only counsellors.
    let plan: Vec<u32> = share
        .iter()
        .map(|s| {
            let erlangs = KOREAN_PER_DAY * s / 3600.0 * HANDLE_KO_S;
            (1..2000)
                .find(|&n| erlang_sl(n, erlangs, HANDLE_KO_S, 20.0) >= PLAN_SL)
                .unwrap_or(2000)
        })
        .collect();
    let korean_only = settings
        .agents
        .iter()
        .find(|a| a.skills.iter().all(|(s, _)| s == "ko"))?;
    let bilingual: Vec<(&crate::config::AgentSpec, usize)> = settings
        .agents
        .iter()
        .filter_map(|a| {
            let q = FOREIGN_SPLIT
                .iter()
                .position(|(l, _)| a.skills.iter().any(|(s, _)| s == l))?;
            Some((a, q + 1))
        })
        .collect();
    let most = plan.iter().copied().max().unwrap_or(0) as usize;
    let mut agents: Vec<(String, Vec<(String, u8)>)> = bilingual
        .iter()
        .map(|(a, _)| (a.id.clone(), a.skills.clone()))
        .collect();
    for i in 0..most {
        // Proficiency varies (1-5) so that the Korean queue's routing steps matter.
        let skills = korean_only
            .skills
            .iter()
            .map(|(s, p)| (s.clone(), if *p == 5 { 1 + (i % 5) as u8 } else { *p }))
            .collect();
        agents.push((format!("k{i}"), skills));
    }
    let on_duty = (0..24u32)
        .map(|h| {
            let mut duty: Vec<bool> = bilingual.iter().map(|(_, q)| open_at(*q, h)).collect();
            duty.extend((0..most).map(|i| i < plan[h as usize] as usize));
            duty
        })
        .collect();
    let open = (0..24u32)
        .map(|h| (0..queues.len()).map(|q| open_at(q, h)).collect())
        .collect();
    let mut handle = vec![HANDLE_KO_S];
    handle.extend([HANDLE_FOREIGN_S; 5]);
    Some(Scenario {
        agents,
        queues,
        order,
        arrival_rate,
        mean_handle_s: handle,
        mean_patience_s: vec![Some(PATIENCE_S); 6],
        on_duty,
        open,
        duration_s: 86_400.0,
        warmup_s: 0.0,
        sl_threshold_s: 20.0,
        seed,
        regular: false,
    })
}

/// A figure over several seeds: the mean and the half-width of its 95 % confidence
/// interval (Student's t).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimate {
    pub mean: f64,
    pub ci95: f64,
}

impl Estimate {
    pub fn of(xs: &[f64]) -> Estimate {
        let n = xs.len() as f64;
        if xs.is_empty() {
            return Estimate::default();
        }
        let mean = xs.iter().sum::<f64>() / n;
        if xs.len() < 2 {
            return Estimate { mean, ci95: 0.0 };
        }
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        // t(0.975) for 1..30 degrees of freedom, then the normal's 1.96.
        const T: [f64; 30] = [
            12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14,
            2.13, 2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05,
            2.05, 2.04,
        ];
        let t = T.get(xs.len() - 2).copied().unwrap_or(1.96);
        Estimate {
            mean,
            ci95: t * (var / n).sqrt(),
        }
    }
}

/// One queue's figures over seeds.
#[derive(Debug, Clone, Default)]
pub struct QueueSummary {
    pub name: String,
    /// Calls offered per run, on average.
    pub offered: f64,
    pub service_level: Estimate,
    pub asa_s: Estimate,
    pub abandon_rate: Estimate,
    pub occupancy: Estimate,
}

/// Runs `scenario(seed)` for each seed and summarises each queue; a last row, "foreign",
/// pools the queues after the first (the foreign-language ones, in [`day_120`]).
pub fn run_seeds(scenario: impl Fn(u64) -> Scenario, seeds: &[u64]) -> (Vec<QueueSummary>, u64) {
    let runs: Vec<Vec<QueueReport>> = seeds.iter().map(|&s| run(&scenario(s))).collect();
    let calls = runs.iter().flatten().map(|r| r.offered).sum();
    let Some(first) = runs.first() else {
        return (Vec::new(), 0);
    };
    let nq = first.len();
    let summary = |name: String, pick: &dyn Fn(&[QueueReport]) -> QueueReport| {
        let rows: Vec<QueueReport> = runs.iter().map(|r| pick(r)).collect();
        let est = |f: &dyn Fn(&QueueReport) -> f64| {
            Estimate::of(&rows.iter().map(f).collect::<Vec<f64>>())
        };
        QueueSummary {
            name,
            offered: rows.iter().map(|r| r.offered as f64).sum::<f64>() / rows.len() as f64,
            service_level: est(&|r| r.service_level),
            asa_s: est(&|r| r.asa_s),
            abandon_rate: est(&|r| r.abandon_rate),
            occupancy: est(&|r| r.occupancy),
        }
    };
    let mut out: Vec<QueueSummary> = (0..nq)
        .map(|q| summary(first[q].name.clone(), &|r: &[QueueReport]| r[q].clone()))
        .collect();
    if nq > 1 {
        out.push(summary("foreign".into(), &|r: &[QueueReport]| {
            pool(&r[1..])
        }));
    }
    (out, calls)
}

/// Several queues' reports as one (counts added, rates weighted by calls).
fn pool(rs: &[QueueReport]) -> QueueReport {
    let answered: u64 = rs.iter().map(|r| r.answered).sum();
    let abandoned: u64 = rs.iter().map(|r| r.abandoned).sum();
    let w = |f: &dyn Fn(&QueueReport) -> f64, by: &dyn Fn(&QueueReport) -> f64| {
        let total: f64 = rs.iter().map(by).sum();
        if total > 0.0 {
            rs.iter().map(|r| f(r) * by(r)).sum::<f64>() / total
        } else {
            0.0
        }
    };
    QueueReport {
        name: "foreign".into(),
        offered: rs.iter().map(|r| r.offered).sum(),
        answered,
        abandoned,
        service_level: w(&|r| r.service_level, &|r| r.answered as f64),
        asa_s: w(&|r| r.asa_s, &|r| r.answered as f64),
        waited_share: 0.0,
        abandon_rate: if answered + abandoned > 0 {
            abandoned as f64 / (answered + abandoned) as f64
        } else {
            0.0
        },
        occupancy: w(&|r| r.occupancy, &|_| 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_c_matches_known_values() {
        // Textbook: 2 agents, 1 Erlang → 1/3; 10 agents, 8 Erlangs → 0.409.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-9);
        assert!((erlang_c(10, 8.0) - 0.4092).abs() < 1e-3);
        assert_eq!(erlang_c(3, 3.0), 1.0);
    }

    /// M/M/c through the real router: the share of calls that wait is within a few percent
    /// of Erlang C.
    #[test]
    fn simulated_wait_probability_matches_erlang_c() {
        let agents: Vec<_> = (0..10)
            .map(|i| (format!("a{i}"), vec![("ko".to_string(), 5)]))
            .collect();
        let s = Scenario {
            agents,
            queues: vec![QueueParams {
                max_length: 1_000_000,
                ..QueueParams::new("q", "ko")
            }],
            order: FreeAgentOrder::Priority,
            arrival_rate: vec![vec![8.0 / 180.0]],
            mean_handle_s: vec![180.0],
            mean_patience_s: vec![None],
            on_duty: Vec::new(),
            open: Vec::new(),
            duration_s: 3_000_000.0, // ~130,000 calls
            warmup_s: 20_000.0,
            sl_threshold_s: 20.0,
            seed: 7,
            regular: false,
        };
        let r = &run(&s)[0];
        let expected = erlang_c(10, 8.0);
        assert!(r.answered > 100_000, "{r:?}");
        eprintln!(
            "M/M/10 at 8 Erlangs: simulated P(wait) {:.4}, Erlang C {expected:.4}",
            r.waited_share
        );
        assert!(
            (r.waited_share - expected).abs() / expected < 0.04,
            "simulated {:.4}, Erlang C {expected:.4}",
            r.waited_share
        );
        // Same seed, same run.
        assert_eq!(run(&s)[0], *r);
    }

    fn default_settings() -> crate::config::Config {
        crate::config::Config::parse(
            crate::config::DEFAULT_CONFIG,
            crate::config::DEFAULT_CONFIG_NAME,
        )
        .unwrap()
    }

    /// The 120 day on the default dialplan: the demand the model names, the bilingual
    /// counsellors only while their queues are open, and the Korean queue well served.
    #[test]
    fn the_120_day_has_its_calls_shifts_and_hours() {
        let cfg = default_settings();
        let s = day_120(cfg.engine(), Policy::Plain, 1).unwrap();
        assert_eq!(s.queues.len(), 6);
        let per_day = |q: usize| s.arrival_rate[q].iter().sum::<f64>() * 3600.0;
        assert!((per_day(0) - model::KOREAN_PER_DAY).abs() < 1.0);
        let foreign: f64 = (1..6).map(per_day).sum();
        assert!((foreign - model::FOREIGN_PER_DAY).abs() < 0.01);
        // 03:00: no foreign calls, the bilinguals off shift, the queues closed.
        assert!((1..6).all(|q| s.arrival_rate[q][3] == 0.0 && !s.open[3][q]));
        let bilingual = s
            .agents
            .iter()
            .filter(|(_, sk)| sk.iter().any(|(x, _)| x == "en"))
            .count();
        assert_eq!(bilingual, 2, "the dialplan's two English speakers");
        let on = |h: usize| s.on_duty[h].iter().filter(|d| **d).count();
        assert!(
            on(10) > on(3) * 3,
            "{} at 10:00, {} at 03:00",
            on(10),
            on(3)
        );
        let r = run(&s);
        assert!(
            r[0].offered > 20_000 && r[0].service_level > 0.85,
            "{:?}",
            r[0]
        );
        assert!(r[0].occupancy > 0.5 && r[0].occupancy < 1.0, "{:?}", r[0]);
        // Same seed, same day.
        assert_eq!(run(&s), r);
    }

    /// The finding, reproduced, and what reservation does about it: under plain
    /// routing the foreign-language callers find their counsellors busy with Korean calls;
    /// keeping one back lifts their service level by far more than the confidence interval
    /// while the Korean queue stays within a point.
    #[test]
    fn reservation_serves_foreign_callers_without_costing_the_korean_queue() {
        let cfg = default_settings();
        let seeds: Vec<u64> = (1..=4).collect();
        let summary = |p: Policy| run_seeds(|s| day_120(cfg.engine(), p, s).unwrap(), &seeds).0;
        let plain = summary(Policy::Plain);
        let reserve = summary(Policy::Reserve { n: 1, hold_s: 10 });
        let (ko0, fo0) = (&plain[0].service_level, &plain[6].service_level);
        let (ko1, fo1) = (&reserve[0].service_level, &reserve[6].service_level);
        eprintln!(
            "plain: ko {:.3}±{:.3} foreign {:.3}±{:.3}; reserve: ko {:.3}±{:.3} foreign {:.3}±{:.3}",
            ko0.mean, ko0.ci95, fo0.mean, fo0.ci95, ko1.mean, ko1.ci95, fo1.mean, fo1.ci95
        );
        assert!(
            fo0.mean < 0.75,
            "plain routing leaves foreign callers waiting"
        );
        assert!(fo1.mean - fo0.mean > fo0.ci95 + fo1.ci95);
        assert!(ko1.mean > ko0.mean - 0.01);
    }
}
