//! One call's media from arrival to hang-up, sans-IO.
//!
//! A call starts *early*: only the caller's leg exists. The engine answers the trunk with
//! `183 Session Progress` and its own SDP, and this session plays the queue's audio to the
//! caller (ringback, music, prompts) while it listens for digits (RFC 4733 events, and
//! in-band tones on G.711). When an agent answers, the agent's leg is attached and the
//! session becomes a [`RtpBridge`]; the caller's RTP stream carries on with the same SSRC and
//! continuous sequence numbers and timestamps, because prompt frames and relayed packets
//! both go through the caller leg's [`RtpSession::rewrite`](super::rtp::RtpSession::rewrite).
//!
//! A leg keyed for SRTP (SDES, [`super::srtp`]) is unprotected on the way in and protected
//! on the way out here, at the session's edge: the bridge, the player and the digit
//! detectors see plain RTP, and each leg has its own keys, so a plain-RTP trunk reaches an
//! SRTP agent (and back) with the engine re-keying between them. What fails authentication
//! (a stranger, a replay, plain RTP on an SRTP leg) is dropped and reported.
//!
//! The media timeout applies only once the call is bridged: many gateways send nothing
//! during early media, and a caller waiting in a queue must not be cut off for that.

use super::bridge::{BridgeError, BridgeEvent, LegId, RtpBridge, RtpLeg};
use super::dtmf::{DigitSource, ToneDetector};
use super::g711::Law;
use super::opus::OpusDecoder;
use super::prompt::Prompt;
use super::rtp::{build_rtp, is_rtcp, Accept};
use super::sdp::{Codec, Negotiated};
use super::srtp::{LegSrtp, SrtpKeys};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const FRAME: Duration = Duration::from_millis(20);
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// The SSRC our prompt frames carry before the caller leg rewrites them; only used to tell
/// the player's stream from relayed ones.
const PLAYER_SSRC: u32 = 0x00DA_5A11;

/// What plays to a waiting caller when no prompt is playing.
#[derive(Clone, Default)]
pub enum Music {
    #[default]
    Silence,
    /// Repeats until something else is asked for (ringback, music on hold).
    Loop(Arc<Prompt>),
}

pub enum Command {
    /// Plays `prompts` once, replacing whatever plays, then `then`. Reports
    /// [`Output::PromptsDone`] when the prompts end (not when replaced or bridged).
    Play {
        prompts: Vec<Arc<Prompt>>,
        then: Music,
    },
    /// The agent answered: bridge the legs. `signalling` is the IP the agent's SIP comes
    /// from (its media may come from there); `record` asks for decoded audio of both sides.
    Attach {
        agent: Negotiated,
        signalling: IpAddr,
        ssrc: u32,
        record: bool,
    },
    /// The agent hung up but the caller stays (post-call survey): the caller's leg goes on
    /// alone, hearing prompts and sending digits again.
    Detach,
    /// A re-INVITE/UPDATE moved a leg's peer or put it on (or off) hold: its SDP address
    /// `to`, and `signalling`, the IP that offer/answer came from. A new SDP address is
    /// learned afresh (see [`RtpSession::renegotiated`](super::rtp::RtpSession::renegotiated)).
    Remote {
        leg: LegId,
        to: SocketAddr,
        signalling: IpAddr,
        send: bool,
    },
    /// A re-INVITE/UPDATE brought a new SRTP key from the leg's peer (ours stays).
    Rekey { leg: LegId, keys: SrtpKeys },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    Send {
        leg: LegId,
        to: SocketAddr,
        packet: Vec<u8>,
    },
    /// An RTCP report, for the leg's RTCP port.
    Rtcp {
        leg: LegId,
        to: SocketAddr,
        packet: Vec<u8>,
    },
    Digit {
        leg: LegId,
        digit: char,
        source: DigitSource,
    },
    /// Decoded 8 kHz audio for the recorder (only when recording).
    Audio {
        leg: LegId,
        pcm: Vec<i16>,
    },
    PromptsDone,
    /// No RTP from a leg of the bridged call for the media timeout.
    Timeout,
    /// RTP on `leg`'s port from `src`, which is not the leg's source: dropped (count it).
    /// `first` for the leg's first such packet.
    ForeignSource {
        leg: LegId,
        src: SocketAddr,
        first: bool,
    },
    /// A packet on an SRTP leg that failed authentication (or was a replay, or plain RTP):
    /// dropped (count it). `first` for the leg's first such packet.
    SrtpRefused {
        leg: LegId,
        src: SocketAddr,
        first: bool,
    },
}

/// The header rewrite of one relayed direction: packets with SSRC `ssrc_in` and payload
/// type `pt_in` leave as payload type `pt_out`, SSRC `ssrc_out`, sequence and timestamp
/// moved by the offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    pub pt_in: u8,
    pub ssrc_in: u32,
    pub pt_out: u8,
    pub ssrc_out: u32,
    pub seq_offset: u16,
    pub ts_offset: u32,
}

/// One direction of a bridged call that a forwarder outside the session may carry: packets
/// from `src` leave to `to`, rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offload {
    pub src: SocketAddr,
    pub to: SocketAddr,
    pub rewrite: Rewrite,
}

/// What such a forwarder carried since it was last asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    pub packets: u64,
    pub octets: u64,
    /// When the last of them arrived.
    pub at: Instant,
    pub last_seq_in: u16,
    pub last_seq_out: u16,
    pub last_ts_out: u32,
}

/// How a leg's packets are carried.
enum LegCrypto {
    Plain,
    Srtp(Box<LegSrtp>, u64),
    /// Keys that would not make a context: nothing is sent or accepted on the leg (never
    /// plain RTP where SRTP was agreed).
    Broken,
}

impl LegCrypto {
    fn of(keys: Option<&SrtpKeys>) -> LegCrypto {
        match keys.map(LegSrtp::new) {
            None => LegCrypto::Plain,
            Some(Ok(s)) => LegCrypto::Srtp(Box::new(s), 0),
            Some(Err(_)) => LegCrypto::Broken,
        }
    }
}

enum Phase {
    Early(Box<RtpLeg>),
    Bridged(Box<RtpBridge>),
    Gone,
}

struct Player {
    prompts: std::collections::VecDeque<Arc<Prompt>>,
    pos: usize,
    then: Music,
    loop_pos: usize,
    next: Option<Instant>,
    seq: u16,
    ts: u32,
    marker: bool,
}

