//! Anchoring a call's media in the engine: the caller and the agent each get the engine's
//! own address and port in SDP. The caller's media starts at arrival (183 Session Progress
//! with our SDP, ringback or the queue's audio, digits heard); the agent's leg joins it when
//! the agent answers. re-INVITEs and UPDATEs are answered here, leg by leg, so a hold on
//! one side never renegotiates the other. `[media] anchor = true` (the default).

use super::{CallKey, Engine};
use crate::config::SrtpPolicy;
use crate::media::bridge::LegId;
use crate::media::ports::PortPool;
use crate::media::sdp::{self, Codec, Direction, Negotiated, Sdp, VideoNeg};
use crate::media::srtp::{Crypto, KeySalt, SrtpKeys, Suite, KEY_SALT_LEN};
use crate::sip::message::Message;
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use crate::media::prompt::MusicRef;

/// What the engine asks of the media driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// A caller arrived: open both legs' ports, play `music` to the caller. `signalling` is
    /// the IP the caller's SIP comes from: its RTP is accepted from there or from its SDP's
    /// host, from nowhere else.
    Start {
        call: CallKey,
        ip: IpAddr,
        caller_port: u16,
        agent_port: u16,
        caller: Negotiated,
        signalling: IpAddr,
        timeout: Duration,
        music: MusicRef,
    },
    /// Play prompts once (replacing what plays), then `then`.
    Play {
        call: CallKey,
        prompts: Vec<String>,
        then: MusicRef,
    },
    /// The agent answered: bridge. `signalling` is the IP the agent's SIP comes from (as
    /// for the caller in `Start`); `record` names the recording file (without extension).
    Attach {
        call: CallKey,
        agent: Negotiated,
        signalling: IpAddr,
        record: Option<String>,
    },
    /// The agent left; the caller stays for the post-call survey.
    Detach {
        call: CallKey,
    },
    /// A re-INVITE/UPDATE changed a leg's address or hold state; `signalling` is the IP it
    /// came from. A new address is where the leg's RTP is learned afresh.
    Remote {
        call: CallKey,
        leg: LegId,
        to: SocketAddr,
        signalling: IpAddr,
        send: bool,
    },
    /// A re-INVITE/UPDATE brought the leg's peer's new SRTP key.
    Rekey {
        call: CallKey,
        leg: LegId,
        keys: crate::media::srtp::SrtpKeys,
    },
    /// A video call: open both legs' video ports; the caller's video is relayed once an
    /// agent's joins (no transcoding: the agent was offered the caller's codec).
    VideoStart {
        call: CallKey,
        ip: IpAddr,
        caller_port: u16,
        agent_port: u16,
        caller: VideoNeg,
        signalling: IpAddr,
        timeout: Duration,
        /// The consultation record, which gets the call's video statistics at the end.
        record: String,
        /// Show the waiting picture until an agent's video arrives.
        waiting: bool,
    },
    /// A leg asked for a keyframe by SIP INFO `picture_fast_update` (RFC 5168).
    VideoKeyframe {
        call: CallKey,
        from: LegId,
    },
    /// The agent answered with video: relay both ways (`offered_pt` is what the agent sends
    /// us: the caller's payload type, which we offered).
    VideoAttach {
        call: CallKey,
        agent: VideoNeg,
        offered_pt: u8,
        signalling: IpAddr,
    },
    Stop {
        call: CallKey,
    },
}

/// Why an agent's answer could not be bridged into the call's media.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttachError {
    #[error("agent SDP is not UTF-8")]
    NotUtf8,
    #[error(transparent)]
    Sdp(#[from] crate::media::sdp::SdpError),
    #[error("we offered SRTP and the answer has no a=crypto line we offered")]
    NoCrypto,
}

pub(super) struct Anchor {
    pub pool: PortPool,
    /// Where the media sockets bind.
    pub ip: IpAddr,
    /// What SDP says: `ip`, or `media.advertise` in front of it (1:1 NAT).
    pub sdp_ip: IpAddr,
    pub timeout: Duration,
    /// `[video] max_kbps`.
    pub video_max_kbps: u32,
}

