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
//! stop here (the relay keeps no history to resend from); each leg gets our own sender and
//! receiver reports every few seconds.
//!
//! Until an agent's video arrives (and again while a transfer finds the next agent) the
//! caller sees the waiting picture ([`Player`]) in the same stream: the agent's video
//! continues its numbering and clock.

use super::bridge::LegId;
use super::clip::Player;
use super::rtp::{is_rtcp, Accept, Expected, RtpSession};
use super::sdp::{KeyframeBy, VideoNeg};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const CLOCK: u32 = 90_000;
/// RTCP payload-specific feedback (RFC 4585 6.1).
const PSFB: u8 = 206;
const FMT_PLI: u8 = 1;
const FMT_FIR: u8 = 4;
/// Our RTCP reports to each leg (RFC 3550's five-second minimum interval).
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// At most one keyframe request to a leg this often: each costs its encoder a keyframe,
/// so a flood of requests from one side must not become a flood of keyframes.
const KEYFRAME_GAP: Duration = Duration::from_millis(300);

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
    /// Frames received (packets with the marker bit: a picture's last).
    pub frames_in: [u64; 2],
    /// Packets lost before us (RFC 3550 A.3), from sources no longer sending.
    lost_before: [u64; 2],
    /// The first and the latest relayed packet from the leg.
    first_at: [Option<Instant>; 2],
    last_at: [Option<Instant>; 2],
    /// Packets of the waiting picture sent to the caller.
    pub waiting_packets: u64,
}

/// One direction of a call's video, for the record: what the relay received from a leg.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VideoDirection {
    pub packets: u64,
    pub frames: u64,
    /// Frames a second and kbit/s of payload, over the time the leg sent.
    pub fps: f64,
    pub kbps: f64,
    /// Packets lost on the way to us (sequence gaps).
    pub lost: u64,
    /// Keyframe requests (PLI, FIR) the leg sent.
    pub keyframe_requests: u64,
    pub dropped: u64,
}

// fps and kbps are finite by construction (a count over a positive duration, rounded), so
// equality is total; records and events compare by value in tests.
impl Eq for VideoDirection {}

/// A call's video as the record keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VideoSummary {
    pub codec: &'static str,
    /// Whether an agent's phone took the video (false: the call was audio only for want of
    /// a shared codec, or no agent answered).
    pub agent_video: bool,
    pub from_caller: VideoDirection,
    pub from_agent: VideoDirection,
    /// Packets of the waiting picture the caller was sent.
    pub waiting_packets: u64,
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
    /// How the leg takes keyframe requests, and our last one to it.
    keyframe: KeyframeBy,
    last_request: Option<Instant>,
    fir_seq: u8,
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
            keyframe: v.keyframe,
            last_request: None,
            fir_seq: 0,
        }
    }
}

