//! RTP/RTCP (RFC 3550) as a sans-IO session: time is passed in, nothing here owns a socket.
//!
//! One `RtpSession` is one leg's media: it latches onto the peer's real source address
//! (symmetric RTP, for callers behind NAT), keeps receive statistics (RFC 3550 A.1 sequence
//! tracking, A.8 jitter), rewrites what the engine sends so that SSRC, sequence numbers and
//! timestamps stay continuous when the source switches (prompt → agent audio), builds basic
//! SR/RR reports, and reports a media timeout when the peer goes silent.
//!
//! Latching is strict. Only a source the leg's own signalling vouches for is learned: the
//! address its SDP names, or any port on the SDP's IP or on the IP its SIP messages come
//! from (a phone behind NAT names a private address in its SDP and sends from its public
//! one). Once learned, packets from anywhere else are dropped and counted
//! ([`Accept::WrongSource`]). The learned source moves only to another vouched-for source,
//! and only after it has been silent for a while (NAT rebinding of the same host), or at
//! once after a new offer/answer moves the SDP address ([`RtpSession::renegotiated`]) —
//! never to an unrelated address because the peer fell silent.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// RFC 5761 4: RTP and RTCP on one port are told apart by the payload-type byte.
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && packet[0] >> 6 == 2 && (192..=223).contains(&packet[1])
}

/// A parsed RTP header (via rtp-rs, after RTCP has been demultiplexed away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_offset: usize,
}

pub fn parse_rtp(packet: &[u8]) -> Option<RtpHeader> {
    if is_rtcp(packet) {
        return None;
    }
    let r = rtp_rs::RtpReader::new(packet).ok()?;
    Some(RtpHeader {
        payload_type: r.payload_type(),
        marker: r.mark(),
        seq: u16::from(r.sequence_number()),
        timestamp: r.timestamp(),
        ssrc: r.ssrc(),
        payload_offset: packet.len() - r.payload().len(),
    })
}

/// Builds an RTP packet (no CSRC, no extension).
pub fn build_rtp(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push((pt & 0x7F) | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Receive statistics for one source (RFC 3550 A.1 and A.8).
#[derive(Debug, Clone, Default)]
pub struct RxStats {
    pub ssrc: u32,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    pub received: u64,
    started: bool,
    last_transit: Option<i64>,
    /// Interarrival jitter in timestamp units.
    pub jitter: f64,
}

impl RxStats {
    fn update(&mut self, h: &RtpHeader, arrival_ts_units: i64) {
        if !self.started || h.ssrc != self.ssrc {
            *self = RxStats {
                ssrc: h.ssrc,
                base_seq: h.seq as u32,
                max_seq: h.seq,
                started: true,
                ..Default::default()
            };
        } else {
            let delta = h.seq.wrapping_sub(self.max_seq);
            if delta != 0 && delta < 0x8000 {
                if h.seq < self.max_seq {
                    self.cycles += 1 << 16;
                }
                self.max_seq = h.seq;
            }
        }
        self.received += 1;
        let transit = arrival_ts_units - h.timestamp as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    pub fn extended_max(&self) -> u32 {
        self.cycles + self.max_seq as u32
    }

    pub fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        (self.extended_max() as u64 + 1).saturating_sub(self.base_seq as u64)
    }

    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }
}

/// Where a leg's media may come from before anything is learned, and where a learned source
/// may move to: what the leg's signalling says about its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The RTP address in the peer's SDP (where we send until a source is learned).
    pub sdp: SocketAddr,
    /// The IP the leg's SIP signalling comes from (the peer's public address behind NAT).
    pub signalling: IpAddr,
}

impl Expected {
    /// The SDP address, or the same host on another port: the SDP's IP or the signalling IP.
    pub fn admits(&self, src: SocketAddr) -> bool {
        let ip = src.ip().to_canonical();
        ip == self.sdp.ip().to_canonical() || ip == self.signalling.to_canonical()
    }
}

/// What the session thinks of a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// From the latched peer: use it.
    Yes,
    /// Not from the learned source (nor a source the leg's signalling vouches for that may
    /// take over): dropped, and counted in [`RtpSession::foreign`].
    WrongSource,
    /// Not RTP.
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaTimeout {
    /// No RTP from the peer for the configured time.
    NoMedia,
}

