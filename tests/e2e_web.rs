//! Browser agents end to end: headless Debian Chromium driven by playwright-core
//! (`web/test/browser.mjs`) against the real engine, with SIPp as the trunk caller.
//! Needs `scripts/web-build.sh` (the front end and playwright-core) and Debian `chromium`;
//! `scripts/test.sh` provides both.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `node web/test/browser.mjs …`: its JSON lines as they come.
struct Browser {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
    log: std::path::PathBuf,
}

impl Browser {
    fn start(dir: &std::path::Path, name: &str, args: &[&str]) -> Browser {
        Browser::start_env(dir, name, args, &[])
    }

    /// As [`Browser::start`], with environment variables for browser.mjs (SPKI).
    fn start_env(
        dir: &std::path::Path,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Browser {
        let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let log = dir.join(format!("{name}.browser.log"));
        let mut child = Command::new("node")
            .arg(web.join("test/browser.mjs"))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&web)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join(format!("{name}.browser.err"))).expect("log"))
            .spawn()
            .expect("run node (scripts/web-build.sh installs it)");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&log2).ok();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Browser { child, lines, log }
    }

    /// The first line with `key`, or a panic with what the browser said.
    fn wait_for(&self, key: &str, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v.get(key).is_some() => return v,
                Ok(v) if v.get("error").is_some() => panic!(
                    "browser failed: {}\n{}",
                    v["error"],
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
                Ok(_) => {}
                Err(_) => panic!(
                    "browser never said {key}:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// G.711 µ-law of a sine, for SIPp's rtp_stream.
fn write_ulaw_tone(path: &std::path::Path, seconds: u32, freq: f64) {
    let data: Vec<u8> = (0..8000 * seconds)
        .map(|i| {
            let v =
                (f64::sin(2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0) * 8000.0) as i16;
            dasan::media::g711::linear_to_ulaw(v)
        })
        .collect();
    std::fs::write(path, data).expect("write tone");
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Goertzel power of `freq` in 8 kHz samples.
fn power(x: &[f64], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
    let (mut s1, mut s2) = (0.0, 0.0);
    for v in x {
        let s0 = v + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2
}

/// One SIPp trunk call to 120 with `scenario`, from the test's block (`base` + 2, media
/// on + 10, control + 30), bounded by `timeout`.
fn one_caller(dir: &std::path::Path, base: u16, scenario: &str, timeout: &str) -> Sipp {
    start_caller(
        dir,
        "caller",
        base,
        (base + 2, base + 10, base + 30),
        &[
            &scenarios().join(scenario).display().to_string(),
            "-s",
            "120",
            "-m",
            "1",
            "-timeout",
            timeout,
        ],
    )
}

fn url(e: &EngineProc) -> String {
    format!("http://127.0.0.1:{}", e.http_port)
}

#[test]
fn browser_agent_answers_a_sipp_call_with_audio_both_ways_and_writes_notes() {
    let base = port_block();
    let dir = workdir("web-call");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    let mic = dir.join("mic.wav");
    write_tone(&mic, 30, (660.0, 48000, 1));
    let caller_audio = dir.join("caller.ul");
    write_ulaw_tone(&caller_audio, 30, 440.0);
    let notes = "버스 노선 문의: 472번 배차 간격 안내";
    let browser = Browser::start(
        &dir,
        "agent",
        &[
            "agent-call",
            &url(&e),
            "1001",
            "test-pw",
            notes,
            &mic.display().to_string(),
        ],
    );
    browser.wait_for("ready", Duration::from_secs(60));
    assert_eq!(e.agent_state("1001"), "ready");
    let mp = base + 10;
    let capture = Capture::start(&dir, "to-caller", &format!("udp dst port {mp}"));
    let caller = one_caller(&dir, base, "caller-stream.xml", "60s");
    let offer = browser.wait_for("offer", Duration::from_secs(30));
    assert_eq!(offer["offer"]["queue"], "general");
    assert_eq!(offer["offer"]["language"], "ko");
    let shown = offer["offer"]["caller"].as_str().unwrap_or("");
    assert!(
        shown.contains('*') && !shown.contains("98765"),
        "the agent sees the number masked: {shown}"
    );
    let done = browser.wait_for("done", Duration::from_secs(60));
    caller.expect_success(Duration::from_secs(30));
    let packets = capture.stop();
    // The browser heard the caller's tone.
    let heard = done["rms"].as_f64().unwrap_or(0.0);
    assert!(heard > 0.01, "browser heard silence: {done}");
    // SIPp received the browser's microphone: 660 Hz (transcoded Opus → PCMU), told apart
    // from the ringback it heard before the answer (440 + 480 Hz) by frequency.
    let mut pcm = Vec::new();
    for p in packets.iter().filter(|p| p.len() > 12 && p[1] & 0x7f == 0) {
        pcm.extend(
            p[12..]
                .iter()
                .map(|b| dasan::media::g711::ulaw_to_linear(*b) as f64),
        );
    }
    assert!(
        packets.len() >= 100,
        "only {} packets to the caller",
        packets.len()
    );
    let tone_frames = pcm
        .chunks_exact(160)
        .filter(|f| power(f, 660.0) > 4.0 * power(f, 440.0).max(power(f, 480.0)) && rms(f) > 300.0)
        .count();
    let caller_rms = rms(&pcm);
    assert!(
        tone_frames >= 50,
        "the caller heard the browser's 660 Hz in only {tone_frames} frames of 20 ms"
    );
    // The record: answered by 1001, with the form's notes.
    assert_eq!(done["saved"].as_str().map(|s| !s.is_empty()), Some(true));
    let record = done["record"].as_str().expect("record id").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (code, body) = http_get_as(
            e.http_port,
            &format!("/api/records/{record}"),
            Some(API_TOKEN),
        )
        .expect("records API");
        if code == 200 && body.contains("\"notes\"") && body.contains("\"outcome\":\"answered\"") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "record not complete: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["agent"], "1001");
    assert_eq!(v["notes"], notes);
    assert_eq!(v["category"], "교통");
    assert_eq!(v["hangup_side"], "agent", "{v}");
    eprintln!(
        "browser heard RMS {heard:.3}; caller heard RMS {caller_rms:.0} over {} packets, 660 Hz in {tone_frames} frames; answer→audio {} ms",
        packets.len(),
        done["answerToAudioMs"]
    );
}

#[test]
fn wrong_password_is_refused_with_a_clear_message() {
    let base = port_block();
    let dir = workdir("web-bad-login");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    let browser = Browser::start(
        &dir,
        "bad",
        &["bad-login", &url(&e), "1001", "not-the-password"],
    );
    let v = browser.wait_for("alert", Duration::from_secs(60));
    let alert = v["alert"].as_str().unwrap_or("");
    assert!(
        alert.contains("비밀번호") || alert.contains("password"),
        "{alert}"
    );
    assert_eq!(v["deskHidden"], true);
    assert_eq!(e.agent_state("1001"), "logged-out");
}

#[test]
fn wallboard_shows_a_waiting_call_within_a_second() {
    let base = port_block();
    let dir = workdir("web-wallboard");
    let e = EngineProc::start(&dir, &test_config("max_wait_s = 30"), base, base + 1);
    let browser = Browser::start(&dir, "wallboard", &["wallboard", &url(&e), API_TOKEN]);
    browser.wait_for("connected", Duration::from_secs(60));
    // No agent is logged in: the call waits.
    let _caller = one_caller(&dir, base, "caller-hungup.xml", "40s");
    let seen = browser.wait_for("waiting_seen_ms", Duration::from_secs(30));
    let seen_ms = seen["waiting_seen_ms"].as_i64().expect("time");
    // When the engine saw the call arrive, from its record.
    let deadline = Instant::now() + Duration::from_secs(5);
    let arrived = loop {
        let (_, body) =
            http_get_as(e.http_port, "/api/records?limit=5", Some(API_TOKEN)).expect("records");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(ms) = v["records"][0]["arrived_ms"].as_i64() {
            break ms;
        }
        assert!(Instant::now() < deadline, "no record: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let lag = seen_ms - arrived;
    assert!(
        (0..1000).contains(&lag),
        "the wallboard showed the call {lag} ms after it arrived"
    );
    assert!(seen["calls"].as_i64().unwrap_or(0) >= 1);
    eprintln!("wallboard showed the waiting call {lag} ms after arrival");
}

fn start_caller(
    dir: &std::path::Path,
    name: &str,
    sip: u16,
    (port, mp, cp): (u16, u16, u16),
    extra: &[&str],
) -> Sipp {
    let mut a = base_args(sip, port, mp, cp);
    a.extend(args(&["-sf"]));
    a.extend(args(extra));
    sipp(dir, name, &a)
}

#[test]
fn two_browser_agents_and_a_baresip_agent_share_a_queue_without_a_double_offer() {
    let base = port_block();
    let dir = workdir("web-mixed");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    let b1 = Browser::start(
        &dir,
        "b1",
        &["agent-idle", &url(&e), "1001", "test-pw", "25"],
    );
    let b2 = Browser::start(
        &dir,
        "b2",
        &["agent-idle", &url(&e), "1002", "test-pw", "25"],
    );
    b1.wait_for("ready", Duration::from_secs(60));
    b2.wait_for("ready", Duration::from_secs(60));
    let phone = Baresip::start(
        &dir,
        "desk",
        base + 3,
        (base + 20, base + 29),
        (440.0, 8000, 1),
        &format!("<sip:1003@127.0.0.1:{base}>;auth_pass=test-pw;answermode=auto;regint=60;audio_codecs=pcmu"),
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while e.agent_state("1003") != "ready" {
        assert!(
            Instant::now() < deadline,
            "baresip never registered:\n{}",
            phone.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nine calls, two a second, each caller hanging up after 3 s.
    copy_sipp_pcaps(&dir);
    start_caller(
        &dir,
        "callers",
        base,
        (base + 5, base + 14, base + 31),
        &[
            &scenarios().join("caller.xml").display().to_string(),
            "-s",
            "120",
            "-m",
            "9",
            "-r",
            "2",
            "-d",
            "3000",
            "-timeout",
            "60s",
        ],
    )
    .wait(Duration::from_secs(70));
    let d1 = b1.wait_for("done", Duration::from_secs(60));
    let d2 = b2.wait_for("done", Duration::from_secs(60));
    let (_, body) =
        http_get_as(e.http_port, "/api/records?limit=50", Some(API_TOKEN)).expect("records");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let records = v["records"].as_array().expect("records").clone();
    assert_eq!(records.len(), 9, "{body}");
    let mut by_agent = std::collections::BTreeMap::<String, usize>::new();
    for r in &records {
        let offered: Vec<&str> = r["agents"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        // Offered once, to one agent, who took it: no call rang two phones.
        assert_eq!(offered.len(), 1, "{r}");
        assert_eq!(r["agent"].as_str(), Some(offered[0]), "{r}");
        *by_agent.entry(offered[0].to_string()).or_default() += 1;
    }
    assert_eq!(
        by_agent.keys().cloned().collect::<Vec<_>>(),
        vec!["1001", "1002", "1003"],
        "every agent took calls: {by_agent:?}"
    );
    assert_eq!(
        d1["offers"].as_u64(),
        by_agent.get("1001").map(|n| *n as u64)
    );
    assert_eq!(
        d2["offers"].as_u64(),
        by_agent.get("1002").map(|n| *n as u64)
    );
    eprintln!("calls per agent: {by_agent:?}");
}

#[test]
fn a_second_login_of_the_same_agent_is_refused() {
    let base = port_block();
    let dir = workdir("web-second");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    let b = Browser::start(&dir, "two", &["second-login", &url(&e), "1001", "test-pw"]);
    let v = b.wait_for("second", Duration::from_secs(60));
    let text = v["second"].as_str().unwrap_or("");
    assert!(text.contains("already") || text.contains("이미"), "{text}");
    assert_eq!(v["secondDeskHidden"], true);
    assert_eq!(v["firstStillIn"], true);
}

#[test]
fn an_expired_login_ends_the_session_and_its_token() {
    let base = port_block();
    let dir = workdir("web-expire");
    let cfg = test_config("").replace("[[trunk]]", "[http]\nsession_ttl_s = 4\n\n[[trunk]]");
    let e = EngineProc::start(&dir, &cfg, base, base + 1);
    let b = Browser::start(&dir, "exp", &["expire", &url(&e), "1001", "test-pw"]);
    b.wait_for("ready", Duration::from_secs(60));
    let v = b.wait_for("expired", Duration::from_secs(30));
    let text = v["expired"].as_str().unwrap_or("");
    assert!(text.contains("expired") || text.contains("만료"), "{text}");
    assert_eq!(v["loginShown"], true);
    assert_eq!(v["apiStatus"], 401);
    let deadline = Instant::now() + Duration::from_secs(5);
    while e.agent_state("1001") != "logged-out" {
        assert!(
            Instant::now() < deadline,
            "agent still {}",
            e.agent_state("1001")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_browser_whose_audio_connection_dies_mid_call_does_not_leave_the_caller_in_silence() {
    let base = port_block();
    let dir = workdir("web-drop");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    let b = Browser::start(&dir, "drop", &["drop-call", &url(&e), "1001", "test-pw"]);
    b.wait_for("ready", Duration::from_secs(60));
    write_ulaw_tone(&dir.join("caller.ul"), 60, 440.0);
    // The caller streams audio and expects the engine's BYE.
    let caller = one_caller(&dir, base, "caller-stream.xml", "60s");
    let answered = b.wait_for("answered", Duration::from_secs(30));
    let record = answered["answered"].as_str().expect("record").to_string();
    let dropped = b.wait_for("dropped", Duration::from_secs(45));
    assert!(!dropped["dropped"].as_str().unwrap_or("").is_empty());
    caller.expect_success(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get_as(
            e.http_port,
            &format!("/api/records/{record}"),
            Some(API_TOKEN),
        )
        .expect("records API");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if v["outcome"] == "answered" && v["ended_ms"].is_i64() {
            assert_eq!(v["agent"], "1001");
            break;
        }
        assert!(Instant::now() < deadline, "record not ended: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(e.agent_state("1001"), "logged-out");
}

#[test]
fn without_webrtc_the_desktop_says_so_and_never_logs_in() {
    let base = port_block();
    let dir = workdir("web-no-webrtc");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    let b = Browser::start(&dir, "nortc", &["no-webrtc", &url(&e), "1001", "test-pw"]);
    let v = b.wait_for("noWebrtc", Duration::from_secs(60));
    for key in ["noWebrtc", "afterLogin"] {
        let text = v[key].as_str().unwrap_or("");
        assert!(text.contains("WebRTC"), "{key}: {text}");
    }
    assert_eq!(v["loginShown"], true, "the login form stays");
    assert_eq!(e.agent_state("1001"), "logged-out");
}

#[test]
fn without_a_microphone_the_desktop_says_so_and_the_agent_stays_out() {
    let base = port_block();
    let dir = workdir("web-no-mic");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    let b = Browser::start(&dir, "nomic", &["no-mic", &url(&e), "1001", "test-pw"]);
    let v = b.wait_for("noMic", Duration::from_secs(60));
    for key in ["noMic", "ready"] {
        let text = v[key].as_str().unwrap_or("").to_lowercase();
        assert!(
            text.contains("microphone") || text.contains("마이크"),
            "{key}: {text}"
        );
    }
    assert_eq!(
        e.agent_state("1001"),
        "logged-out",
        "no calls for a desk without audio"
    );
}

#[test]
fn a_supervisor_sets_an_agent_not_ready_from_the_wallboard() {
    let base = port_block();
    let dir = workdir("web-supervise");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    register_agent(
        &dir,
        base,
        "1002",
        base + 5,
        (base + 2, base + 10, base + 30),
    );
    assert_eq!(e.agent_state("1002"), "ready");
    let b = Browser::start(&dir, "sup", &["supervise", &url(&e), API_TOKEN, "1002"]);
    let v = b.wait_for("state", Duration::from_secs(60));
    assert!(
        v["state"].as_str().unwrap_or("").starts_with("not-ready"),
        "{v}"
    );
    assert_eq!(e.agent_state("1002"), "not-ready");
}

#[test]
fn a_browser_agent_transfers_the_caller_to_the_english_queue_by_keyboard() {
    let base = port_block();
    let dir = workdir("web-transfer");
    let cfg = test_config("").replace(
        "[media]",
        "[queue.en]\nskill = \"en\"\n\n[[agents]]\nids = \"1005\"\npassword = \"test-pw\"\nskills = [\"en\"]\n\n[media]",
    );
    let e = EngineProc::start(&dir, &cfg, base, base + 1);
    let b = Browser::start(
        &dir,
        "xfer",
        &["transfer", &url(&e), "1001", "test-pw", "en"],
    );
    b.wait_for("ready", Duration::from_secs(60));
    // The English agent: a SIPp phone that answers and hangs up after 2 s.
    let en_phone = answering_agent(
        &dir,
        base,
        "1005",
        (base + 6, base + 14, base + 31),
        (base + 7, base + 18, base + 32),
    );
    let caller = one_caller(&dir, base, "caller-hungup.xml", "60s");
    let v = b.wait_for("transferred", Duration::from_secs(30));
    let record = v["transferred"].as_str().expect("record").to_string();
    caller.expect_success(Duration::from_secs(40));
    en_phone.expect_success(Duration::from_secs(40));
    let (_, body) = http_get_as(
        e.http_port,
        &format!("/api/records/{record}"),
        Some(API_TOKEN),
    )
    .expect("records API");
    let r: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(r["queues"], serde_json::json!(["general", "en"]), "{body}");
    assert_eq!(r["agents"], serde_json::json!(["1001", "1005"]), "{body}");
    assert_eq!(r["agent"], "1005");
    assert_eq!(v["state"], "ready", "the transferring agent is free");
}

#[test]
fn the_keypad_sends_the_digit_to_the_caller_as_sip_info() {
    let base = port_block();
    let dir = workdir("web-keypad");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    let b = Browser::start(&dir, "keypad", &["keypad", &url(&e), "1001", "test-pw"]);
    b.wait_for("ready", Duration::from_secs(60));
    // The caller's scenario fails unless an INFO with Signal=5 arrives before the BYE.
    let caller = one_caller(&dir, base, "caller-keypad.xml", "60s");
    let v = b.wait_for("pressed", Duration::from_secs(40));
    assert_eq!(v["pressed"], "5");
    caller.expect_success(Duration::from_secs(30));
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: what Chromium's
/// `--ignore-certificate-errors-spki-list` takes.
fn spki_hash(cert: &std::path::Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            cert.display()
        ))
        .output()
        .expect("openssl");
    let h = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(h.len(), 44, "no SPKI hash for {}", cert.display());
    h
}

/// The desktop as an agent on another PC sees it (issue 16): HTTPS at a DNS name with the
/// engine's self-signed certificate accepted by its key, the WebSocket over wss:, and a
/// call answered with audio both ways.
#[test]
fn over_https_at_a_dns_name_the_desktop_answers_a_call_with_audio() {
    let base = port_block();
    let dir = workdir("web-https");
    let http = base + 1;
    let config = test_config("").replace(
        "[[trunk]]",
        &format!(
            "[http]\ntls = true\nallowed_origins = [\"https://dasan.test:{http}\"]\n\n[[trunk]]"
        ),
    );
    let e = EngineProc::start_https(&dir, &config, base, http);
    let spki = spki_hash(&dir.join("data/tls/http.crt"));
    let mic = dir.join("mic.wav");
    write_tone(&mic, 30, (660.0, 48000, 1));
    let caller_audio = dir.join("caller.ul");
    write_ulaw_tone(&caller_audio, 30, 440.0);
    let url = format!("https://dasan.test:{http}");
    let browser = Browser::start_env(
        &dir,
        "agent",
        &[
            "agent-call",
            &url,
            "1001",
            "test-pw",
            "https",
            &mic.display().to_string(),
        ],
        &[("SPKI", &spki)],
    );
    browser.wait_for("ready", Duration::from_secs(60));
    assert_eq!(e.agent_state("1001"), "ready");
    let caller = one_caller(&dir, base, "caller-stream.xml", "60s");
    browser.wait_for("offer", Duration::from_secs(30));
    let done = browser.wait_for("done", Duration::from_secs(60));
    caller.expect_success(Duration::from_secs(30));
    let heard = done["rms"].as_f64().unwrap_or(0.0);
    assert!(heard > 0.01, "browser heard silence over HTTPS: {done}");
    // Plain HTTP on the HTTPS port gets nothing served.
    let plain = http_get(http, "/agent");
    assert!(
        plain.is_none_or(|(code, _)| code != 200),
        "plain HTTP was served on the HTTPS port"
    );
}

/// The same desk over plain http:// at a DNS name is no secure context: the page says a
/// secure connection is needed and never logs in, rather than failing silently later.
#[test]
fn over_plain_http_at_a_dns_name_the_desktop_says_https_is_needed() {
    let base = port_block();
    let dir = workdir("web-insecure");
    let e = EngineProc::start(&dir, &test_config(""), base, base + 1);
    let url = format!("http://dasan.test:{}", base + 1);
    let b = Browser::start(&dir, "insecure", &["insecure", &url, "1001", "test-pw"]);
    let v = b.wait_for("insecure", Duration::from_secs(60));
    assert_eq!(v["secureContext"], false);
    for key in ["insecure", "afterLogin"] {
        let text = v[key].as_str().unwrap_or("");
        assert!(text.contains("https://"), "{key}: {text}");
    }
    assert_eq!(v["loginShown"], true, "the login form stays");
    assert_eq!(e.agent_state("1001"), "logged-out");
}

/// Agents configured with digest hashes instead of passwords (issue 16): a SIP phone
/// registers with the password the hash was made from and the browser login checks the
/// same hash; what the engine writes in its data directory is its user's alone.
#[test]
fn hashed_credentials_serve_phone_and_browser_and_the_data_directory_is_private() {
    let base = port_block();
    let dir = workdir("web-hashed");
    let h = |id: &str, pw: &str| dasan::config::ha1(false, id, "dasan", pw);
    let config = test_config("").replace(
        "[[agents]]",
        &format!(
            "[[agents]]\nids = \"1005\"\npassword_ha1_md5 = \"{}\"\nskills = [\"ko\"]\n\n\
             [[agents]]\nids = \"1006\"\npassword_ha1_md5 = \"{}\"\nskills = [\"ko\"]\n\n[[agents]]",
            h("1005", "pw-1005"),
            h("1006", "test-pw")
        ),
    );
    // What an older version left: an open data directory, a readable file and directory.
    {
        use std::os::unix::fs::PermissionsExt;
        let data = dir.join("data");
        std::fs::create_dir_all(data.join("recordings")).unwrap();
        std::fs::write(data.join("api-token"), "old").unwrap();
        for (p, m) in [
            (data.clone(), 0o755),
            (data.join("recordings"), 0o755),
            (data.join("api-token"), 0o644),
        ] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        }
    }
    let e = EngineProc::start(&dir, &config, base, base + 1);
    register_agent(
        &dir,
        base,
        "1006",
        base + 20,
        (base + 21, base + 22, base + 23),
    );
    assert_eq!(e.agent_state("1006"), "ready");
    let b = Browser::start(
        &dir,
        "hashed",
        &["agent-idle", &url(&e), "1005", "pw-1005", "3"],
    );
    b.wait_for("ready", Duration::from_secs(60));
    assert_eq!(e.agent_state("1005"), "ready");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&dir.join("data")), 0o700);
    assert_eq!(mode(&dir.join("data/records.db")), 0o600);
    assert_eq!(mode(&dir.join("data/kb.db")), 0o600);
    assert_eq!(mode(&dir.join("data/recordings")), 0o700);
    assert_eq!(mode(&dir.join("data/api-token")), 0o600);
}

/// A STUN server (RFC 5389 Binding) on loopback until `stop`: answers each Binding
/// request with the sender's address; `seen` counts them.
fn stun_server(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> u16 {
    use std::sync::atomic::Ordering;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind STUN");
    let port = sock.local_addr().expect("addr").port();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    std::thread::spawn(move || {
        // Bounded: the test stops it, or it ends by itself after a minute.
        let end = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 1500];
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            // Binding request with the magic cookie.
            if n < 20 || buf[0..2] != [0x00, 0x01] || buf[4..8] != [0x21, 0x12, 0xA4, 0x42] {
                continue;
            }
            seen.fetch_add(1, Ordering::Relaxed);
            let std::net::SocketAddr::V4(v4) = from else {
                continue;
            };
            let mut r = vec![0x01, 0x01, 0x00, 12];
            r.extend_from_slice(&buf[4..20]);
            let port = v4.port() ^ 0x2112;
            let ip = u32::from(*v4.ip()) ^ 0x2112_A442;
            r.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
            r.extend_from_slice(&port.to_be_bytes());
            r.extend_from_slice(&ip.to_be_bytes());
            let _ = sock.send_to(&r, from);
        }
    });
    port
}

/// `[webrtc] ice_servers` reach the browser's peer connection at login: Chromium lists
/// them in its configuration and asks the STUN server for its address; media connects.
#[test]
fn the_browser_gets_the_configured_ice_servers_and_uses_them() {
    let base = port_block();
    let dir = workdir("web-ice");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stun = stun_server(stop.clone(), seen.clone());
    let config = format!(
        "[webrtc]\nice_servers = [{{ urls = [\"stun:127.0.0.1:{stun}\"] }}, {{ urls = [\"turn:127.0.0.1:9\"], username = \"desk\", credential = \"turn-secret\" }}]\n"
    ) + &test_config("");
    let e = EngineProc::start(&dir, &config, base, base + 1);
    let browser = Browser::start(&dir, "ice", &["ice", &url(&e), "1001", "test-pw"]);
    let v = browser.wait_for("iceServers", Duration::from_secs(60));
    let urls: Vec<String> = v["iceServers"]
        .as_array()
        .map(|a| {
            a.iter()
                .flat_map(|s| s["urls"].as_array().cloned().unwrap_or_default())
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        urls,
        vec![format!("stun:127.0.0.1:{stun}"), "turn:127.0.0.1:9".into()],
        "{v}"
    );
    assert!(
        v["media"].as_str().is_some_and(|m| !m.is_empty()),
        "media state: {v}"
    );
    assert_eq!(e.agent_state("1001"), "ready", "media connected and ready");
    drop(browser);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let asked = seen.load(std::sync::atomic::Ordering::Relaxed);
    assert!(asked > 0, "the browser never asked the STUN server");
}

/// A browser agent with three text conversations at once (max_chats 3): four SMS senders
/// wrote before it logged in; it gets the three oldest, replies to each in its own tab
/// with the digits of that sender's first message, closes one, and is then offered the
/// fourth. Every sender receives its own reply (SIPp fails on anything else), and each
/// record holds its messages in order.
#[test]
fn a_browser_agent_holds_three_chats_and_closing_one_takes_the_fourth() {
    let base = port_block();
    let dir = workdir("web-chats");
    let e = EngineProc::start(
        &dir,
        &test_config("channels = [\"voice\", \"text\"]"),
        base,
        base + 1,
    );
    let csv = dir.join("senders.csv");
    std::fs::write(
        &csv,
        "SEQUENTIAL\n\
         01011112222;문의 101: 버스 시간표 🚌\n\
         01033334444;문의 202: 여권 발급\n\
         01055556666;Question 303: hospital\n\
         01077778888;문의 404: 주차\n",
    )
    .unwrap();
    // The senders write first, 300 ms apart (so the oldest three are the first three).
    let gateway = start_caller(
        &dir,
        "gateway",
        base,
        (base + 2, base + 10, base + 30),
        &[
            &scenarios()
                .join("sms-waiting-sender.xml")
                .display()
                .to_string(),
            "-inf",
            &csv.display().to_string(),
            "-s",
            "120",
            "-m",
            "4",
            "-r",
            "1",
            "-rp",
            "300",
            "-timeout",
            "100s",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while json(&e, "/api/queues")[0]["text"]["waiting"] != 4 {
        assert!(Instant::now() < deadline, "{}", json(&e, "/api/queues"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let b = Browser::start(&dir, "chats", &["chats", &url(&e), "1001", "test-pw"]);
    b.wait_for("opened", Duration::from_secs(60));
    let q = json(&e, "/api/queues");
    assert_eq!(q[0]["text"]["waiting"], 1, "{q}");
    assert_eq!(q[0]["text"]["open"], 3, "{q}");
    let agents = json(&e, "/api/agents");
    let me = &agents[0];
    assert_eq!(
        (me["chats"].as_u64(), me["max_chats"].as_u64()),
        (Some(3), Some(3))
    );
    let mut replied = Vec::new();
    for _ in 0..3 {
        replied.push(b.wait_for("replied", Duration::from_secs(30)));
    }
    b.wait_for("closed", Duration::from_secs(30));
    replied.push(b.wait_for("replied", Duration::from_secs(40)));
    let done = b.wait_for("done", Duration::from_secs(20));
    gateway.expect_success(Duration::from_secs(30));
    assert_eq!(
        replied
            .iter()
            .map(|r| r["digits"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>(),
        ["101", "202", "303", "404"]
    );
    assert_eq!(done["unread_seen"], true, "a tab not shown counted unread");

    // Each record: the sender's message, then the counsellor's reply with its own digits.
    let t = transcripts(&e);
    assert_eq!(t.len(), 4, "{t:?}");
    for (caller, agent, msgs) in &t {
        assert_eq!(agent, "1001");
        let first_in = msgs.iter().find(|m| m.0 == "in").expect("in");
        let digits: String = first_in
            .2
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(|c| c.is_ascii_digit())
            .collect();
        let reply_at = msgs
            .iter()
            .position(|m| m.0 == "out" && m.1 == "1001")
            .unwrap_or_else(|| panic!("{caller}: no reply in {msgs:?}"));
        assert_eq!(msgs[reply_at].2, format!("reply to {digits}"), "{caller}");
        let in_at = msgs.iter().position(|m| m.0 == "in").unwrap_or(usize::MAX);
        assert!(in_at < reply_at, "in order: {msgs:?}");
    }
    // The figures by channel: four first replies, one conversation handled and closed,
    // three open on the agent.
    assert_eq!(
        e.metric("dasan_first_response_seconds_count{channel=\"text\",queue=\"general\"}"),
        4.0
    );
    assert_eq!(
        e.metric("dasan_handle_seconds_count{channel=\"text\",queue=\"general\"}"),
        1.0
    );
    assert_eq!(e.metric("dasan_agent_open_chats{agent=\"1001\"}"), 3.0);
    assert_eq!(
        e.metric("dasan_text_messages_total{direction=\"out\",queue=\"general\"}"),
        8.0,
        "four waiting notices and four replies"
    );
    assert_eq!(
        e.metric("dasan_queue_waiting{channel=\"text\",queue=\"general\"}"),
        0.0
    );
    // The closed one is over; the others are still open.
    let list = json(&e, "/api/records?channel=text");
    let ended = list["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["outcome"].is_null())
        .count();
    assert_eq!(ended, 1, "{list}");
}

/// The wallboard's text table: an SMS waiting for a counsellor shows as one conversation
/// waiting in general, and every agent's chats column shows open/max.
#[test]
fn the_wallboard_shows_a_waiting_text_conversation() {
    let base = port_block();
    let dir = workdir("web-wallboard-text");
    let e = EngineProc::start(
        &dir,
        &test_config("channels = [\"voice\", \"text\"]"),
        base,
        base + 1,
    );
    let b = Browser::start(
        &dir,
        "wallboard-text",
        &["wallboard-text", &url(&e), API_TOKEN],
    );
    b.wait_for("connected", Duration::from_secs(60));
    let gw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    send_sms(&gw, base, "01011112222", 1, "아무도 없나요?");
    let v = b.wait_for("text_row", Duration::from_secs(30));
    let row: Vec<&str> = v["text_row"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert_eq!(row[0], "general");
    assert_eq!(row[1], "1", "one conversation waiting: {row:?}");
    assert_eq!(row[3], "0", "none with an agent: {row:?}");
    let chats = v["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 4, "{v}");
    assert!(chats.iter().all(|c| c == "0/3"), "{v}");
    // The page speaks the browser's language (headless Chromium: English).
    assert!(
        ["문자·채팅 대기열", "Text and chat queues"].contains(&v["heading"].as_str().unwrap_or("")),
        "{v}"
    );
}

/// The public chat page (/chat): a citizen writes twice by keyboard, a SIPp agent phone
/// replies, the reply shows on the page, and the citizen ends the chat.
#[test]
fn the_public_chat_page_gets_a_counsellors_reply() {
    let base = port_block();
    let dir = workdir("web-public-chat");
    let (sip, http) = (base, base + 1);
    let e = EngineProc::start(
        &dir,
        &test_config("channels = [\"voice\", \"text\"]"),
        sip,
        http,
    );
    let agent = sms_agent_phone(&dir, sip, base, 1, "60s");
    let b = Browser::start(&dir, "public-chat", &["public-chat", &url(&e)]);
    let v = b.wait_for("reply", Duration::from_secs(60));
    assert!(
        v["reply"]
            .as_str()
            .unwrap_or("")
            .starts_with("reply to web-"),
        "{v}"
    );
    assert!(v["shown"].as_i64().unwrap_or(0) >= 3, "{v}");
    b.wait_for("closed", Duration::from_secs(20));
    agent.expect_success(Duration::from_secs(30));
    let t = transcripts(&e);
    assert_eq!(t.len(), 1);
    let ins: Vec<&str> = t[0]
        .2
        .iter()
        .filter(|m| m.0 == "in")
        .map(|m| m.2.as_str())
        .collect();
    assert_eq!(
        ins,
        ["분실물 센터가 어디인가요?", "지하철에서 잃어버렸어요"]
    );
}

const VIDEO: &str = BARESIP_VIDEO;

/// Sign-language counselling (issue 18) at the browser desk: a baresip caller with a
/// generated picture (VP8) reaches a browser agent with Chromium's fake camera. The page
/// plays the caller's picture, the caller's phone decodes the agent's camera, and the audio
/// still flows both ways.
#[test]
fn a_browser_agent_and_a_video_caller_see_each_other() {
    browser_video_call("vp8", VIDEO, "", true);
}

/// The same in H.264 (baresip's avcodec, libx264 Constrained Baseline, packetization mode
/// 1) at a desk that puts H.264 first (`?video=h264`).
#[test]
fn the_same_in_h264_at_a_desk_that_prefers_it() {
    let h264 = VIDEO.replace("module vp8.so", "module avcodec.so")
        + "avcodec_h264enc libx264\navcodec_h264dec h264\n";
    browser_video_call("H264", &h264, "video=h264", true);
}

/// A PC without a camera logs in and takes a video call: the agent sees the caller, the
/// page says the caller does not see the agent, and they talk.
#[test]
fn a_desk_without_a_camera_sees_the_video_caller_and_talks() {
    browser_video_call("vp8", VIDEO, "", false);
}

fn browser_video_call(codec: &str, video: &str, query: &str, camera: bool) {
    let base = port_block();
    let dir = workdir(&format!("web-video-{codec}-{camera}"));
    let e = EngineProc::start(&dir, &video_config(), base, base + 1);
    let b = Browser::start(
        &dir,
        "agent",
        &[
            "video-call",
            &url(&e),
            "1005",
            "test-pw",
            query,
            if camera { "cam" } else { "nocam" },
        ],
    );
    b.wait_for("ready", Duration::from_secs(60));
    let caller = Baresip::start_with(
        &dir,
        "caller",
        base + 35,
        (base + 20, base + 29),
        (660.0, 8000, 1),
        &format!("<sip:0212345678@127.0.0.1>;regint=0;audio_codecs=pcmu;video_codecs={codec}"),
        &[
            "-e",
            &format!("/dial sip:120@127.0.0.1:{}", e.sip_port),
            "-t",
            "25",
        ],
        video,
    );
    let offer = b.wait_for("offer", Duration::from_secs(30));
    assert_eq!(offer["offer"]["video"], true, "the offer says video call");
    // The page plays the caller's picture.
    let v = b.wait_for("video", Duration::from_secs(40))["video"].clone();
    eprintln!("browser: {v}");
    assert!(v["width"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(v["frames"].as_u64().unwrap_or(0) > 10, "{v}");
    assert_eq!(v["shown"], true, "{v}");
    let label = v["label"].as_str().unwrap_or("");
    assert!(
        label == "Caller video" || label == "상담 고객 영상",
        "labelled: {v}"
    );
    assert!(
        v["rms"].as_f64().unwrap_or(0.0) > 0.01,
        "the browser hears the caller: {v}"
    );
    let from = |leg: &str| {
        e.metric(&format!(
            "dasan_video_packets_relayed_total{{from=\"{leg}\"}}"
        ))
    };
    const DECODED: &str = "video: receiving with resolution";
    if camera {
        assert_eq!(v["camera"], true, "the fake camera is sent: {v}");
        // The caller's phone decodes the browser's camera.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !caller.log().contains(DECODED) {
            assert!(
                Instant::now() < deadline,
                "the caller decoded no picture:\n{}",
                caller.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while from("agent") < 60.0 || from("caller") < 60.0 {
            assert!(
                Instant::now() < deadline,
                "video relayed: caller {} agent {}",
                from("caller"),
                from("agent")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    } else {
        assert_eq!(v["camera"], false, "{v}");
        assert!(
            v["alert"]
                .as_str()
                .is_some_and(|a| a.contains("camera") || a.contains("카메라")),
            "the page says why the caller does not see the agent: {v}"
        );
        std::thread::sleep(Duration::from_secs(2));
        assert!(from("caller") > 30.0, "{}", from("caller"));
        assert_eq!(from("agent"), 0.0, "no camera, no video from the agent");
    }
    // After a hold the browser asks for a keyframe; its PLI reaches the caller's leg
    // through the bridge and the engine's relay, and the picture comes back.
    let after = b.wait_for("afterHold", Duration::from_secs(30));
    eprintln!("after the hold: {after}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while e.metric("dasan_video_keyframe_requests_total{from=\"agent\"}") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no keyframe request from the browser after the hold"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let resolution = caller
        .log()
        .lines()
        .find(|l| l.contains(DECODED))
        .and_then(|l| l.split(DECODED).nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    eprintln!(
        "video relayed: caller {} agent {}; keyframe requests: caller {} agent {}; the caller decoded {resolution}",
        from("caller"),
        from("agent"),
        e.metric("dasan_video_keyframe_requests_total{from=\"caller\"}"),
        e.metric("dasan_video_keyframe_requests_total{from=\"agent\"}")
    );
    let calls = json(&e, "/api/calls");
    assert_eq!(calls[0]["queue"], "sign", "{calls}");
    assert_eq!(calls[0]["agent"], "1005", "{calls}");
    let caller_asked = e.metric("dasan_video_keyframe_requests_total{from=\"caller\"}");
    // The caller hangs up: the video area hides and the camera closes.
    let done = b.wait_for("done", Duration::from_secs(40));
    eprintln!("Chromium's keyframe requests: {}", done["plis"]);
    assert!(done["plis"]["sent"].as_u64().unwrap_or(0) >= 1, "{done}");
    if camera && caller_asked >= 1.0 {
        // The caller's phone asked for a keyframe too: Chromium's camera got it as a PLI.
        assert!(
            done["plis"]["received"].as_u64().unwrap_or(0) >= 1,
            "{done}"
        );
    }
    assert_eq!(done["videoHidden"], true, "{done}");
    assert_eq!(done["camera"], false, "{done}");
    let heard = caller.stop_and_heard_rms();
    assert!(
        heard > 0.001,
        "the caller heard the browser: RMS {heard:.4}"
    );
    let records = json(&e, "/api/records?limit=5");
    assert_eq!(records["records"][0]["channel"], "video", "{records}");
}

/// Local midnight of the day `days_ago` before today, in Seoul (the default clock), and
/// its name.
fn seoul_day(days_ago: i64) -> (i64, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let off = 9 * 3_600_000;
    let start = (now + off).div_euclid(86_400_000) * 86_400_000 - off - days_ago * 86_400_000;
    (start, dasan::http::reports::day_name(start, 9 * 3600))
}

#[test]
fn the_reports_page_draws_every_chart_of_a_generated_day() {
    let base = port_block();
    let dir = workdir("web-reports");
    // Yesterday's 2,200 calls, written to the store before the engine starts.
    let (day_ms, day) = seoul_day(1);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut s = dasan::records::sqlite::SqliteStore::open(&data.join("records.db")).unwrap();
        dasan::records::Store::apply(
            &mut s,
            &dasan::records::reports::synthetic_day(day_ms, 2_200, 7),
        )
        .unwrap();
    }
    let cfg = test_config("sl_threshold_s = 20\nsl_target_percent = 85");
    let e = EngineProc::start(&dir, &cfg, base, base + 1);
    let get = |path: &str| http_get_as(e.http_port, path, Some(API_TOKEN)).expect("GET");
    let (code, body) = get(&format!("/api/reports?from={day}&to={day}"));
    assert_eq!(code, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    // What the store itself says for the same day (the same SQL, without HTTP).
    let mut s = dasan::records::sqlite::SqliteStore::open(&data.join("records.db")).unwrap();
    let direct = dasan::records::reports::build(
        &mut s,
        &dasan::records::reports::ReportQuery {
            from_ms: day_ms,
            to_ms: day_ms + 86_400_000,
            utc_offset_s: 9 * 3600,
            bucket_s: 1800,
            queue: None,
            language: None,
            channel: None,
            thresholds: vec![("general".into(), 20_000)],
            default_threshold_ms: 20_000,
            wait_bin_s: 10,
            wait_bins: 30,
            now_ms: day_ms + 2 * 86_400_000,
        },
    )
    .unwrap();
    assert_eq!(r["totals"]["offered"], 2_200);
    assert_eq!(r["totals"]["answered"], direct.totals.answered);
    assert_eq!(r["target"]["sl_target"], 0.85);
    assert_eq!(
        r["intervals"].as_array().unwrap().len(),
        direct.intervals.len()
    );
    assert_eq!(
        r["agents"].as_array().unwrap().len(),
        50,
        "agents 1001-1050"
    );
    assert!(r["fcr"]["repeat_24h"].as_i64().unwrap() > 0, "{}", r["fcr"]);
    eprintln!("report of {day}: server {} ms", r["server_ms"]);
    // A section, and a table as CSV.
    let (code, body) = get(&format!("/api/reports/agents?from={day}&format=csv"));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("agent,calls,talk_s,acw_s,not_ready_break_s"),
        "{body}"
    );
    assert_eq!(body.lines().count(), 51);
    // Bad input is a 400 that says why; an agent's token may not read reports.
    for bad in [
        "/api/reports?from=2026-13-01",
        "/api/reports?from=2026-12-02&to=2026-12-01",
        "/api/reports?from=2026-01-01&to=2026-12-31",
        "/api/reports?format=csv",
        "/api/reports?color=red",
    ] {
        let (code, body) = get(bad);
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(body.contains("error"), "{body}");
    }
    assert_eq!(get("/api/reports/nope").0, 404);
    // The page: every chart has points, the picture is not blank, the CSV downloads.
    let b = Browser::start(&dir, "reports", &["reports", &url(&e), API_TOKEN, &day]);
    let charts = b.wait_for("charts", Duration::from_secs(90));
    for (id, n) in charts["charts"].as_object().expect("charts") {
        assert!(
            n.as_i64().unwrap_or(0) > 0,
            "{id} has no data points: {charts}"
        );
    }
    let px = b.wait_for("nonblank_pixels", Duration::from_secs(30));
    assert!(px["nonblank_pixels"].as_i64().unwrap_or(0) > 1_000, "{px}");
    let shot = b.wait_for("screenshot", Duration::from_secs(30));
    assert!(
        shot["screenshot"]["colours"].as_i64().unwrap_or(0) >= 8,
        "{shot}"
    );
    let csv = b.wait_for("csv_header", Duration::from_secs(30));
    assert!(
        csv["csv_header"]
            .as_str()
            .unwrap_or("")
            .starts_with("agent,calls"),
        "{csv}"
    );
    b.wait_for("done", Duration::from_secs(30));
}

#[test]
fn the_wallboard_serves_a_floor_of_500_registered_agents_and_its_chart_moves() {
    let base = port_block();
    let dir = workdir("web-floor");
    let (lo, hi) = rtp_range();
    let cfg = format!(
        r#"
[[trunk]]
name = "loopback"
sources = ["127.0.0.0/8"]

[[route]]
number = "120"
queue = "general"

[[route]]
number = "1209"
queue = "mn"

[queue.general]
skill = "ko"

[queue.mn]
skill = "mn"
max_wait_s = 60

[[agents]]
ids = "1001-1250"
password = "test-pw"
skills = ["ko"]

[[agents]]
ids = "1251-1499"
password = "test-pw"
skills = ["ko", "en:3"]

[[agents]]
ids = "1500"
password = "test-pw"
skills = ["ko", "mn"]
names = ["Batbayar"]

[media]
rtp_port_min = {lo}
rtp_port_max = {}
webrtc_port_min = {}
webrtc_port_max = {hi}
"#,
        lo + 119,
        lo + 120
    );
    let e = EngineProc::start(&dir, &cfg, base, base + 1);
    // 500 phones register (SIPp, digest auth), 100 a second.
    let ids: Vec<String> = (1001..=1500).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let csv = dir.join("agents-500.csv");
    let text = std::fs::read_to_string(agents_csv(&dir, &refs[..1], "test-pw")).unwrap();
    let mut all = String::from("SEQUENTIAL\n");
    for id in &ids {
        all.push_str(&format!(
            "{id};[authentication username={id} password=test-pw]\n"
        ));
    }
    assert!(text.starts_with("SEQUENTIAL"));
    std::fs::write(&csv, all).unwrap();
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
        "500",
        "-r",
        "100",
        "-timeout",
        "60s",
    ]));
    sipp(&dir, "register", &r).expect_success(Duration::from_secs(90));
    let agents = json(&e, "/api/agents");
    let ready = agents
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "ready")
        .count();
    assert_eq!(ready, 500, "all 500 registered");
    let b = Browser::start(&dir, "floor", &["wallboard-floor", &url(&e), API_TOKEN]);
    let first = b.wait_for("agents_total", Duration::from_secs(60));
    assert_eq!(first["agents_total"], 500, "{first}");
    assert_eq!(first["counts_ready"], 500, "{first}");
    let found = b.wait_for("search", Duration::from_secs(30));
    assert_eq!(found["rows"], 1, "{found}");
    let named = b.wait_for("search_name", Duration::from_secs(30));
    assert_eq!(named["ids"], serde_json::json!(["1500"]), "{named}");
    let sorted = b.wait_for("sorted_by_time_in_state", Duration::from_secs(30));
    assert_eq!(sorted["sorted_by_time_in_state"], true, "{sorted}");
    let lang = b.wait_for("state_cell_en", Duration::from_secs(30));
    assert_ne!(lang["state_cell_ko"], lang["state_cell_en"], "{lang}");
    b.wait_for("live_points", Duration::from_secs(30));
    // The one Mongolian speaker steps away: callers for that queue wait, and the chart
    // moves. A targets change from the wallboard's API is kept and shown.
    let (code, body) = http_send(
        e.http_port,
        "POST",
        "/api/agents/1500/state",
        Some(API_TOKEN),
        r#"{"state":"not-ready","reason":"break"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_send(
        e.http_port,
        "PUT",
        "/api/queues/mn/targets",
        Some(API_TOKEN),
        r#"{"sl_target":0.9,"wait_alert_s":5}"#,
    );
    assert_eq!(code, 200, "{body}");
    let _callers = start_caller(
        &dir,
        "callers",
        base,
        (base + 4, base + 20, base + 33),
        &[
            &scenarios().join("caller-hungup.xml").display().to_string(),
            "-s",
            "1209",
            "-m",
            "3",
            "-timeout",
            "40s",
        ],
    );
    let moved = b.wait_for("chart_moved", Duration::from_secs(45));
    assert_eq!(moved["chart_moved"], true, "{moved}");
}

#[test]
fn after_a_call_the_desk_counts_wrap_up_down_and_done_ends_it_early() {
    let base = port_block();
    let dir = workdir("web-wrap");
    let e = EngineProc::start(&dir, &test_config("wrap_up_s = 8"), base, base + 1);
    let b = Browser::start(&dir, "wrap", &["wrap-up", &url(&e), "1001", "test-pw"]);
    // The caller talks 3 s and hangs up.
    let deadline = Instant::now() + Duration::from_secs(60);
    while e.agent_state("1001") != "ready" {
        assert!(Instant::now() < deadline, "desk never ready:\n{}", e.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let _caller = start_caller(
        &dir,
        "caller",
        base,
        (base + 2, base + 10, base + 30),
        &[
            &scenarios().join("caller.xml").display().to_string(),
            "-s",
            "120",
            "-m",
            "1",
            "-d",
            "3000",
            "-timeout",
            "40s",
        ],
    );
    let c = b.wait_for("countdown", Duration::from_secs(60));
    eprintln!("countdown: {c}");
    let done = b.wait_for("ready_after_done_ms", Duration::from_secs(30));
    assert!(
        done["ready_after_done_ms"].as_i64().unwrap_or(i64::MAX) < 2_000,
        "{done}"
    );
    assert_eq!(e.agent_state("1001"), "ready");
    // The record holds the after-call work: shorter than the 8 s allowed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = json(&e, "/api/records?limit=5");
        if let Some(w) = r["records"][0]["wrap_ms"].as_i64() {
            assert!((1..8_000).contains(&w), "wrap_ms {w}");
            break;
        }
        assert!(Instant::now() < deadline, "no wrap_ms: {r}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The same generated day in SQLite and in PostgreSQL: the engine's `/api/reports` answers
/// the same on both (`scripts/test.sh` runs it with the PostgreSQL it starts).
#[test]
#[ignore = "needs PostgreSQL: scripts/test.sh starts one and runs it"]
fn reports_are_the_same_on_sqlite_and_postgresql() {
    let url = std::env::var("DASAN_TEST_PG").expect("DASAN_TEST_PG (scripts/test.sh sets it)");
    let db = format!("dasan_reports_{}", std::process::id());
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"));
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    let pg_url = format!("{}/{db}", url.rsplit_once('/').unwrap().0);
    let (day_ms, day) = seoul_day(1);
    let events = dasan::records::reports::synthetic_day(day_ms, 1_500, 11);
    let mut reports = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let base = port_block();
        let dir = workdir(&format!("web-reports-{backend}"));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut cfg = test_config("sl_threshold_s = 20");
        if backend == "sqlite" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
            let mut s =
                dasan::records::sqlite::SqliteStore::open(&data.join("records.db")).unwrap();
            dasan::records::Store::apply(&mut s, &events).unwrap();
        } else {
            let mut s = dasan::records::pg::PgStore::connect(&pg_url, None).unwrap();
            dasan::records::Store::apply(&mut s, &events).unwrap();
            cfg = cfg.replace(
                "\n[media]\n",
                &format!("\n[data]\ndatabase = \"{pg_url}\"\n\n[media]\n"),
            );
        }
        let e = EngineProc::start(&dir, &cfg, base, base + 1);
        for path in [
            format!("/api/reports?from={day}&to={day}"),
            format!("/api/reports?from={day}&to={day}&queue=en"),
            format!("/api/reports?from={day}&to={day}&channel=text&language=ko"),
        ] {
            let (code, body) = http_get_as(e.http_port, &path, Some(API_TOKEN)).expect("GET");
            assert_eq!(code, 200, "{backend} {path}: {body}");
            let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
            eprintln!("{backend} {path}: server {} ms", v["server_ms"]);
            v["server_ms"] = serde_json::Value::Null;
            reports.push((backend, path, v));
        }
    }
    let (sqlite, pg) = reports.split_at(3);
    for ((_, path, a), (_, _, b)) in sqlite.iter().zip(pg) {
        assert_eq!(a, b, "{path}: SQLite and PostgreSQL disagree");
        assert!(a["totals"]["offered"].as_i64().unwrap() > 0, "{path}: {a}");
    }
    let _ = admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"));
}
