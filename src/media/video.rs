//! A call's video, relayed between the caller and the agent without transcoding (sans-IO).
//!
//! Each leg is an [`RtpSession`] at 90 kHz: it learns the peer's source as the audio legs
//! do (only an address the leg's SDP or signalling vouches for), and rewrites what it sends
//! into one continuous stream of its own SSRC, so a new source on the other side (another
//! agent after a transfer) continues the sequence and the clock. The payload type is the
//! one each leg expects from us.
//!
//! RTCP terminates per leg, except keyframe requests: a picture loss indication (PLI,
//! RFC 4585) or a full intra request (FIR, RFC 5104) from one leg becomes a PLI towards
//! the other, from our SSRC to the source that leg sends. NACK, REMB and receiver reports
//! stop here (the relay keeps no history to resend from).

use super::bridge::LegId;
use super::rtp::{is_rtcp, Accept, Expected, RtpSession};
use super::sdp::VideoNeg;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const CLOCK: u32 = 90_000;
/// RTCP payload-specific feedback (RFC 4585 6.1).
const PSFB: u8 = 206;
const FMT_PLI: u8 = 1;
const FMT_FIR: u8 = 4;

/// A packet to send on a leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoOut {
    pub leg: LegId,
    pub to: SocketAddr,
    pub rtcp: bool,
    pub data: Vec<u8>,
}

/// What the relay counted, per leg (index: [`LegId`] as usize).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoStats {
    /// Packets and payload bytes received from the leg and relayed on.
    pub packets_in: [u64; 2],
    pub bytes_in: [u64; 2],
    /// Keyframe requests (PLI or FIR) received from the leg.
    pub keyframe_requests_in: [u64; 2],
    /// PLIs we sent to the leg.
    pub plis_out: [u64; 2],
    /// Packets dropped: from a stranger, not RTP, or with a payload type not negotiated.
    pub dropped: [u64; 2],
}

struct Leg {
    rtp: RtpSession,
    /// The payload type this leg sends us and the one it expects from us.
    pt_in: u8,
    pt_out: u8,
    /// Where the leg's RTCP comes from (learned), else its RTP port + 1.
    rtcp: Option<SocketAddr>,
    rtcp_default: SocketAddr,
    /// The SSRC the leg sends (the media SSRC of our PLIs to it).
    source: Option<u32>,
}

impl Leg {
    fn new(now: Instant, v: &VideoNeg, signalling: IpAddr, ssrc: u32, timeout: Duration) -> Leg {
        let sdp = SocketAddr::new(v.remote.0, v.remote.1);
        Leg {
            rtp: RtpSession::new(now, CLOCK, ssrc, timeout, Expected { sdp, signalling }),
            pt_in: v.pt,
            pt_out: v.pt,
            rtcp: None,
            rtcp_default: SocketAddr::new(v.remote.0, v.remote.1.wrapping_add(1)),
            source: None,
        }
    }
}

pub struct VideoRelay {
    legs: [Option<Leg>; 2],
    pub stats: VideoStats,
}

impl VideoRelay {
    /// The caller's leg as negotiated (`caller`: its offer; we answered with the same
    /// payload type); `ssrc` ours towards it.
    pub fn new(
        now: Instant,
        caller: &VideoNeg,
        signalling: IpAddr,
        ssrc: u32,
        timeout: Duration,
    ) -> VideoRelay {
        VideoRelay {
            legs: [Some(Leg::new(now, caller, signalling, ssrc, timeout)), None],
            stats: VideoStats::default(),
        }
    }

