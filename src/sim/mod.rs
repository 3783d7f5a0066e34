//! A deterministic discrete-event simulation of a contact centre that drives the real
//! router ([`crate::acd::Acd`]) under virtual time: Poisson arrivals per queue, exponential
//! handle times, optional exponential patience (abandonment), seeded so that a run is
//! reproducible. Used to compare routing strategies by service level, ASA and abandonment,
//! and checked against Erlang C for the plain M/M/c case.

use crate::acd::{Acd, AgentIdx, CallKey, QueueParams, Strategy};
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
    /// Calls per second arriving at each queue (same order as `queues`).
    pub arrival_rate: Vec<f64>,
    pub mean_handle_s: f64,
    /// Mean patience before a waiting caller hangs up; None: nobody abandons.
    pub mean_patience_s: Option<f64>,
    /// Simulated time, and the first part of it left out of the figures.
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Service-level threshold.
    pub sl_threshold_s: f64,
    pub seed: u64,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrival(usize),
    End(AgentIdx, CallKey),
    Abandon(CallKey),
}

fn exp(rng: &mut StdRng, mean: f64) -> f64 {
    // 1 - U is in (0, 1]: ln never sees 0.
    -mean * (1.0 - rng.gen::<f64>()).ln()
}

struct Run<'a> {
    s: &'a Scenario,
    t0: Instant,
    acd: Acd,
    rng: StdRng,
    /// (time in ns, sequence, event); the sequence breaks ties deterministically.
    heap: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    reports: Vec<QueueReport>,
    within: Vec<u64>,
    wait_sum: Vec<f64>,
    waited: Vec<u64>,
    /// call -> (queue, arrival time, counted in the figures)
    calls: HashMap<CallKey, (usize, f64, bool)>,
}

impl Run<'_> {
    fn push(&mut self, t: f64, e: Event) {
        self.seq += 1;
        self.heap.push(Reverse(((t * 1e9) as u64, self.seq, e)));
    }

    /// Offers queue `q`'s calls to ready agents at time `t`; answered at once.
    fn route(&mut self, q: usize, t: f64) {
        let now = self.t0 + Duration::from_secs_f64(t);
        while let Some((call, agent)) = self.acd.next_offer(q, now) {
            self.acd.answered(agent, call);
            self.acd.leave(q, call);
            if let Some((cq, arrived, counted)) = self.calls.get(&call).copied() {
                let w = t - arrived;
                if counted {
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
            let end = t + exp(&mut self.rng, self.s.mean_handle_s);
            self.push(end, Event::End(agent, call));
        }
    }
}

/// Runs the scenario; one report per queue.
pub fn run(s: &Scenario) -> Vec<QueueReport> {
    let t0 = Instant::now();
    let mut acd = Acd::new(t0, &s.agents, s.queues.clone());
    for a in 0..s.agents.len() as AgentIdx {
        acd.login(a, t0);
    }
    let n = s.queues.len();
    let mut r = Run {
        s,
        t0,
        acd,
        rng: StdRng::seed_from_u64(s.seed),
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
    };
    for (q, rate) in s.arrival_rate.iter().enumerate() {
        if *rate > 0.0 {
            let t = exp(&mut r.rng, 1.0 / rate);
            r.push(t, Event::Arrival(q));
        }
    }
    let mut next_call: CallKey = 1;
    while let Some(Reverse((t_ns, _, ev))) = r.heap.pop() {
        let t = t_ns as f64 / 1e9;
        if t > s.duration_s {
            break;
        }
        let now = t0 + Duration::from_secs_f64(t);
        match ev {
            Event::Arrival(q) => {
                let call = next_call;
                next_call += 1;
                let counted = t >= s.warmup_s;
                if counted {
                    r.reports[q].offered += 1;
                }
                r.calls.insert(call, (q, t, counted));
                if r.acd.enqueue(q, call, now).is_ok() {
                    r.route(q, t);
                    if let Some(p) = s.mean_patience_s {
                        if r.acd.is_waiting(q, call) {
                            let give_up = t + exp(&mut r.rng, p);
                            r.push(give_up, Event::Abandon(call));
                        }
                    }
                }
                let next = t + exp(&mut r.rng, 1.0 / s.arrival_rate[q]);
                r.push(next, Event::Arrival(q));
            }
            Event::End(agent, call) => {
                if let Some((q, _, _)) = r.calls.remove(&call) {
                    r.acd.call_ended(q, agent, call, now);
                }
                let queues: Vec<usize> = r.acd.queues_for_agent(agent).collect();
                for q in queues {
                    r.route(q, t);
                }
            }
            Event::Abandon(call) => {
                if let Some(&(q, _, counted)) = r.calls.get(&call) {
                    if r.acd.is_waiting(q, call) {
                        r.acd.leave(q, call);
                        r.calls.remove(&call);
                        if counted {
                            r.reports[q].abandoned += 1;
                        }
                    }
                }
            }
        }
    }
    let Run {
        mut reports,
        within,
        wait_sum,
        waited,
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

/// The 120 centre's shape: 22,000 calls a day to the Korean queue, about 300 a day across
/// five foreign-language queues, three-minute calls, callers who give up after about two
/// minutes on average; 60 Korean agents of mixed proficiency and two bilingual agents per
/// language (who also take Korean calls).
pub fn centre_120(strategy: Strategy, hours: f64, seed: u64) -> Scenario {
    let langs = ["en", "zh", "ja", "vi", "mn"];
    let mut agents = Vec::new();
    for i in 0..60 {
        agents.push((format!("k{i}"), vec![("ko".to_string(), 1 + (i % 5) as u8)]));
    }
    for (l, lang) in langs.iter().enumerate() {
        for j in 0..2 {
            agents.push((
                format!("{lang}{j}"),
                vec![("ko".to_string(), 3), (lang.to_string(), 5 - (l % 2) as u8)],
            ));
        }
    }
    let mut queues = vec![QueueParams {
        strategy,
        steps: vec![(Duration::ZERO, 3), (Duration::from_secs(20), 1)],
        max_length: 100_000,
        ..QueueParams::new("general", "ko")
    }];
    for lang in langs {
        queues.push(QueueParams {
            strategy,
            priority: 10,
            max_length: 100_000,
            ..QueueParams::new(lang, lang)
        });
    }
    let mut arrival_rate = vec![22_000.0 / 86_400.0];
    arrival_rate.extend([60.0 / 86_400.0; 5]);
    Scenario {
        agents,
        queues,
        arrival_rate,
        mean_handle_s: 180.0,
        mean_patience_s: Some(120.0),
        duration_s: hours * 3600.0,
        warmup_s: 1800.0,
        sl_threshold_s: 20.0,
        seed,
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
            arrival_rate: vec![8.0 / 180.0],
            mean_handle_s: 180.0,
            mean_patience_s: None,
            duration_s: 3_000_000.0, // ~130,000 calls
            warmup_s: 20_000.0,
            sl_threshold_s: 20.0,
            seed: 7,
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

    #[test]
    fn the_120_scenario_runs_and_strategies_differ_only_in_who_answers() {
        let r = run(&centre_120(Strategy::LongestIdle, 6.0, 1));
        let general = &r[0];
        assert!(general.offered > 5_000, "{general:?}");
        assert!(
            general.service_level > 0.5 && general.abandon_rate < 0.2,
            "{general:?}"
        );
        assert_eq!(r.len(), 6);
    }
}
