//! Media hot paths: the relay's packet rewrite, G.711 and Opus per 20 ms frame, and one
//! transcoded call (both directions) per 20 ms.
//!
//! Machine: x86_64, 2 cores, 24 GiB (the project's standard machine), 2026-11-25.
//! Results (`cargo bench --bench media`, release profile):
//!   relay: one G.711 packet (rewrite path)       70 ns   → ~14 M packets/s per core of
//!                                                           relay logic (target 300 k; the
//!                                                           kernel's UDP path will dominate)
//!   G.711 μ-law encode / decode, 20 ms          387 ns / 108 ns
//!   Opus encode 20 ms at 48 kHz (complexity 0)  60–80 µs (two runs); Opus decode 20 ms  29 µs
//!   transcoded call, 20 ms each way (2026-11-26, complexity 0, CELT towards Opus):
//!     G.711 ↔ narrowband Opus (what the desktop asks browsers for)
//!                                              13.0 µs  → ~1,500 calls per core
//!     G.711 ↔ full-band Opus (a peer ignoring maxplaybackrate)
//!                                              31.2 µs  → ~640 calls per core
//!   session: bridged G.711 packet              102 ns   (the relay plus the call's
//!                                                           session around it)
//!   session: waiting caller's packet           4.2 µs   (in-band DTMF check on G.711:
//!                                                           ~210 µs/s per waiting caller,
//!                                                           ~4,800 waiting callers/core)
//!   session: one ringback frame out            90 ns
//!   video relay: one 1,100-byte VP8 packet     242 ns   (2026-12-03; building the input
//!                                                           packet included: ~140 packets/s
//!                                                           per call at 600 kbit/s each way
//!                                                           is ~34 µs/s of relay logic per
//!                                                           call; the sockets dominate)
//! History: 127 µs per transcoded call with 48 kHz resampling and default complexity
//! (157 calls/core); 78.8 µs letting libopus run at 8 kHz with complexity 5; 58.2 µs at
//! complexity 3 (2026-11-25, full-band packet in); complexity 0 and no per-frame scratch
//! buffers: 40.0 µs full band, 22.0 µs narrowband; G.711 → Opus in CELT mode at 32 kbit/s
//! instead of SILK (`OpusEncoder::narrowband`): 31.2 µs full band, 13.0 µs narrowband.
//! Conclusion: the per-packet logic is far from being the limit; socket I/O and, for
//! transcoded calls, the Opus encoder are.

use criterion::{criterion_group, criterion_main, Criterion};
use dasan::media::bridge::{BridgeEvent, LegId, RtpBridge, RtpLeg};
use dasan::media::g711::Law;
use dasan::media::opus::{G711ToOpus, OpusDecoder, OpusEncoder, OpusToG711};
use dasan::media::rtp::build_rtp;
use dasan::media::sdp::{Codec, Direction, Negotiated};
use dasan::media::session::{Command, MediaSession, Music, Output};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn neg(codec: Codec, pt: u8, port: u16) -> Negotiated {
    Negotiated {
        codec,
        pt,
        dtmf: None,
        direction: Direction::SendRecv,
        remote: ("127.0.0.1".parse().unwrap(), port),
        savp: false,
        crypto: None,
        srtp: None,
    }
}

