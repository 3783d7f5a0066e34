//! End-to-end media: the 120+9 language menu heard by a SIPp caller, and an Opus caller
//! transcoded to a PCMU agent, with real baresip softphones and a loopback capture.

mod common;
use common::*;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// A dialplan with the 120+9 flow: Korean general queue (9 opens the menu), English and
/// Chinese queues; agent 1005 speaks English only.
fn menu_config(record: bool) -> String {
    let (lo, hi) = rtp_range();
    format!(
        r#"
[[trunk]]
name = "loopback"
sources = ["127.0.0.0/8"]

[[route]]
number = "120"
queue = "general"

[queue.general]
skill = "ko"
digits = {{ "9" = "languages" }}
record = {record}

[queue.en]
skill = "en"
record = {record}

[queue.zh]
skill = "zh"

[menu.languages]
[[menu.languages.option]]
digit = "1"
prompt = "menu-en"
queue = "en"
[[menu.languages.option]]
digit = "2"
prompt = "menu-zh"
queue = "zh"

[[agents]]
ids = "1001-1004"
password = "test-pw"
skills = ["ko"]

[[agents]]
ids = "1005"
password = "test-pw"
skills = ["en"]

# Never logged in: a queue no agent could serve does not load.
[[agents]]
ids = "1006"
password = "test-pw"
skills = ["zh"]

[media]
rtp_port_min = {lo}
rtp_port_max = {hi}
"#
    )
}

fn wait_ready(e: &EngineProc, id: &str, phone: &Baresip) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while e.agent_state(id) != "ready" {
        assert!(
            Instant::now() < deadline,
            "agent {id} did not register:\n{}",
            phone.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The longest run of `expected` frames found back to back, in order, in `received`.
fn longest_run(received: &[&[u8]], expected: &[Vec<u8>]) -> usize {
    let mut best = 0;
    for start in 0..received.len() {
        let Some(k) = expected
            .iter()
            .position(|f| f.as_slice() == received[start])
        else {
            continue;
        };
        let run = received[start..]
            .iter()
            .zip(&expected[k..])
            .take_while(|(r, e)| **r == e.as_slice())
            .count();
        best = best.max(run);
    }
    best
}

#[test]
fn nine_then_one_reaches_the_english_agent_and_the_caller_hears_the_menu() {
    let base = port_block();
    let (sip, http, agent_sip, caller_sip, caller_media) =
        (base, base + 1, base + 2, base + 3, base + 10);
    let dir = workdir("menu");
    let e = EngineProc::start(&dir, &menu_config(false), sip, http);
    let agent = Baresip::start(
        &dir,
        "agent",
        agent_sip,
        (base + 20, base + 29),
        G711_TONE,
        &format!("<sip:1005@127.0.0.1:{sip}>;auth_pass=test-pw;answermode=auto;regint=60;audio_codecs=pcma,pcmu"),
        &[],
    );
    wait_ready(&e, "1005", &agent);

    // SIPp plays G.711 audio and RFC 2833 digits from sip-tester's pcaps.
    copy_sipp_pcaps(&dir);
    // What reaches the caller's RTP port, as the caller's network sees it.
    let capture = Capture::start(&dir, "caller", &format!("udp dst port {caller_media}"));
    let mut a = base_args(sip, caller_sip, caller_media, base + 30);
    a.extend(args(&["-sf"]));
    a.push(scenarios().join("caller-menu.xml").display().to_string());
    a.extend(args(&["-s", "120", "-m", "1", "-timeout", "60s"]));
    sipp(&dir, "caller", &a).expect_success(LIMIT);
    let packets = capture.stop();

    // The caller heard the English menu prompt, frame for frame as the engine encodes it.
    let prompts = dasan::media::prompt::embedded().unwrap();
    let menu_en = &prompts["menu-en"].pcma;
    let payloads: Vec<&[u8]> = packets
        .iter()
        .filter(|p| p.len() > 12 && p[1] & 0x7F == 8)
        .map(|p| &p[12..])
        .collect();
    let run = longest_run(&payloads, menu_en);
    assert!(
        run >= menu_en.len() * 9 / 10,
        "the caller heard {run} of the English prompt's {} frames ({} packets captured)",
        menu_en.len(),
        packets.len()
    );
    // The English agent answered and heard the caller's audio.
    assert_eq!(
        e.metric("dasan_calls_total{outcome=\"answered\",queue=\"en\"}"),
        1.0,
        "answered in the English queue:\n{}",
        e.log()
    );
    let rms = agent.stop_and_heard_rms();
    assert!(
        rms > 0.01,
        "the English agent's recording is silent (RMS {rms:.4})"
    );
}

#[test]
fn opus_caller_is_transcoded_to_a_pcmu_agent_and_recorded() {
    let base = port_block();
    let (sip, http, agent_sip, caller_sip) = (base, base + 1, base + 2, base + 5);
    let dir = workdir("opus");
    let e = EngineProc::start(&dir, &menu_config(true), sip, http);
    let agent = Baresip::start(
        &dir,
        "agent",
        agent_sip,
        (base + 10, base + 19),
        G711_TONE,
        &format!("<sip:1001@127.0.0.1:{sip}>;auth_pass=test-pw;answermode=auto;regint=60;audio_codecs=pcmu"),
        &[],
    );
    wait_ready(&e, "1001", &agent);
    // The caller: a second baresip that speaks Opus only, dials 120 and hangs up after 8 s.
    let caller = Baresip::start(
        &dir,
        "caller",
        caller_sip,
        (base + 20, base + 29),
        (660.0, 48000, 2),
        "<sip:0212345678@127.0.0.1>;regint=0;audio_codecs=opus/48000/2",
        &["-e", &format!("/dial sip:120@127.0.0.1:{sip}"), "-t", "8"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while e.metric("dasan_calls_total{outcome=\"answered\",queue=\"general\"}") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the Opus call was not answered:\n{}\n{}",
            caller.log(),
            e.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(4));
    // Each phone speaks its own codec: the engine transcodes between them.
    assert!(
        caller.log().contains("Set audio decoder: opus"),
        "caller not on Opus:\n{}",
        caller.log()
    );
    assert!(
        agent.log().contains("Set audio decoder: PCMU"),
        "agent not on PCMU:\n{}",
        agent.log()
    );
    let agent_heard = agent.stop_and_heard_rms();
    let caller_heard = caller.stop_and_heard_rms();
    assert!(
        agent_heard > 0.01,
        "PCMU agent heard silence ({agent_heard:.4})"
    );
    assert!(
        caller_heard > 0.01,
        "Opus caller heard silence ({caller_heard:.4})"
    );
    // The engine's own recording: caller left, agent right, both audible.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rec = loop {
        let found = std::fs::read_dir(dir.join("data/recordings"))
            .ok()
            .and_then(|mut d| d.find_map(|f| f.ok().map(|f| f.path())));
        if let Some(p) = found.filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 44 + 8000)) {
            break p;
        }
        assert!(Instant::now() < deadline, "no call recording written");
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_millis(500));
    let rms = wav_rms_channels(&rec);
    assert_eq!(rms.len(), 2, "stereo");
    assert!(
        rms[0] > 0.01 && rms[1] > 0.01,
        "recording channels (caller, agent) RMS {rms:?}"
    );
}