pub(super) struct CallMedia {
    pub caller_port: u16,
    pub agent_port: u16,
    pub caller: Negotiated,
    pub caller_sdp: Bytes,
    pub agent: Option<Negotiated>,
    pub session: u64,
    /// SDP versions we have sent per leg (o= line), bumped by each re-answer.
    pub versions: [u64; 2],
    pub started: bool,
    /// The call's video, when the caller offered a codec we relay and its queue takes video.
    pub video: Option<VideoMedia>,
}

pub(super) struct VideoMedia {
    pub caller_port: u16,
    pub agent_port: u16,
    pub caller: VideoNeg,
    pub agent: Option<VideoNeg>,
}

const SUPPORTED: [Codec; 3] = [Codec::Pcmu, Codec::Pcma, Codec::Opus];
const DTMF_PT: u8 = 101;

fn pt_for(c: Codec) -> u8 {
    match c {
        Codec::Pcmu => 0,
        Codec::Pcma => 8,
        Codec::Opus => 111,
    }
}

/// A leg's SRTP for the peer's offer `neg` under `policy`, `tls` when the signalling that
/// carries our answer (and so our key) is TLS: the peer's crypto line to answer, `None` for
/// plain RTP, `Err(488)` when the policy cannot be met. An `RTP/SAVP` offer must be
/// answered with SRTP; a crypto line on `RTP/AVP` (best-effort SRTP) may be ignored.
pub(super) fn srtp_answer(
    neg: &Negotiated,
    policy: SrtpPolicy,
    tls: bool,
) -> Result<Option<Crypto>, u16> {
    let usable = neg.crypto.clone().filter(|_| tls);
    match (policy, usable) {
        (SrtpPolicy::Off, _) if neg.savp => Err(488),
        (SrtpPolicy::Off, _) => Ok(None),
        (_, Some(c)) => Ok(Some(c)),
        (SrtpPolicy::Mandatory, None) => Err(488),
        (SrtpPolicy::Optional, None) if neg.savp => Err(488),
        (SrtpPolicy::Optional, None) => Ok(None),
    }
}

/// A fresh key for our side of a leg.
pub(super) fn new_key(ids: &mut crate::sip::build::Ids) -> KeySalt {
    let mut k = [0u8; KEY_SALT_LEN];
    ids.fill(&mut k);
    KeySalt(k)
}

/// What we offer an agent's phone for SRTP: nothing, or our keys (`savp`: as `RTP/SAVP`,
/// else best-effort on `RTP/AVP`), one per suite with a key of its own.
#[derive(Debug, Clone, Default)]
pub(super) struct SrtpOffer {
    pub savp: bool,
    pub crypto: Vec<Crypto>,
}

impl SrtpOffer {
    pub fn new(ids: &mut crate::sip::build::Ids, savp: bool) -> SrtpOffer {
        let crypto = [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32]
            .into_iter()
            .zip(1..)
            .map(|(suite, tag)| Crypto {
                tag,
                suite,
                key: new_key(ids),
            })
            .collect();
        SrtpOffer { savp, crypto }
    }

    /// The keys for the agent's answer: its crypto line must name one of ours.
    fn keys_for(&self, answer: &Negotiated) -> Result<Option<SrtpKeys>, AttachError> {
        if self.crypto.is_empty() {
            return Ok(None);
        }
        let ours = answer.crypto.as_ref().and_then(|theirs| {
            self.crypto
                .iter()
                .find(|c| c.tag == theirs.tag && c.suite == theirs.suite)
                .map(|c| (c, theirs))
        });
        match ours {
            Some((ours, theirs)) => Ok(Some(SrtpKeys {
                suite: ours.suite,
                tag: ours.tag,
                remote: theirs.key.clone(),
                local: ours.key.clone(),
            })),
            None if self.savp => Err(AttachError::NoCrypto),
            None => Ok(None),
        }
    }
}