impl Player {
    fn active(&self) -> bool {
        !self.prompts.is_empty() || matches!(self.then, Music::Loop(_))
    }

    /// The next 20 ms frame for `codec`; `true` when it ended the prompts.
    fn frame(&mut self, codec: Codec) -> Option<(Vec<u8>, bool)> {
        let pick = |p: &Prompt, i: usize| -> Option<Vec<u8>> {
            let frames = match codec {
                Codec::Pcmu => &p.pcmu,
                Codec::Pcma => &p.pcma,
                Codec::Opus => &p.opus,
            };
            frames.get(i).cloned()
        };
        while let Some(p) = self.prompts.front() {
            if let Some(f) = pick(p, self.pos) {
                self.pos += 1;
                let ended = self.pos >= p.pcmu.len() && self.prompts.len() == 1;
                if self.pos >= p.pcmu.len() {
                    self.prompts.pop_front();
                    self.pos = 0;
                }
                return Some((f, ended));
            }
            self.prompts.pop_front();
            self.pos = 0;
        }
        let Music::Loop(p) = &self.then else {
            return None;
        };
        if p.pcmu.is_empty() {
            return None;
        }
        let f = pick(p, self.loop_pos % p.pcmu.len());
        self.loop_pos = (self.loop_pos + 1) % p.pcmu.len();
        f.map(|f| (f, false))
    }
}

pub struct MediaSession {
    phase: Phase,
    player: Player,
    /// In-band DTMF on a G.711 caller while the call waits.
    tones: Option<(Law, ToneDetector)>,
    record: Option<[Option<OpusDecoder>; 2]>,
    timeout: Duration,
    rtcp_next: Instant,
    /// Reports sent so far, to vary each interval (see [`rtcp_interval`]).
    rtcp_sent: u32,
    rtcp_seed: u32,
    start: Instant,
    wall_at_start: SystemTime,
    /// Per leg (caller, agent).
    crypto: [LegCrypto; 2],
    /// The bridge's events for one packet, kept so that a relayed packet allocates nothing.
    scratch: Vec<BridgeEvent>,
}

impl MediaSession {
    /// A waiting caller: `caller` is its negotiated SDP, `signalling` the IP its SIP comes
    /// from (its media is accepted from the SDP's host or that one), `ssrc` ours towards it.
    pub fn new(
        now: Instant,
        wall: SystemTime,
        caller: &Negotiated,
        signalling: IpAddr,
        ssrc: u32,
        timeout: Duration,
        music: Music,
    ) -> MediaSession {
        let leg = RtpLeg::new(now, caller, signalling, ssrc, timeout);
        let tones = match caller.codec {
            Codec::Pcmu => Some((Law::Ulaw, ToneDetector::default())),
            Codec::Pcma => Some((Law::Alaw, ToneDetector::default())),
            Codec::Opus => None,
        };
        let mut s = MediaSession {
            phase: Phase::Early(Box::new(leg)),
            player: Player {
                prompts: Default::default(),
                pos: 0,
                then: music,
                loop_pos: 0,
                next: None,
                seq: rand_u16(ssrc),
                ts: ssrc.rotate_left(11),
                marker: true,
            },
            tones,
            record: None,
            timeout,
            rtcp_next: now + rtcp_interval(ssrc, 0),
            rtcp_sent: 0,
            rtcp_seed: ssrc,
            start: now,
            wall_at_start: wall,
            crypto: [LegCrypto::of(caller.srtp.as_ref()), LegCrypto::Plain],
            scratch: Vec::with_capacity(4),
        };
        s.player.next = s.player.active().then_some(now);
        s
    }

    /// RTP packets lost towards the engine so far (sequence gaps), both legs.
    pub fn lost(&self) -> u64 {
        let legs: Vec<&RtpLeg> = match &self.phase {
            Phase::Early(l) => vec![l],
            Phase::Bridged(b) => vec![b.leg(LegId::Caller), b.leg(LegId::Agent)],
            Phase::Gone => vec![],
        };
        legs.iter().map(|l| l.session.rx.lost().max(0) as u64).sum()
    }

    pub fn is_bridged(&self) -> bool {
        matches!(self.phase, Phase::Bridged(_))
    }

    pub fn handle_command(
        &mut self,
        now: Instant,
        cmd: Command,
        out: &mut Vec<Output>,
    ) -> Result<(), BridgeError> {
        let start = out.len();
        let r = self.command(now, cmd, out);
        self.protect(out, start);
        r
    }

    fn command(
        &mut self,
        now: Instant,
        cmd: Command,
        out: &mut Vec<Output>,
    ) -> Result<(), BridgeError> {
        match cmd {
            Command::Play { prompts, then } => {
                self.player.prompts = prompts.into();
                self.player.pos = 0;
                self.player.then = then;
                self.player.loop_pos = 0;
                if self.player.prompts.is_empty() && matches!(self.phase, Phase::Early(_)) {
                    // Nothing to play: done at once, so the menu's digit timer starts.
                    out.push(Output::PromptsDone);
                }
                self.player.next = (self.player.active() && !self.is_bridged()).then_some(now);
            }
            Command::Attach {
                agent,
                signalling,
                ssrc,
                record,
            } => {
                let Phase::Early(mut caller) = std::mem::replace(&mut self.phase, Phase::Gone)
                else {
                    return Ok(());
                };
                caller.session.restart_timeout(now);
                let agent_codec = agent.codec;
                let caller_codec = caller.codec;
                let agent_leg = RtpLeg::new(now, &agent, signalling, ssrc, self.timeout);
                let bridge = RtpBridge::new(*caller, agent_leg)?;
                self.crypto[LegId::Agent as usize] = LegCrypto::of(agent.srtp.as_ref());
                self.phase = Phase::Bridged(Box::new(bridge));
                self.player.prompts.clear();
                self.player.then = Music::Silence;
                self.player.next = None;
                self.tones = None;
                if record {
                    let dec = |c: Codec| {
                        (c == Codec::Opus)
                            .then(|| OpusDecoder::with_rate(audiopus::SampleRate::Hz8000).ok())
                            .flatten()
                    };
                    self.record = Some([dec(caller_codec), dec(agent_codec)]);
                }
            }
            Command::Detach => {
                let Phase::Bridged(bridge) = std::mem::replace(&mut self.phase, Phase::Gone) else {
                    return Ok(());
                };
                let caller = bridge.into_caller();
                self.tones = match caller.codec {
                    Codec::Pcmu => Some((Law::Ulaw, ToneDetector::default())),
                    Codec::Pcma => Some((Law::Alaw, ToneDetector::default())),
                    Codec::Opus => None,
                };
                self.record = None;
                self.phase = Phase::Early(Box::new(caller));
                self.crypto[LegId::Agent as usize] = LegCrypto::Plain;
            }
            Command::Rekey { leg, keys } => {
                let c = &mut self.crypto[leg as usize];
                if let LegCrypto::Srtp(s, _) = c {
                    if s.rekey_remote(&keys).is_err() {
                        *c = LegCrypto::Broken;
                    }
                }
            }
            Command::Remote {
                leg,
                to,
                signalling,
                send,
            } => {
                if let Some(l) = self.leg_mut(leg) {
                    l.session.renegotiated(to, signalling);
                    l.send = send;
                }
            }
        }
        Ok(())
    }

