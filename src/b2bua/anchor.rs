//! Anchoring a call's media in the engine (issue 3, first step): the caller and the agent
//! each get the engine's own address and port in SDP, and a bridge relays (or transcodes)
//! between them once the agent answers. Still to come: 183 early media with ringback, the
//! 120+9 menu, recording. Enabled with `[media] anchor = true`.

use super::{CallKey, Engine};
use crate::media::ports::PortPool;
use crate::media::sdp::{self, Codec, Direction, Negotiated, Sdp};
use crate::sip::message::Message;
use bytes::Bytes;
use std::net::IpAddr;
use std::time::Duration;

/// What the engine asks of the media driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    Start {
        call: CallKey,
        ip: IpAddr,
        caller_port: u16,
        agent_port: u16,
        caller: Negotiated,
        agent: Negotiated,
        timeout: Duration,
    },
    Stop {
        call: CallKey,
    },
}

pub(super) struct Anchor {
    pub pool: PortPool,
    pub ip: IpAddr,
    pub timeout: Duration,
}

pub(super) struct CallMedia {
    pub caller_port: u16,
    pub agent_port: u16,
    pub caller: Negotiated,
    pub caller_sdp: Bytes,
    pub session: u64,
    pub started: bool,
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

/// Our offer to the agent: the caller's codec first, so that an agent who has it needs no
/// transcoding, then the others we can transcode to.
pub(super) fn agent_offer(a: &Anchor, cm: &CallMedia) -> Bytes {
    let mut codecs = vec![(cm.caller.codec, pt_for(cm.caller.codec))];
    codecs.extend(
        SUPPORTED
            .iter()
            .filter(|c| **c != cm.caller.codec)
            .map(|&c| (c, pt_for(c))),
    );
    Bytes::from(sdp::build(
        cm.session + 1,
        1,
        a.ip,
        cm.agent_port,
        &codecs,
        Some((DTMF_PT, 8000)),
        Direction::SendRecv,
    ))
}

impl Engine {
    /// For a trunk INVITE: negotiates the caller's offer and takes two RTP ports.
    /// `Ok(None)` when not anchoring (disabled, or a late-offer INVITE: relayed as before);
    /// `Err(code)` refuses the call (488 no common codec, 503 no ports).
    pub(super) fn anchor_caller(&mut self, msg: &Message) -> Result<Option<CallMedia>, u16> {
        let Some(a) = self.anchor.as_mut() else {
            return Ok(None);
        };
        if msg.body.is_empty() {
            return Ok(None);
        }
        let text = std::str::from_utf8(&msg.body).map_err(|_| 488u16)?;
        let offer = Sdp::parse(text).map_err(|_| 488u16)?;
        let neg = sdp::negotiate(&offer, &SUPPORTED).map_err(|_| 488u16)?;
        let caller_port = a.pool.allocate().map_err(|_| 503u16)?;
        let agent_port = match a.pool.allocate() {
            Ok(p) => p,
            Err(_) => {
                a.pool.release(caller_port);
                return Err(503);
            }
        };
        let session = rand::random::<u32>() as u64;
        let caller_sdp = sdp::build(
            session,
            1,
            a.ip,
            caller_port,
            &[(neg.codec, neg.pt)],
            neg.dtmf,
            neg.direction,
        );
        Ok(Some(CallMedia {
            caller_port,
            agent_port,
            caller: neg,
            caller_sdp: Bytes::from(caller_sdp),
            session,
            started: false,
        }))
    }

    /// The agent answered with `answer`: start the bridge.
    pub(super) fn anchor_start(
        &mut self,
        key: CallKey,
        cm: &mut CallMedia,
        answer: &Message,
    ) -> Result<(), String> {
        let a = self.anchor.as_ref().ok_or("not anchoring")?;
        let text = std::str::from_utf8(&answer.body).map_err(|_| "agent SDP is not UTF-8")?;
        let sdp = Sdp::parse(text).map_err(|e| e.to_string())?;
        let agent = sdp::negotiate(&sdp, &SUPPORTED).map_err(|e| e.to_string())?;
        cm.started = true;
        self.media_out.push_back(MediaCommand::Start {
            call: key,
            ip: a.ip,
            caller_port: cm.caller_port,
            agent_port: cm.agent_port,
            caller: cm.caller.clone(),
            agent,
            timeout: a.timeout,
        });
        Ok(())
    }

    /// The call is over: stop its bridge and give the ports back.
    pub(super) fn anchor_release(&mut self, key: CallKey, cm: CallMedia) {
        if cm.started {
            self.media_out.push_back(MediaCommand::Stop { call: key });
        }
        if let Some(a) = self.anchor.as_mut() {
            a.pool.release(cm.caller_port);
            a.pool.release(cm.agent_port);
        }
    }

    /// Media commands for the driver.
    pub fn poll_media(&mut self) -> Option<MediaCommand> {
        self.media_out.pop_front()
    }
}
