//! The agent desktop's messages (`web::agent_ws`): the engine parses no STUN or WebSocket
//! framing itself (axum/tungstenite frame the WebSocket, the `rtc` crate parses STUN,
//! DTLS and the browser's SDP), so this fuzzes what it does parse: the page's JSON requests
//! (`Request::parse`), acted on by the stand-in SIP user agent (`web::ua::AgentUa`), and
//! the SIP the engine sends that user agent. Everything the user agent sends must be valid
//! SIP whatever the page asked: a page cannot inject headers into a REFER or an INFO.
//!
//! Records as in `dasan_fuzz::script`: `@@j` a JSON text frame from the page, `@@s` (or no
//! directive) a SIP message from the engine.
#![no_main]

use dasan::sip::Message;
use dasan::web::agent_ws::Request;
use dasan::web::ua::AgentUa;
use dasan_fuzz::script::records;
use libfuzzer_sys::fuzz_target;

fn check(m: &Message) {
    let bytes = m.to_bytes();
    let back = Message::parse(&bytes)
        .unwrap_or_else(|e| panic!("the user agent sent invalid SIP ({e}): {bytes:?}"));
    // (Serializing adds Content-Length when the message has none.)
    let count = |m: &Message| {
        m.headers
            .iter()
            .filter(|h| h.name != "Content-Length")
            .count()
    };
    assert_eq!(count(&back), count(m), "headers injected: {bytes:?}");
}

fuzz_target!(|data: &[u8]| {
    let mut ua = AgentUa::new(
        "1001",
        "pw",
        "127.0.0.1:41000".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
        7,
    );
    for (directive, payload) in records(data) {
        let out: Vec<Message> = match directive.and_then(|d| d.first()) {
            Some(b'j') => {
                let Ok(text) = std::str::from_utf8(payload) else {
                    continue;
                };
                let m = match Request::parse(text) {
                    Request::State { state, .. } if state == "ready" => {
                        Some(ua.register(300, None))
                    }
                    Request::State { state, .. } if state == "logout" => Some(ua.register(0, None)),
                    // As a desk with a VP8 camera: a video offer's video is answered too.
                    Request::Answer => ua.answer(
                        "127.0.0.1".parse().unwrap(),
                        40000,
                        Some((dasan::media::sdp::VideoCodec::Vp8, 40002)),
                    ),
                    Request::Hangup => ua.hang_up(),
                    Request::Dtmf(Some(d)) => ua.dtmf(d),
                    Request::Transfer(Some(t)) => ua.refer(&t),
                    _ => None,
                };
                m.into_iter().collect()
            }
            _ => {
                let Ok(m) = Message::parse(payload) else {
                    continue;
                };
                let (out, _events) = ua.on_message(&m);
                out
            }
        };
        for m in &out {
            check(m);
        }
        let _ = ua.in_call();
    }
});