    /// The agent answered with video (`agent`: its answer to our offer, which carried the
    /// caller's payload type: the agent sends us that one and expects `agent.pt`). A new
    /// agent replaces the one before. Returns the PLI that asks the caller for a picture
    /// the new agent can start from.
    pub fn attach(
        &mut self,
        now: Instant,
        agent: &VideoNeg,
        offered_pt: u8,
        signalling: IpAddr,
        ssrc: u32,
        timeout: Duration,
    ) -> Option<VideoOut> {
        let mut leg = Leg::new(now, agent, signalling, ssrc, timeout);
        leg.pt_in = offered_pt;
        leg.pt_out = agent.pt;
        self.legs[LegId::Agent as usize] = Some(leg);
        self.pli(LegId::Caller)
    }

    /// The agent leg is gone (transfer, hang-up): the caller's video waits for the next.
    pub fn detach(&mut self) {
        self.legs[LegId::Agent as usize] = None;
    }

    /// A datagram on `leg`'s RTP socket (RTP, or RTCP multiplexed on it).
    pub fn on_rtp(
        &mut self,
        now: Instant,
        leg: LegId,
        src: SocketAddr,
        packet: &[u8],
    ) -> Vec<VideoOut> {
        if is_rtcp(packet) {
            return self.on_rtcp(leg, src, packet);
        }
        let i = leg as usize;
        let Some(l) = self.legs[i].as_mut() else {
            return Vec::new();
        };
        let (accept, h) = l.rtp.on_rtp(now, src, packet);
        let Some(h) = h.filter(|h| accept == Accept::Yes && h.payload_type == l.pt_in) else {
            self.stats.dropped[i] += 1;
            return Vec::new();
        };
        l.source = Some(h.ssrc);
        self.stats.packets_in[i] += 1;
        self.stats.bytes_in[i] += (packet.len() - h.payload_offset) as u64;
        let other = other(leg);
        let Some(o) = self.legs[other as usize].as_mut() else {
            return Vec::new();
        };
        let Some(to) = o.rtp.peer().or(Some(o.rtp.expected().sdp)) else {
            return Vec::new();
        };
        let mut data = packet.to_vec();
        if !o.rtp.rewrite(now, &mut data) {
            return Vec::new();
        }
        // The payload type the other leg expects, the marker bit kept.
        data[1] = (data[1] & 0x80) | (o.pt_out & 0x7F);
        vec![VideoOut {
            leg: other,
            to,
            rtcp: false,
            data,
        }]
    }

    /// A datagram on `leg`'s RTCP socket: keyframe requests go on, the rest stops here.
    pub fn on_rtcp(&mut self, leg: LegId, src: SocketAddr, packet: &[u8]) -> Vec<VideoOut> {
        let i = leg as usize;
        let Some(l) = self.legs[i].as_mut() else {
            return Vec::new();
        };
        if !l.rtp.expected().admits(src) {
            self.stats.dropped[i] += 1;
            return Vec::new();
        }
        l.rtcp = Some(src);
        if !wants_keyframe(packet) {
            return Vec::new();
        }
        self.stats.keyframe_requests_in[i] += 1;
        self.pli(other(leg)).into_iter().collect()
    }

    /// A PLI to `leg`, from our SSRC on it to the source it sends (None: nothing received
    /// from it yet, or no such leg).
    pub fn pli(&mut self, leg: LegId) -> Option<VideoOut> {
        let i = leg as usize;
        let l = self.legs[i].as_ref()?;
        let media = l.source?;
        let mut data = Vec::with_capacity(12);
        data.extend_from_slice(&[0x80 | FMT_PLI, PSFB, 0, 2]);
        data.extend_from_slice(&l.rtp.ssrc().to_be_bytes());
        data.extend_from_slice(&media.to_be_bytes());
        let to = l.rtcp.unwrap_or(l.rtcp_default);
        self.stats.plis_out[i] += 1;
        Some(VideoOut {
            leg,
            to,
            rtcp: true,
            data,
        })
    }
}

fn other(leg: LegId) -> LegId {
    match leg {
        LegId::Caller => LegId::Agent,
        LegId::Agent => LegId::Caller,
    }
}