/// Continuity state for what we send: our SSRC, and offsets that map each input stream
/// onto one continuous output stream.
#[derive(Debug, Clone)]
struct TxState {
    ssrc: u32,
    source: Option<(u32, u8)>,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    last_sent: Option<Instant>,
    packets: u64,
    octets: u64,
}

pub struct RtpSession {
    clock_rate: u32,
    expected: Expected,
    latched: Option<SocketAddr>,
    /// Packets dropped as [`Accept::WrongSource`].
    foreign: u64,
    last_rx: Option<Instant>,
    started: Instant,
    media_timeout: Duration,
    /// The media timeout counts from here when nothing has been received since.
    timeout_from: Instant,
    relatch_after: Duration,
    pub rx: RxStats,
    tx: TxState,
}

impl RtpSession {
    /// `clock_rate` of the negotiated codec; `ssrc` ours (random in production); `expected`
    /// what the leg's signalling says about where its media comes from.
    pub fn new(
        now: Instant,
        clock_rate: u32,
        ssrc: u32,
        media_timeout: Duration,
        expected: Expected,
    ) -> Self {
        RtpSession {
            clock_rate,
            expected,
            latched: None,
            foreign: 0,
            last_rx: None,
            started: now,
            media_timeout,
            timeout_from: now,
            relatch_after: Duration::from_secs(2),
            rx: RxStats::default(),
            tx: TxState {
                ssrc,
                source: None,
                seq_offset: 0,
                ts_offset: 0,
                last_seq: (ssrc >> 16) as u16,
                last_ts: ssrc.rotate_left(7),
                last_sent: None,
                packets: 0,
                octets: 0,
            },
        }
    }

