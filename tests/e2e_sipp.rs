//! End-to-end: the real `dasan` binary driven by real SIPp on loopback.

mod common;
use common::*;
use std::time::Duration;

struct Ports {
    base: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports { base: port_block() }
    }
    fn sip(&self) -> u16 {
        self.base
    }
    fn http(&self) -> u16 {
        self.base + 1
    }
    /// The n-th SIPp instance: (signalling, media, control) ports.
    fn sipp(&self, n: u16) -> (u16, u16, u16) {
        (
            self.base + 2 + n,
            self.base + 10 + 4 * n,
            self.base + 30 + n,
        )
    }
}

fn start(name: &str, queue: &str) -> (Ports, EngineProc, std::path::PathBuf) {
    let p = Ports::new();
    let dir = workdir(name);
    let e = EngineProc::start(&dir, &test_config(queue), p.sip(), p.http());
    (p, e, dir)
}

/// Runs an agent-phone scenario (instance `n`) that handles `calls` calls.
fn agent_phone(
    p: &Ports,
    dir: &std::path::Path,
    n: u16,
    scenario: &str,
    calls: u32,
    extra: &[&str],
) -> Sipp {
    let (port, mp, cp) = p.sipp(n);
    let mut a = args(&["-sf"]);
    a.push(scenarios().join(scenario).display().to_string());
    a.extend(args(&[
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-mp",
        &mp.to_string(),
        "-cp",
        &cp.to_string(),
    ]));
    a.extend(args(&["-m", &calls.to_string(), "-timeout", "60s"]));
    a.extend(args(extra));
    let s = sipp(dir, &format!("agent{n}"), &a);
    std::thread::sleep(Duration::from_millis(200)); // let it bind before it is registered
    s
}

/// Registers `ids` (with `password`) so that their Contact is the phone on instance `phone`.
fn register(
    p: &Ports,
    e: &EngineProc,
    dir: &std::path::Path,
    n: u16,
    (ids, password): (&[&str], &str),
    phone: u16,
    scenario: &str,
) -> Sipp {
    let (port, mp, cp) = p.sipp(n);
    let csv = agents_csv(dir, ids, password);
    let mut a = base_args(e.sip_port, port, mp, cp);
    a.extend(args(&[
        "-sf",
        &scenarios().join(scenario).display().to_string(),
    ]));
    a.extend(args(&[
        "-inf",
        &csv.display().to_string(),
        "-key",
        "agent_port",
        &p.sipp(phone).0.to_string(),
    ]));
    a.extend(args(&["-m", &ids.len().to_string(), "-timeout", "20s"]));
    sipp(dir, &format!("reg{n}"), &a)
}

fn caller(
    p: &Ports,
    e: &EngineProc,
    dir: &std::path::Path,
    n: u16,
    scenario: &str,
    calls: u32,
    extra: &[&str],
) -> Sipp {
    let (port, mp, cp) = p.sipp(n);
    let mut a = base_args(e.sip_port, port, mp, cp);
    a.extend(args(&[
        "-sf",
        &scenarios().join(scenario).display().to_string(),
        "-s",
        "120",
    ]));
    a.extend(args(&["-m", &calls.to_string(), "-timeout", "90s"]));
    a.extend(args(extra));
    sipp(dir, &format!("caller{n}"), &a)
}

const ANSWERED: &str = "dasan_calls_total{outcome=\"answered\",queue=\"general\"}";
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn registration_with_digest_auth() {
    let (p, e, dir) = start("register", "");
    let _phone = agent_phone(&p, &dir, 0, "agent.xml", 1, &[]);
    assert_eq!(e.agent_state("1001"), "logged-out");
    register(&p, &e, &dir, 1, (&["1001"], "test-pw"), 0, "register.xml").expect_success(LIMIT);
    assert_eq!(e.agent_state("1001"), "ready");
    // A wrong password and an unknown user get the same 403.
    register(
        &p,
        &e,
        &dir,
        2,
        (&["1002"], "wrong"),
        0,
        "register-refused.xml",
    )
    .expect_success(LIMIT);
    register(
        &p,
        &e,
        &dir,
        3,
        (&["9999"], "test-pw"),
        0,
        "register-refused.xml",
    )
    .expect_success(LIMIT);
    assert_eq!(e.agent_state("1002"), "logged-out");
    register(&p, &e, &dir, 4, (&["1001"], "test-pw"), 0, "unregister.xml").expect_success(LIMIT);
    assert_eq!(e.agent_state("1001"), "logged-out");
}

