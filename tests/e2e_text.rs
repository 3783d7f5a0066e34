//! Text counselling (issue 17) with real clients: SIPp as the SMS gateway on a trusted trunk
//! (SIP MESSAGE, Korean text) and SIPp as an agent's phone taking the conversations and
//! replying; the records keep every message in order, and a kill -9 after the 202s loses
//! none of them.

mod common;
use common::*;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn text_config() -> String {
    test_config("channels = [\"voice\", \"text\"]")
}

/// The gateway's senders: number; first message; second message.
fn senders_csv(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("senders.csv");
    std::fs::write(
        &p,
        "SEQUENTIAL\n\
         01011112222;버스 시간표 알려주세요 🚌;광화문 방향이요\n\
         01033334444;여권 발급은 어디서 하나요?;급해요\n\
         01055556666;Where is the nearest hospital?;Thank you\n",
    )
    .unwrap();
    p
}

/// Three senders write two Korean (and one English) messages each; one SIPp agent phone
/// takes all three conversations at once (max_chats 3) and replies to each; every reply
/// reaches its own sender, and each conversation's record holds its messages in order.
#[test]
fn an_sms_gateway_and_an_agent_phone_hold_three_conversations() {
    let base = port_block();
    let (sip, http) = (base, base + 1);
    let dir = workdir("text-sipp");
    let e = EngineProc::start(&dir, &text_config(), sip, http);
    let agent = sms_agent_phone(&dir, sip, base, 3, "40s");
    assert_eq!(e.agent_state("1001"), "ready");
    std::thread::sleep(Duration::from_millis(300));
    let mut g = base_args(sip, base + 8, base + 12, base + 16);
    g.extend(args(&[
        "-sf",
        &scenarios().join("sms-gateway.xml").display().to_string(),
        "-inf",
        &senders_csv(&dir).display().to_string(),
        "-s",
        "120",
        "-m",
        "3",
        "-r",
        "3",
        "-timeout",
        "40s",
    ]));
    sipp(&dir, "gateway", &g).expect_success(LIMIT);
    agent.expect_success(LIMIT);

    let t = transcripts(&e);
    assert_eq!(t.len(), 3, "{t:?}");
    let expect = [
        (
            "01011112222",
            "버스 시간표 알려주세요 🚌",
            "광화문 방향이요",
        ),
        ("01033334444", "여권 발급은 어디서 하나요?", "급해요"),
        ("01055556666", "Where is the nearest hospital?", "Thank you"),
    ];
    for ((caller, agent, msgs), (number, first, second)) in t.iter().zip(expect) {
        assert_eq!(caller, number);
        assert_eq!(agent, "1001");
        let in_msgs: Vec<&str> = msgs
            .iter()
            .filter(|m| m.0 == "in")
            .map(|m| m.2.as_str())
            .collect();
        assert_eq!(in_msgs, vec![first, second], "{msgs:?}");
        let replies: Vec<&(String, String, String)> =
            msgs.iter().filter(|m| m.0 == "out").collect();
        assert_eq!(replies.len(), 1, "{msgs:?}");
        assert_eq!(replies[0].1, "1001");
        assert_eq!(replies[0].2, format!("reply to {number}"), "its own sender");
        let last_in = msgs.iter().rposition(|m| m.0 == "in").unwrap();
        let reply_at = msgs.iter().position(|m| m.0 == "out").unwrap();
        assert!(last_in < reply_at, "in order: {msgs:?}");
    }
}

