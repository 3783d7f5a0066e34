//! A call's media bridge, sans-IO: two legs (caller and agent), each with its own RTP
//! session, negotiated codec and payload types. Packets come in with the time; what to send
//! where comes out. When both legs share a codec the hot path only rewrites the RTP header
//! (payload type, SSRC, sequence, timestamp); otherwise G.711 ↔ Opus is transcoded.
//! Telephone-events are recognised on the way through and reported as digits.

use super::dtmf::EventReceiver;
use super::g711::Law;
use super::opus::{G711ToOpus, OpusError, OpusToG711};
use super::rtp::{build_rtp, is_rtcp, Accept, Expected, RtpSession};
use super::sdp::{Codec, Direction, Negotiated};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegId {
    Caller,
    Agent,
}

impl LegId {
    pub fn other(self) -> LegId {
        match self {
            LegId::Caller => LegId::Agent,
            LegId::Agent => LegId::Caller,
        }
    }
}

pub struct RtpLeg {
    pub session: RtpSession,
    pub codec: Codec,
    pub pt: u8,
    pub dtmf_pt: Option<u8>,
    /// False while the peer holds the call (`sendonly`/`inactive` from its side).
    pub send: bool,
    dtmf: EventReceiver,
}

impl RtpLeg {
    /// A leg negotiated as `n`, whose SIP signalling comes from `signalling`: its media is
    /// accepted from the SDP's host or the signalling host (see [`Expected`]).
    pub fn new(
        now: Instant,
        n: &Negotiated,
        signalling: IpAddr,
        ssrc: u32,
        media_timeout: Duration,
    ) -> RtpLeg {
        let expected = Expected {
            sdp: SocketAddr::new(n.remote.0, n.remote.1),
            signalling,
        };
        RtpLeg {
            session: RtpSession::new(now, n.codec.clock_rate(), ssrc, media_timeout, expected),
            codec: n.codec,
            pt: n.pt,
            dtmf_pt: n.dtmf.map(|(pt, _)| pt),
            send: matches!(n.direction, Direction::SendRecv | Direction::SendOnly),
            dtmf: EventReceiver::default(),
        }
    }

    /// The latched source, else the SDP address.
    pub fn target(&self) -> SocketAddr {
        self.session.peer().unwrap_or(self.session.expected().sdp)
    }

    /// A telephone-event payload: the digit, once per event.
    pub fn dtmf_event(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        self.dtmf.on_packet(timestamp, payload)
    }
}

enum Transcode {
    None,
    /// One direction each way: (caller → agent, agent → caller).
    G711Opus {
        to_opus: G711ToOpus,
        to_g711: OpusToG711,
        opus_leg: LegId,
    },
}

/// What a running bridge reports to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    Digit {
        call: u64,
        leg: LegId,
        digit: char,
        source: super::dtmf::DigitSource,
    },
    /// The prompts asked for have played to the end.
    PromptsDone { call: u64 },
    /// No RTP from a leg for the media timeout: the call should end (BYE with Reason).
    Timeout { call: u64 },
    /// The bridge could not run (ports, transcoder): the call should end.
    Failed { call: u64, reason: String },
    /// A leg that declared no RTCP keyframe feedback must be asked for a keyframe by SIP
    /// INFO `picture_fast_update` (RFC 5168).
    PictureFastUpdate { call: u64, leg: LegId },
    /// A video call's relay ended: its statistics, for the record `record`.
    Video {
        call: u64,
        record: String,
        summary: super::video::VideoSummary,
    },
}