    /// The learned source, where we send.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.latched
    }

    pub fn expected(&self) -> Expected {
        self.expected
    }

    /// Packets dropped so far because they came from a source other than the learned one.
    pub fn foreign(&self) -> u64 {
        self.foreign
    }

    /// A new offer/answer (re-INVITE, UPDATE) for this leg: its SDP address and the IP that
    /// signalling came from. When the SDP address moved, what was learned is forgotten and
    /// the next source the new signalling vouches for is learned at once. An unspecified
    /// address (`c=0.0.0.0`, the old way to hold) changes nothing but the signalling IP.
    pub fn renegotiated(&mut self, sdp: SocketAddr, signalling: IpAddr) {
        self.expected.signalling = signalling;
        if sdp.ip().is_unspecified() || sdp == self.expected.sdp {
            return;
        }
        self.expected.sdp = sdp;
        self.latched = None;
    }

    pub fn ssrc(&self) -> u32 {
        self.tx.ssrc
    }

    /// A packet arrived from `src`. The first source the leg's signalling vouches for is
    /// learned; another such source takes over once the learned one has been silent for a
    /// while (the same host behind a NAT that rebound). Anything else is dropped and counted.
    pub fn on_rtp(
        &mut self,
        now: Instant,
        src: SocketAddr,
        packet: &[u8],
    ) -> (Accept, Option<RtpHeader>) {
        let Some(h) = parse_rtp(packet) else {
            return (Accept::Malformed, None);
        };
        if self.latched != Some(src) {
            let may_take_over = match self.latched {
                None => true,
                Some(_) => self
                    .last_rx
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.relatch_after),
            };
            if !(may_take_over && self.expected.admits(src)) {
                self.foreign += 1;
                return (Accept::WrongSource, Some(h));
            }
            self.latched = Some(src);
        }
        self.last_rx = Some(now);
        let arrival =
            (now.duration_since(self.started).as_secs_f64() * self.clock_rate as f64) as i64;
        self.rx.update(&h, arrival);
        (Accept::Yes, Some(h))
    }

    /// Rewrites a packet from some input stream (identified by its SSRC) into our output
    /// stream: our SSRC, and sequence/timestamp continuous across source switches.
    pub fn rewrite(&mut self, now: Instant, packet: &mut [u8]) -> bool {
        let Some(h) = parse_rtp(packet) else {
            return false;
        };
        let source = (h.ssrc, h.payload_type);
        if self.tx.source.map(|s| s.0) != Some(h.ssrc) {
            // New input: continue numbering after what we sent last, and move the clock on
            // by the real time that passed.
            let elapsed = self
                .tx
                .last_sent
                .map(|t| (now.duration_since(t).as_secs_f64() * self.clock_rate as f64) as u32)
                .unwrap_or(0)
                .max(1);
            self.tx.seq_offset = self.tx.last_seq.wrapping_add(1).wrapping_sub(h.seq);
            self.tx.ts_offset = self
                .tx
                .last_ts
                .wrapping_add(elapsed)
                .wrapping_sub(h.timestamp);
            self.tx.source = Some(source);
        }
        let seq = h.seq.wrapping_add(self.tx.seq_offset);
        let ts = h.timestamp.wrapping_add(self.tx.ts_offset);
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&ts.to_be_bytes());
        packet[8..12].copy_from_slice(&self.tx.ssrc.to_be_bytes());
        self.tx.last_seq = seq;
        self.tx.last_ts = ts;
        self.tx.last_sent = Some(now);
        self.tx.packets += 1;
        self.tx.octets += (packet.len() - h.payload_offset) as u64;
        true
    }

    /// The input stream our output continues now (its SSRC), if any.
    pub fn tx_source(&self) -> Option<u32> {
        self.tx.source.map(|s| s.0)
    }

    /// The offsets mapping the current input stream onto ours: (sequence, timestamp).
    pub fn tx_offsets(&self) -> (u16, u32) {
        (self.tx.seq_offset, self.tx.ts_offset)
    }

    /// `packets` of the learned source's stream were received elsewhere (forwarded in the
    /// kernel), the last at `at` with sequence number `last_seq`: the receive statistics
    /// and the media timeout follow as if they had come through [`on_rtp`](Self::on_rtp).
    /// Jitter is not measured for them.
    pub fn absorb_rx(&mut self, at: Instant, packets: u64, last_seq: u16) {
        if packets == 0 {
            return;
        }
        let rx = &mut self.rx;
        let delta = last_seq.wrapping_sub(rx.max_seq);
        if rx.started && delta != 0 && delta < 0x8000 {
            if last_seq < rx.max_seq {
                rx.cycles += 1 << 16;
            }
            rx.max_seq = last_seq;
        }
        rx.received += packets;
        self.last_rx = Some(self.last_rx.map_or(at, |t| t.max(at)));
    }

    /// `packets` (`octets` of payload) of our output stream were sent elsewhere, rewritten
    /// with our offsets, the last at `at` as (`last_seq`, `last_ts`): what we send next
    /// continues from there.
    pub fn absorb_tx(
        &mut self,
        at: Instant,
        packets: u64,
        octets: u64,
        last_seq: u16,
        last_ts: u32,
    ) {
        if packets == 0 {
            return;
        }
        self.tx.last_seq = last_seq;
        self.tx.last_ts = last_ts;
        self.tx.last_sent = Some(self.tx.last_sent.map_or(at, |t| t.max(at)));
        self.tx.packets += packets;
        self.tx.octets += octets;
    }

    pub fn poll_timeout(&self) -> Instant {
        self.last_rx
            .map_or(self.timeout_from, |t| t.max(self.timeout_from))
            + self.media_timeout
    }

    /// Starts the media timeout afresh: a caller who sent nothing while waiting (many
    /// gateways stay silent during early media) gets the full timeout from the answer.
    pub fn restart_timeout(&mut self, now: Instant) {
        self.timeout_from = now;
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<MediaTimeout> {
        (now >= self.poll_timeout()).then_some(MediaTimeout::NoMedia)
    }

    /// An RTCP compound packet with an SR (if we have sent) or RR, one report block about
    /// the peer. `ntp` is the wall clock as (seconds since 1900, fraction).
    pub fn rtcp_report(&self, now: Instant, ntp: (u32, u32)) -> Vec<u8> {
        let has_rx = self.rx.received > 0;
        let sending = self.tx.packets > 0;
        let rc = has_rx as u8;
        let mut p = Vec::with_capacity(52);
        let (pt, words) = if sending {
            (200u8, 6 + 6 * rc as u16)
        } else {
            (201u8, 1 + 6 * rc as u16)
        };
        p.push(0x80 | rc);
        p.push(pt);
        p.extend_from_slice(&words.to_be_bytes());
        p.extend_from_slice(&self.tx.ssrc.to_be_bytes());
        if sending {
            p.extend_from_slice(&ntp.0.to_be_bytes());
            p.extend_from_slice(&ntp.1.to_be_bytes());
            let ts = self.tx.last_ts.wrapping_add(
                self.tx
                    .last_sent
                    .map(|t| (now.duration_since(t).as_secs_f64() * self.clock_rate as f64) as u32)
                    .unwrap_or(0),
            );
            p.extend_from_slice(&ts.to_be_bytes());
            p.extend_from_slice(&(self.tx.packets as u32).to_be_bytes());
            p.extend_from_slice(&(self.tx.octets as u32).to_be_bytes());
        }
        if has_rx {
            let lost = self.rx.lost().clamp(0, 0x7F_FFFF) as u32;
            let fraction = if self.rx.expected() > 0 {
                ((lost as u64 * 256) / self.rx.expected()).min(255) as u32
            } else {
                0
            };
            p.extend_from_slice(&self.rx.ssrc.to_be_bytes());
            p.extend_from_slice(&((fraction << 24) | lost).to_be_bytes());
            p.extend_from_slice(&self.rx.extended_max().to_be_bytes());
            p.extend_from_slice(&(self.rx.jitter as u32).to_be_bytes());
            p.extend_from_slice(&0u32.to_be_bytes()); // LSR: we do not track the peer's SRs yet
            p.extend_from_slice(&0u32.to_be_bytes()); // DLSR
        }
        p
    }
}

