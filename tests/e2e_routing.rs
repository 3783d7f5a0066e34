//! 120+9 routing (issue 19) in the real engine with SIPp: Korean and English callers at a
//! fixed mix, two Korean-only and two bilingual agents (one SIPp phone answers for all).
//! The same calls run twice, side by side: plain routing, and the English queue keeping
//! one bilingual agent back (`reserve = 1`). The English callers' wait drops, as the
//! simulator predicts for the same centre, and the Korean callers' is held back only
//! within `reserve_max_hold_s`.

mod common;
use common::*;
use std::time::{Duration, Instant};

const KOREAN_CALLS: u32 = 90;
const ENGLISH_CALLS: u32 = 16;
/// Calls per second and seconds of talk: 3 Erlangs of Korean calls, 0.5 of English, on
/// four agents (SIPp's arrivals are regular: Korean calls alone never fill all four).
const KOREAN_RATE: f64 = 1.5;
const ENGLISH_RATE: f64 = 0.25;
const TALK_MS: u32 = 2000;

fn config(en: &str) -> String {
    test_config("").replace(
        "[[agents]]\nids = \"1001-1004\"\npassword = \"test-pw\"\nskills = [\"ko\"]\n",
        &format!(
            "[[route]]\nnumber = \"1201\"\nqueue = \"en\"\n\n[queue.en]\nskill = \"en\"\npriority = 10\n{en}\n\n[[agents]]\nids = \"1001-1002\"\npassword = \"test-pw\"\nskills = [\"ko\"]\n\n[[agents]]\nids = \"1011-1012\"\npassword = \"test-pw\"\nskills = [\"ko\", \"en\"]\n"
        ),
    )
}

/// One centre: the engine, its agents' phone and both callers; returns the mean wait of
/// answered calls in `general` and `en`, seconds, from the records.
struct Centre {
    e: EngineProc,
    phone: Sipp,
    callers: Vec<Sipp>,
}