/// A video phone's offer (H.264 and VP8 before the audio) to a queue the engine serves as
/// voice: answered with audio, the video stream refused with port 0 in its place (SIPp
/// checks the answer's m-lines), and the call reaches the agent (issue 18's first step).
#[test]
fn a_video_offer_to_a_voice_queue_becomes_an_audio_call() {
    let (p, e, dir) = start("video-offer", "");
    let phone = agent_phone(&p, &dir, 0, "agent.xml", 1, &[]);
    register(&p, &e, &dir, 1, (&["1001"], "test-pw"), 0, "register.xml").expect_success(LIMIT);
    caller(&p, &e, &dir, 2, "caller-video.xml", 1, &["-d", "300"]).expect_success(LIMIT);
    phone.expect_success(LIMIT);
    assert_eq!(e.metric(ANSWERED), 1.0);
}

#[test]
fn caller_to_120_is_answered_by_an_agent() {
    let (p, e, dir) = start("answered", "");
    let phone = agent_phone(&p, &dir, 0, "agent.xml", 3, &[]);
    register(&p, &e, &dir, 1, (&["1001"], "test-pw"), 0, "register.xml").expect_success(LIMIT);
    caller(&p, &e, &dir, 2, "caller.xml", 3, &["-d", "300", "-r", "2"]).expect_success(LIMIT);
    phone.expect_success(LIMIT);
    assert_eq!(e.metric(ANSWERED), 3.0);
    assert_eq!(e.agent_state("1001"), "ready", "wrap-up 0: ready again");
    assert!(e.metric("dasan_post_dial_delay_seconds_count") >= 3.0);
    // The metrics after this run: names and a few values, and promtool finds nothing.
    for (sample, want) in [
        (
            "dasan_call_wait_seconds_count{outcome=\"answered\",queue=\"general\"}",
            3.0,
        ),
        ("dasan_call_talk_seconds_count{queue=\"general\"}", 3.0),
        (
            "dasan_sip_responses_sent_total{code=\"200\",method=\"BYE\"}",
            3.0,
        ),
        ("dasan_agents{queue=\"general\",state=\"ready\"}", 1.0),
        ("dasan_agents{queue=\"general\",state=\"logged-out\"}", 3.0),
        ("dasan_queue_service_level_ratio{queue=\"general\"}", 1.0),
        ("dasan_queue_abandon_ratio{queue=\"general\"}", 0.0),
        ("dasan_queue_calls{queue=\"general\"}", 0.0),
        ("dasan_calls_active", 0.0),
        ("dasan_record_backlog", 0.0),
    ] {
        assert_eq!(e.metric(sample), want, "{sample}");
    }
    assert!(e.metric("dasan_sip_responses_sent_total{code=\"200\",method=\"INVITE\"}") >= 3.0);
    assert!(
        e.metric("dasan_record_events_written_total") >= 12.0,
        "4 changes per call"
    );
    assert!(e.metric("process_resident_memory_bytes") > 1e6);
    assert!(e.metric("process_open_fds") > 3.0);
    let (_, text) = e.http_get("/metrics").unwrap();
    // Every series the shipped Grafana dashboard queries exists.
    let dash = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/dasan.json"),
    )
    .unwrap();
    let dash: serde_json::Value = serde_json::from_str(&dash).expect("dashboard is JSON");
    let mut names = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("dasan_") || word.starts_with("process_") {
                    names.push(word.to_string());
                }
            }
        }
    }
    assert!(names.len() >= 20);
    for n in names {
        assert!(
            text.contains(&n),
            "the dashboard queries {n}, which /metrics lacks"
        );
    }
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn caller_cancels_while_queued() {
    let (p, e, dir) = start("cancel", "");
    caller(&p, &e, &dir, 0, "caller-cancel.xml", 1, &[]).expect_success(LIMIT);
    assert_eq!(
        e.metric("dasan_calls_total{outcome=\"abandoned\",queue=\"general\"}"),
        1.0
    );
    assert_eq!(e.metric("dasan_queue_calls{queue=\"general\"}"), 0.0);
}