pub struct VideoRelay {
    legs: [Option<Leg>; 2],
    pub stats: VideoStats,
    /// The waiting picture, shown while no agent is attached.
    waiting: Option<Player>,
    next_rtcp: Instant,
    codec: &'static str,
    agent_video: bool,
    /// Legs to ask for a keyframe by SIP INFO (the engine sends it in the leg's dialog).
    info_requests: Vec<LegId>,
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
            waiting: None,
            next_rtcp: now + RTCP_INTERVAL,
            codec: caller.codec.name(),
            agent_video: false,
            info_requests: Vec::new(),
        }
    }

    /// Shows `player`'s picture to the caller while no agent is attached.
    pub fn with_waiting(mut self, player: Player) -> VideoRelay {
        self.waiting = Some(player);
        self
    }

    /// When [`VideoRelay::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Instant {
        let picture = self
            .waiting
            .as_ref()
            .filter(|_| self.legs[LegId::Agent as usize].is_none())
            .map(Player::poll_timeout);
        picture.map_or(self.next_rtcp, |p| p.min(self.next_rtcp))
    }

    /// The waiting picture's frame, when due; our RTCP reports, when due. `ntp`: the wall
    /// clock for the sender reports.
    pub fn handle_timeout(&mut self, now: Instant, ntp: (u32, u32)) -> Vec<VideoOut> {
        let mut out = Vec::new();
        if self.legs[LegId::Agent as usize].is_none() {
            if let (Some(p), Some(c)) = (self.waiting.as_mut(), self.legs[0].as_mut()) {
                let to = c.rtp.peer().unwrap_or(c.rtp.expected().sdp);
                for mut data in p.poll(now, c.pt_out) {
                    if c.rtp.rewrite(now, &mut data) {
                        self.stats.waiting_packets += 1;
                        out.push(VideoOut {
                            leg: LegId::Caller,
                            to,
                            rtcp: false,
                            data,
                        });
                    }
                }
            }
        }
        if now >= self.next_rtcp {
            self.next_rtcp = now + RTCP_INTERVAL;
            for (i, l) in self.legs.iter().enumerate() {
                let Some(l) = l else { continue };
                out.push(VideoOut {
                    leg: if i == 0 { LegId::Caller } else { LegId::Agent },
                    to: l.rtcp.unwrap_or(l.rtcp_default),
                    rtcp: true,
                    data: l.rtp.rtcp_report(now, ntp),
                });
            }
        }
        out
    }

    /// The call's video so far, for the record.
    pub fn summary(&self) -> VideoSummary {
        let s = &self.stats;
        let dir = |i: usize| {
            let secs = s.first_at[i]
                .zip(s.last_at[i])
                .map_or(0.0, |(a, b)| b.duration_since(a).as_secs_f64());
            let rate = |n: f64| if secs > 0.0 { round1(n / secs) } else { 0.0 };
            let lost = self.legs[i]
                .as_ref()
                .map_or(0, |l| l.rtp.rx.lost().max(0) as u64);
            VideoDirection {
                packets: s.packets_in[i],
                frames: s.frames_in[i],
                fps: rate(s.frames_in[i] as f64),
                kbps: rate(s.bytes_in[i] as f64 * 8.0 / 1000.0),
                lost: s.lost_before[i] + lost,
                keyframe_requests: s.keyframe_requests_in[i],
                dropped: s.dropped[i],
            }
        };
        VideoSummary {
            codec: self.codec,
            agent_video: self.agent_video,
            from_caller: dir(0),
            from_agent: dir(1),
            waiting_packets: s.waiting_packets,
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
        self.detach(now);
        let mut leg = Leg::new(now, agent, signalling, ssrc, timeout);
        leg.pt_in = offered_pt;
        leg.pt_out = agent.pt;
        self.legs[LegId::Agent as usize] = Some(leg);
        self.agent_video = true;
        self.keyframe_request(now, LegId::Caller)
    }

    /// The agent leg is gone (transfer, hang-up): the caller sees the waiting picture
    /// again, from its keyframe, until the next agent.
    pub fn detach(&mut self, now: Instant) {
        if let Some(old) = self.legs[LegId::Agent as usize].take() {
            self.stats.lost_before[1] += old.rtp.rx.lost().max(0) as u64;
            if let Some(p) = self.waiting.as_mut() {
                p.restart(now);
            }
        }
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
            return self.on_rtcp(now, leg, src, packet);
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
        self.stats.frames_in[i] += u64::from(h.marker);
        self.stats.first_at[i].get_or_insert(now);
        self.stats.last_at[i] = Some(now);
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
    pub fn on_rtcp(
        &mut self,
        now: Instant,
        leg: LegId,
        src: SocketAddr,
        packet: &[u8],
    ) -> Vec<VideoOut> {
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
        self.on_keyframe_request(now, leg)
    }

    /// `leg` asked for a keyframe (by RTCP, or by SIP INFO through the engine): the other
    /// leg is asked for one; a waiting caller's picture starts again from its own.
    pub fn on_keyframe_request(&mut self, now: Instant, leg: LegId) -> Vec<VideoOut> {
        self.stats.keyframe_requests_in[leg as usize] += 1;
        if leg == LegId::Caller && self.legs[LegId::Agent as usize].is_none() {
            if let Some(p) = self.waiting.as_mut() {
                p.restart(now);
            }
            return Vec::new();
        }
        self.keyframe_request(now, other(leg)).into_iter().collect()
    }

    /// Asks `leg` for a keyframe the way it takes one: a PLI or FIR from our SSRC on it
    /// to the source it sends, or a SIP INFO for the engine to send
    /// ([`VideoRelay::poll_info`]). Nothing when nothing was received from it yet, when
    /// there is no such leg, or when it was asked less than [`KEYFRAME_GAP`] ago.
    pub fn keyframe_request(&mut self, now: Instant, leg: LegId) -> Option<VideoOut> {
        let i = leg as usize;
        let l = self.legs[i].as_mut()?;
        let media = l.source?;
        if l.last_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_GAP)
        {
            return None;
        }
        l.last_request = Some(now);
        self.stats.plis_out[i] += 1;
        let mut data = Vec::with_capacity(20);
        match l.keyframe {
            KeyframeBy::Pli => {
                data.extend_from_slice(&[0x80 | FMT_PLI, PSFB, 0, 2]);
                data.extend_from_slice(&l.rtp.ssrc().to_be_bytes());
                data.extend_from_slice(&media.to_be_bytes());
            }
            KeyframeBy::Fir => {
                // RFC 5104 4.3.1: the media SSRC field is 0; the FCI names the source
                // and a sequence number that changes with each new request.
                l.fir_seq = l.fir_seq.wrapping_add(1);
                data.extend_from_slice(&[0x80 | FMT_FIR, PSFB, 0, 4]);
                data.extend_from_slice(&l.rtp.ssrc().to_be_bytes());
                data.extend_from_slice(&[0; 4]);
                data.extend_from_slice(&media.to_be_bytes());
                data.extend_from_slice(&[l.fir_seq, 0, 0, 0]);
            }
            KeyframeBy::SipInfo => {
                self.info_requests.push(leg);
                return None;
            }
        }
        Some(VideoOut {
            leg,
            to: l.rtcp.unwrap_or(l.rtcp_default),
            rtcp: true,
            data,
        })
    }

    /// A leg to send a SIP INFO `picture_fast_update` to (RFC 5168).
    pub fn poll_info(&mut self) -> Option<LegId> {
        self.info_requests.pop()
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
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
    use crate::media::sdp::{Direction, KeyframeBy, VideoCodec};

    fn neg(pt: u8, ip: &str, port: u16) -> VideoNeg {
        VideoNeg {
            codec: VideoCodec::Vp8,
            pt,
            fmtp: None,
            remote: (ip.parse().unwrap(), port),
            direction: Direction::SendRecv,
            kbps: None,
            keyframe: KeyframeBy::Pli,
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
        r.detach(t0);
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
        let out = r.on_rtcp(t0, LegId::Agent, addr("10.0.0.2:7001"), &fir);
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
            .on_rtcp(t0, LegId::Agent, addr("10.0.0.2:7001"), &fir[..8])
            .is_empty());
        let nack = [0x81, 205, 0, 3, 0, 0, 0, 0xBB, 0, 0, 0, 0xAA, 0, 1, 0, 0];
        assert!(r
            .on_rtcp(t0, LegId::Agent, addr("10.0.0.2:7001"), &nack)
            .is_empty());
        // A PLI from a stranger, truncated RTCP, a wrong payload type, RTP from a stranger.
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 9, 0, 0, 0, 1];
        assert!(r
            .on_rtcp(t0, LegId::Agent, addr("192.0.2.66:7001"), &pli)
            .is_empty());
        assert!(r
            .on_rtcp(t0, LegId::Agent, addr("10.0.0.2:7001"), &pli[..10])
            .is_empty());
        assert!(r
            .on_rtcp(
                t0,
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

    #[test]
    fn a_waiting_caller_sees_the_picture_then_the_agent_in_one_stream_and_the_summary_counts() {
        use crate::media::clip::{Player, WaitingClips};
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let clips = WaitingClips::builtin();
        let clip = clips.vp8.clone().unwrap();
        let mut r = VideoRelay::new(
            t0,
            &neg(97, "10.0.0.1", 9000),
            "10.0.0.1".parse().unwrap(),
            0xC0FFEE,
            timeout,
        )
        .with_waiting(Player::new(clip, clips.frame, t0, 0x5555));
        assert_eq!(r.poll_timeout(), t0);
        let ntp = (0, 0);
        let first = r.handle_timeout(t0, ntp);
        assert!(first.len() > 1, "the keyframe, in packets");
        assert!(first
            .iter()
            .all(|o| o.leg == LegId::Caller && !o.rtcp && o.to == addr("10.0.0.1:9000")));
        let h = parse_rtp(&first[0].data).unwrap();
        assert_eq!((h.payload_type, h.ssrc), (97, 0xC0FFEE));
        let mut last = parse_rtp(&first.last().unwrap().data).unwrap();
        assert!(last.marker);
        let mut at = t0;
        for _ in 0..5 {
            at = r.poll_timeout();
            let out = r.handle_timeout(at, ntp);
            let h = parse_rtp(&out[0].data).unwrap();
            assert_eq!(h.seq, last.seq.wrapping_add(1));
            assert_eq!(h.timestamp.wrapping_sub(last.timestamp), 9000);
            last = parse_rtp(&out.last().unwrap().data).unwrap();
        }
        // A keyframe request from the waiting caller: the picture starts again.
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 9, 0, 0, 0, 1];
        assert!(r
            .on_rtcp(at, LegId::Caller, addr("10.0.0.1:9001"), &pli)
            .is_empty());
        let again = r.handle_timeout(r.poll_timeout(), ntp);
        assert_eq!(again.len(), first.len(), "the keyframe again");
        // The agent answers: the picture stops, the agent's video continues the stream.
        let at = at + Duration::from_millis(200);
        r.attach(
            at,
            &neg(97, "10.0.0.2", 7000),
            97,
            "10.0.0.2".parse().unwrap(),
            2,
            timeout,
        );
        let before = parse_rtp(&again.last().unwrap().data).unwrap();
        assert_eq!(r.poll_timeout(), t0 + RTCP_INTERVAL, "only RTCP is due now");
        let out = r.on_rtp(
            at,
            LegId::Agent,
            addr("10.0.0.2:7000"),
            &build_rtp(97, true, 40000, 123, 0xBB, b"agent"),
        );
        let h = parse_rtp(&out[0].data).unwrap();
        assert_eq!(h.seq, before.seq.wrapping_add(1), "sequence continues");
        assert_eq!(h.ssrc, 0xC0FFEE);
        // RTCP: one report to each leg.
        let rtcp = r.handle_timeout(t0 + RTCP_INTERVAL, ntp);
        assert_eq!(rtcp.len(), 2);
        assert!(rtcp.iter().all(|o| o.rtcp));
        assert_eq!(rtcp[0].data[1], 200, "a sender report to the caller");
        // The caller's video, with a gap of two packets.
        for (i, seq) in [1u16, 2, 5].iter().enumerate() {
            r.on_rtp(
                at + Duration::from_millis(100 * i as u64),
                LegId::Caller,
                addr("10.0.0.1:9000"),
                &build_rtp(97, true, *seq, 9000 * i as u32, 0xAA, &[0u8; 1000]),
            );
        }
        let s = r.summary();
        assert_eq!(s.codec, "VP8");
        assert!(s.agent_video);
        assert_eq!(s.from_caller.packets, 3);
        assert_eq!(s.from_caller.frames, 3);
        assert_eq!(s.from_caller.lost, 2);
        assert_eq!(s.from_caller.fps, 15.0, "3 frames over 0.2 s");
        assert_eq!(s.from_caller.kbps, 120.0, "24,000 bits over 0.2 s");
        assert_eq!(s.from_caller.keyframe_requests, 1);
        assert_eq!(s.from_agent.packets, 1);
        assert!(s.waiting_packets as usize >= 2 * first.len());
        // A transfer: the picture is back, from its keyframe.
        r.detach(at);
        let back = r.handle_timeout(r.poll_timeout(), ntp);
        assert_eq!(back.len(), first.len());
    }

    #[test]
    fn each_leg_is_asked_for_keyframes_its_way_and_not_more_often_than_the_gap() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let mut caller = neg(96, "10.0.0.1", 9000);
        caller.keyframe = KeyframeBy::Fir;
        let mut agent = neg(96, "10.0.0.2", 7000);
        agent.keyframe = KeyframeBy::SipInfo;
        let mut r = VideoRelay::new(t0, &caller, "10.0.0.1".parse().unwrap(), 1, timeout);
        r.attach(t0, &agent, 96, "10.0.0.2".parse().unwrap(), 2, timeout);
        let rtp = |r: &mut VideoRelay, leg, from: &str, ssrc| {
            r.on_rtp(t0, leg, addr(from), &build_rtp(96, false, 1, 1, ssrc, b"x"));
        };
        rtp(&mut r, LegId::Caller, "10.0.0.1:9000", 0xAA);
        rtp(&mut r, LegId::Agent, "10.0.0.2:7000", 0xBB);
        // The agent's PLI: a FIR to the caller, naming its source, sequence 1.
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0xBB];
        let out = r.on_rtcp(t0, LegId::Agent, addr("10.0.0.2:7001"), &pli);
        assert_eq!(out.len(), 1);
        let fir = &out[0].data;
        assert_eq!(&fir[..4], &[0x84, 206, 0, 4]);
        assert_eq!(&fir[12..16], &0xAAu32.to_be_bytes());
        assert_eq!(fir[16], 1);
        // Again at once: within the gap, nothing; after it, a FIR with the next number.
        assert!(r
            .on_rtcp(t0, LegId::Agent, addr("10.0.0.2:7001"), &pli)
            .is_empty());
        let later = t0 + KEYFRAME_GAP;
        let out = r.on_rtcp(later, LegId::Agent, addr("10.0.0.2:7001"), &pli);
        assert_eq!(out[0].data[16], 2);
        // The caller's FIR: the agent declared no RTCP feedback, so a SIP INFO for it.
        let out = r.on_rtcp(later, LegId::Caller, addr("10.0.0.1:9001"), &pli);
        assert!(out.is_empty());
        assert_eq!(r.poll_info(), Some(LegId::Agent));
        assert_eq!(r.poll_info(), None);
        assert_eq!(r.stats.keyframe_requests_in, [1, 3]);
    }
}