fn start(name: &str, en: &str) -> Centre {
    let base = port_block();
    let dir = workdir(name);
    let e = EngineProc::start(&dir, &config(en), base, base + 1);
    // The agents' phone (answers every call until the caller's BYE).
    let mut a = base_args(base, base + 2, base + 10, base + 30);
    a.extend(args(&[
        "-sf",
        &scenarios().join("agent.xml").display().to_string(),
        "-m",
        &(KOREAN_CALLS + ENGLISH_CALLS).to_string(),
        "-timeout",
        "180s",
    ]));
    let phone = sipp(&dir, "phone", &a[1..]);
    std::thread::sleep(Duration::from_millis(200));
    let ids = ["1001", "1002", "1011", "1012"];
    let csv = agents_csv(&dir, &ids, "test-pw");
    let mut r = base_args(base, base + 3, base + 14, base + 31);
    r.extend(args(&[
        "-sf",
        &scenarios().join("register.xml").display().to_string(),
        "-inf",
        &csv.display().to_string(),
        "-key",
        "agent_port",
        &(base + 2).to_string(),
        "-m",
        "4",
        "-timeout",
        "20s",
    ]));
    sipp(&dir, "register", &r).expect_success(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.iter().any(|id| e.agent_state(id) != "ready") {
        assert!(Instant::now() < deadline, "agents not ready:\n{}", e.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let caller = |n: u16, number: &str, calls: u32, rate: f64| {
        let mut c = base_args(base, base + 4 + n, base + 18 + 4 * n, base + 32 + n);
        c.extend(args(&[
            "-sf",
            &scenarios().join("caller.xml").display().to_string(),
            "-s",
            number,
            "-m",
            &calls.to_string(),
            "-r",
            "1",
            "-rp",
            &format!("{}", (1000.0 / rate) as u32),
            "-d",
            &TALK_MS.to_string(),
            "-l",
            "20",
            "-timeout",
            "180s",
        ]));
        sipp(&dir, &format!("caller-{number}"), &c)
    };
    let callers = vec![
        caller(0, "120", KOREAN_CALLS, KOREAN_RATE),
        caller(1, "1201", ENGLISH_CALLS, ENGLISH_RATE),
    ];
    Centre { e, phone, callers }
}

/// Mean wait (arrival to answer) of the answered calls of `queue`, seconds, and how many.
fn mean_wait(records: &serde_json::Value, queue: &str) -> (f64, usize) {
    let waits: Vec<f64> = records["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["queue"] == queue && r["outcome"] == "answered")
        .filter_map(|r| Some((r["answered_ms"].as_i64()? - r["arrived_ms"].as_i64()?) as f64))
        .collect();
    let n = waits.len();
    (waits.iter().sum::<f64>() / n.max(1) as f64 / 1000.0, n)
}

fn finish(c: Centre) -> ((f64, usize), (f64, usize)) {
    for s in c.callers {
        s.expect_success(Duration::from_secs(180));
    }
    c.phone.expect_success(Duration::from_secs(60));
    let records = json(&c.e, "/api/records?limit=500");
    (mean_wait(&records, "general"), mean_wait(&records, "en"))
}

#[test]
fn keeping_a_bilingual_agent_back_cuts_the_english_callers_wait() {
    let plain = start("routing-plain", "");
    let reserve = start("routing-reserve", "reserve = 1\nreserve_max_hold_s = 3");
    let ((ko0, n_ko0), (en0, n_en0)) = finish(plain);
    let ((ko1, n_ko1), (en1, n_en1)) = finish(reserve);
    // The simulator's prediction for the same centre, with SIPp's regular arrivals and
    // fixed talk time.
    let predict = |reserve: u32| {
        let mut queues = vec![
            dasan::acd::QueueParams::new("general", "ko"),
            dasan::acd::QueueParams {
                priority: 10,
                reserve,
                reserve_max_hold: Duration::from_secs(3),
                ..dasan::acd::QueueParams::new("en", "en")
            },
        ];
        for q in &mut queues {
            q.max_length = 100_000;
        }
        let skills = |s: &[&str]| s.iter().map(|x| (x.to_string(), 5u8)).collect();
        let s = dasan::sim::Scenario {
            agents: vec![
                ("1001".into(), skills(&["ko"])),
                ("1002".into(), skills(&["ko"])),
                ("1011".into(), skills(&["ko", "en"])),
                ("1012".into(), skills(&["ko", "en"])),
            ],
            queues,
            order: dasan::acd::FreeAgentOrder::Priority,
            arrival_rate: vec![vec![KOREAN_RATE], vec![ENGLISH_RATE]],
            mean_handle_s: vec![f64::from(TALK_MS) / 1000.0; 2],
            mean_patience_s: vec![None, None],
            on_duty: Vec::new(),
            open: Vec::new(),
            duration_s: f64::from(KOREAN_CALLS) / KOREAN_RATE,
            warmup_s: 0.0,
            sl_threshold_s: 20.0,
            seed: 1,
            regular: true,
        };
        let r = dasan::sim::run(&s);
        (r[0].asa_s, r[1].asa_s)
    };
    let (sko0, sen0) = predict(0);
    let (sko1, sen1) = predict(1);
    eprintln!(
        "engine: plain ko {ko0:.2} s ({n_ko0}) en {en0:.2} s ({n_en0}); reserve ko {ko1:.2} s ({n_ko1}) en {en1:.2} s ({n_en1})"
    );
    eprintln!(
        "simulator: plain ko {sko0:.2} s en {sen0:.2} s; reserve ko {sko1:.2} s en {sen1:.2} s"
    );
    assert!(n_en0 >= 14 && n_en1 >= 14 && n_ko0 >= 80 && n_ko1 >= 80);
    assert!(sen1 < sen0 * 0.5, "the model predicts the drop");
    assert!(
        en0 > 0.2,
        "plain: English callers wait for a bilingual agent"
    );
    assert!(en1 < en0 * 0.5, "reserve: the English wait drops");
    assert!(
        ko1 < 3.0 + 1.0,
        "Korean calls held back at most reserve_max_hold_s"
    );
}