/// Blind transfer from a real softphone: baresip (agent 1001, Korean) answers a SIPp caller
/// and transfers it with REFER to the English queue, where a SIPp English agent answers and
/// later hangs up; the caller stays on the line throughout and the record shows both.
#[test]
fn a_baresip_agent_transfers_the_caller_to_the_english_queue() {
    let base = port_block();
    let (sip, http, agent_sip, ctrl) = (base, base + 1, base + 2, base + 5);
    let dir = workdir("transfer");
    let e = EngineProc::start(&dir, &menu_config(false), sip, http);
    let agent = Baresip::start_with(
        &dir,
        "agent",
        agent_sip,
        (base + 20, base + 29),
        G711_TONE,
        &format!("<sip:1001@127.0.0.1:{sip}>;auth_pass=test-pw;answermode=auto;regint=60;audio_codecs=pcmu,pcma"),
        &[],
        &format!("module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl}\n"),
    );
    wait_ready(&e, "1001", &agent);
    // The English agent: a SIPp phone that answers and hangs up after 2 s.
    let en_phone = answering_agent(
        &dir,
        sip,
        "1005",
        (base + 6, base + 10, base + 30),
        (base + 7, base + 14, base + 31),
    );
    // The caller waits for the engine's BYE at the end.
    let mut a = base_args(sip, base + 8, base + 16, base + 32);
    a.extend(args(&[
        "-sf",
        &scenarios().join("caller-hungup.xml").display().to_string(),
        "-s",
        "120",
        "-m",
        "1",
        "-timeout",
        "60s",
    ]));
    let caller = sipp(&dir, "caller", &a);
    let deadline = Instant::now() + Duration::from_secs(15);
    while e.agent_state("1001") != "on-call" {
        assert!(
            Instant::now() < deadline,
            "baresip did not answer:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    Baresip::command(ctrl, "transfer", &format!("sip:en@127.0.0.1:{sip}"));
    caller.expect_success(LIMIT);
    en_phone.expect_success(LIMIT);
    let (_, body) = e.http_get("/api/records").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let r = &v["records"][0];
    assert_eq!(r["queues"], serde_json::json!(["general", "en"]), "{body}");
    assert_eq!(r["agents"], serde_json::json!(["1001", "1005"]), "{body}");
    assert_eq!(r["agent"], "1005");
    assert_eq!(r["outcome"], "answered");
    assert_eq!(
        e.agent_state("1001"),
        "ready",
        "the transferring agent is free"
    );
}
