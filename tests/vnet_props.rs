//! Random call scripts on a random network, one per seed, each checked once every timer
//! has drained: nothing left in the engine, one record with one outcome per call, no agent
//! stuck, no call with two agents at once.
//!
//! `VNET_SEED=N cargo test --test vnet_props` replays seed N alone; `VNET_SEEDS=K` runs
//! seeds 0..K instead of 0..1000.

mod vnet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use vnet::agent::{AfterAnswer, AgentScript, OnOffer};
use vnet::caller::{CallerScript, DigitVia};
use vnet::net::Impairment;
use vnet::world::World;

/// A time in 0..max_ms, on a 250 ms grid: answers, hang-ups and arrivals then often fall
/// on the same instant, which is where races (CANCEL against 200, BYE against REFER) live.
fn grid(rng: &mut StdRng, max_ms: u64) -> Duration {
    Duration::from_millis(rng.gen_range(0..=max_ms / 250) * 250)
}

fn offer(rng: &mut StdRng) -> OnOffer {
    match rng.gen_range(0..100) {
        0..=49 => OnOffer::Answer {
            ring: grid(rng, 4_000),
            then: match rng.gen_range(0..100) {
                0..=34 => AfterAnswer::Wait,
                35..=64 => AfterAnswer::HangUp(grid(rng, 15_000)),
                65..=84 => {
                    let to = if rng.gen_bool(0.5) { "en" } else { "general" };
                    AfterAnswer::Transfer(grid(rng, 5_000), to.into())
                }
                _ => AfterAnswer::Reinvite(grid(rng, 5_000)),
            },
        },
        50..=69 => OnOffer::Busy {
            after: grid(rng, 2_000),
        },
        70..=89 => OnOffer::NoAnswer,
        _ => OnOffer::Silent,
    }
}

fn caller(rng: &mut StdRng) -> CallerScript {
    let via = |rng: &mut StdRng| {
        if rng.gen_bool(0.5) {
            DigitVia::Info
        } else {
            DigitVia::Rtp
        }
    };
    let mut digits = Vec::new();
    if rng.gen_bool(0.3) {
        let nine = grid(rng, 8_000);
        digits.push((nine, '9', via(rng)));
        if rng.gen_bool(0.7) {
            let choice = ['1', '2', '7'][rng.gen_range(0..3)];
            digits.push((nine + grid(rng, 4_000), choice, via(rng)));
        }
    }
    CallerScript {
        at: grid(rng, 30_000),
        number: "120".into(),
        hang_up: rng.gen_bool(0.4).then(|| grid(rng, 40_000)),
        talk: grid(rng, 20_000),
        digits,
        reinvite: rng.gen_bool(0.2).then(|| grid(rng, 10_000)),
    }
}