impl MediaEvent {
    pub fn call(&self) -> u64 {
        match self {
            MediaEvent::Digit { call, .. }
            | MediaEvent::PromptsDone { call }
            | MediaEvent::Timeout { call }
            | MediaEvent::Failed { call, .. }
            | MediaEvent::PictureFastUpdate { call, .. }
            | MediaEvent::Video { call, .. } => *call,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum BridgeEvent {
    Send {
        leg: LegId,
        to: SocketAddr,
        packet: Vec<u8>,
    },
    Digit {
        leg: LegId,
        digit: char,
    },
    /// RTP on `leg`'s port from `src`, which is not the leg's source: dropped. `first` for
    /// the leg's first such packet.
    ForeignSource {
        leg: LegId,
        src: SocketAddr,
        first: bool,
    },
}

pub struct RtpBridge {
    caller: RtpLeg,
    agent: RtpLeg,
    transcode: Transcode,
    /// Our own timestamp clock for transcoded output, per destination leg.
    out_ts: [u32; 2],
    out_seq: [u16; 2],
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("no transcoding path between {0:?} and {1:?}")]
    NoPath(Codec, Codec),
    #[error(transparent)]
    Opus(#[from] OpusError),
}

fn law(c: Codec) -> Option<Law> {
    match c {
        Codec::Pcmu => Some(Law::Ulaw),
        Codec::Pcma => Some(Law::Alaw),
        Codec::Opus => None,
    }
}

impl RtpBridge {
    pub fn new(caller: RtpLeg, agent: RtpLeg) -> Result<RtpBridge, BridgeError> {
        let transcode = match (caller.codec, agent.codec) {
            (a, b) if a == b => Transcode::None,
            (Codec::Opus, g) | (g, Codec::Opus) => {
                let l = law(g).ok_or(BridgeError::NoPath(caller.codec, agent.codec))?;
                let opus_leg = if caller.codec == Codec::Opus {
                    LegId::Caller
                } else {
                    LegId::Agent
                };
                Transcode::G711Opus {
                    to_opus: G711ToOpus::new(l)?,
                    to_g711: OpusToG711::new(l)?,
                    opus_leg,
                }
            }
            // PCMU ↔ PCMA: sample-wise through linear, no codec state needed.
            _ => Transcode::None,
        };
        Ok(RtpBridge {
            caller,
            agent,
            transcode,
            out_ts: [0, 0],
            out_seq: [0, 0],
        })
    }

    /// The agent left: the caller's leg goes on alone (post-call survey).
    pub fn into_caller(self) -> RtpLeg {
        self.caller
    }

    pub fn is_transcoding(&self) -> bool {
        !matches!(self.transcode, Transcode::None) || self.caller.codec != self.agent.codec
    }

    pub fn leg(&self, id: LegId) -> &RtpLeg {
        match id {
            LegId::Caller => &self.caller,
            LegId::Agent => &self.agent,
        }
    }

    pub fn leg_mut(&mut self, id: LegId) -> &mut RtpLeg {
        match id {
            LegId::Caller => &mut self.caller,
            LegId::Agent => &mut self.agent,
        }
    }

    /// A datagram arrived on `from`'s port. RTCP is terminated here (each leg gets our own
    /// reports); RTP is relayed or transcoded to the other leg.
    pub fn on_packet(
        &mut self,
        now: Instant,
        from: LegId,
        src: SocketAddr,
        packet: Vec<u8>,
        out: &mut Vec<BridgeEvent>,
    ) -> Result<(), BridgeError> {
        if is_rtcp(&packet) {
            return Ok(());
        }
        let leg = self.leg_mut(from);
        let (accept, header) = leg.session.on_rtp(now, src, &packet);
        if accept == Accept::WrongSource {
            out.push(BridgeEvent::ForeignSource {
                leg: from,
                src,
                first: leg.session.foreign() == 1,
            });
            return Ok(());
        }
        let (Accept::Yes, Some(h)) = (accept, header) else {
            return Ok(());
        };
        let payload_at = h.payload_offset;
        if Some(h.payload_type) == leg.dtmf_pt {
            if let Some(d) = leg.dtmf_event(h.timestamp, &packet[payload_at..]) {
                out.push(BridgeEvent::Digit {
                    leg: from,
                    digit: d,
                });
            }
            // Forward the event if the other side understands telephone-event.
            let to = from.other();
            if let Some(pt) = self.leg(to).dtmf_pt {
                self.forward(now, to, pt, packet, out);
            }
            return Ok(());
        }
        if h.payload_type != leg.pt {
            return Ok(()); // comfort noise or an un-negotiated payload: dropped
        }
        let from_codec = leg.codec;
        let to = from.other();
        let to_codec = self.leg(to).codec;
        if from_codec == to_codec {
            // The hot path: header rewrite only.
            let pt = self.leg(to).pt;
            self.forward(now, to, pt, packet, out);
            return Ok(());
        }
        // Padding (RFC 3550 5.1: the last octet counts it) is not audio; a packet that is
        // only padding — browsers send such probes to estimate bandwidth — has nothing to
        // transcode and nothing to forward.
        let mut end = packet.len();
        if packet[0] & 0x20 != 0 {
            let pad = packet.last().copied().unwrap_or(0) as usize;
            end = end.saturating_sub(pad).max(payload_at);
        }
        let payload = &packet[payload_at..end];
        if payload.is_empty() {
            return Ok(());
        }
        let mut converted = Vec::with_capacity(200);
        match (&mut self.transcode, from_codec, to_codec) {
            (
                Transcode::G711Opus {
                    to_opus,
                    to_g711,
                    opus_leg,
                },
                _,
                _,
            ) => {
                if *opus_leg == from {
                    to_g711.process(Some(payload), &mut converted)?;
                } else {
                    to_opus.process(payload, &mut converted)?;
                }
            }
            (Transcode::None, f, t) => {
                // PCMU ↔ PCMA.
                let (Some(lf), Some(lt)) = (law(f), law(t)) else {
                    return Err(BridgeError::NoPath(f, t));
                };
                let mut pcm = Vec::with_capacity(payload.len());
                lf.decode(payload, &mut pcm);
                lt.encode(&pcm, &mut converted);
            }
        }
        let i = to as usize;
        let samples = to_codec.clock_rate() / 50;
        self.out_seq[i] = self.out_seq[i].wrapping_add(1);
        self.out_ts[i] = self.out_ts[i].wrapping_add(samples);
        let (seq, ts) = (self.out_seq[i], self.out_ts[i]);
        let pt = self.leg(to).pt;
        self.forward(
            now,
            to,
            pt,
            build_rtp(pt, h.marker, seq, ts, 0, &converted),
            out,
        );
        Ok(())
    }

    /// Sends a packet out on leg `to` with payload type `pt`: our SSRC and continuous
    /// sequence/timestamp (the leg's session rewrites the header), to the latched address.
    fn forward(
        &mut self,
        now: Instant,
        to: LegId,
        pt: u8,
        mut packet: Vec<u8>,
        out: &mut Vec<BridgeEvent>,
    ) {
        let other = self.leg_mut(to);
        if !other.send {
            return;
        }
        packet[1] = (packet[1] & 0x80) | pt;
        if other.session.rewrite(now, &mut packet) {
            out.push(BridgeEvent::Send {
                leg: to,
                to: other.target(),
                packet,
            });
        }
    }

    /// The earliest media timeout of the two legs.
    pub fn poll_timeout(&self) -> Instant {
        self.caller
            .session
            .poll_timeout()
            .min(self.agent.session.poll_timeout())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::parse_rtp;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn neg(codec: Codec, pt: u8, port: u16) -> Negotiated {
        Negotiated::simple(codec, pt, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn bridge(c: Codec, cpt: u8, a: Codec, apt: u8) -> RtpBridge {
        let t0 = Instant::now();
        let d = Duration::from_secs(30);
        RtpBridge::new(
            RtpLeg::new(t0, &neg(c, cpt, 4000), LOOPBACK, 1, d),
            RtpLeg::new(t0, &neg(a, apt, 5000), LOOPBACK, 2, d),
        )
        .unwrap()
    }

    fn src(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn same_codec_relays_with_header_rewrite_only() {
        let mut b = bridge(Codec::Pcmu, 0, Codec::Pcmu, 0);
        assert!(!b.is_transcoding());
        let mut out = Vec::new();
        let t0 = Instant::now();
        let payload = [0x55u8; 160];
        b.on_packet(
            t0,
            LegId::Caller,
            src(4002),
            build_rtp(0, false, 10, 1600, 0xCAFE, &payload),
            &mut out,
        )
        .unwrap();
        let BridgeEvent::Send { leg, to, packet } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (*leg, *to),
            (LegId::Agent, src(5000)),
            "sent to the agent's SDP address"
        );
        let h = parse_rtp(packet).unwrap();
        assert_eq!(h.ssrc, 2, "agent leg's own SSRC");
        assert_eq!(&packet[12..], &payload[..], "payload untouched");
    }

    #[test]
    fn rfc4733_digit_is_reported_once_and_forwarded() {
        let mut b = bridge(Codec::Pcma, 8, Codec::Pcma, 8);
        let mut out = Vec::new();
        let t0 = Instant::now();
        for (i, (_, ev)) in crate::media::dtmf::events_for_digit('9', 100, 8000)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            b.on_packet(
                t0,
                LegId::Caller,
                src(4000),
                build_rtp(101, i == 0, 20 + i as u16, 8000, 7, &ev),
                &mut out,
            )
            .unwrap();
        }
        let digits: Vec<_> = out
            .iter()
            .filter_map(|e| match e {
                BridgeEvent::Digit { digit, .. } => Some(*digit),
                _ => None,
            })
            .collect();
        assert_eq!(digits, vec!['9']);
        assert_eq!(
            out.iter()
                .filter(|e| matches!(e, BridgeEvent::Send { .. }))
                .count(),
            7
        );
    }

    #[test]
    fn padding_only_and_corrupt_opus_packets_never_end_the_call() {
        let mut b = bridge(Codec::Opus, 111, Codec::Pcmu, 0);
        let t0 = Instant::now();
        let mut out = Vec::new();
        // A browser's bandwidth probe: padding bit set, only padding after the header.
        let mut probe = build_rtp(111, false, 1, 960, 7, &[0, 0, 0, 4]);
        probe[0] |= 0x20;
        b.on_packet(t0, LegId::Caller, src(4000), probe, &mut out)
            .expect("a padding-only packet is no error");
        assert!(out.is_empty(), "nothing to forward: {out:?}");
        // Garbage where Opus should be: concealed, forwarded as 20 ms of G.711.
        let junk = build_rtp(111, false, 2, 1920, 7, &[0xff; 3]);
        b.on_packet(t0, LegId::Caller, src(4000), junk, &mut out)
            .expect("a corrupt packet is concealed");
        let sent = out
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    BridgeEvent::Send {
                        leg: LegId::Agent,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(sent, 1);
    }

    #[test]
    fn opus_to_pcmu_transcodes_both_ways() {
        let mut b = bridge(Codec::Opus, 111, Codec::Pcmu, 0);
        assert!(b.is_transcoding());
        let t0 = Instant::now();
        let mut enc = crate::media::opus::OpusEncoder::new().unwrap();
        let mut out = Vec::new();
        for i in 0..10u16 {
            let pcm: Vec<i16> = (0..960)
                .map(|k| ((k as f32 * 0.0576).sin() * 8000.0) as i16)
                .collect();
            let mut op = Vec::new();
            enc.encode(&pcm, &mut op).unwrap();
            b.on_packet(
                t0 + Duration::from_millis(20 * i as u64),
                LegId::Caller,
                src(4000),
                build_rtp(111, false, i, 960 * i as u32, 7, &op),
                &mut out,
            )
            .unwrap();
            let g = vec![0x55u8; 160];
            b.on_packet(
                t0 + Duration::from_millis(20 * i as u64),
                LegId::Agent,
                src(5000),
                build_rtp(0, false, i, 160 * i as u32, 8, &g),
                &mut out,
            )
            .unwrap();
        }
        let sent_to = |want: LegId| -> Vec<&Vec<u8>> {
            out.iter()
                .filter_map(|e| match e {
                    BridgeEvent::Send { leg, packet, .. } if *leg == want => Some(packet),
                    _ => None,
                })
                .collect()
        };
        let (to_agent, to_caller) = (sent_to(LegId::Agent), sent_to(LegId::Caller));
        assert_eq!((to_agent.len(), to_caller.len()), (10, 10));
        assert!(to_agent
            .iter()
            .all(|p| p.len() == 12 + 160 && parse_rtp(p).unwrap().payload_type == 0));
        assert!(to_caller
            .iter()
            .all(|p| parse_rtp(p).unwrap().payload_type == 111 && p.len() > 12));
        let ts: Vec<u32> = to_caller
            .iter()
            .map(|p| parse_rtp(p).unwrap().timestamp)
            .collect();
        assert!(
            ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 960),
            "48 kHz clock for Opus: {ts:?}"
        );
    }

    #[test]
    fn pcmu_to_pcma_and_rtcp_is_terminated() {
        let mut b = bridge(Codec::Pcmu, 0, Codec::Pcma, 8);
        let mut out = Vec::new();
        let t0 = Instant::now();
        b.on_packet(
            t0,
            LegId::Caller,
            src(4000),
            build_rtp(0, false, 1, 0, 7, &[0xFF; 160]),
            &mut out,
        )
        .unwrap();
        let BridgeEvent::Send { packet, .. } = &out[0] else {
            panic!()
        };
        assert_eq!(parse_rtp(packet).unwrap().payload_type, 8);
        assert!(
            packet[12..].iter().all(|&b| b == 0xD5),
            "μ-law silence becomes A-law silence"
        );
        out.clear();
        let rr = b.leg(LegId::Caller).session.rtcp_report(t0, (0, 0));
        b.on_packet(t0, LegId::Caller, src(4001), rr, &mut out)
            .unwrap();
        assert!(out.is_empty());
        b.on_packet(t0, LegId::Caller, src(4000), vec![1, 2, 3], &mut out)
            .unwrap();
        assert!(out.is_empty(), "garbage is dropped");
    }
}