/// Whether a (compound) RTCP packet holds a PLI or a FIR. Walks the packets by their
/// length fields; a length that runs past the end stops the walk.
fn wants_keyframe(packet: &[u8]) -> bool {
    let mut at = 0;
    while at + 4 <= packet.len() {
        let (b0, pt) = (packet[at], packet[at + 1]);
        if b0 >> 6 != 2 {
            return false;
        }
        let words = u16::from_be_bytes([packet[at + 2], packet[at + 3]]) as usize;
        let len = (words + 1) * 4;
        if at + len > packet.len() {
            return false;
        }
        let fmt = b0 & 0x1F;
        if pt == PSFB && (fmt == FMT_PLI || fmt == FMT_FIR) {
            return true;
        }
        at += len;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{build_rtp, parse_rtp};
    use crate::media::sdp::{Direction, VideoCodec};

    fn neg(pt: u8, ip: &str, port: u16) -> VideoNeg {
        VideoNeg {
            codec: VideoCodec::Vp8,
            pt,
            fmtp: None,
            remote: (ip.parse().unwrap(), port),
            direction: Direction::SendRecv,
            kbps: None,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn video_is_relayed_with_each_legs_payload_type_and_continuous_numbering() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let caller = neg(97, "10.0.0.1", 9000);
        let mut r = VideoRelay::new(t0, &caller, "10.0.0.1".parse().unwrap(), 0xC0FFEE, timeout);
        // Before an agent: the caller's video goes nowhere.
        let p = build_rtp(97, false, 100, 9000, 0x1111, b"frame");
        assert!(r
            .on_rtp(t0, LegId::Caller, addr("10.0.0.1:9000"), &p)
            .is_empty());
        // The agent answered VP8 at 120 (it sends us 97, which we offered).
        let agent = neg(120, "10.0.0.2", 7000);
        let pli = r
            .attach(t0, &agent, 97, "10.0.0.2".parse().unwrap(), 0xA6E, timeout)
            .expect("a PLI to the caller");
        assert_eq!(pli.leg, LegId::Caller);
        assert!(pli.rtcp);
        assert_eq!(pli.to, addr("10.0.0.1:9001"));
        assert_eq!(&pli.data[..4], &[0x81, 206, 0, 2]);
        assert_eq!(
            &pli.data[8..12],
            &0x1111u32.to_be_bytes(),
            "the caller's source"
        );
        let p = build_rtp(97, true, 101, 12000, 0x1111, b"frame2");
        let out = r.on_rtp(t0, LegId::Caller, addr("10.0.0.1:9000"), &p);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, addr("10.0.0.2:7000"));
        let h = parse_rtp(&out[0].data).unwrap();
        assert_eq!((h.payload_type, h.marker, h.ssrc), (120, true, 0xA6E));
        assert_eq!(&out[0].data[h.payload_offset..], b"frame2");
        // The agent's video to the caller: the caller's payload type, our SSRC towards it.
        let a = build_rtp(97, false, 5, 1000, 0x2222, b"sign");
        let out = r.on_rtp(t0, LegId::Agent, addr("10.0.0.2:7000"), &a);
        let h = parse_rtp(&out[0].data).unwrap();
        assert_eq!((h.payload_type, h.ssrc), (97, 0xC0FFEE));
        let first = h.seq;
        // A transfer: another agent, another source; the caller's stream continues.
        r.detach();
        r.attach(
            t0,
            &neg(97, "10.0.0.3", 7100),
            97,
            "10.0.0.3".parse().unwrap(),
            0xB0B,
            timeout,
        );
        let a = build_rtp(97, false, 60000, 777, 0x3333, b"new");
        let out = r.on_rtp(
            t0 + Duration::from_millis(500),
            LegId::Agent,
            addr("10.0.0.3:7100"),
            &a,
        );
        let h = parse_rtp(&out[0].data).unwrap();
        assert_eq!(h.seq, first.wrapping_add(1), "sequence continues");
        assert_eq!(h.ssrc, 0xC0FFEE);
        assert_eq!(r.stats.packets_in, [2, 2]);
    }

    #[test]
    fn keyframe_requests_cross_and_strangers_and_wrong_types_are_dropped() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let mut r = VideoRelay::new(
            t0,
            &neg(96, "10.0.0.1", 9000),
            "10.0.0.1".parse().unwrap(),
            1,
            timeout,
        );
        r.attach(
            t0,
            &neg(96, "10.0.0.2", 7000),
            96,
            "10.0.0.2".parse().unwrap(),
            2,
            timeout,
        );
        // Both legs have sent something.
        r.on_rtp(
            t0,
            LegId::Caller,
            addr("10.0.0.1:9000"),
            &build_rtp(96, false, 1, 1, 0xAA, b"x"),
        );
        r.on_rtp(
            t0,
            LegId::Agent,
            addr("10.0.0.2:7000"),
            &build_rtp(96, false, 1, 1, 0xBB, b"y"),
        );
        // The agent's phone asks for a keyframe: an RR then a FIR, compound.
        let mut fir = vec![0x80, 201, 0, 1, 0, 0, 0, 0xBB];
        fir.extend_from_slice(&[
            0x84, 206, 0, 4, 0, 0, 0, 0xBB, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0,
        ]);
        let out = r.on_rtcp(LegId::Agent, addr("10.0.0.2:7001"), &fir);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].leg, LegId::Caller);
        assert_eq!(out[0].data[0], 0x81, "a PLI");
        assert_eq!(
            &out[0].data[4..8],
            &1u32.to_be_bytes(),
            "from our SSRC to the caller"
        );
        assert_eq!(&out[0].data[8..12], &0xAAu32.to_be_bytes());
        // A receiver report alone, a NACK, REMB: they stop here.
        assert!(r
            .on_rtcp(LegId::Agent, addr("10.0.0.2:7001"), &fir[..8])
            .is_empty());
        let nack = [0x81, 205, 0, 3, 0, 0, 0, 0xBB, 0, 0, 0, 0xAA, 0, 1, 0, 0];
        assert!(r
            .on_rtcp(LegId::Agent, addr("10.0.0.2:7001"), &nack)
            .is_empty());
        // A PLI from a stranger, truncated RTCP, a wrong payload type, RTP from a stranger.
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 9, 0, 0, 0, 1];
        assert!(r
            .on_rtcp(LegId::Agent, addr("192.0.2.66:7001"), &pli)
            .is_empty());
        assert!(r
            .on_rtcp(LegId::Agent, addr("10.0.0.2:7001"), &pli[..10])
            .is_empty());
        assert!(r
            .on_rtcp(
                LegId::Agent,
                addr("10.0.0.2:7001"),
                &[0x81, 206, 0xFF, 0xFF]
            )
            .is_empty());
        let wrong_pt = build_rtp(100, false, 2, 2, 0xAA, b"z");
        assert!(r
            .on_rtp(t0, LegId::Caller, addr("10.0.0.1:9000"), &wrong_pt)
            .is_empty());
        let stranger = build_rtp(96, false, 3, 3, 0xEE, b"z");
        assert!(r
            .on_rtp(t0, LegId::Caller, addr("192.0.2.66:9000"), &stranger)
            .is_empty());
        assert!(r
            .on_rtp(t0, LegId::Caller, addr("10.0.0.1:9000"), b"\x80")
            .is_empty());
        assert_eq!(
            r.stats.dropped,
            [3, 1],
            "caller: type, stranger, not RTP; agent: the stranger"
        );
        assert_eq!(r.stats.keyframe_requests_in, [0, 1]);
        // Multiplexed on the RTP port, a PLI from the caller reaches the agent.
        let out = r.on_rtp(t0, LegId::Caller, addr("10.0.0.1:9000"), &pli);
        assert_eq!(out[0].leg, LegId::Agent);
    }
}