/// Our offer to the agent: the caller's codec first, so that an agent who has it needs no
/// transcoding, then the others we can transcode to.
pub(super) fn agent_offer(a: &Anchor, cm: &CallMedia, srtp: &SrtpOffer) -> Bytes {
    let mut codecs = vec![(cm.caller.codec, pt_for(cm.caller.codec))];
    codecs.extend(
        SUPPORTED
            .iter()
            .filter(|c| **c != cm.caller.codec)
            .map(|&c| (c, pt_for(c))),
    );
    let mut offer = sdp::build_secure(
        cm.session + 1,
        1,
        a.sdp_ip,
        cm.agent_port,
        &codecs,
        Some((DTMF_PT, 8000)),
        Direction::SendRecv,
        srtp.savp,
        &srtp.crypto,
    );
    // The caller's video codec, its payload type and fmtp as they came: what the agent
    // accepts is relayed as it is.
    if let Some(v) = &cm.video {
        offer.push_str(&sdp::video_section(
            v.agent_port,
            &v.caller,
            a.video_max_kbps,
            Direction::SendRecv,
        ));
    }
    Bytes::from(offer)
}

impl Engine {
    /// For a trunk INVITE: negotiates the caller's offer and takes two RTP ports.
    /// `Ok(None)` when not anchoring (disabled, or a late-offer INVITE: relayed as before);
    /// `Err(code)` refuses the call (488 no common codec, 503 no ports).
    /// `video`: the call's queue takes video (an offered video stream we relay is then
    /// accepted, else refused in the answer).
    pub(super) fn anchor_caller(
        &mut self,
        msg: &Message,
        policy: SrtpPolicy,
        tls: bool,
        video: bool,
    ) -> Result<Option<CallMedia>, u16> {
        let Some(a) = self.anchor.as_mut() else {
            return Ok(None);
        };
        if msg.body.is_empty() {
            return Ok(None);
        }
        let text = std::str::from_utf8(&msg.body).map_err(|_| 488u16)?;
        let offer = Sdp::parse(text).map_err(|_| 488u16)?;
        let mut neg = sdp::negotiate(&offer, &SUPPORTED).map_err(|_| 488u16)?;
        let theirs = srtp_answer(&neg, policy, tls)?;
        let caller_port = a.pool.allocate().map_err(|_| 503u16)?;
        let agent_port = match a.pool.allocate() {
            Ok(p) => p,
            Err(_) => {
                a.pool.release(caller_port);
                return Err(503);
            }
        };
        let session = self.ids.u32() as u64;
        let ours = theirs.map(|c| Crypto {
            key: new_key(&mut self.ids),
            ..c
        });
        neg.srtp = ours
            .as_ref()
            .zip(neg.crypto.as_ref())
            .map(|(o, t)| SrtpKeys {
                suite: o.suite,
                tag: o.tag,
                remote: t.key.clone(),
                local: o.key.clone(),
            });
        let caller_sdp = sdp::build_secure(
            session,
            1,
            a.sdp_ip,
            caller_port,
            &[(neg.codec, neg.pt)],
            neg.dtmf,
            neg.direction,
            neg.savp && ours.is_some(),
            ours.as_slice(),
        );
        // Video (plain RTP; SRTP video is not relayed) on two more ports, when the queue
        // takes it; with no ports left the call goes on as audio. Streams we do not relay
        // are refused in the answer, not the call.
        let video = sdp::negotiate_video(&offer)
            .filter(|_| video && neg.srtp.is_none() && !neg.savp)
            .and_then(|v| {
                let c = a.pool.allocate().ok()?;
                match a.pool.allocate() {
                    Ok(g) => Some(VideoMedia {
                        caller_port: c,
                        agent_port: g,
                        caller: v,
                        agent: None,
                    }),
                    Err(_) => {
                        a.pool.release(c);
                        None
                    }
                }
            });
        let section = video.as_ref().map(|v| {
            sdp::video_section(
                v.caller_port,
                &v.caller,
                a.video_max_kbps,
                v.caller.direction.answer(),
            )
        });
        let caller_sdp = sdp::answer_streams(&offer, &caller_sdp, section.as_deref());
        Ok(Some(CallMedia {
            video,
            caller_port,
            agent_port,
            caller: neg,
            caller_sdp: Bytes::from(caller_sdp),
            agent: None,
            session,
            versions: [1, 1],
            started: false,
        }))
    }