    fn leg_mut(&mut self, id: LegId) -> Option<&mut RtpLeg> {
        match (&mut self.phase, id) {
            (Phase::Early(l), LegId::Caller) => Some(l),
            (Phase::Bridged(b), id) => Some(b.leg_mut(id)),
            _ => None,
        }
    }

    /// A datagram on `leg`'s RTP port from `src`.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        leg: LegId,
        src: SocketAddr,
        packet: Vec<u8>,
        out: &mut Vec<Output>,
    ) -> Result<(), BridgeError> {
        let packet = match &mut self.crypto[leg as usize] {
            LegCrypto::Plain => packet,
            // RTCP multiplexed on the RTP port is terminated here, like plain RTCP.
            _ if is_rtcp(&packet) => return Ok(()),
            LegCrypto::Srtp(s, refused) => match s.unprotect_rtp(&packet) {
                Some(p) => p,
                None => {
                    *refused += 1;
                    out.push(Output::SrtpRefused {
                        leg,
                        src,
                        first: *refused == 1,
                    });
                    return Ok(());
                }
            },
            LegCrypto::Broken => return Ok(()),
        };
        let start = out.len();
        let r = self.plain_packet(now, leg, src, packet, out);
        self.protect(out, start);
        r
    }

    /// Protects what was queued from `start` on for the legs that run SRTP (RTP as SRTP,
    /// our reports as SRTCP), and drops what cannot be protected.
    fn protect(&mut self, out: &mut Vec<Output>, start: usize) {
        if self.crypto.iter().all(|c| matches!(c, LegCrypto::Plain)) {
            return;
        }
        let mut i = start;
        while i < out.len() {
            let keep = match &mut out[i] {
                Output::Send { leg, packet, .. } => match &mut self.crypto[*leg as usize] {
                    LegCrypto::Plain => true,
                    LegCrypto::Srtp(s, _) => s.protect_rtp(packet).map(|p| *packet = p).is_some(),
                    LegCrypto::Broken => false,
                },
                Output::Rtcp { leg, packet, .. } => match &mut self.crypto[*leg as usize] {
                    LegCrypto::Plain => true,
                    LegCrypto::Srtp(s, _) => s.protect_rtcp(packet).map(|p| *packet = p).is_some(),
                    LegCrypto::Broken => false,
                },
                _ => true,
            };
            if keep {
                i += 1;
            } else {
                out.remove(i);
            }
        }
    }

    fn plain_packet(
        &mut self,
        now: Instant,
        leg: LegId,
        src: SocketAddr,
        packet: Vec<u8>,
        out: &mut Vec<Output>,
    ) -> Result<(), BridgeError> {
        match &mut self.phase {
            Phase::Early(caller) if leg == LegId::Caller && !is_rtcp(&packet) => {
                let (accept, h) = caller.session.on_rtp(now, src, &packet);
                if accept == Accept::WrongSource {
                    out.push(Output::ForeignSource {
                        leg,
                        src,
                        first: caller.session.foreign() == 1,
                    });
                    return Ok(());
                }
                let (Accept::Yes, Some(h)) = (accept, h) else {
                    return Ok(());
                };
                let payload = &packet[h.payload_offset..];
                if Some(h.payload_type) == caller.dtmf_pt {
                    if let Some(digit) = caller.dtmf_event(h.timestamp, payload) {
                        out.push(Output::Digit {
                            leg,
                            digit,
                            source: DigitSource::Rfc4733,
                        });
                    }
                } else if h.payload_type == caller.pt {
                    if let Some((law, det)) = self.tones.as_mut() {
                        let mut pcm = Vec::with_capacity(payload.len());
                        law.decode(payload, &mut pcm);
                        for digit in det.push(&pcm) {
                            out.push(Output::Digit {
                                leg,
                                digit,
                                source: DigitSource::InBand,
                            });
                        }
                    }
                }
                Ok(())
            }
            Phase::Bridged(bridge) => {
                if let Some(decoders) = self.record.as_mut() {
                    record_audio(bridge, decoders, leg, &packet, out);
                }
                let mut events = std::mem::take(&mut self.scratch);
                let r = bridge.on_packet(now, leg, src, packet, &mut events);
                for ev in events.drain(..) {
                    out.push(match ev {
                        BridgeEvent::Send { leg, to, packet } => Output::Send { leg, to, packet },
                        BridgeEvent::Digit { leg, digit } => Output::Digit {
                            leg,
                            digit,
                            source: DigitSource::Rfc4733,
                        },
                        BridgeEvent::ForeignSource { leg, src, first } => {
                            Output::ForeignSource { leg, src, first }
                        }
                    });
                }
                self.scratch = events;
                r
            }
            // RTCP is terminated here; the agent's port is silent until it is attached.
            _ => Ok(()),
        }
    }

    /// The directions of a bridged call that need nothing but a header rewrite, as they
    /// stand now (indexed by the leg the packets come from): plain RTP on both legs, one
    /// codec, not recorded, a learned source whose stream our output already continues,
    /// and the other leg sending. Anything may take them away again (a re-INVITE, hold, a
    /// new SSRC, the agent leaving); the caller compares after each step.
    pub fn offloads(&self) -> [Option<Offload>; 2] {
        let mut out = [None, None];
        let Phase::Bridged(b) = &self.phase else {
            return out;
        };
        if self.record.is_some() || !self.crypto.iter().all(|c| matches!(c, LegCrypto::Plain)) {
            return out;
        }
        for from in [LegId::Caller, LegId::Agent] {
            let (leg, other) = (b.leg(from), b.leg(from.other()));
            let Some(src) = leg.session.peer() else {
                continue;
            };
            let ssrc = leg.session.rx.ssrc;
            if leg.codec != other.codec
                || !other.send
                || leg.session.rx.received == 0
                || other.session.tx_source() != Some(ssrc)
            {
                continue;
            }
            let (seq_offset, ts_offset) = other.session.tx_offsets();
            out[from as usize] = Some(Offload {
                src,
                to: other.target(),
                rewrite: Rewrite {
                    pt_in: leg.pt,
                    ssrc_in: ssrc,
                    pt_out: other.pt,
                    ssrc_out: other.session.ssrc(),
                    seq_offset,
                    ts_offset,
                },
            });
        }
        out
    }

    /// What was forwarded elsewhere from leg `from` (see [`offloads`](Self::offloads)): the
    /// two legs' statistics, media timeout and continuity catch up.
    pub fn absorb(&mut self, from: LegId, f: &Forwarded) {
        let Phase::Bridged(b) = &mut self.phase else {
            return;
        };
        b.leg_mut(from)
            .session
            .absorb_rx(f.at, f.packets, f.last_seq_in);
        b.leg_mut(from.other()).session.absorb_tx(
            f.at,
            f.packets,
            f.octets,
            f.last_seq_out,
            f.last_ts_out,
        );
    }

    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.rtcp_next;
        if let Some(n) = self.player.next {
            t = t.min(n);
        }
        if let Phase::Bridged(b) = &self.phase {
            t = t.min(b.poll_timeout());
        }
        t
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        let start = out.len();
        self.timeout(now, out);
        self.protect(out, start);
    }

    fn timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        if let Phase::Bridged(b) = &self.phase {
            if now >= b.poll_timeout() {
                out.push(Output::Timeout);
                self.phase = Phase::Gone;
                return;
            }
        }
        if let Phase::Early(caller) = &mut self.phase {
            let mut sent = 0;
            while let Some(next) = self.player.next.filter(|n| *n <= now) {
                // A starved task does not burst: after 100 ms behind, the clock restarts.
                if now.duration_since(next) > Duration::from_millis(100) || sent > 5 {
                    self.player.next = Some(now);
                }
                let Some((frame, ended)) = self.player.frame(caller.codec) else {
                    self.player.next = None;
                    break;
                };
                let pt = caller.pt;
                let mut pkt = build_rtp(
                    pt,
                    std::mem::take(&mut self.player.marker),
                    self.player.seq,
                    self.player.ts,
                    PLAYER_SSRC,
                    &frame,
                );
                self.player.seq = self.player.seq.wrapping_add(1);
                self.player.ts = self.player.ts.wrapping_add(caller.codec.clock_rate() / 50);
                if caller.send && caller.session.rewrite(now, &mut pkt) {
                    out.push(Output::Send {
                        leg: LegId::Caller,
                        to: caller.target(),
                        packet: pkt,
                    });
                }
                sent += 1;
                if ended {
                    out.push(Output::PromptsDone);
                }
                self.player.next = self
                    .player
                    .active()
                    .then(|| self.player.next.unwrap_or(now) + FRAME);
            }
        }
        if now >= self.rtcp_next {
            self.rtcp_sent = self.rtcp_sent.wrapping_add(1);
            self.rtcp_next = now + rtcp_interval(self.rtcp_seed, self.rtcp_sent);
            let ntp = self.ntp(now);
            let legs: Vec<&RtpLeg> = match &self.phase {
                Phase::Early(l) => vec![l],
                Phase::Bridged(b) => vec![b.leg(LegId::Caller), b.leg(LegId::Agent)],
                Phase::Gone => vec![],
            };
            for (i, l) in legs.into_iter().enumerate() {
                let t = l.target();
                out.push(Output::Rtcp {
                    leg: if i == 0 { LegId::Caller } else { LegId::Agent },
                    to: SocketAddr::new(t.ip(), t.port().wrapping_add(1)),
                    packet: l.session.rtcp_report(now, ntp),
                });
            }
        }
    }

    /// The wall clock at `now` as an NTP timestamp (seconds since 1900, fraction).
    fn ntp(&self, now: Instant) -> (u32, u32) {
        let wall = self.wall_at_start + now.saturating_duration_since(self.start);
        let d = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = (d.as_secs() + 2_208_988_800) as u32;
        let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
        (secs, frac as u32)
    }
}

