//! RTP/RTCP (`media::rtp`) and RFC 4733 telephone-events (`media::dtmf`): the packet
//! parsers on their own, then a call's media session (`MediaSession::handle_packet`, the
//! media plane's entry for every datagram on a call's ports) fed a stream of packets from
//! several sources, with time passing, before and after the agent leg is attached (G.711
//! and Opus on either side, so transcoding and recording decode hostile payloads too).
//!
//! Input: byte 0 picks the codecs (bits 0-1 caller, 2-3 agent, 4 attach, 5 record, 6
//! detach later); then records `[ctl][len][len bytes]`, `ctl` bit 0 the leg, bits 1-2 the
//! source address, bits 3-7 the wait before it (x 10 ms).
#![no_main]

use dasan::media::bridge::LegId;
use dasan::media::dtmf::{parse_dtmf_relay, EventReceiver, TelephoneEvent};
use dasan::media::rtp::{is_rtcp, parse_rtcp, parse_rtp};
use dasan::media::sdp::{Codec, Negotiated};
use dasan::media::session::{Command, MediaSession, Music};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

fn codec(bits: u8) -> (Codec, u8) {
    match bits & 3 {
        0 => (Codec::Pcmu, 0),
        1 => (Codec::Pcma, 8),
        _ => (Codec::Opus, 111),
    }
}

fn parsers(p: &[u8]) {
    let _ = is_rtcp(p);
    let _ = parse_rtcp(p);
    if let Some(h) = parse_rtp(p) {
        assert!(h.payload_offset <= p.len());
        let payload = &p[h.payload_offset..];
        if let Some(ev) = TelephoneEvent::parse(payload) {
            assert_eq!(TelephoneEvent::parse(&ev.to_bytes()), Some(ev));
        }
        let _ = EventReceiver::default().on_packet(h.timestamp, payload);
    }
    if let Ok(s) = std::str::from_utf8(p) {
        let _ = parse_dtmf_relay(s);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    parsers(rest);
    let srcs: [SocketAddr; 4] = [
        "10.1.1.1:4000".parse().unwrap(),
        "10.1.1.1:4002".parse().unwrap(),
        "192.0.2.1:6000".parse().unwrap(),
        "203.0.113.9:9".parse().unwrap(),
    ];
    let (cc, cpt) = codec(mode);
    let (ac, apt) = codec(mode >> 2);
    let mut now = Instant::now();
    let caller = Negotiated::simple(cc, cpt, srcs[0]);
    let mut s = MediaSession::new(
        now,
        SystemTime::UNIX_EPOCH,
        &caller,
        // The caller's SIP comes from its SDP host: another port of that host is welcome
        // after silence, the other sources are strangers (strict source, issue 15).
        srcs[1].ip(),
        0x1234,
        Duration::from_secs(30),
        Music::Silence,
    );
    let mut out = Vec::new();
    let mut n = 0usize;
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], rest[1] as usize);
        let body = &rest[2..];
        let len = len.min(body.len());
        let (packet, tail) = body.split_at(len);
        rest = tail;
        n += 1;
        parsers(packet);
        now += Duration::from_millis(10 * (ctl >> 3) as u64);
        while s.poll_timeout() <= now {
            s.handle_timeout(now, &mut out);
        }
        if n == 3 && mode & 0x10 != 0 {
            let agent = Negotiated::simple(ac, apt, srcs[2]);
            let cmd = Command::Attach {
                agent,
                signalling: srcs[2].ip(),
                ssrc: 0x5678,
                record: mode & 0x20 != 0,
            };
            let _ = s.handle_command(now, cmd, &mut out);
        }
        if n == 12 && mode & 0x40 != 0 {
            let _ = s.handle_command(now, Command::Detach, &mut out);
        }
        let leg = if ctl & 1 == 0 {
            LegId::Caller
        } else {
            LegId::Agent
        };
        let src = srcs[(ctl >> 1) as usize & 3];
        let _ = s.handle_packet(now, leg, src, packet.to_vec(), &mut out);
        out.clear();
    }
    now += Duration::from_secs(60);
    s.handle_timeout(now, &mut out);
    let _ = s.lost();
});