    /// Starts the caller's media (early media) for a call just admitted; `signalling` is
    /// the IP its INVITE came from; `early`: the caller gets our SDP before the answer
    /// (and so can see a waiting picture).
    pub(super) fn anchor_begin(
        &mut self,
        key: CallKey,
        cm: &mut CallMedia,
        signalling: IpAddr,
        music: MusicRef,
        record: &str,
        early: bool,
    ) {
        let Some(a) = self.anchor.as_ref() else {
            return;
        };
        cm.started = true;
        self.media_out.push_back(MediaCommand::Start {
            call: key,
            ip: a.ip,
            caller_port: cm.caller_port,
            agent_port: cm.agent_port,
            caller: cm.caller.clone(),
            signalling,
            timeout: a.timeout,
            music,
        });
        if let Some(v) = &cm.video {
            self.media_out.push_back(MediaCommand::VideoStart {
                call: key,
                ip: a.ip,
                caller_port: v.caller_port,
                agent_port: v.agent_port,
                caller: v.caller.clone(),
                signalling,
                timeout: a.timeout,
                record: record.to_string(),
                waiting: early,
            });
        }
    }

    /// A re-INVITE or UPDATE on an anchored leg, answered here: the same codec as before
    /// (the bridge keeps running), the peer's new address, and the answer's direction
    /// (RFC 3264 8.4: `sendonly` → `recvonly`, `inactive` → `inactive`). `Err(488)` when the
    /// offer drops our codec. An offer-less request gets our current SDP as the offer.
    /// `signalling` is the IP the offer came from.
    pub(super) fn anchor_reanswer(
        &mut self,
        key: CallKey,
        cm: &mut CallMedia,
        leg: LegId,
        offer: &Message,
        signalling: IpAddr,
    ) -> Result<Bytes, u16> {
        let a = self.anchor.as_ref().ok_or(488u16)?;
        let current = match leg {
            LegId::Caller => cm.caller.clone(),
            LegId::Agent => cm.agent.clone().ok_or(488u16)?,
        };
        let port = match leg {
            LegId::Caller => cm.caller_port,
            LegId::Agent => cm.agent_port,
        };
        let i = leg as usize;
        let mut direction = Direction::SendRecv;
        let mut dtmf = current.dtmf;
        let mut keys = current.srtp.clone();
        let mut offered = None;
        if !offer.body.is_empty() {
            let text = std::str::from_utf8(&offer.body).map_err(|_| 488u16)?;
            let parsed = Sdp::parse(text).map_err(|_| 488u16)?;
            offered = Some(parsed.clone());
            let neg = sdp::negotiate(&parsed, &[current.codec]).map_err(|_| 488u16)?;
            // A leg keeps what it was set up with: SRTP stays SRTP (a new key from the peer
            // is taken, ours stays), plain stays plain.
            match (keys.as_mut(), neg.crypto.as_ref()) {
                (Some(k), Some(c)) => {
                    if c.key != k.remote || c.suite != k.suite {
                        k.remote = c.key.clone();
                        k.suite = c.suite;
                        k.tag = c.tag;
                        self.media_out.push_back(MediaCommand::Rekey {
                            call: key,
                            leg,
                            keys: k.clone(),
                        });
                    }
                }
                (Some(_), None) => return Err(488),
                (None, _) if neg.savp => return Err(488),
                (None, _) => {}
            }
            direction = neg.direction;
            dtmf = neg.dtmf;
            let send = matches!(direction, Direction::SendRecv | Direction::SendOnly);
            self.media_out.push_back(MediaCommand::Remote {
                call: key,
                leg,
                to: SocketAddr::new(neg.remote.0, neg.remote.1),
                signalling,
                send,
            });
        }
        cm.versions[i] += 1;
        let session = cm.session + i as u64;
        let ours: Vec<Crypto> = keys
            .iter()
            .map(|k| Crypto {
                tag: k.tag,
                suite: k.suite,
                key: k.local.clone(),
            })
            .collect();
        match leg {
            LegId::Caller => cm.caller.srtp = keys,
            LegId::Agent => {
                if let Some(a) = cm.agent.as_mut() {
                    a.srtp = keys;
                }
            }
        }
        let ours = sdp::build_secure(
            session,
            cm.versions[i],
            a.sdp_ip,
            port,
            &[(current.codec, current.pt)],
            dtmf,
            direction,
            current.savp && !ours.is_empty(),
            &ours,
        );
        // A video call keeps its video through a re-offer (hold, a refresh).
        let video = cm.video.as_ref().and_then(|v| {
            let port = match leg {
                LegId::Caller => v.caller_port,
                LegId::Agent => v.agent.as_ref().map(|_| v.agent_port)?,
            };
            Some(sdp::video_section(
                port,
                &v.caller,
                a.video_max_kbps,
                Direction::SendRecv,
            ))
        });
        Ok(Bytes::from(match &offered {
            Some(o) => sdp::answer_streams(o, &ours, video.as_deref()),
            None => ours + video.as_deref().unwrap_or(""),
        }))
    }