/// kill -9 right after the 202s (SMS and web chat): every acknowledged message is in its
/// record after a restart on the same data directory.
#[test]
fn acknowledged_messages_survive_kill_9() {
    let base = port_block();
    let (sip, http) = (base, base + 1);
    let dir = workdir("text-kill9");
    let e = EngineProc::start(&dir, &text_config(), sip, http);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = udp.local_addr().unwrap();
    let mut acked = 0;
    for n in 0..20u32 {
        let sender = format!("0109999{:04}", n % 4);
        let body = format!("메시지 {n}");
        let raw = format!(
            "MESSAGE sip:120@127.0.0.1:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKk9{n}\r\nMax-Forwards: 70\r\n\
             From: <sip:{sender}@127.0.0.1>;tag=k{n}\r\nTo: <sip:120@127.0.0.1>\r\nCall-ID: k9-{n}@gw\r\nCSeq: 1 MESSAGE\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        udp.send_to(raw.as_bytes(), ("127.0.0.1", sip)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let Ok((len, _)) = udp.recv_from(&mut buf) else {
                break;
            };
            let text = String::from_utf8_lossy(&buf[..len]);
            if text.starts_with("SIP/2.0 202") && text.contains(&format!("k9-{n}@gw")) {
                acked += 1;
                break;
            }
        }
    }
    assert_eq!(acked, 20, "every message acknowledged");
    // Two web chats, two messages each: answered (201, 202) only once durable too.
    for n in 0..2 {
        let start = format!(r#"{{"service": "120", "text": "웹 문의 {n}"}}"#);
        let (code, body) = http_send(http, "POST", "/api/chat", None, &start);
        assert_eq!(code, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let more = serde_json::json!({"token": v["token"], "text": format!("웹 추가 {n}")});
        let (code, body) = http_send(http, "POST", "/api/chat", None, &more.to_string());
        assert_eq!(code, 202, "{body}");
    }
    let pid = e.pid();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    drop(e);
    let e = EngineProc::start(&dir, &text_config(), sip, http);
    let t = transcripts(&e);
    let stored: usize = t
        .iter()
        .map(|(_, _, m)| m.iter().filter(|x| x.0 == "in").count())
        .sum();
    assert_eq!(
        stored, 24,
        "acknowledged messages lost across kill -9: {t:?}"
    );
    assert_eq!(t.len(), 6, "one conversation per sender and per web chat");
}

/// A real softphone as the text agent: baresip (registered over UDP) gets the SMS
/// gateway's messages as SIP MESSAGE and answers through its `contact` module
/// (`/message` to the current contact, the conversation address, over ctrl_tcp),
/// answering the engine's digest challenge itself; the gateway gets the reply.
#[test]
fn a_baresip_agent_receives_a_conversation_and_replies() {
    let base = port_block();
    let (sip, http, ctrl) = (base, base + 1, base + 4);
    let dir = workdir("text-baresip");
    let e = EngineProc::start(&dir, &text_config(), sip, http);
    // The first conversation of a fresh engine is chat-1: baresip's current contact.
    let cfg_dir = dir.join("agent");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("contacts"),
        format!("\"citizen\" <sip:chat-1@127.0.0.1:{sip}>\n"),
    )
    .unwrap();
    std::fs::write(
        cfg_dir.join("current_contact"),
        format!("sip:chat-1@127.0.0.1:{sip}"),
    )
    .unwrap();
    let agent = baresip_agent(
        &dir,
        &e,
        base,
        "",
        &format!(
            "module_app contact.so\nmodule_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl}\n"
        ),
    );
    // The gateway: a raw UDP socket writing as 01011112222.
    let gw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    gw.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    send_sms(&gw, sip, "01011112222", 1, "쓰레기 수거일이 언제인가요?");
    // baresip takes the MESSAGE (200; it shows it only on a terminal UI, absent here).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.log().contains("text conversation given to an agent") {
        assert!(
            Instant::now() < deadline,
            "no conversation given:\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    Baresip::command(ctrl, "message", "월요일과 목요일입니다");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    let mut reply = None;
    while Instant::now() < deadline && reply.is_none() {
        let Ok((n, from)) = gw.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with("MESSAGE ") {
            // 200 for the engine's MESSAGE.
            let mut ok = String::from("SIP/2.0 200 OK\r\n");
            for l in text.lines().take_while(|l| !l.is_empty()) {
                let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
                if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
                    ok.push_str(l);
                    ok.push_str("\r\n");
                }
            }
            ok.push_str("Content-Length: 0\r\n\r\n");
            gw.send_to(ok.as_bytes(), from).unwrap();
            if text.contains("월요일과 목요일입니다") {
                reply = Some(text);
            }
        }
    }
    let reply = reply.unwrap_or_else(|| {
        panic!(
            "the gateway never got baresip's reply:\n{}\n{}",
            agent.log(),
            e.log()
        )
    });
    assert!(reply.starts_with("MESSAGE sip:01011112222@"), "{reply}");
}