/// The sender SSRC and packet type of an RTCP packet, if well formed.
pub fn parse_rtcp(packet: &[u8]) -> Option<(u8, u32)> {
    if !is_rtcp(packet) || packet.len() < 8 {
        return None;
    }
    let words = u16::from_be_bytes([packet[2], packet[3]]) as usize;
    if (words + 1) * 4 > packet.len() {
        return None;
    }
    Some((
        packet[1],
        u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    fn session(t0: Instant, ssrc: u32) -> RtpSession {
        let expected = Expected {
            sdp: addr(4000),
            signalling: [127, 0, 0, 1].into(),
        };
        RtpSession::new(t0, 8000, ssrc, Duration::from_secs(30), expected)
    }

    #[test]
    fn demux_rtp_and_rtcp() {
        let rtp = build_rtp(0, true, 1, 160, 7, &[0xFF; 160]);
        assert!(!is_rtcp(&rtp));
        let h = parse_rtp(&rtp).unwrap();
        assert_eq!(
            (
                h.payload_type,
                h.marker,
                h.seq,
                h.timestamp,
                h.ssrc,
                h.payload_offset
            ),
            (0, true, 1, 160, 7, 12)
        );
        let s = session(Instant::now(), 42);
        let rr = s.rtcp_report(Instant::now(), (0, 0));
        assert!(is_rtcp(&rr));
        assert_eq!(parse_rtcp(&rr), Some((201, 42)));
        assert!(
            parse_rtp(&rr).is_none(),
            "rtp-rs would take RTCP for RTP: demux first"
        );
        assert!(parse_rtp(&[0x80]).is_none());
    }

    /// A caller behind NAT: its SDP names a private address, its SIP comes from its public
    /// IP 198.51.100.7.
    const SDP: ([u8; 4], u16) = ([10, 0, 0, 5], 4000);
    const PUBLIC: [u8; 4] = [198, 51, 100, 7];
    const STRANGER: [u8; 4] = [203, 0, 113, 66];

    fn at(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    fn natted(t0: Instant) -> RtpSession {
        RtpSession::new(
            t0,
            8000,
            1,
            Duration::from_secs(300),
            Expected {
                sdp: at(SDP.0, SDP.1),
                signalling: PUBLIC.into(),
            },
        )
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    fn pkt(seq: u16) -> Vec<u8> {
        build_rtp(0, false, seq, u32::from(seq) * 160, 9, &[0; 160])
    }

    #[test]
    fn the_first_source_must_be_the_sdp_host_or_the_signalling_host() {
        let t0 = Instant::now();
        let mut s = natted(t0);
        assert_eq!(
            s.on_rtp(t0, at(STRANGER, 4000), &pkt(1)).0,
            Accept::WrongSource,
            "a stranger is never learned, not even first"
        );
        assert_eq!((s.peer(), s.foreign()), (None, 1));
        // Symmetric RTP behind NAT: the public IP, a port the SDP never named.
        assert_eq!(s.on_rtp(t0, at(PUBLIC, 31_337), &pkt(2)).0, Accept::Yes);
        assert_eq!(s.peer(), Some(at(PUBLIC, 31_337)));
        // Without NAT: the SDP's own address, or its host on another port.
        for src in [at(SDP.0, SDP.1), at(SDP.0, 4002)] {
            let mut s = natted(t0);
            assert_eq!(s.on_rtp(t0, src, &pkt(1)).0, Accept::Yes);
            assert_eq!((s.peer(), s.foreign()), (Some(src), 0));
        }
        assert_eq!(
            s.on_rtp(t0, at(PUBLIC, 31_337), b"junk").0,
            Accept::Malformed
        );
    }

    #[test]
    fn a_stranger_is_dropped_however_long_the_peer_is_silent() {
        let t0 = Instant::now();
        let mut s = natted(t0);
        let caller = at(PUBLIC, 31_337);
        assert_eq!(s.on_rtp(t0, caller, &pkt(1)).0, Accept::Yes);
        for (i, silent) in [0, 3, 60].into_iter().enumerate() {
            assert_eq!(
                s.on_rtp(secs(t0, silent), at(STRANGER, 31_337), &pkt(2)).0,
                Accept::WrongSource,
                "a stranger after {silent} s of silence"
            );
            assert_eq!(s.peer(), Some(caller), "still sending to the caller");
            assert_eq!(s.foreign(), i as u64 + 1);
        }
        assert_eq!(
            s.rx.received, 1,
            "the stranger's packets are not counted as received"
        );
        assert_eq!(s.on_rtp(secs(t0, 61), caller, &pkt(3)).0, Accept::Yes);
    }

    #[test]
    fn the_same_host_on_a_new_port_takes_over_after_silence() {
        let t0 = Instant::now();
        let half = Duration::from_millis(500);
        for (first, rebound) in [
            (at(PUBLIC, 31_337), at(PUBLIC, 40_000)),
            (at(SDP.0, SDP.1), at(SDP.0, 4010)),
        ] {
            let mut s = natted(t0);
            assert_eq!(s.on_rtp(t0, first, &pkt(1)).0, Accept::Yes);
            assert_eq!(
                s.on_rtp(t0 + half, rebound, &pkt(2)).0,
                Accept::WrongSource,
                "not while {first} is alive"
            );
            assert_eq!(s.on_rtp(t0 + half, first, &pkt(3)).0, Accept::Yes);
            let later = t0 + half + s.relatch_after;
            assert_eq!(s.on_rtp(later, rebound, &pkt(4)).0, Accept::Yes);
            assert_eq!(s.peer(), Some(rebound), "NAT rebinding of {first}");
            assert_eq!(
                s.on_rtp(later, first, &pkt(5)).0,
                Accept::WrongSource,
                "the old port is the one that must wait now"
            );
        }
    }

    #[test]
    fn a_new_sdp_address_is_learned_at_once() {
        let t0 = Instant::now();
        let mut s = natted(t0);
        let old = at(SDP.0, SDP.1);
        assert_eq!(s.on_rtp(t0, old, &pkt(1)).0, Accept::Yes);
        // A re-INVITE on hold (c=0.0.0.0) or with the same address keeps what was learned.
        s.renegotiated(at([0, 0, 0, 0], 4000), PUBLIC.into());
        s.renegotiated(old, PUBLIC.into());
        assert_eq!(s.peer(), Some(old));
        // The phone moved its media to another host.
        let moved = at([192, 0, 2, 9], 5000);
        s.renegotiated(moved, PUBLIC.into());
        assert_eq!(
            s.peer(),
            None,
            "sending to the new SDP address until it is heard"
        );
        assert_eq!(s.expected().sdp, moved);
        assert_eq!(
            s.on_rtp(t0, moved, &pkt(2)).0,
            Accept::Yes,
            "no silence needed"
        );
        assert_eq!(s.peer(), Some(moved));
        assert_eq!(
            s.on_rtp(secs(t0, 10), old, &pkt(3)).0,
            Accept::WrongSource,
            "the old host is no longer vouched for"
        );
        // The signalling moved too (a new network): its IP may take over after silence.
        let roamed: IpAddr = [198, 51, 100, 99].into();
        s.renegotiated(moved, roamed);
        assert_eq!(s.peer(), Some(moved));
        assert_eq!(
            s.on_rtp(secs(t0, 20), SocketAddr::new(roamed, 7000), &pkt(4))
                .0,
            Accept::Yes
        );
    }

    #[test]
    fn sequence_wrap_loss_and_jitter() {
        let t0 = Instant::now();
        let mut s = session(t0, 1);
        let mut n = 0;
        for i in 0..100u32 {
            let seq = 65500u16.wrapping_add(i as u16);
            if i % 10 == 5 {
                continue; // lose every tenth
            }
            let t = t0 + Duration::from_millis(20 * i as u64);
            s.on_rtp(
                t,
                addr(4000),
                &build_rtp(0, false, seq, i * 160, 9, &[0; 160]),
            );
            n += 1;
        }
        assert_eq!(s.rx.received, n);
        assert_eq!(s.rx.expected(), 100);
        assert_eq!(s.rx.lost(), 10);
        assert!(s.rx.extended_max() > 65535, "wrapped into the next cycle");
        assert!(
            s.rx.jitter < 2.0,
            "perfectly paced stream: jitter ~0, got {}",
            s.rx.jitter
        );
    }

    #[test]
    fn output_stays_continuous_across_source_switch() {
        let t0 = Instant::now();
        let mut s = session(t0, 0xABCD);
        let mut out = Vec::new();
        for i in 0..3u16 {
            let mut p = build_rtp(0, false, 100 + i, 1000 + i as u32 * 160, 0x1111, &[0; 160]);
            assert!(s.rewrite(t0 + Duration::from_millis(20 * i as u64), &mut p));
            out.push(parse_rtp(&p).unwrap());
        }
        // The agent's stream takes over with unrelated numbering 40 ms later.
        for i in 0..2u16 {
            let mut p = build_rtp(
                0,
                false,
                9000 + i,
                777_000 + i as u32 * 160,
                0x2222,
                &[0; 160],
            );
            assert!(s.rewrite(t0 + Duration::from_millis(80 + 20 * i as u64), &mut p));
            out.push(parse_rtp(&p).unwrap());
        }
        assert!(out.iter().all(|h| h.ssrc == 0xABCD));
        for w in out.windows(2) {
            assert_eq!(
                w[1].seq,
                w[0].seq.wrapping_add(1),
                "no sequence gap at the switch"
            );
        }
        let gap = out[3].timestamp.wrapping_sub(out[2].timestamp);
        assert_eq!(
            gap, 320,
            "timestamp advances by the 40 ms that really passed"
        );
    }

    #[test]
    fn media_timeout_and_reports() {
        let t0 = Instant::now();
        let mut s = session(t0, 5);
        s.on_rtp(t0, addr(4000), &build_rtp(0, false, 1, 0, 9, &[0; 160]));
        assert_eq!(s.handle_timeout(t0 + Duration::from_secs(29)), None);
        assert_eq!(
            s.handle_timeout(t0 + Duration::from_secs(30)),
            Some(MediaTimeout::NoMedia)
        );
        let mut p = build_rtp(0, false, 1, 0, 9, &[0; 160]);
        s.rewrite(t0, &mut p);
        let sr = s.rtcp_report(t0, (1, 2));
        assert_eq!(parse_rtcp(&sr), Some((200, 5)));
        assert_eq!(sr.len(), 4 * (6 + 6 + 1));
    }
}