/// The time to the next RTCP report: the interval times a factor drawn from [0.5, 1.5)
/// (RFC 3550 6.3.1), so calls that started together do not all report in the same
/// millisecond every five seconds — a burst of thousands of packets on a busy relay.
fn rtcp_interval(seed: u32, n: u32) -> Duration {
    // A multiplicative hash of the seed and the count: spread enough, no state to keep.
    let h = (seed ^ n.wrapping_mul(0x9E37_79B9)).wrapping_mul(0x85EB_CA6B);
    let h = h ^ (h >> 15);
    RTCP_INTERVAL / 2 + RTCP_INTERVAL.mul_f64(h as f64 / (u32::MAX as f64 + 1.0))
}

fn rand_u16(seed: u32) -> u16 {
    (seed ^ (seed >> 16)) as u16
}

/// Decodes a leg's audio packet for the recorder (telephone-events and unknown payloads
/// are left out).
fn record_audio(
    bridge: &RtpBridge,
    decoders: &mut [Option<OpusDecoder>; 2],
    leg: LegId,
    packet: &[u8],
    out: &mut Vec<Output>,
) {
    let l = bridge.leg(leg);
    let Some(h) = super::rtp::parse_rtp(packet) else {
        return;
    };
    if h.payload_type != l.pt {
        return;
    }
    let payload = &packet[h.payload_offset..];
    let mut pcm = Vec::with_capacity(160);
    match l.codec {
        Codec::Pcmu => Law::Ulaw.decode(payload, &mut pcm),
        Codec::Pcma => Law::Alaw.decode(payload, &mut pcm),
        Codec::Opus => {
            if let Some(d) = decoders[leg as usize].as_mut() {
                if d.decode(Some(payload), &mut pcm).is_err() {
                    return;
                }
            }
        }
    }
    if !pcm.is_empty() {
        out.push(Output::Audio { leg, pcm });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rtcp_intervals_are_spread_between_half_and_one_and_a_half() {
        let xs: Vec<Duration> = (0..1000u32)
            .map(|i| super::rtcp_interval(i.wrapping_mul(2_654_435_761), i % 7))
            .collect();
        let (lo, hi) = (super::RTCP_INTERVAL / 2, super::RTCP_INTERVAL * 3 / 2);
        assert!(xs.iter().all(|d| *d >= lo && *d < hi));
        // Spread over the whole range, not bunched: every tenth of it is used.
        let mut bins = [0; 10];
        for d in &xs {
            bins[((d.as_secs_f64() - lo.as_secs_f64()) / 0.5) as usize] += 1;
        }
        assert!(bins.iter().all(|b| *b > 50), "{bins:?}");
    }

    use super::*;
    use crate::media::rtp::parse_rtp;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn neg(codec: Codec, pt: u8, port: u16) -> Negotiated {
        Negotiated::simple(codec, pt, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// A waiting caller at 127.0.0.1:4000, our SSRC 7.
    fn caller_session(
        t0: Instant,
        codec: Codec,
        pt: u8,
        timeout_s: u64,
        music: Music,
    ) -> MediaSession {
        MediaSession::new(
            t0,
            SystemTime::now(),
            &neg(codec, pt, 4000),
            LOOPBACK,
            7,
            Duration::from_secs(timeout_s),
            music,
        )
    }

    fn tone_prompt(ms: usize) -> Arc<Prompt> {
        let pcm: Vec<i16> = (0..ms * 8)
            .map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16)
            .collect();
        Arc::new(crate::media::prompt::encode(pcm, "t").unwrap())
    }

    fn sends(out: &[Output]) -> Vec<(LegId, SocketAddr, Vec<u8>)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { leg, to, packet } => Some((*leg, *to, packet.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn plays_prompts_at_20ms_then_reports_done_and_keeps_looping_music() {
        let t0 = Instant::now();
        let ring = tone_prompt(100); // 5 frames
        let mut s = caller_session(t0, Codec::Pcmu, 0, 30, Music::Silence);
        let first = s.poll_timeout();
        assert!(
            first >= t0 + RTCP_INTERVAL / 2 && first < t0 + RTCP_INTERVAL * 3 / 2,
            "silence sends nothing but RTCP"
        );
        let mut out = Vec::new();
        s.handle_command(
            t0,
            Command::Play {
                prompts: vec![tone_prompt(60), tone_prompt(40)],
                then: Music::Loop(ring),
            },
            &mut out,
        )
        .unwrap();
        let mut t = t0;
        for _ in 0..12 {
            assert_eq!(s.poll_timeout(), t);
            s.handle_timeout(t, &mut out);
            t += FRAME;
        }
        let sent = sends(&out);
        assert_eq!(sent.len(), 12, "one frame per 20 ms");
        let done_at = out
            .iter()
            .filter(|o| matches!(o, Output::Send { .. } | Output::PromptsDone))
            .position(|o| *o == Output::PromptsDone)
            .unwrap();
        assert_eq!(done_at, 5, "after the 3 + 2 prompt frames");
        let hs: Vec<_> = sent.iter().map(|(_, _, p)| parse_rtp(p).unwrap()).collect();
        assert!(hs.iter().all(|h| h.ssrc == 7 && h.payload_type == 0));
        assert!(hs[0].marker && !hs[1].marker);
        for w in hs.windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
            assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(160));
        }
        assert!(sent
            .iter()
            .all(|(l, to, p)| *l == LegId::Caller && to.port() == 4000 && p.len() == 172));
    }

    #[test]
    fn digits_in_band_and_rfc4733_while_waiting_and_no_media_timeout_before_the_answer() {
        let t0 = Instant::now();
        let mut s = caller_session(t0, Codec::Pcmu, 0, 1, Music::Silence);
        let src = SocketAddr::from(([127, 0, 0, 1], 4000));
        let mut out = Vec::new();
        // A 697+1209 Hz ("1") tone for 100 ms, in band.
        let pcm: Vec<i16> = (0..800)
            .map(|i| {
                let t = i as f32 / 8000.0;
                (((2.0 * std::f32::consts::PI * 697.0 * t).sin()
                    + (2.0 * std::f32::consts::PI * 1209.0 * t).sin())
                    * 6000.0) as i16
            })
            .collect();
        for (i, chunk) in pcm.chunks(160).enumerate() {
            let mut u = Vec::new();
            Law::Ulaw.encode(chunk, &mut u);
            let p = build_rtp(0, false, i as u16, i as u32 * 160, 99, &u);
            s.handle_packet(t0, LegId::Caller, src, p, &mut out)
                .unwrap();
        }
        for (i, (_, ev)) in crate::media::dtmf::events_for_digit('9', 60, 8000)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            let p = build_rtp(101, i == 0, 10 + i as u16, 5000, 99, &ev);
            s.handle_packet(t0, LegId::Caller, src, p, &mut out)
                .unwrap();
        }
        let digits: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Digit { digit, source, .. } => Some((*digit, *source)),
                _ => None,
            })
            .collect();
        assert_eq!(
            digits,
            vec![('1', DigitSource::InBand), ('9', DigitSource::Rfc4733)]
        );
        // Minutes of silence while queued: no timeout, only RTCP.
        let mut out = Vec::new();
        s.handle_timeout(t0 + Duration::from_secs(120), &mut out);
        assert!(!out.contains(&Output::Timeout));
        assert!(matches!(out[0], Output::Rtcp { .. }));
    }

    #[test]
    fn srtp_caller_reaches_a_plain_agent_re_keyed_and_strangers_and_replays_are_refused() {
        use crate::media::srtp::{KeySalt, LegSrtp, SrtpKeys, Suite};
        let t0 = Instant::now();
        let keys = SrtpKeys {
            suite: Suite::AesCm128HmacSha1_80,
            tag: 1,
            remote: KeySalt([3; 30]),
            local: KeySalt([4; 30]),
        };
        // The caller's phone: it sends with its key and receives with ours.
        let mut phone = LegSrtp::new(&SrtpKeys {
            remote: keys.local.clone(),
            local: keys.remote.clone(),
            ..keys.clone()
        })
        .unwrap();
        let mut caller = neg(Codec::Pcmu, 0, 4000);
        caller.srtp = Some(keys);
        let mut s = MediaSession::new(
            t0,
            SystemTime::now(),
            &caller,
            LOOPBACK,
            7,
            Duration::from_secs(30),
            Music::Loop(tone_prompt(100)),
        );
        let mut out = Vec::new();
        s.handle_timeout(t0, &mut out);
        let sent = sends(&out);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].2.len(), 172 + 10, "SRTP adds the 80-bit tag");
        let plain = phone
            .unprotect_rtp(&sent[0].2)
            .expect("our ringback is SRTP");
        assert_eq!(parse_rtp(&plain).unwrap().ssrc, 7);
        s.handle_command(
            t0,
            Command::Attach {
                agent: neg(Codec::Pcmu, 0, 5000),
                signalling: LOOPBACK,
                ssrc: 9,
                record: false,
            },
            &mut out,
        )
        .unwrap();
        let src = SocketAddr::from(([127, 0, 0, 1], 4000));
        let voice = build_rtp(0, false, 1, 160, 55, &[0x11; 160]);
        let protected = phone.protect_rtp(&voice).unwrap();
        let mut out = Vec::new();
        s.handle_packet(t0, LegId::Caller, src, protected.clone(), &mut out)
            .unwrap();
        let to_agent = sends(&out);
        assert_eq!(to_agent.len(), 1);
        assert_eq!(to_agent[0].0, LegId::Agent);
        assert_eq!(
            &to_agent[0].2[12..],
            &[0x11; 160],
            "the plain agent gets audio"
        );
        // A replay, plain RTP and a forged packet from the caller's own address: refused.
        let mut out = Vec::new();
        s.handle_packet(t0, LegId::Caller, src, protected, &mut out)
            .unwrap();
        s.handle_packet(t0, LegId::Caller, src, voice.clone(), &mut out)
            .unwrap();
        let mut forged = phone
            .protect_rtp(&build_rtp(0, false, 2, 320, 55, &[0x11; 160]))
            .unwrap();
        forged[30] ^= 0x80;
        s.handle_packet(t0, LegId::Caller, src, forged, &mut out)
            .unwrap();
        assert!(sends(&out).is_empty(), "{out:?}");
        let refused: Vec<bool> = out
            .iter()
            .filter_map(|o| match o {
                Output::SrtpRefused { first, .. } => Some(*first),
                _ => None,
            })
            .collect();
        assert_eq!(refused, vec![true, false, false]);
        // The agent's plain audio reaches the caller encrypted, our reports as SRTCP.
        let agent = SocketAddr::from(([127, 0, 0, 1], 5000));
        let mut out = Vec::new();
        s.handle_packet(
            t0,
            LegId::Agent,
            agent,
            build_rtp(0, false, 9, 900, 66, &[0x22; 160]),
            &mut out,
        )
        .unwrap();
        let to_caller = sends(&out);
        assert_eq!(to_caller[0].0, LegId::Caller);
        assert_ne!(&to_caller[0].2[12..172], &[0x22; 160]);
        let heard = phone.unprotect_rtp(&to_caller[0].2).unwrap();
        assert_eq!(&heard[12..], &[0x22; 160]);
        let mut out = Vec::new();
        s.handle_timeout(t0 + RTCP_INTERVAL * 3 / 2, &mut out);
        let rtcp: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Rtcp { leg, packet, .. } => Some((*leg, packet.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(rtcp.len(), 2);
        let caller_rtcp = &rtcp.iter().find(|(l, _)| *l == LegId::Caller).unwrap().1;
        assert!(
            phone.unprotect_rtcp(caller_rtcp).is_some(),
            "SRTCP to the caller"
        );
        let agent_rtcp = &rtcp.iter().find(|(l, _)| *l == LegId::Agent).unwrap().1;
        assert!(is_rtcp(agent_rtcp), "plain RTCP to the plain agent");
    }

    #[test]
    fn attach_keeps_the_callers_stream_continuous_and_starts_the_media_timeout() {
        let t0 = Instant::now();
        let mut s = caller_session(t0, Codec::Pcma, 8, 2, Music::Loop(tone_prompt(200)));
        let mut out = Vec::new();
        let mut t = t0;
        for _ in 0..3 {
            s.handle_timeout(t, &mut out);
            t += FRAME;
        }
        s.handle_command(
            t,
            Command::Attach {
                agent: neg(Codec::Pcma, 8, 5000),
                signalling: LOOPBACK,
                ssrc: 9,
                record: true,
            },
            &mut out,
        )
        .unwrap();
        assert!(s.is_bridged());
        assert_eq!(s.player.next, None, "the music stops at the answer");
        let agent = SocketAddr::from(([127, 0, 0, 1], 5000));
        s.handle_packet(
            t,
            LegId::Agent,
            agent,
            build_rtp(8, true, 500, 123_456, 0xAAAA, &[0xD5; 160]),
            &mut out,
        )
        .unwrap();
        let sent = sends(&out);
        let hs: Vec<_> = sent.iter().map(|(_, _, p)| parse_rtp(p).unwrap()).collect();
        assert_eq!(hs.len(), 4);
        assert!(
            hs.iter().all(|h| h.ssrc == 7),
            "one SSRC towards the caller"
        );
        assert_eq!(hs[3].seq, hs[2].seq.wrapping_add(1), "no sequence jump");
        assert!(hs[3].timestamp.wrapping_sub(hs[2].timestamp) <= 320);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Audio {
                leg: LegId::Agent,
                ..
            }
        )));
        // Silence from the caller now ends the call after the timeout.
        let mut out = Vec::new();
        s.handle_timeout(t + Duration::from_secs(2), &mut out);
        assert!(out.contains(&Output::Timeout));
    }

    #[test]
    fn detach_leaves_the_caller_alone_with_prompts_and_digits_again() {
        let t0 = Instant::now();
        let mut s = caller_session(t0, Codec::Pcmu, 0, 30, Music::Silence);
        let mut out = Vec::new();
        s.handle_command(
            t0,
            Command::Attach {
                agent: neg(Codec::Pcmu, 0, 5000),
                signalling: LOOPBACK,
                ssrc: 9,
                record: false,
            },
            &mut out,
        )
        .unwrap();
        let agent = SocketAddr::from(([127, 0, 0, 1], 5000));
        s.handle_packet(
            t0,
            LegId::Agent,
            agent,
            build_rtp(0, false, 1, 160, 0xAA, &[0x11; 160]),
            &mut out,
        )
        .unwrap();
        s.handle_command(t0, Command::Detach, &mut out).unwrap();
        assert!(!s.is_bridged());
        s.handle_command(
            t0,
            Command::Play {
                prompts: vec![tone_prompt(40)],
                then: Music::Silence,
            },
            &mut out,
        )
        .unwrap();
        s.handle_timeout(t0 + FRAME, &mut out);
        let sent = sends(&out);
        let hs: Vec<_> = sent.iter().map(|(_, _, p)| parse_rtp(p).unwrap()).collect();
        assert_eq!(
            hs.len(),
            3,
            "the agent's packet, then the prompt's two frames"
        );
        assert!(hs.iter().all(|h| h.ssrc == 7));
        for w in hs.windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "one stream throughout");
        }
        // Agent packets after the detach go nowhere.
        out.clear();
        s.handle_packet(
            t0,
            LegId::Agent,
            agent,
            build_rtp(0, false, 2, 320, 0xAA, &[0x11; 160]),
            &mut out,
        )
        .unwrap();
        assert!(sends(&out).is_empty());
    }

    #[test]
    fn hold_stops_what_we_send() {
        let t0 = Instant::now();
        let mut s = caller_session(t0, Codec::Pcmu, 0, 30, Music::Loop(tone_prompt(100)));
        let mut out = Vec::new();
        s.handle_command(
            t0,
            Command::Remote {
                leg: LegId::Caller,
                to: SocketAddr::from(([127, 0, 0, 1], 4100)),
                signalling: LOOPBACK,
                send: false,
            },
            &mut out,
        )
        .unwrap();
        s.handle_timeout(t0, &mut out);
        assert!(sends(&out).is_empty());
        s.handle_command(
            t0,
            Command::Remote {
                leg: LegId::Caller,
                to: SocketAddr::from(([127, 0, 0, 1], 4100)),
                signalling: LOOPBACK,
                send: true,
            },
            &mut out,
        )
        .unwrap();
        s.handle_timeout(t0 + FRAME, &mut out);
        let sent = sends(&out);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.port(), 4100, "to the new address");
    }

    fn foreign(out: &[Output]) -> Vec<(LegId, SocketAddr, bool)> {
        out.iter()
            .filter_map(|o| match o {
                Output::ForeignSource { leg, src, first } => Some((*leg, *src, *first)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_stranger_cannot_press_digits_for_a_waiting_caller() {
        let t0 = Instant::now();
        let mut s = caller_session(t0, Codec::Pcmu, 0, 30, Music::Silence);
        let stranger = SocketAddr::from(([127, 0, 0, 66], 4000));
        let mut out = Vec::new();
        let events = crate::media::dtmf::events_for_digit('9', 60, 8000).unwrap();
        let n = events.len();
        for (i, (_, ev)) in events.into_iter().enumerate() {
            let p = build_rtp(101, i == 0, 10 + i as u16, 5000, 99, &ev);
            s.handle_packet(t0, LegId::Caller, stranger, p, &mut out)
                .unwrap();
        }
        assert!(
            !out.iter().any(|o| matches!(o, Output::Digit { .. })),
            "{out:?}"
        );
        let dropped = foreign(&out);
        assert_eq!(dropped.len(), n, "each of the event's packets counted");
        assert_eq!(dropped[0], (LegId::Caller, stranger, true));
        assert!(dropped[1..].iter().all(|d| !d.2), "first only once");
    }

    #[test]
    fn a_stranger_after_the_caller_fell_silent_is_dropped_and_hears_nothing() {
        let t0 = Instant::now();
        let mut s = caller_session(t0, Codec::Pcmu, 0, 300, Music::Silence);
        let mut out = Vec::new();
        s.handle_command(
            t0,
            Command::Attach {
                agent: neg(Codec::Pcmu, 0, 5000),
                signalling: LOOPBACK,
                ssrc: 9,
                record: false,
            },
            &mut out,
        )
        .unwrap();
        let caller = SocketAddr::from(([127, 0, 0, 1], 4000));
        let agent = SocketAddr::from(([127, 0, 0, 1], 5000));
        let stranger = SocketAddr::from(([127, 0, 0, 66], 4000));
        let talk = |s: &mut MediaSession, t: Instant, from: SocketAddr, seq: u16, byte: u8| {
            let mut out = Vec::new();
            let leg = if from == agent {
                LegId::Agent
            } else {
                LegId::Caller
            };
            let p = build_rtp(0, false, seq, u32::from(seq) * 160, 0xC0, &[byte; 160]);
            s.handle_packet(t, leg, from, p, &mut out).unwrap();
            out
        };
        assert_eq!(sends(&talk(&mut s, t0, caller, 1, 0x11)).len(), 1);
        for (seq, silent) in [(2, 3), (3, 60)] {
            let t = t0 + Duration::from_secs(silent);
            let out = talk(&mut s, t, stranger, seq, 0x66);
            assert!(sends(&out).is_empty(), "after {silent} s: {out:?}");
            assert_eq!(foreign(&out), vec![(LegId::Caller, stranger, seq == 2)]);
            // The agent's voice still goes to the caller, not to the stranger.
            let out = talk(&mut s, t, agent, seq, 0x22);
            assert_eq!(sends(&out)[0].1, caller, "after {silent} s");
        }
        // The caller resumes: relayed as before, one stream towards the agent.
        let out = talk(&mut s, t0 + Duration::from_secs(61), caller, 4, 0x11);
        let sent = sends(&out);
        assert_eq!((sent[0].0, sent[0].1), (LegId::Agent, agent));
        assert_eq!(&sent[0].2[12..], &[0x11; 160][..]);
    }

    #[test]
    fn a_re_invite_moving_the_agent_is_learned_at_once() {
        let t0 = Instant::now();
        let mut s = caller_session(t0, Codec::Pcmu, 0, 300, Music::Silence);
        let mut out = Vec::new();
        let agent = SocketAddr::from(([127, 0, 0, 1], 5000));
        s.handle_command(
            t0,
            Command::Attach {
                agent: neg(Codec::Pcmu, 0, 5000),
                signalling: LOOPBACK,
                ssrc: 9,
                record: false,
            },
            &mut out,
        )
        .unwrap();
        let p = |seq: u16| build_rtp(0, false, seq, u32::from(seq) * 160, 0xA0, &[0; 160]);
        s.handle_packet(t0, LegId::Agent, agent, p(1), &mut out)
            .unwrap();
        // The agent's phone hands the call to its desk set at 127.0.0.20 (a re-INVITE).
        let desk = SocketAddr::from(([127, 0, 0, 20], 6000));
        s.handle_command(
            t0,
            Command::Remote {
                leg: LegId::Agent,
                to: desk,
                signalling: LOOPBACK,
                send: true,
            },
            &mut out,
        )
        .unwrap();
        let mut out = Vec::new();
        let caller = SocketAddr::from(([127, 0, 0, 1], 4000));
        s.handle_packet(t0, LegId::Caller, caller, p(2), &mut out)
            .unwrap();
        assert_eq!(sends(&out)[0].1, desk, "sent to the new SDP address");
        let mut out = Vec::new();
        s.handle_packet(t0, LegId::Agent, desk, p(3), &mut out)
            .unwrap();
        assert!(
            foreign(&out).is_empty() && sends(&out).len() == 1,
            "{out:?}"
        );
        // While the desk talks, the old address is dropped.
        let mut out = Vec::new();
        s.handle_packet(t0 + FRAME, LegId::Agent, agent, p(4), &mut out)
            .unwrap();
        assert!(sends(&out).is_empty(), "{out:?}");
    }

    /// What a forwarder outside the session may carry, and the session catching up with
    /// it: offered once a direction's stream runs through our output, with the offsets our
    /// rewrite uses; gone on hold or when recording; after absorbing what was forwarded, a
    /// new stream continues the numbering where the forwarder left it, and nothing counts
    /// as lost.
    #[test]
    fn offloads_follow_the_bridge_and_absorbing_keeps_the_stream_continuous() {
        let t0 = Instant::now();
        let mut s = caller_session(t0, Codec::Pcmu, 0, 2, Music::Silence);
        let mut out = Vec::new();
        let attach = |s: &mut MediaSession, record: bool, out: &mut Vec<Output>| {
            s.handle_command(
                t0,
                Command::Attach {
                    agent: neg(Codec::Pcmu, 0, 5000),
                    signalling: LOOPBACK,
                    ssrc: 9,
                    record,
                },
                out,
            )
            .unwrap();
        };
        attach(&mut s, false, &mut out);
        assert_eq!(s.offloads(), [None, None], "nothing relayed yet");
        let caller = SocketAddr::from(([127, 0, 0, 1], 4000));
        let p =
            |seq: u16, ssrc: u32| build_rtp(0, false, seq, u32::from(seq) * 160, ssrc, &[1; 160]);
        s.handle_packet(t0, LegId::Caller, caller, p(50, 0xAA), &mut out)
            .unwrap();
        // The header of the first packet sent.
        let sent = |out: &[Output]| {
            out.iter()
                .find_map(|o| match o {
                    Output::Send { packet, .. } => parse_rtp(packet),
                    _ => None,
                })
                .unwrap()
        };
        let first = sent(&out);
        let [Some(o), None] = s.offloads() else {
            panic!("{:?}", s.offloads())
        };
        assert_eq!(
            (o.src, o.to),
            (caller, SocketAddr::from(([127, 0, 0, 1], 5000)))
        );
        assert_eq!(
            (
                o.rewrite.ssrc_in,
                o.rewrite.ssrc_out,
                o.rewrite.pt_in,
                o.rewrite.pt_out
            ),
            (0xAA, 9, 0, 0)
        );
        assert_eq!(50u16.wrapping_add(o.rewrite.seq_offset), first.seq);
        // 100 packets forwarded elsewhere, the last at 1 s.
        let at = t0 + Duration::from_secs(1);
        s.absorb(
            LegId::Caller,
            &Forwarded {
                packets: 100,
                octets: 16_000,
                at,
                last_seq_in: 150,
                last_seq_out: first.seq.wrapping_add(100),
                last_ts_out: first.timestamp.wrapping_add(16_000),
            },
        );
        assert_eq!(s.lost(), 0, "the forwarded packets count as received");
        // No media timeout (2 s) counted from the caller's one packet at t0: the last one
        // forwarded was at 1 s (the agent spoke then too).
        let agent = SocketAddr::from(([127, 0, 0, 1], 5000));
        s.handle_packet(at, LegId::Agent, agent, p(1, 0xCC), &mut out)
            .unwrap();
        out.clear();
        s.handle_timeout(t0 + Duration::from_millis(2500), &mut out);
        assert!(!out.contains(&Output::Timeout), "{out:?}");
        // A new stream from the caller: our numbering goes on from the forwarder's.
        out.clear();
        s.handle_packet(at + FRAME, LegId::Caller, caller, p(7, 0xBB), &mut out)
            .unwrap();
        let next = sent(&out);
        assert_eq!(next.seq, first.seq.wrapping_add(101));
        assert_eq!(s.offloads()[0].map(|o| o.rewrite.ssrc_in), Some(0xBB));
        // The agent holds: nothing is sent to it, so nothing to forward its way (what it
        // sends still goes to the caller).
        s.handle_command(
            at,
            Command::Remote {
                leg: LegId::Agent,
                to: SocketAddr::from(([127, 0, 0, 1], 5000)),
                signalling: LOOPBACK,
                send: false,
            },
            &mut out,
        )
        .unwrap();
        let [None, Some(back)] = s.offloads() else {
            panic!("{:?}", s.offloads())
        };
        assert_eq!(back.rewrite.ssrc_in, 0xCC);
        // A recorded call is never forwarded elsewhere: the recorder needs every packet.
        let mut r = caller_session(t0, Codec::Pcmu, 0, 2, Music::Silence);
        attach(&mut r, true, &mut out);
        r.handle_packet(t0, LegId::Caller, caller, p(1, 0xAA), &mut out)
            .unwrap();
        assert_eq!(r.offloads(), [None, None]);
    }
}