/// Agent 1001 on a phone running `first` registers before 1002 on a plain answering
/// phone, so 1001 is the longest idle and is offered the call first.
fn two_agents(p: &Ports, e: &EngineProc, dir: &std::path::Path, first: &str) -> (Sipp, Sipp) {
    let first = agent_phone(p, dir, 0, first, 1, &[]);
    let good = agent_phone(p, dir, 1, "agent.xml", 1, &[]);
    register(p, e, dir, 2, (&["1001"], "test-pw"), 0, "register.xml").expect_success(LIMIT);
    std::thread::sleep(Duration::from_millis(20));
    register(p, e, dir, 3, (&["1002"], "test-pw"), 1, "register.xml").expect_success(LIMIT);
    (first, good)
}

#[test]
fn busy_agent_then_next_agent() {
    let (p, e, dir) = start("busy", "busy_delay_s = 30");
    let (busy, good) = two_agents(&p, &e, &dir, "agent-busy.xml");
    caller(&p, &e, &dir, 4, "caller.xml", 1, &["-d", "300"]).expect_success(LIMIT);
    busy.expect_success(LIMIT);
    good.expect_success(LIMIT);
    assert_eq!(e.agent_state("1001"), "busy-delay");
    assert_eq!(e.metric(ANSWERED), 1.0);
}

#[test]
fn ring_no_answer_cancels_and_moves_on() {
    let (p, e, dir) = start("rona", "ring_timeout_s = 2");
    let (silent, good) = two_agents(&p, &e, &dir, "agent-noanswer.xml");
    let c = caller(&p, &e, &dir, 4, "caller.xml", 1, &["-d", "300"]);
    silent.expect_success(LIMIT);
    assert_eq!(
        e.agent_state("1001"),
        "not-ready",
        "RONA makes the agent not-ready"
    );
    c.expect_success(LIMIT);
    good.expect_success(LIMIT);
    assert_eq!(e.metric(ANSWERED), 1.0);
}

#[test]
fn agent_hangs_up_first() {
    let (p, e, dir) = start("agentbye", "");
    let phone = agent_phone(&p, &dir, 0, "agent-hangup.xml", 2, &["-d", "300"]);
    register(&p, &e, &dir, 1, (&["1001"], "test-pw"), 0, "register.xml").expect_success(LIMIT);
    caller(&p, &e, &dir, 2, "caller-hungup.xml", 2, &["-r", "1"]).expect_success(LIMIT);
    phone.expect_success(LIMIT);
    assert_eq!(e.metric(ANSWERED), 2.0);
}

#[test]
fn caller_over_tcp() {
    let (p, e, dir) = start("tcp", "");
    let phone = agent_phone(&p, &dir, 0, "agent.xml", 2, &[]);
    register(&p, &e, &dir, 1, (&["1001"], "test-pw"), 0, "register.xml").expect_success(LIMIT);
    caller(
        &p,
        &e,
        &dir,
        2,
        "caller.xml",
        2,
        &["-t", "t1", "-d", "300", "-r", "2"],
    )
    .expect_success(LIMIT);
    phone.expect_success(LIMIT);
    assert_eq!(e.metric(ANSWERED), 2.0);
}

#[test]
fn ten_percent_signalling_loss_loses_no_call() {
    let (p, e, dir) = start("loss", "");
    let calls = 40;
    let phone = agent_phone(&p, &dir, 0, "agent.xml", calls, &["-lost", "10"]);
    register(
        &p,
        &e,
        &dir,
        1,
        (&["1001", "1002", "1003", "1004"], "test-pw"),
        0,
        "register.xml",
    )
    .expect_success(LIMIT);
    caller(
        &p,
        &e,
        &dir,
        2,
        "caller.xml",
        calls,
        &["-lost", "10", "-d", "200", "-r", "10", "-l", "4"],
    )
    .expect_success(Duration::from_secs(240));
    phone.expect_success(Duration::from_secs(240));
    assert_eq!(e.metric(ANSWERED), calls as f64);
    assert!(
        e.metric("dasan_sip_retransmissions_total") > 0.0,
        "loss must have caused retransmissions"
    );
}