/// The world for `seed`, and a description of it for a failure report.
fn scenario(seed: u64) -> (World, String) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut d = String::new();
    let queue = |rng: &mut StdRng| {
        format!(
            "ring_timeout_s = {}\nmax_wait_s = {}\nwrap_up_s = {}\nbusy_delay_s = {}\nmax_no_answer = {}\n",
            rng.gen_range(5..=20),
            rng.gen_range(30..=120),
            rng.gen_range(0..=3),
            rng.gen_range(0..=5),
            rng.gen_range(1..=2),
        )
    };
    let (general, en) = (queue(&mut rng), queue(&mut rng));
    let n_agents = rng.gen_range(1..=4);
    let mut agents = String::new();
    for i in 0..n_agents {
        let skills = match (i, rng.gen_range(0..3)) {
            (0, _) | (_, 0) => r#"["ko"]"#,
            (_, 1) => r#"["ko", "en"]"#,
            _ => r#"["en"]"#,
        };
        let _ = write!(
            agents,
            "[[agents]]\nids = \"{}\"\npassword = \"pw\"\nskills = {skills}\n",
            1001 + i
        );
    }
    let config = vnet::config(&format!(
        r#"
[[route]]
number = "120"
queue = "general"

[queue.general]
skill = "ko"
digits = {{ "9" = "languages" }}
{general}
[queue.en]
skill = "en"
{en}
[menu.languages]
timeout_s = 3
retries = 1
fallback = "general"

[[menu.languages.option]]
digit = "1"
prompt = "menu-en"
queue = "en"

[[menu.languages.option]]
digit = "2"
prompt = "menu-ko"
queue = "general"

{agents}"#
    ));
    let net = Impairment {
        loss: rng.gen_range(0.0..=0.10),
        duplicate: rng.gen_range(0.0..=0.05),
        delay: Duration::from_millis(rng.gen_range(1..=20)),
        jitter: Duration::from_millis(rng.gen_range(0..=50)),
    };
    let _ = writeln!(
        d,
        "network {net:?}\n[queue.general]\n{general}[queue.en]\n{en}{agents}"
    );
    let mut w = World::new(seed, &config, net);
    for i in 0..n_agents {
        let script = AgentScript {
            id: (1001 + i).to_string(),
            password: "pw".into(),
            register_at: grid(&mut rng, 2_000),
            offers: (0..rng.gen_range(0..=8)).map(|_| offer(&mut rng)).collect(),
            ready_again: grid(&mut rng, 10_000),
        };
        let _ = writeln!(d, "agent {script:?}");
        w.add_agent(script);
    }
    for _ in 0..rng.gen_range(1..=6) {
        let script = caller(&mut rng);
        let _ = writeln!(d, "caller {script:?}");
        w.add_caller(script);
    }
    (w, d)
}

fn run(seed: u64) -> Result<(), String> {
    let (mut w, description) = scenario(seed);
    let problems = w.finish();
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}\n-- scenario --\n{description}",
        problems.join("\n")
    ))
}

fn env(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    )
}

/// `run`, with a panic (the engine's or the harness's) turned into a failure of its seed.
fn run_caught(seed: u64) -> Result<(), String> {
    match std::panic::catch_unwind(|| run(seed)) {
        Ok(r) => r,
        Err(panic) => Err(match panic.downcast_ref::<String>() {
            Some(s) => format!("panicked: {s}"),
            None => format!("panicked: {:?}", panic.downcast_ref::<&str>()),
        }),
    }
}

/// Every seed, spread over the cores: each world is a single-threaded function of its
/// seed, so the order they run in changes nothing.
fn run_all(seeds: &[u64]) -> Vec<(u64, String)> {
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut failures: Vec<(u64, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut failed = Vec::new();
                    while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if let Err(e) = run_caught(seed) {
                            eprintln!("seed {seed} failed: {}", e.lines().next().unwrap_or(""));
                            failed.push((seed, e));
                        }
                    }
                    failed
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker died outside any seed"))
            .collect()
    });
    failures.sort_by_key(|(seed, _)| *seed);
    failures
}

/// Seeds that fail because of an engine bug, each reduced to a test in `vnet_bugs.rs`;
/// left out of the sweep (not out of `VNET_SEED`) until the bug is fixed.
const ENGINE_BUGS: &[(u64, &str)] = &[(
    387,
    "vnet_bugs::agent_hangs_up_before_the_callers_ack_and_the_caller_never_gets_the_200",
)];

#[test]
fn random_call_scripts_leave_nothing_behind() {
    let seeds: Vec<u64> = match env("VNET_SEED") {
        Some(s) => vec![s],
        None => (0..env("VNET_SEEDS").unwrap_or(1000))
            .filter(|s| ENGINE_BUGS.iter().all(|(bug, _)| bug != s))
            .collect(),
    };
    let failures = run_all(&seeds);
    if let Some((seed, err)) = failures.first() {
        let all: Vec<u64> = failures.iter().map(|(s, _)| *s).collect();
        panic!(
            "{} of {} seeds failed ({all:?}); the first, seed {seed}:\n{err}\nreplay: VNET_SEED={seed} cargo test --test vnet_props",
            failures.len(),
            seeds.len()
        );
    }
}

#[test]
#[ignore = "engine bug: BYE before the caller's ACK drops the 200's retransmissions (vnet_bugs.rs)"]
fn seed_387_agent_hangs_up_before_the_callers_ack() {
    run(387).unwrap_or_else(|e| panic!("{e}"));
}
