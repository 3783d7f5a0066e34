//! Signalling cost without sockets: SIP parse/serialize and one whole call through the
//! sans-IO engine (trunk INVITE → agent INVITE → 180/200 → ACKs → BYE → 200).
//!
//! Machine: x86_64, 2 cores, 24 GiB (the project's standard machine), 2026-11-25.
//! Results (`cargo bench --bench call_path`, release profile):
//!   parse INVITE (with SDP)                      2.02 µs
//!   serialize INVITE                             0.36 µs
//!   engine: one full call                       88.3 µs   (≈ 11,300 calls/s on one core)
//! The full-call figure is an upper bound on engine logic: it includes this harness
//! building the agent's and caller's messages and parsing every message the engine sends.
//! Conclusion: signalling logic fits well inside the ≤ 0.5 CPU-s per 1,000 calls budget;
//! `sipp-scenarios/load.sh` measures 0.15–0.25 CPU-s per 1,000 calls for the whole engine
//! process with sockets (13 datagrams per call through the kernel).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use dasan::b2bua::Engine;
use dasan::config::Config;
use dasan::metrics::Metrics;
use dasan::registrar::digest::authorization;
use dasan::sip::build::response;
use dasan::sip::{Flow, Message, Method};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const INVITE: &str = "INVITE sip:120@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-1;rport\r\nFrom: \"Caller\" <sip:0212345678@127.0.0.1:5070>;tag=1SIPpTag001\r\nTo: <sip:120@127.0.0.1:5060>\r\nCall-ID: 1-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:5070;transport=UDP>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\nv=0\r\no=caller 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

const AGENT_ANSWER: &str = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

const CFG: &str = r#"
[[trunk]]
name = "t"
sources = ["127.0.0.0/8"]
[[route]]
number = "120"
queue = "general"
[queue.general]
skill = "ko"
[[agents]]
ids = "1001-1100"
password = "pw"
skills = ["ko"]
"#;

fn drain(e: &mut Engine) -> Vec<(Flow, Message)> {
    let mut v = Vec::new();
    while let Some(t) = e.poll_transmit() {
        if let Ok(m) = Message::parse(&t.data) {
            v.push((t.flow, m));
        }
    }
    v
}

fn register(e: &mut Engine, now: Instant, id: &str, port: u16) {
    let flow = Flow::udp(format!("127.0.0.1:{port}").parse().unwrap());
    let reg = |auth: &str, cseq: u32| {
        format!("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKr{cseq}{id}\r\nFrom: <sip:{id}@127.0.0.1>;tag=r\r\nTo: <sip:{id}@127.0.0.1>\r\nCall-ID: reg{id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{id}@127.0.0.1:{port}>\r\n{auth}Content-Length: 0\r\n\r\n")
    };
    e.handle_message(now, flow, reg("", 1).as_bytes());
    let out = drain(e);
    let ch = out[0].1.header("WWW-Authenticate").unwrap();
    let auth = format!(
        "Authorization: {}\r\n",
        authorization(ch, id, "pw", "REGISTER", "sip:127.0.0.1", "c").unwrap()
    );
    e.handle_message(now, flow, reg(&auth, 2).as_bytes());
    drain(e);
}

fn bytes_of(m: &Message) -> Bytes {
    m.to_bytes()
}

/// One call end to end; `n` makes Call-IDs and branches unique.
fn one_call(e: &mut Engine, now: Instant, n: u64) {
    let trunk = Flow::udp("127.0.0.1:5070".parse().unwrap());
    let invite = INVITE
        .replace("1-1@127.0.0.1", &format!("{n}-1@127.0.0.1"))
        .replace("z9hG4bK-1-1", &format!("z9hG4bK-{n}-1"));
    e.handle_message(now, trunk, invite.as_bytes());
    let out = drain(e);
    let (aflow, ainv) = out
        .into_iter()
        .find(|(_, m)| m.method() == Some(&Method::Invite))
        .expect("agent INVITE");
    let mut ringing = response(&ainv, 180, None, Some("at"));
    ringing.set_header("Contact", "<sip:a@127.0.0.1:5080>");
    e.handle_message(now, aflow, &bytes_of(&ringing));
    let mut ok = ringing.clone();
    ok.start = dasan::sip::StartLine::Response {
        code: 200,
        reason: "OK".into(),
    };
    // The answer to the engine's offer (a 200 without one is hung up: no media to bridge).
    ok.set_header("Content-Type", "application/sdp");
    ok.body = Bytes::from_static(AGENT_ANSWER.as_bytes());
    e.handle_message(now, aflow, &bytes_of(&ok));
    let out = drain(e);
    let tag = out
        .iter()
        .find(|(_, m)| m.status() == Some(200))
        .and_then(|(_, m)| m.to_tag())
        .expect("200 to caller");
    let ack = format!("ACK sip:dasan@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-3\r\nFrom: \"Caller\" <sip:0212345678@127.0.0.1:5070>;tag=1SIPpTag001\r\nTo: <sip:120@127.0.0.1:5060>;tag={tag}\r\nCall-ID: {n}-1@127.0.0.1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
    e.handle_message(now, trunk, ack.as_bytes());
    let bye = ack
        .replace("CSeq: 1 ACK", "CSeq: 2 BYE")
        .replace("ACK sip:", "BYE sip:")
        .replace(&format!("-{n}-3"), &format!("-{n}-4"));
    e.handle_message(now, trunk, bye.as_bytes());
    let out = drain(e);
    let (bflow, abye) = out
        .into_iter()
        .find(|(_, m)| m.method() == Some(&Method::Bye))
        .expect("agent BYE");
    e.handle_message(now, bflow, &bytes_of(&response(&abye, 200, None, None)));
    drain(e);
}

fn benches(c: &mut Criterion) {
    c.bench_function("parse INVITE", |b| {
        b.iter(|| Message::parse(black_box(INVITE.as_bytes())).unwrap())
    });
    let m = Message::parse(INVITE.as_bytes()).unwrap();
    c.bench_function("serialize INVITE", |b| b.iter(|| black_box(&m).to_bytes()));

    let cfg = Config::parse(CFG, "bench").unwrap();
    let t0 = Instant::now();
    let mut e = Engine::new(
        &cfg,
        Arc::new(Metrics::new().unwrap()),
        t0,
        1_700_000_000,
        dasan::sip::build::Ids::seeded(1),
    );
    for i in 0..100u16 {
        register(&mut e, t0, &format!("{}", 1001 + i), 20_000 + i);
    }
    let mut n = 0u64;
    let mut now = t0;
    c.bench_function(
        "engine: one full call (incl. building the peers' messages)",
        |b| {
            b.iter(|| {
                n += 1;
                // Virtual time moves on so lingering transactions are reclaimed as in real use.
                now += Duration::from_micros(300);
                e.handle_timeout(now);
                one_call(&mut e, now, n);
            })
        },
    );
}

criterion_group!(group, benches);
criterion_main!(group);