/// The public web chat: a page starts a chat by POST /api/chat, writes again on the
/// WebSocket, and the counsellor's reply (a SIPp agent phone answering by MESSAGE) comes
/// back on the WebSocket; the sender ends it. Starting chats is limited per client.
#[test]
fn a_web_chat_reaches_a_phone_agent_and_the_reply_reaches_the_page() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Ws;
    let base = port_block();
    let (sip, http) = (base, base + 1);
    let dir = workdir("text-web");
    let e = EngineProc::start(&dir, &text_config(), sip, http);
    let agent = sms_agent_phone(&dir, sip, base, 1, "40s");
    std::thread::sleep(Duration::from_millis(300));

    let (code, body) = http_send(
        http,
        "POST",
        "/api/chat",
        None,
        r#"{"service": "120", "text": "안녕하세요, 분실물 문의요"}"#,
    );
    assert_eq!(code, 201, "{body}");
    let started: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = started["token"].as_str().expect("token").to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reply = rt.block_on(async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{http}/api/chat/ws"))
                .await
                .expect("websocket");
        ws.send(Ws::text(serde_json::json!({"token": token}).to_string()))
            .await
            .unwrap();
        ws.send(Ws::text(
            serde_json::json!({"op": "send", "text": "지갑을 잃어버렸어요"}).to_string(),
        ))
        .await
        .unwrap();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await {
            let v: serde_json::Value =
                serde_json::from_str(m.to_text().unwrap_or("")).unwrap_or_default();
            got.push(v.clone());
            if v["ev"] == "line" && v["text"].as_str().unwrap_or("").starts_with("reply to") {
                break;
            }
        }
        got
    });
    agent.expect_success(LIMIT);
    assert!(reply.iter().any(|v| v["ev"] == "sent"), "{reply:?}");
    let line = reply.last().expect("a line");
    assert_eq!(line["ev"], "line", "{reply:?}");
    assert_eq!(line["from"], "counsellor");
    assert!(
        line["text"].as_str().unwrap().starts_with("reply to web-"),
        "{line}"
    );

    // The page collects the same line by POST, then the sender ends the chat.
    let (code, body) = http_send(
        http,
        "POST",
        "/api/chat",
        None,
        &serde_json::json!({"token": token, "after": 0}).to_string(),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("reply to web-"), "{body}");
    let close = serde_json::json!({"token": token, "close": true}).to_string();
    assert_eq!(http_send(http, "POST", "/api/chat", None, &close).0, 200);
    let again = serde_json::json!({"token": token, "text": "more"}).to_string();
    assert_eq!(http_send(http, "POST", "/api/chat", None, &again).0, 410);
    let t = transcripts(&e);
    assert_eq!(t.len(), 1, "{t:?}");
    let texts: Vec<&str> = t[0].2.iter().map(|m| m.2.as_str()).collect();
    assert_eq!(
        texts[..2],
        ["안녕하세요, 분실물 문의요", "지갑을 잃어버렸어요"],
        "{texts:?}"
    );
    assert!(texts[2].starts_with("reply to web-"), "{texts:?}");

    // Starting chats: five a minute from one client, then 429 (to a number that takes no
    // text, so no conversation is opened by the probes).
    let probe = r#"{"service": "999", "text": "hi"}"#;
    let codes: Vec<u16> = (0..6)
        .map(|_| http_send(http, "POST", "/api/chat", None, probe).0)
        .collect();
    assert_eq!(codes[..4], [404, 404, 404, 404], "{codes:?}");
    assert_eq!(codes[5], 429, "{codes:?}");
}

/// Calls and chats on one agent (a baresip phone that auto-answers calls and takes
/// MESSAGEs): with two chats open, a call is still offered under the default
/// `voice_over_text` (max_chats 3), and is not offered under `exclusive`.
#[test]
fn a_call_reaches_an_agent_with_two_chats_unless_the_agent_is_exclusive() {
    for exclusive in [false, true] {
        let base = port_block();
        let (sip, http) = (base, base + 1);
        let dir = workdir(if exclusive {
            "text-exclusive"
        } else {
            "text-voice-over-text"
        });
        let mut cfg = text_config();
        if exclusive {
            cfg = cfg.replace(
                "skills = [\"ko\"]\n",
                "skills = [\"ko\"]\ncross_channel = \"exclusive\"\n",
            );
        }
        let e = EngineProc::start(&dir, &cfg, sip, http);
        let _agent = baresip_agent(&dir, &e, base, ";answermode=auto", "");
        let gw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        send_sms(&gw, sip, "01011112222", 1, "첫 번째 문의");
        send_sms(&gw, sip, "01033334444", 1, "두 번째 문의");
        let deadline = Instant::now() + Duration::from_secs(10);
        while json(&e, "/api/agents")[0]["chats"] != 2 {
            assert!(Instant::now() < deadline, "{}", json(&e, "/api/agents"));
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut c = base_args(sip, base + 20, base + 22, base + 28);
        c.extend(args(&[
            "-sf",
            &scenarios().join("caller.xml").display().to_string(),
            "-s",
            "120",
            "-m",
            "1",
            "-d",
            "1000",
            "-timeout",
            "30s",
        ]));
        let caller = sipp(&dir, "caller", &c);
        if exclusive {
            // Three seconds later the call still waits and the agent was never offered it.
            std::thread::sleep(Duration::from_secs(3));
            let calls = json(&e, "/api/calls");
            assert_eq!(calls[0]["state"], "waiting", "{calls}");
            assert!(calls[0]["agent"].is_null(), "{calls}");
            assert_eq!(json(&e, "/api/agents")[0]["state"], "ready");
            drop(caller);
        } else {
            caller.expect_success(Duration::from_secs(30));
            assert_eq!(
                e.metric("dasan_calls_total{outcome=\"answered\",queue=\"general\"}"),
                1.0
            );
            assert_eq!(
                json(&e, "/api/agents")[0]["chats"],
                2,
                "the chats stay open"
            );
        }
    }
}

/// Agent 1001 as baresip on `base` + 2 (RTP `base` + 10..19), `params` added to its account
/// and `config` to its config file, once it is registered.
fn baresip_agent(
    dir: &std::path::Path,
    e: &EngineProc,
    base: u16,
    params: &str,
    config: &str,
) -> Baresip {
    let agent = Baresip::start_with(
        dir,
        "agent",
        base + 2,
        (base + 10, base + 19),
        G711_TONE,
        &format!(
            "<sip:1001@127.0.0.1:{}>;auth_pass=test-pw{params};regint=60;audio_codecs=pcmu",
            base
        ),
        &[],
        config,
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while e.agent_state("1001") != "ready" {
        assert!(
            Instant::now() < deadline,
            "baresip did not register:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    agent
}