    /// The agent answered with `answer`, which came from `signalling` (without it, only the
    /// SDP's host is trusted for the agent's RTP): bridge the legs.
    pub(super) fn anchor_attach(
        &mut self,
        key: CallKey,
        cm: &mut CallMedia,
        answer: &Message,
        signalling: Option<IpAddr>,
        record: Option<String>,
        srtp: &SrtpOffer,
    ) -> Result<(), AttachError> {
        let text = std::str::from_utf8(&answer.body).map_err(|_| AttachError::NotUtf8)?;
        let sdp = Sdp::parse(text)?;
        let mut agent = sdp::negotiate(&sdp, &SUPPORTED)?;
        agent.srtp = srtp.keys_for(&agent)?;
        let signalling = signalling.unwrap_or(agent.remote.0);
        cm.agent = Some(agent.clone());
        self.media_out.push_back(MediaCommand::Attach {
            call: key,
            agent,
            signalling,
            record,
        });
        if let Some(v) = cm.video.as_mut() {
            match sdp::negotiate_video(&sdp).filter(|a| a.codec == v.caller.codec) {
                Some(agent) => {
                    v.agent = Some(agent.clone());
                    self.media_out.push_back(MediaCommand::VideoAttach {
                        call: key,
                        agent,
                        offered_pt: v.caller.pt,
                        signalling,
                    });
                }
                None => {
                    v.agent = None;
                    tracing::warn!(call = key, "the agent's phone took no video: audio only");
                }
            }
        }
        Ok(())
    }

    /// Whether an agent's 2xx can be bridged into call `key`'s anchored media (always, for
    /// a call not anchored): its SDP negotiates, and names one of our keys where SRTP was
    /// required.
    pub(super) fn agent_answer_usable(
        &self,
        key: CallKey,
        answer: &Message,
    ) -> Result<(), AttachError> {
        let Some(call) = self.calls.get(&key) else {
            return Ok(());
        };
        let (Some(_), Some(a)) = (call.media.as_ref(), call.agent.as_ref()) else {
            return Ok(());
        };
        let text = std::str::from_utf8(&answer.body).map_err(|_| AttachError::NotUtf8)?;
        let agent = sdp::negotiate(&Sdp::parse(text)?, &SUPPORTED)?;
        a.srtp.keys_for(&agent).map(|_| ())
    }

    /// The call is over: stop its bridge and give the ports back.
    pub(super) fn anchor_release(&mut self, key: CallKey, cm: CallMedia) {
        if cm.started {
            self.media_out.push_back(MediaCommand::Stop { call: key });
        }
        if let Some(a) = self.anchor.as_mut() {
            a.pool.release(cm.caller_port);
            a.pool.release(cm.agent_port);
            if let Some(v) = &cm.video {
                a.pool.release(v.caller_port);
                a.pool.release(v.agent_port);
            }
        }
    }

    /// Media commands for the driver.
    pub fn poll_media(&mut self) -> Option<MediaCommand> {
        self.media_out.pop_front()
    }
}
