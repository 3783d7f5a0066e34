//! RTP/RTCP (RFC 3550) as a sans-IO session: time is passed in, nothing here owns a socket.
//!
//! One `RtpSession` is one leg's media: it latches onto the peer's real source address
//! (symmetric RTP, for callers behind NAT), keeps receive statistics (RFC 3550 A.1 sequence
//! tracking, A.8 jitter), rewrites what the engine sends so that SSRC, sequence numbers and
//! timestamps stay continuous when the source switches (prompt → agent audio), builds basic
//! SR/RR reports, and reports a media timeout when the peer goes silent.

use std::net::SocketAddr;
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

/// What the session thinks of a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// From the latched peer: use it.
    Yes,
    /// From another address while the latched one is alive: drop it.
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
    latched: Option<SocketAddr>,
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
    /// `clock_rate` of the negotiated codec; `ssrc` ours (random in production).
    pub fn new(now: Instant, clock_rate: u32, ssrc: u32, media_timeout: Duration) -> Self {
        RtpSession {
            clock_rate,
            latched: None,
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

    pub fn peer(&self) -> Option<SocketAddr> {
        self.latched
    }

    pub fn ssrc(&self) -> u32 {
        self.tx.ssrc
    }

    /// A packet arrived from `src`. Latches onto the first source, and re-latches when the
    /// latched one has been silent for a while (the peer moved, e.g. NAT rebinding).
    pub fn on_rtp(
        &mut self,
        now: Instant,
        src: SocketAddr,
        packet: &[u8],
    ) -> (Accept, Option<RtpHeader>) {
        let Some(h) = parse_rtp(packet) else {
            return (Accept::Malformed, None);
        };
        match self.latched {
            Some(l) if l != src => {
                let silent = self
                    .last_rx
                    .is_none_or(|t| now.duration_since(t) >= self.relatch_after);
                if !silent {
                    return (Accept::WrongSource, Some(h));
                }
                self.latched = Some(src);
            }
            None => self.latched = Some(src),
            _ => {}
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
        let s = RtpSession::new(Instant::now(), 8000, 42, Duration::from_secs(30));
        let rr = s.rtcp_report(Instant::now(), (0, 0));
        assert!(is_rtcp(&rr));
        assert_eq!(parse_rtcp(&rr), Some((201, 42)));
        assert!(
            parse_rtp(&rr).is_none(),
            "rtp-rs would take RTCP for RTP: demux first"
        );
        assert!(parse_rtp(&[0x80]).is_none());
    }

    #[test]
    fn latching_rejects_others_until_silent() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(t0, 8000, 1, Duration::from_secs(30));
        let p = build_rtp(0, false, 1, 0, 9, &[0; 160]);
        assert_eq!(s.on_rtp(t0, addr(4000), &p).0, Accept::Yes);
        assert_eq!(s.on_rtp(t0, addr(5000), &p).0, Accept::WrongSource);
        assert_eq!(
            s.on_rtp(t0 + Duration::from_secs(3), addr(5000), &p).0,
            Accept::Yes,
            "re-latch after silence"
        );
        assert_eq!(s.peer(), Some(addr(5000)));
        assert_eq!(s.on_rtp(t0, addr(5000), b"junk").0, Accept::Malformed);
    }

    #[test]
    fn sequence_wrap_loss_and_jitter() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(t0, 8000, 1, Duration::from_secs(30));
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
        let mut s = RtpSession::new(t0, 8000, 0xABCD, Duration::from_secs(30));
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
        let mut s = RtpSession::new(t0, 8000, 5, Duration::from_secs(30));
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
