//! Random call scripts on a random network, one per seed, each checked once every timer
//! has drained: nothing left in the engine, one record with one outcome per call, no agent
//! stuck, no call with two agents at once.
//!
//! `VNET_SEED=N cargo test --test vnet_props` replays seed N alone (`VNET_TRACE=1` prints
//! every datagram); `VNET_SEEDS=K` (or `A..B`) sweeps other seeds than 0..1000.

mod vnet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
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

/// Times shared by the phones of one seed, so that their actions meet: agents often answer
/// after `ring`, and some callers hang up just then (give or take the network's delays);
/// both sides often hang up (or transfer) `talk` after the answer.
struct Rhythm {
    ring: Duration,
    talk: Duration,
    /// The network's delay plus jitter: the width of the window in which messages cross.
    crossing: Duration,
}

impl Rhythm {
    fn ring(&self, rng: &mut StdRng) -> Duration {
        if rng.gen_bool(0.5) {
            self.ring
        } else {
            grid(rng, 4_000)
        }
    }

    fn talk(&self, rng: &mut StdRng, max_ms: u64) -> Duration {
        if rng.gen_bool(0.3) {
            self.talk
        } else {
            grid(rng, max_ms)
        }
    }
}

fn offer(rng: &mut StdRng, r: &Rhythm) -> OnOffer {
    match rng.gen_range(0..100) {
        0..=49 => OnOffer::Answer {
            ring: r.ring(rng),
            then: match rng.gen_range(0..100) {
                0..=34 => AfterAnswer::Wait,
                35..=64 => AfterAnswer::HangUp(r.talk(rng, 15_000)),
                65..=84 => {
                    let to = if rng.gen_bool(0.5) { "en" } else { "general" };
                    AfterAnswer::Transfer(r.talk(rng, 5_000), to.into())
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

fn caller(rng: &mut StdRng, r: &Rhythm) -> CallerScript {
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
    let hang_up = match rng.gen_range(0..100) {
        // The 200 from an agent who answers after `ring` is on its way (four one-way
        // trips after the INVITE): the CANCEL may cross it.
        0..=14 => {
            let window = (r.crossing * 5).as_millis() as u64;
            Some(r.ring + Duration::from_millis(rng.gen_range(0..=window)))
        }
        15..=39 => Some(grid(rng, 40_000)),
        _ => None,
    };
    CallerScript {
        at: grid(rng, 30_000),
        number: "120".into(),
        hang_up,
        talk: r.talk(rng, 20_000),
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
            "ring_timeout_s = {}\nmax_wait_s = {}\nwrap_up_s = {}\nbusy_delay_s = {}\nmax_no_answer = {}\nmax_length = {}\n",
            rng.gen_range(5..=20),
            rng.gen_range(30..=120),
            rng.gen_range(0..=3),
            rng.gen_range(0..=5),
            rng.gen_range(1..=2),
            rng.gen_range(1..=8),
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
    // The engine refuses a queue no configured agent could serve: an English speaker who
    // never logs in keeps `en` staffed on paper (drawn after the rest, so seeds replay).
    agents.push_str("[[agents]]\nids = \"1099\"\npassword = \"pw\"\nskills = [\"en\"]\n");
    // One run in five relays media end to end: re-INVITEs then cross the engine.
    let anchor = rng.gen_bool(0.8);
    let config = vnet::config_with(
        &format!(
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
        ),
        anchor,
    );
    let net = Impairment {
        loss: rng.gen_range(0.0..=0.10),
        duplicate: rng.gen_range(0.0..=0.05),
        delay: Duration::from_millis(rng.gen_range(1..=20)),
        jitter: Duration::from_millis(rng.gen_range(0..=50)),
    };
    let rhythm = Rhythm {
        ring: grid(&mut rng, 4_000),
        talk: grid(&mut rng, 10_000),
        crossing: net.delay + net.jitter,
    };
    let _ = writeln!(
        d,
        "network {net:?}\nanchor {anchor}, ring {:?}, talk {:?}\n[queue.general]\n{general}[queue.en]\n{en}{agents}",
        rhythm.ring, rhythm.talk
    );
    let mut w = World::new(seed, &config, net);
    for i in 0..n_agents {
        let script = AgentScript {
            id: (1001 + i).to_string(),
            password: "pw".into(),
            register_at: grid(&mut rng, 2_000),
            offers: (0..rng.gen_range(0..=8))
                .map(|_| offer(&mut rng, &rhythm))
                .collect(),
            ready_again: grid(&mut rng, 10_000),
        };
        let _ = writeln!(d, "agent {script:?}");
        w.add_agent(script);
    }
    for _ in 0..rng.gen_range(1..=6) {
        let script = caller(&mut rng, &rhythm);
        let _ = writeln!(d, "caller {script:?}");
        w.add_caller(script);
    }
    (w, d)
}

/// What a run exercised, by name (a sweep asserts that each came up often enough).
fn features(w: &World) -> Vec<&'static str> {
    use dasan::records::{Outcome, RecordEvent as E};
    let mut f = Vec::new();
    for c in &w.callers {
        let saw = |s: &str| c.trace.iter().any(|l| l.contains(s));
        if saw("CANCEL") && c.answered {
            f.push("caller's CANCEL crossed the 200");
        } else if saw("CANCEL") {
            f.push("caller cancelled");
        }
        if saw("re-INVITE") && saw("200 to INVITE 2") {
            f.push("caller re-INVITE answered");
        }
        if saw("INFO") {
            f.push("digit by INFO");
        }
        if saw("RTP digit") {
            f.push("digit by RTP");
        }
        if saw("BYE") && c.answered {
            f.push("caller hung up");
        }
        if saw("got BYE") {
            f.push("caller hung up on");
        }
        if saw("got BYE") && c.trace.iter().any(|l| l.ends_with(": BYE")) {
            f.push("BYEs crossed");
        }
    }
    for a in &w.agents {
        let saw = |s: &str| a.trace.iter().any(|l| l.contains(s));
        for (s, name) in [
            ("202 to REFER", "transfer accepted"),
            ("busy", "agent busy"),
            ("cancelled", "offer cancelled"),
            ("re-INVITE", "agent re-INVITE"),
            ("603 to INVITE fc", "ready toggle"),
            (": BYE ", "agent hung up"),
        ] {
            if saw(s) {
                f.push(name);
            }
        }
    }
    for r in &w.records {
        match r {
            E::Queue { .. } => f.push("call moved queue (menu or transfer)"),
            E::Ended { outcome, .. } => f.push(match outcome {
                Outcome::Answered => "outcome answered",
                Outcome::Abandoned => "outcome abandoned",
                Outcome::TimedOut => "outcome timed out",
                Outcome::Rejected => "outcome rejected",
                _ => "outcome other",
            }),
            _ => {}
        }
    }
    f
}

/// Runs one seed: what went wrong (with the scenario), and what the run exercised.
fn run(seed: u64) -> (Result<(), String>, Vec<&'static str>) {
    let (mut w, description) = scenario(seed);
    let problems = w.finish();
    let exercised = features(&w);
    if problems.is_empty() {
        return (Ok(()), exercised);
    }
    let report = format!("{}\n-- scenario --\n{description}", problems.join("\n"));
    (Err(report), exercised)
}

fn env(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    )
}

/// `VNET_SEEDS=K` sweeps 0..K, `VNET_SEEDS=A..B` sweeps A..B; 0..1000 by default.
fn seed_range() -> std::ops::Range<u64> {
    let Ok(v) = std::env::var("VNET_SEEDS") else {
        return 0..1000;
    };
    let num = |s: &str| -> u64 {
        s.trim()
            .parse()
            .unwrap_or_else(|_| panic!("VNET_SEEDS={v}: want K or A..B"))
    };
    match v.split_once("..") {
        Some((a, b)) => num(a)..num(b),
        None => 0..num(&v),
    }
}

/// `run`, with a panic (the engine's or the harness's) turned into a failure of its seed.
fn run_caught(seed: u64) -> (Result<(), String>, Vec<&'static str>) {
    std::panic::catch_unwind(|| run(seed)).unwrap_or_else(|panic| {
        let what = match panic.downcast_ref::<String>() {
            Some(s) => s.clone(),
            None => format!("{:?}", panic.downcast_ref::<&str>()),
        };
        (Err(format!("panicked: {what}")), Vec::new())
    })
}

/// What a sweep found: the failed seeds with their reports, and per feature how many
/// seeds exercised it.
type Sweep = (Vec<(u64, String)>, BTreeMap<&'static str, u32>);

/// Every seed, spread over the cores: each world is a single-threaded function of its
/// seed, so the order they run in changes nothing.
fn run_all(seeds: &[u64]) -> Sweep {
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let results: Vec<Sweep> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let (mut failed, mut seen) = (Vec::new(), BTreeMap::new());
                    while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let (result, exercised) = run_caught(seed);
                        let unique: BTreeSet<_> = exercised.into_iter().collect();
                        for f in unique {
                            *seen.entry(f).or_insert(0) += 1;
                        }
                        if let Err(e) = result {
                            eprintln!("seed {seed} failed: {}", e.lines().next().unwrap_or(""));
                            failed.push((seed, e));
                        }
                    }
                    (failed, seen)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a worker died outside any seed"))
            .collect()
    });
    let mut failures = Vec::new();
    let mut seen = BTreeMap::new();
    for (f, s) in results {
        failures.extend(f);
        for (k, n) in s {
            *seen.entry(k).or_insert(0) += n;
        }
    }
    failures.sort_by_key(|(seed, _)| *seed);
    (failures, seen)
}

/// Seeds (of 1,000) that must exercise each feature, so that a change to the generator
/// cannot quietly stop testing something.
const COVERAGE: &[(&str, u32)] = &[
    ("caller's CANCEL crossed the 200", 5),
    ("BYEs crossed", 5),
    ("caller cancelled", 100),
    ("caller re-INVITE answered", 50),
    ("agent re-INVITE", 50),
    ("digit by INFO", 50),
    ("digit by RTP", 50),
    ("call moved queue (menu or transfer)", 50),
    ("transfer accepted", 50),
    ("agent busy", 50),
    ("offer cancelled", 50),
    ("ready toggle", 50),
    ("outcome answered", 500),
    ("outcome abandoned", 100),
    ("outcome timed out", 20),
    ("outcome rejected", 20),
];

/// Seeds that fail because of an engine bug, each bug reduced to a script in
/// `vnet_bugs.rs` (from sweeping 0..8000, where about 1 seed in 300 fails for one of them;
/// 77 and 540 began to meet the BYE-before-ACK bug once a withdrawn INVITE kept being
/// retransmitted, which shifted their timing). A sweep leaves them out until the bug is fixed;
/// the ignored tests at the end of this file replay them, `VNET_SEED` runs any of them.
const ENGINE_BUGS: &[(u64, &str)] = &[
    (77, BYE_BEFORE_ACK),
    (540, BYE_BEFORE_ACK),
    (3036, BYE_BEFORE_ACK),
    (4240, BYE_BEFORE_ACK),
    (7987, REFER_DURING_RELAY),
];
const BYE_BEFORE_ACK: &str =
    "vnet_bugs::agent_hangs_up_before_the_callers_ack_and_the_caller_never_gets_the_200";
/// Seeds of bugs since fixed (a lost 180 left a withdrawn offer ringing: the INVITE is now
/// retransmitted until a provisional allows the CANCEL), run on every `cargo test`.
const FIXED: &[u64] = &[1672, 3440];
const REFER_DURING_RELAY: &str =
    "vnet_bugs::refer_while_the_callers_info_is_relayed_leaves_it_unanswered_forever";

/// Replays the sweep's seeds that fail because of `bug`.
fn replay(bug: &str) {
    for (seed, _) in ENGINE_BUGS.iter().filter(|(_, b)| *b == bug) {
        if let Err(e) = run(*seed).0 {
            panic!("seed {seed}: {e}");
        }
    }
}

#[test]
fn random_call_scripts_leave_nothing_behind() {
    let seeds: Vec<u64> = match env("VNET_SEED") {
        Some(s) => vec![s],
        None => seed_range()
            .filter(|s| ENGINE_BUGS.iter().all(|(bug, _)| bug != s))
            .collect(),
    };
    let (failures, seen) = run_all(&seeds);
    eprintln!("seeds exercising each feature: {seen:#?}");
    if let Some((seed, err)) = failures.first() {
        let all: Vec<u64> = failures.iter().map(|(s, _)| *s).collect();
        panic!(
            "{} of {} seeds failed ({all:?}); the first, seed {seed}:\n{err}\nreplay: VNET_SEED={seed} cargo test --test vnet_props",
            failures.len(),
            seeds.len()
        );
    }
    if seeds.len() >= 1000 {
        for (feature, min) in COVERAGE {
            let n = seen.get(feature).copied().unwrap_or(0);
            assert!(
                n >= *min,
                "only {n} seeds exercised {feature:?} (want {min})"
            );
        }
    }
}

#[test]
#[ignore = "engine bug: BYE before the caller's ACK drops the 200's retransmissions"]
fn seeds_failing_on_bye_before_the_callers_ack() {
    replay(BYE_BEFORE_ACK);
}

#[test]
fn seeds_that_found_fixed_bugs_pass() {
    for seed in FIXED {
        if let Err(e) = run(*seed).0 {
            panic!("seed {seed}: {e}");
        }
    }
}

#[test]
#[ignore = "engine bug: a REFER while a relayed INFO is pending leaks the caller's transaction"]
fn seeds_failing_on_a_refer_while_a_request_is_relayed() {
    replay(REFER_DURING_RELAY);
}
