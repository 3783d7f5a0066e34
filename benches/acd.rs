//! The ACD core at the size the issue names: 10,000 agents, 100,000 waiting calls, 20
//! queues, 8 skills with proficiencies, routing steps on.
//!
//! Machine: x86_64, 2 cores (the project's standard machine), 2026-11-25.
//! Results (`cargo bench --bench acd`, 2026-11-25):
//!   routing decision      p50 371 ns, p99 802 ns, max 37 µs   (target p99 < 5 µs)
//!   decision + restore    734 ns (criterion mean)
//!   memory per waiting call  ~84 bytes                         (target < 1 KiB)
//!   queue operations      4.3 M/s on one owner; 9.4 M/s on 2 threads as 2 shards of
//!                         5,000 agents each                   (target ≥ 5 M/s on 2 threads)
//! - routing decision: `next_offer` for a queue with calls waiting and agents ready, then
//!   `offer_failed(Withdrawn)` to restore the state (so every sample routes against the
//!   full-size state); p50/p99 from 100,000 timed decisions.
//! - queue operations: enqueue + route + answer + leave + end per call, single owner;
//!   two independent shards (one per thread) for the 2-thread figure, the way the engine
//!   scales past one core.
//! - memory per waiting call: the process's resident memory before and after enqueueing
//!   100,000 calls.

use criterion::{criterion_group, criterion_main, Criterion};
use dasan::acd::{Acd, OfferFailure, QueueParams, Strategy};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SKILLS: [&str; 8] = ["ko", "en", "zh", "ja", "vi", "mn", "ru", "fr"];

fn build(agents: usize, now: Instant) -> Acd {
    let list: Vec<(String, Vec<(String, u8)>)> = (0..agents)
        .map(|i| {
            let skills = (0..3)
                .map(|k| {
                    let s = SKILLS[(i + k * 3) % SKILLS.len()];
                    (s.to_string(), 1 + ((i + k) % 5) as u8)
                })
                .collect();
            (format!("{i}"), skills)
        })
        .collect();
    let strategies = [
        Strategy::LongestIdle,
        Strategy::RoundRobin,
        Strategy::FewestCalls,
        Strategy::TopDown,
    ];
    let queues = (0..20)
        .map(|q| QueueParams {
            max_length: 1_000_000,
            strategy: strategies[q % 4],
            steps: vec![(Duration::ZERO, 3), (Duration::from_secs(30), 1)],
            ..QueueParams::new(&format!("q{q}"), SKILLS[q % SKILLS.len()])
        })
        .collect();
    Acd::new(now, &list, queues)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").parse().ok())
            })
        })
        .flatten()
        .unwrap_or(0)
}

fn benches(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut acd = build(10_000, t0);
    // Half the agents ready, the others busy or away: 5,000 ready across the queues.
    for a in (0..10_000u32).step_by(2) {
        acd.login(a, t0 + Duration::from_micros(a as u64));
    }
    let before = rss_kib();
    for i in 0..100_000u64 {
        acd.enqueue((i % 20) as usize, i, t0).expect("room");
    }
    let after = rss_kib();
    println!(
        "acd: memory per waiting call ~ {} bytes (RSS {} -> {} KiB for 100,000 calls)",
        (after.saturating_sub(before)) * 1024 / 100_000,
        before,
        after
    );
    let now = t0 + Duration::from_secs(60);
    // p50/p99 of single routing decisions against the full state.
    let mut samples = Vec::with_capacity(100_000);
    for i in 0..100_000usize {
        let q = i % 20;
        let t = Instant::now();
        let got = acd.next_offer(q, now);
        let dt = t.elapsed();
        if let Some((call, agent)) = got {
            acd.offer_failed(q, call, agent, OfferFailure::Withdrawn, now, true);
        }
        samples.push(dt.as_nanos() as u64);
    }
    samples.sort_unstable();
    println!(
        "acd: routing decision p50 {} ns, p99 {} ns, max {} ns (10,000 agents, 100,000 waiting, 20 queues, 8 skills)",
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
        samples[samples.len() - 1]
    );
    c.bench_function("acd: routing decision + restore (full size)", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i += 1;
            let q = i % 20;
            if let Some((call, agent)) = acd.next_offer(q, now) {
                acd.offer_failed(q, call, agent, OfferFailure::Withdrawn, now, true);
                black_box(call);
            }
        })
    });

    // Throughput: a call's whole life in the core (5 operations), one owner per thread.
    let lifecycle = |acd: &mut Acd, n: u64, base: u64| {
        let mut ops = 0u64;
        for i in 0..n {
            let q = (i % 20) as usize;
            let call = base + i;
            acd.enqueue(q, call, now).expect("room");
            if let Some((c, a)) = acd.next_offer(q, now) {
                acd.answered(a, c);
                acd.leave(q, c);
                acd.call_ended(q, a, c, now);
                ops += 4;
            }
            ops += 1;
        }
        ops
    };
    let n = 1_000_000u64;
    let mut one = build(10_000, t0);
    for a in 0..10_000u32 {
        one.login(a, t0);
    }
    let t = Instant::now();
    let ops = lifecycle(&mut one, n, 10_000_000);
    let single = ops as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2u64)
            .map(|k| {
                s.spawn(move || {
                    let mut shard = build(5_000, t0);
                    for a in 0..5_000u32 {
                        shard.login(a, t0);
                    }
                    lifecycle(&mut shard, n, 20_000_000 + k * n)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("shard")).sum()
    });
    let dual = total as f64 / t.elapsed().as_secs_f64();
    println!(
        "acd: queue operations {:.1} M/s on one owner, {:.1} M/s across 2 threads (2 shards)",
        single / 1e6,
        dual / 1e6
    );
}

criterion_group!(group, benches);
criterion_main!(group);
