//! A browser agent's call: the engine's work for 20 ms of audio each way, without the
//! kernel. Caller → agent: a G.711 packet into the call's media session (decoded, Opus
//! encoded), handed through the in-process switch to the browser leg, SRTP-protected into a
//! datagram for the browser. Agent → caller: an SRTP datagram from the browser into the leg
//! (decrypted, RTCP statistics), through the switch into the media session (Opus decoded,
//! G.711 encoded) into a packet for the trunk. The browser is a second sans-IO peer
//! connection, connected in memory (ICE, DTLS); its own work is not timed.
//!
//! This is the browser-call counterpart of `media.rs`'s transcoded-call figure; what the
//! kernel adds (four UDP system calls per 20 ms, their wake-ups) is in the end-to-end figure
//! of `sipp-scenarios/load-web.sh`.
//!
//! Machine: x86_64, 2 cores (the project's standard machine). Results: see
//! sipp-scenarios/README.md ("Browser-agent load").

use criterion::{criterion_group, criterion_main, Criterion};
use dasan::media::bridge::LegId;
use dasan::media::g711::Law;
use dasan::media::opus::OpusEncoder;
use dasan::media::rtp::build_rtp;
use dasan::media::sdp::{Codec, Direction, Negotiated};
use dasan::media::session::{Command, MediaSession, Music, Output};
use dasan::runtime::{LocalRtp, Sink};
use dasan::web::peer::loopback::connect;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

type Queue = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

fn neg(codec: Codec, pt: u8, remote: SocketAddr) -> Negotiated {
    Negotiated {
        codec,
        pt,
        dtmf: None,
        direction: Direction::SendRecv,
        remote: (remote.ip(), remote.port()),
        savp: false,
        crypto: None,
        srtp: None,
    }
}

fn benches(c: &mut Criterion) {
    let trunk: SocketAddr = ([127, 0, 0, 1], 4000).into();
    let agent_leg: SocketAddr = ([127, 0, 0, 1], 20_002).into();
    let ice: SocketAddr = ([127, 0, 0, 1], 30_000).into();
    let bridge_rtp: SocketAddr = ([127, 0, 0, 1], 30_002).into();
    let (mut browser, mut leg) = connect(ice, bridge_rtp).expect("in-memory WebRTC connects");
    leg.set_target(Some((agent_leg, 111)));
    // The in-process switch with each end's sink queuing what it gets, for the loop below
    // to run through the leg and the session (in the engine the sinks run them in place).
    let switch = LocalRtp::default();
    let queue = || {
        let q: Queue = Arc::default();
        let sink_q = q.clone();
        let sink: Sink = Arc::new(move |from, data| {
            sink_q.lock().expect("queue").push((from, data));
            true
        });
        (q, sink)
    };
    let (to_bridge, sink) = queue();
    let _r1 = switch.register_sink(bridge_rtp, sink);
    let (to_agent_leg, sink) = queue();
    let _r2 = switch.register_sink(agent_leg, sink);

    let t0 = Instant::now();
    let mut session = MediaSession::new(
        t0,
        SystemTime::now(),
        &neg(Codec::Pcmu, 0, trunk),
        trunk.ip(),
        1,
        Duration::from_secs(3600),
        Music::Silence,
    );
    let mut out: Vec<Output> = Vec::with_capacity(8);
    session
        .handle_command(
            t0,
            Command::Attach {
                agent: neg(Codec::Opus, 111, bridge_rtp),
                signalling: bridge_rtp.ip(),
                ssrc: 2,
                record: false,
            },
            &mut out,
        )
        .expect("attach");

    // The caller's speech (a 440 Hz tone) and the browser's microphone (narrowband Opus).
    let pcm: Vec<i16> = (0..160)
        .map(|i| ((i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 8000.0).sin() * 8000.0) as i16)
        .collect();
    let mut g711 = Vec::new();
    Law::Ulaw.encode(&pcm, &mut g711);
    let mut mic = Vec::new();
    OpusEncoder::with_rate(audiopus::SampleRate::Hz8000)
        .expect("encoder")
        .encode(&pcm, &mut mic)
        .expect("encode");

    let mut seq: u16 = 0;
    let (mut to_browser, mut to_trunk, mut rounds) = (0u64, 0u64, 0u64);
    c.bench_function(
        "browser call: 20 ms each way (G.711 <-> Opus + SRTP, engine's work)",
        |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    rounds += 1;
                    seq = seq.wrapping_add(1);
                    let caller_pkt = build_rtp(0, false, seq, seq as u32 * 160, 0xCA11, &g711);
                    // The browser's packet is made outside the timed part.
                    browser.send_mic(Instant::now(), seq, &mic).expect("mic");
                    let mut from_browser = Vec::new();
                    while let Some(m) = browser.pc_poll_write() {
                        from_browser.push(m);
                    }

                    let start = Instant::now();
                    let now = start;
                    // Caller → agent.
                    out.clear();
                    session
                        .handle_packet(now, LegId::Caller, trunk, caller_pkt, &mut out)
                        .expect("caller packet");
                    for o in out.drain(..) {
                        if let Output::Send {
                            leg: LegId::Agent,
                            to,
                            packet,
                        } = o
                        {
                            let _ = switch.deliver(agent_leg, to, packet);
                        }
                    }
                    for (from, data) in to_bridge.lock().expect("queue").drain(..) {
                        leg.handle_engine_packet(now, from, &data);
                    }
                    let mut srtp_out = Vec::new();
                    while let Some(d) = leg.poll_transmit() {
                        srtp_out.push(d);
                    }
                    // Agent → caller.
                    for d in &from_browser {
                        leg.handle_datagram(now, browser.addr, d);
                    }
                    while let Some((from, to, data)) = leg.poll_to_engine() {
                        let _ = switch.deliver(from, to, data);
                    }
                    for (from, data) in to_agent_leg.lock().expect("queue").drain(..) {
                        session
                            .handle_packet(now, LegId::Agent, from, data, &mut out)
                            .expect("agent packet");
                    }
                    for o in out.drain(..) {
                        if let Output::Send {
                            leg: LegId::Caller, ..
                        } = o
                        {
                            to_trunk += 1;
                        }
                    }
                    timed += start.elapsed();

                    // The browser takes what it was sent (not timed).
                    for (_, d) in srtp_out {
                        browser.receive(Instant::now(), ice, d);
                    }
                    to_browser += browser.heard().len() as u64;
                }
                timed
            })
        },
    );
    // The figure means something only if audio flowed both ways, every round (bar the
    // first, which the jitter of a fresh stream may hold).
    assert!(
        to_browser + 1 >= rounds && to_trunk + 1 >= rounds && rounds > 0,
        "{rounds} rounds: browser heard {to_browser}, trunk got {to_trunk}"
    );
}

criterion_group!(group, benches);
criterion_main!(group);