fn benches(c: &mut Criterion) {
    let t0 = Instant::now();
    let d = Duration::from_secs(30);
    let mut bridge = RtpBridge::new(
        RtpLeg::new(t0, &neg(Codec::Pcmu, 0, 4000), LOOPBACK, 1, d),
        RtpLeg::new(t0, &neg(Codec::Pcmu, 0, 5000), LOOPBACK, 2, d),
    )
    .unwrap();
    let src: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let template = build_rtp(0, false, 0, 0, 7, &[0x55; 160]);
    let mut seq = 0u16;
    let mut out: Vec<BridgeEvent> = Vec::with_capacity(4);
    c.bench_function("relay: one G.711 packet (rewrite path)", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let mut p = template.clone();
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
            out.clear();
            bridge
                .on_packet(t0, LegId::Caller, src, p, &mut out)
                .unwrap();
            black_box(&out);
        })
    });

    // The production path: a call's MediaSession, bridged (what each relayed packet costs
    // once the agent answered) and early (a waiting caller: in-band DTMF detection on
    // every packet, and one prompt frame out every 20 ms).
    let mut session = MediaSession::new(
        t0,
        SystemTime::now(),
        &neg(Codec::Pcmu, 0, 4000),
        LOOPBACK,
        1,
        d,
        Music::Silence,
    );
    let mut sout: Vec<Output> = Vec::with_capacity(4);
    session
        .handle_command(
            t0,
            Command::Attach {
                agent: neg(Codec::Pcmu, 0, 5000),
                signalling: LOOPBACK,
                ssrc: 2,
                record: false,
            },
            &mut sout,
        )
        .unwrap();
    c.bench_function("session: bridged G.711 packet", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let mut p = template.clone();
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            sout.clear();
            session
                .handle_packet(t0, LegId::Caller, src, p, &mut sout)
                .unwrap();
            black_box(&sout);
        })
    });
    let mut waiting = MediaSession::new(
        t0,
        SystemTime::now(),
        &neg(Codec::Pcmu, 0, 4000),
        LOOPBACK,
        1,
        d,
        Music::Loop(dasan::media::prompt::ringback()),
    );
    c.bench_function(
        "session: waiting caller's packet (in-band DTMF check)",
        |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                let mut p = template.clone();
                p[2..4].copy_from_slice(&seq.to_be_bytes());
                sout.clear();
                waiting
                    .handle_packet(t0, LegId::Caller, src, p, &mut sout)
                    .unwrap();
                black_box(&sout);
            })
        },
    );
    let mut t = t0;
    c.bench_function("session: one ringback frame to a waiting caller", |b| {
        b.iter(|| {
            t += Duration::from_millis(20);
            sout.clear();
            waiting.handle_timeout(t, &mut sout);
            black_box(&sout);
        })
    });

    let pcm8: Vec<i16> = (0..160)
        .map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16)
        .collect();
    let mut enc = Vec::with_capacity(160);
    c.bench_function("G.711 u-law encode 20 ms", |b| {
        b.iter(|| {
            enc.clear();
            Law::Ulaw.encode(black_box(&pcm8), &mut enc);
        })
    });
    let mut dec = Vec::with_capacity(160);
    c.bench_function("G.711 u-law decode 20 ms", |b| {
        b.iter(|| {
            dec.clear();
            Law::Ulaw.decode(black_box(&enc), &mut dec);
        })
    });

    let pcm48: Vec<i16> = (0..960)
        .map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16)
        .collect();
    let mut oe = OpusEncoder::new().unwrap();
    let mut od = OpusDecoder::new().unwrap();
    let mut pkt = Vec::new();
    oe.encode(&pcm48, &mut pkt).unwrap();
    c.bench_function("Opus encode 20 ms (48 kHz mono)", |b| {
        b.iter(|| {
            let mut v = Vec::new();
            oe.encode(black_box(&pcm48), &mut v).unwrap();
            v
        })
    });
    c.bench_function("Opus decode 20 ms", |b| {
        b.iter(|| {
            let mut v = Vec::new();
            od.decode(Some(black_box(&pkt)), &mut v).unwrap();
            v
        })
    });

    // What a browser sends the engine: narrowband mono, as our SDP's maxplaybackrate=8000
    // asks (the agent desktop); and full band, from a peer that ignores it.
    let mut nb = OpusEncoder::with_rate(audiopus::SampleRate::Hz8000).unwrap();
    let mut pkt_nb = Vec::new();
    nb.encode(&pcm8, &mut pkt_nb).unwrap();
    for (name, from_browser) in [
        (
            "transcoded call: 20 ms each way (G.711 <-> narrowband Opus)",
            &pkt_nb,
        ),
        (
            "transcoded call: 20 ms each way (G.711 <-> full-band Opus)",
            &pkt,
        ),
    ] {
        let mut up = G711ToOpus::new(Law::Ulaw).unwrap();
        let mut down = OpusToG711::new(Law::Ulaw).unwrap();
        let (mut o, mut g) = (Vec::with_capacity(1500), Vec::with_capacity(960));
        c.bench_function(name, |b| {
            b.iter(|| {
                o.clear();
                g.clear();
                up.process(black_box(&enc), &mut o).unwrap();
                down.process(Some(from_browser), &mut g).unwrap();
                black_box((&o, &g));
            })
        });
    }
}

/// The video relay's per-packet work: one VP8 packet of ~1,100 bytes (a 600 kbit/s stream
/// at 30 fps is ~70 such packets a second each way).
fn video(c: &mut Criterion) {
    use dasan::media::sdp::{KeyframeBy, VideoCodec, VideoNeg};
    use dasan::media::video::VideoRelay;
    let t0 = Instant::now();
    let d = Duration::from_secs(30);
    let v = |port| VideoNeg {
        codec: VideoCodec::Vp8,
        pt: 97,
        fmtp: None,
        remote: ("127.0.0.1".parse().unwrap(), port),
        direction: Direction::SendRecv,
        kbps: None,
        keyframe: KeyframeBy::Pli,
    };
    let mut relay = VideoRelay::new(t0, &v(9000), LOOPBACK, 1, d);
    relay.attach(t0, &v(7000), 97, LOOPBACK, 2, d);
    let from: SocketAddr = "127.0.0.1:9000".parse().unwrap();
    let payload = vec![0x5Au8; 1100];
    let mut seq = 0u16;
    c.bench_function("video relay: one 1,100-byte VP8 packet", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let p = build_rtp(97, false, seq, u32::from(seq) * 3000, 0x1111, &payload);
            black_box(relay.on_rtp(t0, LegId::Caller, from, black_box(&p)))
        })
    });
}

criterion_group!(group, benches, video);
criterion_main!(group);