#[test]
fn sigterm_drains_calls_in_progress_then_exits() {
    let (p, mut e, dir) = start("drain", "");
    let phone = agent_phone(&p, &dir, 0, "agent.xml", 1, &[]);
    register(&p, &e, &dir, 1, (&["1001"], "test-pw"), 0, "register.xml").expect_success(LIMIT);
    let talking = caller(&p, &e, &dir, 2, "caller.xml", 1, &["-d", "3000"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while e.agent_state("1001") != "on-call" {
        assert!(
            std::time::Instant::now() < deadline,
            "call was not answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = e.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(200));
    // Draining: a new call is refused, the call in progress goes on.
    caller(&p, &e, &dir, 3, "caller-refused.xml", 1, &[]).expect_success(LIMIT);
    talking.expect_success(LIMIT);
    phone.expect_success(LIMIT);
    // With no call left the engine exits by itself, cleanly.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = e.child.try_wait().unwrap() {
            assert!(
                status.success(),
                "engine exit status {status}:\n{}",
                e.log()
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "engine did not exit after draining:\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The records promise: `kill -9` the engine under load, restart it on the same data
/// directory, and every call SIPp saw complete has its record, answered; calls cut off
/// by the kill are `interrupted`, none is left in progress.
#[test]
fn kill_minus_9_loses_no_record_of_a_completed_call() {
    let (p, mut e, dir) = start("kill9", "");
    let _phone = agent_phone(&p, &dir, 0, "agent.xml", 400, &[]);
    register(
        &p,
        &e,
        &dir,
        1,
        (&["1001", "1002", "1003", "1004"], "test-pw"),
        0,
        "register.xml",
    )
    .expect_success(LIMIT);
    let (port, mp, cp) = p.sipp(2);
    let mut a = base_args(e.sip_port, port, mp, cp);
    a.push("-sf".into());
    a.push(scenarios().join("caller.xml").display().to_string());
    a.extend(args(&[
        "-s",
        "120",
        "-m",
        "400",
        "-r",
        "6",
        "-d",
        "500",
        "-trace_logs",
    ]));
    let mut callers = sipp(&dir, "caller2", &a);
    std::thread::sleep(Duration::from_secs(6));
    let _ = e.child.kill(); // SIGKILL
    let _ = e.child.wait();
    // SIPp quits on SIGINT (flushing its logs); calls cut off count as failed.
    std::thread::sleep(Duration::from_secs(1));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &callers.child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while callers.child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "SIPp did not quit");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .find(|p| p.to_string_lossy().ends_with("_logs.log"))
        .expect("SIPp's -trace_logs file");
    let completed: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("completed ").map(str::to_string))
        .collect();
    assert!(
        completed.len() >= 15,
        "only {} calls completed before the kill",
        completed.len()
    );

    let config = std::fs::read_to_string(dir.join("dasan.toml")).unwrap();
    let e2 = EngineProc::start(&dir, &config, p.sip(), p.base + 38);
    let (code, body) = e2.http_get("/api/records?limit=1000").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let records = v["records"].as_array().unwrap();
    let outcome_of = |sip_id: &str| {
        records
            .iter()
            .find(|r| r["sip_call_id"] == sip_id)
            .map(|r| r["outcome"].as_str().unwrap_or("in progress").to_string())
    };
    for id in &completed {
        assert_eq!(
            outcome_of(id).as_deref(),
            Some("answered"),
            "call {id} completed at the caller"
        );
    }
    assert!(
        records.iter().all(|r| r["outcome"].is_string()),
        "no record left in progress after the restart"
    );
    let interrupted = records
        .iter()
        .filter(|r| r["outcome"] == "interrupted")
        .count();
    assert!(
        interrupted >= 1,
        "calls in flight at the kill are interrupted"
    );
    // Supervisors see caller numbers; requests without a token see nothing.
    assert_eq!(records[0]["caller"], "0212345678");
    assert_eq!(
        http_get_as(e2.http_port, "/api/records", None).unwrap().0,
        401
    );
    assert_eq!(
        http_get_as(e2.http_port, "/api/records?limit=0", Some(API_TOKEN))
            .unwrap()
            .0,
        400
    );
}

/// Skill routing through the real engine: with an English-only agent idle the longest and
/// a Korean agent ready, every call to the Korean queue reaches the Korean agent.
#[test]
fn a_korean_caller_never_reaches_an_english_only_agent() {
    let p = Ports::new();
    let dir = workdir("skills");
    let config = test_config("").replace(
        "[[agents]]",
        "[[agents]]\nids = \"1005\"\npassword = \"test-pw\"\nskills = [\"en\"]\n\n[[agents]]",
    );
    let e = EngineProc::start(&dir, &config, p.sip(), p.http());
    // The en-only agent registers first (it would be the longest idle), then the ko one.
    let en_phone = agent_phone(&p, &dir, 0, "agent.xml", 1, &["-timeout", "15s"]);
    let ko_phone = agent_phone(&p, &dir, 1, "agent.xml", 3, &[]);
    register(&p, &e, &dir, 2, (&["1005"], "test-pw"), 0, "register.xml").expect_success(LIMIT);
    std::thread::sleep(Duration::from_millis(50));
    register(&p, &e, &dir, 3, (&["1001"], "test-pw"), 1, "register.xml").expect_success(LIMIT);
    caller(&p, &e, &dir, 4, "caller.xml", 3, &["-d", "200", "-r", "2"]).expect_success(LIMIT);
    ko_phone.expect_success(LIMIT);
    assert_eq!(e.metric(ANSWERED), 3.0);
    let (_, body) = e.http_get("/api/agents/1005").unwrap();
    assert!(body.contains("\"calls_taken\":0"), "{body}");
    drop(en_phone);
}

/// The post-call survey with SIPp on both sides: the agent hangs up first, the caller
/// presses 4 during the prompt, and the score reaches the stored record.
#[test]
fn survey_score_reaches_the_record() {
    let (p, e, dir) = start("survey", "survey = \"survey-ko\"");
    let phone = agent_phone(&p, &dir, 0, "agent-hangup.xml", 1, &["-d", "1000"]);
    register(&p, &e, &dir, 1, (&["1001"], "test-pw"), 0, "register.xml").expect_success(LIMIT);
    copy_sipp_pcaps(&dir);
    caller(&p, &e, &dir, 2, "caller-survey.xml", 1, &[]).expect_success(LIMIT);
    phone.expect_success(LIMIT);
    assert_eq!(e.metric(ANSWERED), 1.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = e.http_get("/api/records").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let r = &v["records"][0];
        if r["survey_score"] == 4 {
            assert_eq!(r["outcome"], "answered");
            assert_eq!(r["hangup_side"], "agent");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no survey score: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A routing step through the real engine: only proficiency 4+ for the first 3 s, then
/// anyone; the only agent has proficiency 2, so it is offered the call at 3 s, not before.
#[test]
fn a_widening_step_reaches_a_lower_proficiency_agent_at_its_time() {
    let p = Ports::new();
    let dir = workdir("steps");
    let config = test_config(
        "step = [{ after_s = 0, min_proficiency = 4 }, { after_s = 3, min_proficiency = 1 }]",
    )
    .replace("skills = [\"ko\"]", "skills = [\"ko:2\"]");
    let e = EngineProc::start(&dir, &config, p.sip(), p.http());
    let phone = agent_phone(&p, &dir, 0, "agent.xml", 1, &[]);
    register(&p, &e, &dir, 1, (&["1001"], "test-pw"), 0, "register.xml").expect_success(LIMIT);
    caller(&p, &e, &dir, 2, "caller.xml", 1, &["-d", "200"]).expect_success(LIMIT);
    phone.expect_success(LIMIT);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = e.http_get("/api/records").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let r = &v["records"][0];
        if r["outcome"] == "answered" {
            let waited = r["offered_ms"].as_i64().unwrap() - r["arrived_ms"].as_i64().unwrap();
            assert!(
                (3_000..4_500).contains(&waited),
                "offered after {waited} ms, the step is at 3 s"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Feature codes from a real client: SIPp answers the 407 with the agent's credentials.
#[test]
fn feature_codes_from_the_agents_phone() {
    let (p, e, dir) = start("features", "");
    let _phone = agent_phone(&p, &dir, 0, "agent.xml", 1, &["-timeout", "20s"]);
    register(&p, &e, &dir, 1, (&["1001"], "test-pw"), 0, "register.xml").expect_success(LIMIT);
    assert_eq!(e.agent_state("1001"), "ready");
    let csv = agents_csv(&dir, &["1001"], "test-pw");
    for (n, (code, state)) in [
        ("*21", "not-ready"),
        ("*21", "ready"),
        ("*22", "logged-out"),
    ]
    .into_iter()
    .enumerate()
    {
        let (port, mp, cp) = p.sipp(2 + n as u16);
        let mut a = base_args(e.sip_port, port, mp, cp);
        a.extend(args(&[
            "-sf",
            &scenarios().join("feature-code.xml").display().to_string(),
            "-s",
            code,
            "-inf",
            &csv.display().to_string(),
            "-m",
            "1",
            "-timeout",
            "20s",
        ]));
        sipp(&dir, &format!("fc{n}"), &a).expect_success(LIMIT);
        assert_eq!(e.agent_state("1001"), state, "after {code}");
    }
}

/// Callback end to end: a SIPp caller presses * while no agent is free and gets 480; when
/// the agent becomes ready, the engine reserves it, dials the caller's number through the
/// outbound trunk (a SIPp phone that answers and hangs up), and bridges them; both the
/// original call and the callback attempt are recorded.
#[test]
fn callback_flow_against_a_sipp_called_back_phone() {
    let p = Ports::new();
    let dir = workdir("callback");
    let (callee_port, cmp, ccp) = p.sipp(4);
    let config = test_config("callback_digit = \"*\"").replace(
        "[[agents]]",
        &format!("[outbound]\ntrunk = \"127.0.0.1:{callee_port}\"\n\n[[agents]]"),
    );
    let e = EngineProc::start(&dir, &config, p.sip(), p.http());
    let phone = agent_phone(&p, &dir, 0, "agent.xml", 1, &[]);
    register(&p, &e, &dir, 1, (&["1001"], "test-pw"), 0, "register.xml").expect_success(LIMIT);
    let (code, _) = http_send(
        e.http_port,
        "POST",
        "/api/agents/1001/state",
        Some(API_TOKEN),
        r#"{"state":"not-ready","reason":"break"}"#,
    );
    assert_eq!(code, 200);
    copy_sipp_pcaps(&dir);
    // The called-back phone behind the outbound trunk: answers, talks 1 s, hangs up.
    let mut a = args(&["-sf"]);
    a.push(scenarios().join("agent-hangup.xml").display().to_string());
    a.extend(args(&[
        "-i",
        "127.0.0.1",
        "-p",
        &callee_port.to_string(),
        "-mp",
        &cmp.to_string(),
        "-cp",
        &ccp.to_string(),
        "-m",
        "1",
        "-d",
        "1000",
        "-timeout",
        "60s",
    ]));
    let callee = sipp(&dir, "callee", &a);
    caller(&p, &e, &dir, 2, "caller-callback.xml", 1, &[]).expect_success(LIMIT);
    let (code, _) = http_send(
        e.http_port,
        "POST",
        "/api/agents/1001/state",
        Some(API_TOKEN),
        r#"{"state":"ready"}"#,
    );
    assert_eq!(code, 200);
    callee.expect_success(LIMIT);
    phone.expect_success(LIMIT);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = e.http_get("/api/records").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let recs = v["records"].as_array().unwrap();
        let done = recs.len() == 2
            && recs
                .iter()
                .any(|r| r["outcome"] == "callback" && r["channel"] == "voice")
            && recs.iter().any(|r| {
                r["channel"] == "callback" && r["outcome"] == "answered" && r["agent"] == "1001"
            });
        if done {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
