//! Sign-language video (issue 18) with real phones: a baresip caller with a generated
//! picture (fakevideo, VP8) dials 120; the engine routes the video call to the sign queue
//! and relays the picture both ways to a baresip agent with video, without transcoding.

mod common;
use common::*;
use std::time::{Duration, Instant};

const VIDEO: &str = BARESIP_VIDEO;

#[test]
fn a_video_caller_and_a_signing_agent_see_each_other_through_the_engine() {
    video_call("vp8", VIDEO);
}

/// The same with H.264 (baresip's avcodec, libx264 in Constrained Baseline, packetization
/// mode 1).
#[test]
fn the_same_in_h264() {
    let h264 = VIDEO.replace("module vp8.so", "module avcodec.so")
        + "avcodec_h264enc libx264\navcodec_h264dec h264\n";
    video_call("H264", &h264);
}

fn video_call(codec: &str, video: &str) {
    let base = port_block();
    let (sip, http) = (base, base + 1);
    let dir = workdir(&format!("video-{codec}"));
    let e = EngineProc::start(&dir, &video_config(), sip, http);
    let agent = signing_agent(&dir, &e, base, &format!(";video_codecs={codec}"), video);
    let caller = video_caller(&dir, base, codec, video, "10");
    // Video both ways for a while.
    let from = |leg: &str| {
        e.metric(&format!(
            "dasan_video_packets_relayed_total{{from=\"{leg}\"}}"
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while from("caller") < 60.0 || from("agent") < 60.0 {
        assert!(
            Instant::now() < deadline,
            "video relayed: caller {} agent {}\ncaller:\n{}\nagent:\n{}",
            from("caller"),
            from("agent"),
            caller.log(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        e.metric("dasan_video_packets_dropped_total{from=\"caller\"}"),
        0.0
    );
    eprintln!(
        "video relayed: caller {} agent {}; keyframe requests: caller {} agent {}",
        from("caller"),
        from("agent"),
        e.metric("dasan_video_keyframe_requests_total{from=\"caller\"}"),
        e.metric("dasan_video_keyframe_requests_total{from=\"agent\"}")
    );
    // Each phone decodes the other's picture (baresip says so once a frame is decoded).
    let deadline = Instant::now() + Duration::from_secs(10);
    for phone in [&agent, &caller] {
        while !phone
            .log()
            .contains("video: receiving with resolution 320 x 240")
        {
            assert!(
                Instant::now() < deadline,
                "no decoded picture:\n{}",
                phone.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let calls = json(&e, "/api/calls");
    assert_eq!(calls[0]["queue"], "sign", "{calls}");
    assert_eq!(calls[0]["agent"], "1005", "{calls}");
    let records = json(&e, "/api/records?limit=5");
    assert_eq!(records["records"][0]["channel"], "video", "{records}");
    // When the call ends, its record gets the video statistics of both directions.
    let v = video_record(&e);
    assert_eq!(v["agent_video"], true, "{v}");
    for dir in ["from_caller", "from_agent"] {
        assert!(v[dir]["frames"].as_u64().unwrap_or(0) > 20, "{v}");
        assert!(v[dir]["fps"].as_f64().unwrap_or(0.0) > 5.0, "{v}");
        assert_eq!(v[dir]["lost"], 0, "loopback: {v}");
    }
    assert!(
        v["from_agent"]["keyframe_requests"].as_u64().is_some(),
        "{v}"
    );
}

/// The newest record's video statistics, once the call has ended and the relay reported.
fn video_record(e: &EngineProc) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = json(e, "/api/records?limit=1");
        let v = records["records"][0]["video"].clone();
        if !v.is_null() {
            eprintln!("record video: {v}");
            return v;
        }
        assert!(Instant::now() < deadline, "{records}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// An agent whose phone has no video in the sign queue: the video call is answered as an
/// audio call (the phone refuses the video stream), never failed.
#[test]
fn an_agent_phone_without_video_takes_the_call_as_audio() {
    let base = port_block();
    let (sip, http) = (base, base + 1);
    let dir = workdir("video-audio-agent");
    let e = EngineProc::start(&dir, &video_config(), sip, http);
    let agent = signing_agent(&dir, &e, base, "", "");
    let caller = video_caller(&dir, base, "vp8", VIDEO, "8");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let calls = json(&e, "/api/calls");
        if calls[0]["state"] == "talking" {
            assert_eq!(calls[0]["agent"], "1005");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{calls}\n{}\n{}",
            caller.log(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        e.metric("dasan_video_packets_relayed_total{from=\"agent\"}"),
        0.0
    );
    assert!(
        caller.log().contains("Call established"),
        "{}",
        caller.log()
    );
    // The record says the call went on as audio: no agent video.
    let v = video_record(&e);
    assert_eq!(v["agent_video"], false, "{v}");
    assert_eq!(v["from_agent"]["packets"], 0, "{v}");
}

/// A video call handed to another signing agent (the first one's phone transfers it to the
/// sign queue by REFER): the engine asks the caller for a keyframe as the new agent's
/// video joins, so the new agent's phone decodes a picture within about a second.
#[test]
fn after_a_transfer_the_new_agent_sees_the_caller_within_a_second() {
    let base = port_block();
    let (sip, http) = (base, base + 1);
    let dir = workdir("video-transfer");
    let cfg = video_config().replace("ids = \"1005\"", "ids = \"1005-1006\"");
    let e = EngineProc::start(&dir, &cfg, sip, http);
    let agents: Vec<(Baresip, u16)> = [("1005", 2u16, 10u16, 38u16), ("1006", 5, 26, 39)]
        .into_iter()
        .map(|(id, port, rtp, ctrl)| {
            let b = Baresip::start_with(
                &dir,
                &format!("agent{id}"),
                base + port,
                (base + rtp, base + rtp + 3),
                G711_TONE,
                &format!(
                    "<sip:{id}@127.0.0.1:{sip}>;auth_pass=test-pw;answermode=auto;regint=60;audio_codecs=pcmu;video_codecs=vp8"
                ),
                &[],
                &format!(
                    "{VIDEO}module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{}\n",
                    base + ctrl
                ),
            );
            (b, base + ctrl)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    while e.agent_state("1005") != "ready" || e.agent_state("1006") != "ready" {
        assert!(Instant::now() < deadline, "agents did not register");
        std::thread::sleep(Duration::from_millis(100));
    }
    let caller = Baresip::start_with(
        &dir,
        "caller",
        base + 35,
        (base + 20, base + 25),
        (660.0, 8000, 1),
        "<sip:0212345678@127.0.0.1>;regint=0;audio_codecs=pcmu;video_codecs=vp8",
        &["-e", &format!("/dial sip:120@127.0.0.1:{sip}"), "-t", "15"],
        VIDEO,
    );
    const DECODED: &str = "video: receiving with resolution 320 x 240";
    // The first agent sees the caller.
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        if let Some(i) = agents.iter().position(|(b, _)| b.log().contains(DECODED)) {
            break i;
        }
        assert!(Instant::now() < deadline, "{}", caller.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    let (second, _) = &agents[1 - first];
    Baresip::command(
        agents[first].1,
        "transfer",
        &format!("sip:sign@127.0.0.1:{sip}"),
    );
    // The second agent's phone answers; a picture decodes soon after.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !second.log().contains("Call established") {
        assert!(
            Instant::now() < deadline,
            "not transferred:\n{}\n{}",
            agents[first].0.log(),
            e.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let answered = Instant::now();
    while !second.log().contains(DECODED) {
        assert!(
            answered.elapsed() < Duration::from_secs(5),
            "no picture at the new agent:\n{}",
            second.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = answered.elapsed();
    eprintln!(
        "the new agent decoded the caller's picture {} ms after answering",
        took.as_millis()
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

/// Agent 1005 as baresip on `base` + 2 (RTP `base` + 10..19) with `account` parameters and
/// `video` config lines, once it is registered.
fn signing_agent(
    dir: &std::path::Path,
    e: &EngineProc,
    base: u16,
    account: &str,
    video: &str,
) -> Baresip {
    let agent = Baresip::start_with(
        dir,
        "agent",
        base + 2,
        (base + 10, base + 19),
        G711_TONE,
        &format!(
            "<sip:1005@127.0.0.1:{}>;auth_pass=test-pw;answermode=auto;regint=60;audio_codecs=pcmu{account}",
            e.sip_port
        ),
        &[],
        video,
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while e.agent_state("1005") != "ready" {
        assert!(
            Instant::now() < deadline,
            "no registration:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    agent
}

/// A baresip video caller on `base` + 35 (RTP `base` + 20..29) dialling 120 with `codec`,
/// for `seconds`.
fn video_caller(
    dir: &std::path::Path,
    base: u16,
    codec: &str,
    video: &str,
    seconds: &str,
) -> Baresip {
    Baresip::start_with(
        dir,
        "caller",
        base + 35,
        (base + 20, base + 29),
        (660.0, 8000, 1),
        &format!("<sip:0212345678@127.0.0.1>;regint=0;audio_codecs=pcmu;video_codecs={codec}"),
        &[
            "-e",
            &format!("/dial sip:120@127.0.0.1:{base}"),
            "-t",
            seconds,
        ],
        video,
    )
}

/// No signing agent is free: the waiting caller's phone decodes the engine's waiting
/// picture (early media video, the built-in clip) while it hears ringback; when the caller
/// gives up, the record keeps the call's video statistics and says no agent's phone took
/// video.
#[test]
fn a_waiting_video_caller_sees_the_waiting_picture_and_the_record_keeps_the_statistics() {
    for codec in ["vp8", "H264"] {
        let base = port_block();
        let (sip, http) = (base, base + 1);
        let dir = workdir(&format!("video-waiting-{codec}"));
        let e = EngineProc::start(&dir, &video_config(), sip, http);
        let video = if codec == "vp8" {
            VIDEO.to_string()
        } else {
            VIDEO.replace("module vp8.so", "module avcodec.so")
                + "avcodec_h264enc libx264\navcodec_h264dec h264\n"
        };
        // No agent logged in: the call waits in the sign queue until the caller hangs up.
        let caller = video_caller(&dir, base, codec, &video, "8");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !caller
            .log()
            .contains("video: receiving with resolution 320 x 240")
        {
            assert!(
                Instant::now() < deadline,
                "{codec}: no waiting picture decoded:\n{}",
                caller.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let calls = json(&e, "/api/calls");
        assert_eq!(calls[0]["state"], "waiting", "{codec}: {calls}");
        // After the caller hangs up, the relay's statistics reach the record.
        let video = video_record(&e);
        assert_eq!(video["agent_video"], false, "{video}");
        assert_eq!(
            video["codec"],
            if codec == "vp8" { "VP8" } else { "H264" },
            "{video}"
        );
        let waiting = video["waiting_packets"].as_u64().unwrap_or(0);
        assert!(waiting > 20, "{video}");
        // The caller's own picture reached the engine (and stopped there: no agent).
        let fps = video["from_caller"]["fps"].as_f64().unwrap_or(0.0);
        assert!(
            (12.0..18.0).contains(&fps),
            "the caller sends 15 fps: {video}"
        );
        // (x264 makes little of fakevideo's still picture: a few kbit/s.)
        assert!(
            video["from_caller"]["kbps"].as_f64().unwrap_or(0.0) > 1.0,
            "{video}"
        );
        drop(caller);
    }
}

/// Bad video input from a trunk, over raw SIP and RTP: offers with only an unknown codec,
/// an absurd bandwidth, a malformed H.264 fmtp, a broken m=video line; then RTP on the
/// video port of a working call with a payload type not negotiated, from a stranger, and
/// not RTP at all. Each is answered or dropped and counted; the engine carries on.
#[test]
fn bad_video_offers_and_packets_are_handled_and_counted() {
    use dasan::media::rtp::build_rtp;
    use dasan::media::sdp::{negotiate_video, Sdp};
    use std::net::{SocketAddr, UdpSocket};
    let base = port_block();
    let (sip_port, http) = (base, base + 1);
    let dir = workdir("video-bad");
    let e = EngineProc::start(&dir, &video_config(), sip_port, http);
    let engine: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let phone = Phone::bind(format!("127.0.0.1:{}", base + 2).parse().unwrap(), engine);
    let me = phone.addr();
    let media_port = base + 10;
    let offer = |video: &str| {
        format!("v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {media_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{video}")
    };
    let invite = |n: u32, body: &str| {
        phone.send(&sip(
            "INVITE sip:120@127.0.0.1 SIP/2.0",
            &[
                format!("Via: SIP/2.0/UDP {me};branch=z9hG4bK-bad-{n};rport"),
                "Max-Forwards: 70".into(),
                format!("From: <sip:0212345678@127.0.0.1>;tag=bad{n}"),
                "To: <sip:120@127.0.0.1>".into(),
                format!("Call-ID: bad-video-{n}"),
                "CSeq: 1 INVITE".into(),
                format!("Contact: <sip:caller@{me}>"),
                "Content-Type: application/sdp".into(),
            ],
            body,
        ));
        let call_id = format!("bad-video-{n}");
        phone.expect("a final or early answer", |m| {
            m.header("Call-ID") == Some(&call_id) && m.status().is_some_and(|s| s >= 180)
        })
    };
    let video_of = |m: &dasan::sip::message::Message| {
        let text = std::str::from_utf8(&m.body).unwrap_or("").to_string();
        (negotiate_video(&Sdp::parse(&text).unwrap()), text)
    };
    // An unknown codec only: audio, the video stream refused in place.
    let r = invite(
        1,
        &offer(&format!(
            "m=video {} RTP/AVP 100\r\na=rtpmap:100 H265/90000\r\n",
            media_port + 2
        )),
    );
    assert_eq!(r.status(), Some(183));
    let (v, text) = video_of(&r);
    assert!(
        v.is_none() && text.contains("m=video 0 RTP/AVP 100"),
        "{text}"
    );
    // A malformed H.264 fmtp: the same.
    let r = invite(2, &offer(&format!("m=video {} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=zz;packetization-mode=banana\r\n", media_port + 2)));
    let (v, text) = video_of(&r);
    assert!(v.is_none() && text.contains("m=video 0 "), "{text}");
    // A broken m=video line: the offer cannot be read, a clear refusal.
    let r = invite(3, &offer("m=video nonsense RTP/AVP\r\n"));
    assert!(matches!(r.status(), Some(400 | 488)), "{:?}", r.status());
    // An absurd bandwidth: VP8 accepted, the bandwidth capped at [video] max_kbps.
    let r = invite(
        4,
        &offer(&format!(
            "m=video {} RTP/AVP 97\r\nb=AS:99999999999999\r\na=rtpmap:97 VP8/90000\r\n",
            media_port + 2
        )),
    );
    assert_eq!(r.status(), Some(183));
    let (v, text) = video_of(&r);
    let v = v.unwrap_or_else(|| panic!("VP8 accepted: {text}"));
    assert_eq!(v.kbps, Some(1500), "{text}");
    // RTP on that call's video port: a payload type not negotiated, a stranger, garbage.
    let to: SocketAddr = format!("127.0.0.1:{}", v.remote.1).parse().unwrap();
    let mine = UdpSocket::bind(("127.0.0.1", media_port + 2)).unwrap();
    let stranger = UdpSocket::bind(("127.0.0.66", 0)).unwrap();
    let before = e.metric("dasan_video_packets_dropped_total{from=\"caller\"}");
    for i in 0..5u16 {
        mine.send_to(&build_rtp(97, false, i, 0, 0xAA, &[0; 100]), to)
            .unwrap();
        mine.send_to(&build_rtp(33, false, 100 + i, 0, 0xAA, &[0; 100]), to)
            .unwrap();
        stranger
            .send_to(&build_rtp(97, false, 200 + i, 0, 0xEE, &[0; 100]), to)
            .unwrap();
        mine.send_to(b"\x80\x61", to).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while e.metric("dasan_video_packets_dropped_total{from=\"caller\"}") - before < 15.0 {
        assert!(
            Instant::now() < deadline,
            "dropped: {}",
            e.metric("dasan_video_packets_dropped_total{from=\"caller\"}")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        e.metric("dasan_video_packets_relayed_total{from=\"caller\"}"),
        5.0
    );
    // Still serving: the calls are listed, the engine answers.
    let calls = json(&e, "/api/calls");
    assert!(calls.as_array().is_some_and(|c| c.len() >= 2), "{calls}");
}

/// The load tool's own plumbing (not a performance figure): a few calls for a second
/// through a relay process and back, every packet accounted for.
#[test]
fn videoload_relays_a_few_calls_through_its_relay_process() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_videoload"))
        .args(["4", "1"])
        .output()
        .expect("run videoload");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str, word: usize| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(word))
            .and_then(|v| v.trim_end_matches(',').parse().ok())
            .unwrap_or_else(|| panic!("{name}: {text}"))
    };
    let (sent, received) = (field("sent", 1), field("sent", 4));
    assert!(sent >= 4 * 2 * 30 * 3 - 24, "{text}");
    assert!(received * 100 >= sent * 99, "{text}");
    assert!(
        text.contains("relay process  ") && text.contains("calls per core"),
        "{text}"
    );
}

/// The keyframe path through the real engine, with raw phones: the waiting caller gets the
/// waiting picture on its video port; once the signing agent's phone answers, the agent's
/// PLI reaches the caller as a PLI naming the caller's own stream, and each side gets the
/// other's video.
#[test]
fn the_agents_pli_reaches_the_caller_and_the_waiting_picture_comes_first() {
    use dasan::media::rtp::{build_rtp, is_rtcp, parse_rtp};
    use dasan::media::sdp::{negotiate_video, Sdp};
    use std::net::{SocketAddr, UdpSocket};
    let base = port_block();
    let (sip_port, http) = (base, base + 1);
    let dir = workdir("video-pli");
    let e = EngineProc::start(&dir, &video_config(), sip_port, http);
    let engine: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let agent = Phone::bind(format!("127.0.0.1:{}", base + 3).parse().unwrap(), engine);
    register_raw(&e, &agent, "1005");
    let caller = Phone::bind(format!("127.0.0.1:{}", base + 2).parse().unwrap(), engine);
    let udp = |port: u16| {
        let s = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        s
    };
    // Each phone's video RTP and RTCP sockets (audio is not used here).
    let (c_rtp, c_rtcp) = (udp(base + 12), udp(base + 13));
    let (a_rtp, a_rtcp) = (udp(base + 22), udp(base + 23));
    let sdp = |media: u16, who: &str| {
        format!("v=0\r\no={who} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {media} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video {} RTP/AVP 97\r\na=rtpmap:97 VP8/90000\r\na=rtcp-fb:97 nack pli\r\n", media + 2)
    };
    let me = caller.addr();
    caller.send(&sip(
        "INVITE sip:120@127.0.0.1 SIP/2.0",
        &[
            format!("Via: SIP/2.0/UDP {me};branch=z9hG4bK-pli1;rport"),
            "Max-Forwards: 70".into(),
            "From: <sip:0212345678@127.0.0.1>;tag=pli1".into(),
            "To: <sip:120@127.0.0.1>".into(),
            "Call-ID: video-pli-1".into(),
            "CSeq: 1 INVITE".into(),
            format!("Contact: <sip:caller@{me}>"),
            "Content-Type: application/sdp".into(),
        ],
        &sdp(base + 10, "c"),
    ));
    let early = caller.expect("183", |m| m.status() == Some(183) && !m.body.is_empty());
    let text = std::str::from_utf8(&early.body).unwrap().to_string();
    let cv = negotiate_video(&Sdp::parse(&text).unwrap()).expect("video answered");
    let engine_caller_video: SocketAddr = format!("127.0.0.1:{}", cv.remote.1).parse().unwrap();
    // The waiting picture arrives before any agent, as the caller's payload type.
    let mut buf = [0u8; 2048];
    let (n, _) = c_rtp.recv_from(&mut buf).expect("the waiting picture");
    let h = parse_rtp(&buf[..n]).expect("RTP");
    assert_eq!(h.payload_type, 97);
    // The caller sends its picture (the relay learns its stream).
    for i in 0..3u16 {
        let p = build_rtp(97, true, i, u32::from(i) * 3000, 0xCA11, &[0x10; 50]);
        c_rtp.send_to(&p, engine_caller_video).unwrap();
    }
    // The agent's phone answers with video.
    let inv = agent.expect("the engine's INVITE", |m| {
        m.method().is_some_and(|x| x.as_str() == "INVITE")
    });
    let offer = std::str::from_utf8(&inv.body).unwrap().to_string();
    let av = negotiate_video(&Sdp::parse(&offer).unwrap()).expect("video offered to the agent");
    let engine_agent_video: SocketAddr = format!("127.0.0.1:{}", av.remote.1).parse().unwrap();
    let mut h: Vec<String> = inv
        .header_values("Via")
        .map(|v| format!("Via: {v}"))
        .collect();
    for name in ["From", "Call-ID", "CSeq"] {
        h.push(format!("{name}: {}", inv.header(name).unwrap()));
    }
    h.push(format!("To: {};tag=agentpli", inv.header("To").unwrap()));
    h.push(format!("Contact: <sip:1005@{}>", agent.addr()));
    h.push("Content-Type: application/sdp".into());
    agent.send(&sip("SIP/2.0 200 OK", &h, &sdp(base + 20, "a")));
    caller.expect("200 to the caller", |m| m.status() == Some(200));
    // The agent's video reaches the caller; the caller's reaches the agent.
    // For the first half second the agent's phone asks for nothing: the PLI the engine
    // sends the caller when the agent's video joins is drained, and more than the relay's
    // gap between requests passes.
    let quiet_until = Instant::now() + Duration::from_millis(500);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut to_caller, mut to_agent, mut pli) = (false, false, false);
    let mut seq = 10u16;
    while !(to_caller && to_agent && pli) {
        let asking = Instant::now() >= quiet_until;
        assert!(
            Instant::now() < deadline,
            "to caller {to_caller}, to agent {to_agent}, PLI {pli}\n{}",
            e.log()
        );
        seq += 1;
        let p = build_rtp(97, true, seq, u32::from(seq) * 3000, 0xA6E, &[0x20; 50]);
        a_rtp.send_to(&p, engine_agent_video).unwrap();
        let p = build_rtp(97, true, seq, u32::from(seq) * 3000, 0xCA11, &[0x10; 50]);
        c_rtp.send_to(&p, engine_caller_video).unwrap();
        // The agent's phone asks for a keyframe, on its RTCP port.
        let agent_pli = [&[0x81, 206, 0, 2][..], &0xA6Eu32.to_be_bytes(), &[0; 4]].concat();
        let rtcp_to = SocketAddr::new(engine_agent_video.ip(), engine_agent_video.port() + 1);
        if asking {
            a_rtcp.send_to(&agent_pli, rtcp_to).unwrap();
        }
        if let Ok((n, _)) = c_rtp.recv_from(&mut buf) {
            let p = &buf[..n];
            if !is_rtcp(p) && p.get(12) == Some(&0x20) {
                to_caller = true;
            }
        }
        if let Ok((n, _)) = a_rtp.recv_from(&mut buf) {
            let p = &buf[..n];
            if !is_rtcp(p) && p.get(12) == Some(&0x10) {
                to_agent = true;
            }
        }
        while let Ok((n, _)) = c_rtcp.recv_from(&mut buf) {
            let p = &buf[..n];
            // A PLI (PSFB, FMT 1) whose media SSRC is the caller's own stream.
            if n >= 12 && p[0] & 0x1F == 1 && p[1] == 206 && p[8..12] == 0xCA11u32.to_be_bytes() {
                pli = asking;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(e.metric("dasan_video_keyframe_requests_total{from=\"agent\"}") >= 1.0);
}
