//! A browser agent's media leg, sans-IO: the WebRTC peer connection (webrtc-rs's sans-IO
//! core, `rtc`: ICE, DTLS-SRTP, Opus) and the relay between it and the engine's media plane.
//! Datagrams from the browser, RTP from the engine and the time go in; datagrams for the
//! browser, RTP for the engine, state changes and the next deadline come out. The tokio side
//! is [`super::bridge`].
//!
//! The browser sees one outgoing stream for the whole session: one SSRC, continuous sequence
//! numbers and timestamps across calls, so its jitter buffer never sees a new stream; each
//! call's timestamps are offset from the engine's at its first packet.
//!
//! Video (issue 18): when the browser's offer has a video stream, the leg sends and
//! receives one video codec for the whole session (VP8 if offered, else H.264 Constrained
//! Baseline, packetization mode 1). One codec, because the browser sends the first codec of
//! the answer: offering it two would let it send one the call's caller cannot decode. The
//! video track idles between calls; in a video call it is relayed like the audio (one
//! outgoing stream across calls) on a second engine-side address, and keyframe requests
//! cross in both directions (the browser's PLI/FIR to the engine's RTCP port, the engine's
//! PLI to the browser through the peer connection).

use crate::media::sdp::VideoCodec;
use bytes::{Bytes, BytesMut};
use rtc::interceptor::{ReceiverReportBuilder, Registry, SenderReportBuilder, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, CandidateServerReflexiveConfig, RTCIceCandidate,
    RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RTCPFeedback;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// The browser's Opus payload type in our answer.
const OPUS_PT: u8 = 111;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    Connected,
    /// ICE failed or the peer went away: the session treats it as the browser dropping.
    Failed,
}

/// One browser agent's leg.
pub struct BrowserPeer {
    pc: RTCPeerConnection,
    sender: RTCRtpSenderId,
    ssrc: u32,
    /// Our ICE address (the one host candidate).
    ice: SocketAddr,
    /// Our RTP address towards the engine (the agent leg's SDP names it).
    local_rtp: SocketAddr,
    /// The connected call: the engine's agent-leg address and its Opus payload type.
    target: Option<(SocketAddr, u8)>,
    hold: bool,
    seq: u16,
    last_ts: u32,
    /// Offset from the engine's timestamps to ours, fixed at each call's first packet.
    offset: Option<(u32, SocketAddr)>,
    /// The session's video, when the browser offered a codec we relay.
    video: Option<Video>,
    failed: bool,
    events: VecDeque<PeerEvent>,
    /// Packets relayed browser → engine and engine → browser.
    pub to_engine: u64,
    pub to_browser: u64,
}

/// Where a video call's packets for the engine go: its agent leg's video RTP address (the
/// INVITE's m=video), RTCP at the next port (RFC 3550), and the payload type the engine
/// offered (the one it expects from the agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTarget {
    pub rtp: SocketAddr,
    pub pt: u8,
}

impl VideoTarget {
    fn rtcp(&self) -> SocketAddr {
        SocketAddr::new(self.rtp.ip(), self.rtp.port().wrapping_add(1))
    }
}

/// What the video relay counted (for the tests and the bridge's stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoCounts {
    pub to_engine: u64,
    pub to_browser: u64,
    /// Keyframe requests from the browser sent on to the engine, and the engine's PLIs
    /// passed to the browser.
    pub keyframe_requests_to_engine: u64,
    pub plis_to_browser: u64,
}

/// The session's one video stream each way.
struct Video {
    codec: VideoCodec,
    sender: RTCRtpSenderId,
    receiver: Option<RTCRtpReceiverId>,
    ssrc: u32,
    /// The browser's payload type for the codec (its offer's; our answer keeps it).
    pt: u8,
    /// Our video address towards the engine (the agent leg's m=video names it).
    local: SocketAddr,
    target: Option<VideoTarget>,
    seq: u16,
    last_ts: u32,
    /// Offsets from the engine's sequence numbers and timestamps to ours, fixed at each
    /// call's first packet (an offset, not a renumbering: a packet lost on the way stays a
    /// gap the browser's depacketizer sees and answers with a PLI).
    offset: Option<(u16, u32)>,
    /// The SSRC the browser's camera sends, and the one the engine sends us (the media
    /// SSRCs of the keyframe requests each way).
    browser_source: Option<u32>,
    engine_source: Option<u32>,
    /// RTP and RTCP for the engine: (to, bytes).
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    counts: VideoCounts,
}

/// Why a browser's WebRTC leg could not be set up, at which step.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{step}: {source}")]
    Rtc {
        step: &'static str,
        source: rtc::shared::error::Error,
    },
    #[error("the offer has no audio the engine can take (Opus)")]
    NoOpus,
    #[error("no {0}")]
    Missing(&'static str),
    #[error("the in-memory browser did not connect within 5 s")]
    NotConnected,
}

/// Tags an rtc error with the step that failed.
fn at(step: &'static str) -> impl Fn(rtc::shared::error::Error) -> PeerError {
    move |source| PeerError::Rtc { step, source }
}

impl BrowserPeer {
    /// Answers the browser's offer with one host candidate at `ice` (every candidate in the
    /// answer: the browser needs no trickle). Returns the leg and the SDP answer.
    pub fn answer(
        now: Instant,
        offer_sdp: String,
        ice: SocketAddr,
        local_rtp: SocketAddr,
    ) -> Result<(BrowserPeer, String), PeerError> {
        Self::answer_advertised(now, offer_sdp, ice, local_rtp, None, None)
    }

    /// As [`BrowserPeer::answer`]; behind 1:1 NAT `advertise` is the public address in
    /// front of `ice`'s: offered as a server-reflexive candidate at `ice`'s port (its base
    /// is `ice`, so the connection still runs over that socket), beside the host one for
    /// browsers on the engine's own network. With `local_video` (our engine-side video
    /// address), a video stream in the offer is answered with one codec we relay.
    pub fn answer_advertised(
        now: Instant,
        offer_sdp: String,
        ice: SocketAddr,
        local_rtp: SocketAddr,
        local_video: Option<SocketAddr>,
        advertise: Option<IpAddr>,
    ) -> Result<(BrowserPeer, String), PeerError> {
        let ssrc = rand::random::<u32>();
        let codec = local_video.and_then(|_| offered_video_codec(&offer_sdp));
        let video_ssrc = rand::random::<u32>();
        let (mut pc, sender, video_sender) = peer(now, ssrc, codec.map(|c| (c, video_ssrc)))?;
        let offer = RTCSessionDescription::offer(offer_sdp).map_err(at("offer"))?;
        pc.set_remote_description(now, offer).map_err(at("offer"))?;
        pc.add_local_candidate(host_candidate(ice)?)
            .map_err(at("candidate"))?;
        if let Some(public) = advertise.filter(|a| *a != ice.ip()) {
            pc.add_local_candidate(advertised_candidate(public, ice)?)
                .map_err(at("candidate"))?;
        }
        // End of gathering: the host candidate (and the advertised one) is all a server has.
        pc.add_local_candidate(RTCIceCandidateInit::default())
            .map_err(at("candidate"))?;
        let answer = pc.create_answer(None).map_err(at("answer"))?;
        pc.set_local_description(now, answer)
            .map_err(at("answer"))?;
        let sdp = pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or(PeerError::Missing("local description"))?;
        // An offer without Opus audio gets an answer rejecting everything: say so instead.
        if !sdp
            .lines()
            .any(|l| l.starts_with("m=audio ") && !l.starts_with("m=audio 0 "))
        {
            return Err(PeerError::NoOpus);
        }
        let video_accepted = sdp
            .lines()
            .any(|l| l.starts_with("m=video ") && !l.starts_with("m=video 0 "));
        let video = match (codec, video_sender, local_video) {
            (Some(codec), Some(sender), Some(local)) if video_accepted => {
                video_leg(&mut pc, codec, sender, video_ssrc, local)
            }
            _ => None,
        };
        Ok((
            BrowserPeer {
                pc,
                sender,
                ssrc,
                ice,
                local_rtp,
                target: None,
                hold: false,
                seq: rand::random(),
                last_ts: rand::random(),
                offset: None,
                video,
                failed: false,
                events: VecDeque::new(),
                to_engine: 0,
                to_browser: 0,
            },
            sdp,
        ))
    }

    pub fn local_rtp(&self) -> SocketAddr {
        self.local_rtp
    }

    /// The session's video codec and our engine-side video address (None: the browser
    /// offered no video we relay, and every call is answered as audio only).
    pub fn video(&self) -> Option<(VideoCodec, SocketAddr)> {
        self.video.as_ref().map(|v| (v.codec, v.local))
    }

    pub fn video_counts(&self) -> VideoCounts {
        self.video.as_ref().map(|v| v.counts).unwrap_or_default()
    }

    /// A video call is connected (relay to the engine's `target`), or None: the video
    /// track idles. An empty receiver report goes to the engine's RTCP port at once, so its
    /// relay learns where our keyframe requests come from and sends its own PLIs there.
    pub fn set_video_target(&mut self, target: Option<VideoTarget>) {
        let Some(v) = self.video.as_mut() else {
            return;
        };
        v.target = target;
        v.offset = None;
        v.engine_source = None;
        if let Some(t) = target {
            let mut rr = vec![0x80, 201, 0, 1];
            rr.extend_from_slice(&v.ssrc.to_be_bytes());
            v.out.push_back((t.rtcp(), rr));
        }
    }

    /// Browser → engine video (RTP, and RTCP keyframe requests): (to, bytes), sent from our
    /// video address. Drain after [`Self::poll_to_engine`], which sorts what the browser sent.
    pub fn poll_video_to_engine(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.video.as_mut()?.out.pop_front()
    }

    /// A datagram on our video address. RTP from the call's video relay goes to the
    /// browser on the session's video stream; a PLI or FIR from it becomes a PLI to the
    /// browser's camera. Anything else is dropped.
    pub fn handle_engine_video(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Some(v) = self.video.as_mut() else {
            return;
        };
        let Some(target) = v.target else {
            return;
        };
        if self.hold {
            return;
        }
        // Only the call's video relay: its RTP socket (the INVITE's m=video), whose RTCP
        // socket is the next port. Unlike the audio, which comes in process, this arrives by
        // UDP, where anyone on the host could aim at our port.
        let rtcp = crate::media::rtp::is_rtcp(data);
        if from != target.rtp && !(rtcp && from == target.rtcp()) {
            return;
        }
        if rtcp {
            let keyframe = rtc::rtcp::packet::unmarshal(&mut &data[..])
                .map(|ps| ps.iter().any(|p| is_keyframe_request(p.as_ref())))
                .unwrap_or(false);
            let (Some(media_ssrc), Some(rx), true) = (v.browser_source, v.receiver, keyframe)
            else {
                return;
            };
            let pli = PictureLossIndication {
                sender_ssrc: v.ssrc,
                media_ssrc,
            };
            if let Some(mut r) = self.pc.rtp_receiver(rx) {
                if r.write_rtcp(now, vec![Box::new(pli)]).is_ok() {
                    v.counts.plis_to_browser += 1;
                }
            }
            return;
        }
        let Ok(r) = rtp_rs::RtpReader::new(data) else {
            return;
        };
        if r.payload_type() != target.pt {
            return;
        }
        let seq_in: u16 = r.sequence_number().into();
        let (seq_off, ts_off) = *v.offset.get_or_insert_with(|| {
            (
                v.seq.wrapping_add(1).wrapping_sub(seq_in),
                // A frame interval (30 fps at 90 kHz) after the last call's last packet.
                v.last_ts.wrapping_add(3000).wrapping_sub(r.timestamp()),
            )
        });
        v.engine_source = Some(r.ssrc());
        v.seq = seq_in.wrapping_add(seq_off);
        v.last_ts = r.timestamp().wrapping_add(ts_off);
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: r.mark(),
                payload_type: v.pt,
                sequence_number: v.seq,
                timestamp: v.last_ts,
                ssrc: v.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(r.payload()),
        };
        if let Some(mut sender) = self.pc.rtp_sender(v.sender) {
            if sender.write_rtp(now, packet).is_ok() {
                v.counts.to_browser += 1;
            }
        }
    }

    /// A call is connected (relay to the engine's `addr` with its Opus `pt`), or None
    /// between calls. Either way the call is no longer on hold.
    pub fn set_target(&mut self, target: Option<(SocketAddr, u8)>) {
        self.target = target;
        self.offset = None;
        self.hold = false;
    }

    /// On hold nothing is relayed either way, video included.
    pub fn set_hold(&mut self, on: bool) {
        self.hold = on;
    }

    /// A datagram on the ICE socket from `from` (STUN, DTLS or SRTP). A datagram the
    /// connection cannot use is dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let _ = self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.ice,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        });
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = self.pc.handle_timeout(now);
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.pc.poll_timeout()
    }

    /// The next datagram for the browser: (to, bytes).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.pc
            .poll_write()
            .map(|m| (m.transport.peer_addr, m.message))
    }

    /// The next state change for the session.
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        while !self.failed {
            let Some(ev) = self.pc.poll_event() else {
                break;
            };
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = ev {
                match state {
                    RTCPeerConnectionState::Connected => {
                        self.events.push_back(PeerEvent::Connected)
                    }
                    RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Disconnected
                    | RTCPeerConnectionState::Closed => {
                        self.failed = true;
                        self.events.push_back(PeerEvent::Failed);
                    }
                    _ => {}
                }
            }
        }
        self.events.pop_front()
    }

    /// Browser → engine: the call's next Opus packet with the engine's payload type, as
    /// (from our RTP address, to the agent leg, RTP bytes). Nothing between calls or on
    /// hold (the browser's packets are read and dropped).
    pub fn poll_to_engine(&mut self) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            let p = match message {
                RTCMessage::RtpPacket(_, p) => p,
                // The report interceptors already took what they need; a keyframe request
                // for our video goes on to the engine.
                RTCMessage::RtcpPacket(_, packets) => {
                    if let Some(v) = self.video.as_mut().filter(|_| !self.hold) {
                        if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
                            v.keyframe_request_to_engine();
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            if let Some(v) = self
                .video
                .as_mut()
                .filter(|v| p.header.payload_type == v.pt)
            {
                if !self.hold {
                    v.camera_packet(&p);
                }
                continue;
            }
            let Some((engine, pt)) = self.target.filter(|_| !self.hold) else {
                continue;
            };
            // (Padding-only packets are the browser probing bandwidth: no audio.)
            if p.payload.is_empty() {
                continue;
            }
            let h = &p.header;
            let data = crate::media::rtp::build_rtp(
                pt,
                h.marker,
                h.sequence_number,
                h.timestamp,
                h.ssrc,
                &p.payload,
            );
            self.to_engine += 1;
            return Some((self.local_rtp, engine, data));
        }
        None
    }

    /// Engine → browser: one RTP packet of the agent leg, re-stamped onto the session's one
    /// stream. Anything but the call's Opus from the call's engine address is dropped.
    pub fn handle_engine_packet(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Some((engine, pt)) = self.target else {
            return;
        };
        if from.ip() != engine.ip() || self.hold {
            return;
        }
        let Ok(r) = rtp_rs::RtpReader::new(data) else {
            return;
        };
        if r.payload_type() != pt {
            return; // telephone-event, comfort noise
        }
        let off = match self.offset {
            Some((o, src)) if src == from => o,
            _ => {
                let o = self.last_ts.wrapping_add(960).wrapping_sub(r.timestamp());
                self.offset = Some((o, from));
                o
            }
        };
        self.seq = self.seq.wrapping_add(1);
        self.last_ts = r.timestamp().wrapping_add(off);
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: r.mark(),
                payload_type: OPUS_PT,
                sequence_number: self.seq,
                timestamp: self.last_ts,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(r.payload()),
        };
        let Some(mut sender) = self.pc.rtp_sender(self.sender) else {
            return;
        };
        if sender.write_rtp(now, packet).is_ok() {
            self.to_browser += 1;
        }
    }

    /// Closes the connection (DTLS close_notify; drain [`Self::poll_transmit`] after).
    pub fn close(&mut self) {
        let _ = self.pc.close();
    }
}

impl Video {
    /// The browser's camera, to the engine with the payload type it offered (between calls
    /// it goes nowhere). Its sequence numbers and timestamps pass unchanged: the engine's
    /// relay restamps each leg onto a stream of its own.
    fn camera_packet(&mut self, p: &rtc::rtp::Packet) {
        self.browser_source = Some(p.header.ssrc);
        let Some(t) = self.target else {
            return;
        };
        // Padding-only packets are bandwidth probes: nothing to decode.
        if p.payload.is_empty() {
            return;
        }
        let h = &p.header;
        let data = crate::media::rtp::build_rtp(
            t.pt,
            h.marker,
            h.sequence_number,
            h.timestamp,
            h.ssrc,
            &p.payload,
        );
        self.out.push_back((t.rtp, data));
        self.counts.to_engine += 1;
    }

    /// The browser lost the picture: a PLI to the engine's RTCP port, which its relay turns
    /// into a PLI to the caller.
    fn keyframe_request_to_engine(&mut self) {
        let Some(t) = self.target else {
            return;
        };
        let mut pli = vec![0x81, 206, 0, 2];
        pli.extend_from_slice(&self.browser_source.unwrap_or(self.ssrc).to_be_bytes());
        pli.extend_from_slice(&self.engine_source.unwrap_or(0).to_be_bytes());
        self.out.push_back((t.rtcp(), pli));
        self.counts.keyframe_requests_to_engine += 1;
    }
}

fn is_keyframe_request(p: &dyn rtc::rtcp::packet::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// The video codec a browser's offer lets us use for the session: the first the offer lists
/// of VP8 and H.264 Constrained Baseline in packetization mode 1. Chromium lists VP8 first;
/// a desk that serves H.264 video phones puts H.264 first (setCodecPreferences).
pub fn offered_video_codec(offer: &str) -> Option<VideoCodec> {
    let sdp = crate::media::sdp::Sdp::parse(offer).ok()?;
    let m = sdp
        .media
        .iter()
        .find(|m| m.kind == "video" && m.port != 0)?;
    m.formats.iter().find_map(|&pt| {
        let (name, rate) = m.encoding(pt)?;
        let fmtp = m
            .fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, f)| f.as_str());
        match (name.as_str(), rate) {
            ("vp8", 90_000) => Some(VideoCodec::Vp8),
            ("h264", 90_000) if fmtp.is_some_and(constrained_baseline_mode_1) => {
                Some(VideoCodec::H264)
            }
            _ => None,
        }
    })
}

/// Whether an H.264 fmtp is what we register ([`video_codec`]): rtc matches the profile
/// (the first two bytes of profile-level-id) and the packetization mode exactly.
fn constrained_baseline_mode_1(fmtp: &str) -> bool {
    let param = |k: &str| {
        fmtp.split(';').find_map(|p| {
            let (name, v) = p.split_once('=')?;
            name.trim().eq_ignore_ascii_case(k).then(|| v.trim())
        })
    };
    param("packetization-mode") == Some("1")
        && param("profile-level-id")
            .is_some_and(|id| id.len() == 6 && id[..4].eq_ignore_ascii_case("42e0"))
}

/// Our video codec as the peer connection registers it. Feedback: PLI and FIR only (the
/// relay keeps no packets to resend, so no NACK; no congestion-control feedback either:
/// the browser's sender falls back on the receiver reports).
pub fn video_codec(codec: VideoCodec) -> RTCRtpCodec {
    let (mime, fmtp) = match codec {
        VideoCodec::Vp8 => (MIME_TYPE_VP8, ""),
        VideoCodec::H264 => (
            MIME_TYPE_H264,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        ),
    };
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodec {
        mime_type: mime.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: vec![fb("nack", "pli"), fb("ccm", "fir")],
    }
}

/// The video leg of an answered session: the payload type the answer gave our codec and
/// the receiver beside our sender (None: the answer has no such codec after all).
fn video_leg(
    pc: &mut RTCPeerConnection,
    codec: VideoCodec,
    sender: RTCRtpSenderId,
    ssrc: u32,
    local: SocketAddr,
) -> Option<Video> {
    let mime = video_codec(codec).mime_type;
    let pt = pc
        .rtp_sender(sender)?
        .get_parameters()
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&mime))?
        .payload_type;
    let ids: Vec<_> = pc.get_transceivers().collect();
    let receiver = ids.into_iter().find_map(|id| {
        let t = pc.rtp_transceiver(id)?;
        (t.sender() == Some(sender)).then(|| t.receiver()).flatten()
    });
    Some(Video {
        codec,
        sender,
        receiver,
        ssrc,
        pt,
        local,
        target: None,
        seq: rand::random(),
        last_ts: rand::random(),
        offset: None,
        browser_source: None,
        engine_source: None,
        out: VecDeque::new(),
        counts: VideoCounts::default(),
    })
}

/// `public`:`base`'s port, a server-reflexive candidate whose base is `base`.
fn advertised_candidate(
    public: IpAddr,
    base: SocketAddr,
) -> Result<RTCIceCandidateInit, PeerError> {
    let srflx = CandidateServerReflexiveConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: public.to_string(),
            port: base.port(),
            component: 1,
            ..Default::default()
        },
        rel_addr: base.ip().to_string(),
        rel_port: base.port(),
        url: None,
    }
    .new_candidate_server_reflexive()
    .map_err(at("candidate"))?;
    RTCIceCandidate::from(&srflx)
        .to_json()
        .map_err(at("candidate"))
}

fn host_candidate(addr: SocketAddr) -> Result<RTCIceCandidateInit, PeerError> {
    let host = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(at("candidate"))?;
    RTCIceCandidate::from(&host)
        .to_json()
        .map_err(at("candidate"))
}

/// Opus as both sides of a browser call use it: 48 kHz clock, and (RFC 7587
/// maxplaybackrate) narrowband mono, because the trunk is G.711 and audio above 4 kHz would
/// be thrown away; narrowband also costs the engine's decoder a fraction of full band.
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line:
            "minptime=10;useinbandfec=1;maxplaybackrate=8000;sprop-maxcapturerate=8000;stereo=0"
                .to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Our one Opus codec, registered in a media engine.
pub fn opus_media_engine() -> Result<MediaEngine, PeerError> {
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .map_err(at("codec"))?;
    Ok(media)
}

/// One outgoing Opus track with the given SSRC. `label` names it in the SDP's msid, so it
/// must be one token (no spaces: the browser would refuse the answer).
pub fn opus_track(ssrc: u32, label: &str) -> MediaStreamTrack {
    MediaStreamTrack::new(
        "dasan".to_owned(),
        format!("{label}-audio"),
        label.to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus_codec(),
            ..Default::default()
        }],
    )
}

/// A sans-IO peer connection speaking only our Opus, with RTCP sender and receiver reports
/// (RFC 3550) every [`RTCP_INTERVAL`] and nothing else: NACK, transport-wide congestion
/// control and simulcast would need a relay that keeps packets and adapts rates, which ours
/// does not. No mDNS: it needs a multicast-capable
/// interface (absent where only loopback exists) and a server's candidates are plain
/// addresses anyway. Also the browser side of the tests and the bench.
pub fn opus_peer_connection(now: Instant) -> Result<RTCPeerConnection, PeerError> {
    peer_connection(now, None)
}

/// [`opus_peer_connection`] that also speaks `video` (PLI and FIR its only feedback, which
/// the chain then hands to us).
pub fn peer_connection(
    now: Instant,
    video: Option<VideoCodec>,
) -> Result<RTCPeerConnection, PeerError> {
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let mut media = opus_media_engine()?;
    if let Some(codec) = video {
        let payload_type = match codec {
            VideoCodec::Vp8 => 96,
            VideoCodec::H264 => 102,
        };
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: video_codec(codec),
                    payload_type,
                },
                RtpCodecKind::Video,
            )
            .map_err(at("codec"))?;
    }
    RTCPeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_setting_engine(settings)
        .with_interceptor_registry(rtcp_reports(video.is_some()))
        .build(now)
        .map_err(at("peer connection"))
}

/// How often each leg sends its sender and receiver reports: RFC 3550's 5 s, as the trunk
/// legs do (`media::session`) and as browsers do for audio, rather than webrtc-rs's default
/// of every second, which for an engine of hundreds of idle and talking browser legs was a
/// timer and an SRTCP packet per leg per second for nothing a call needs.
pub const RTCP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The reports, and with `video` the keyframe requests handed to us (an audio-only leg
/// does without the extra step every packet would take through it).
fn rtcp_reports(video: bool) -> Registry {
    let registry = Registry::new();
    let registry = if video {
        registry.with(Slot::Custom(14_000), KeyframeRequests::default())
    } else {
        registry
    };
    registry
        .with(
            Slot::ReceiverReport,
            ReceiverReportBuilder::new()
                .with_interval(RTCP_INTERVAL)
                .build(),
        )
        .with(
            Slot::SenderReport,
            SenderReportBuilder::new()
                .with_interval(RTCP_INTERVAL)
                .build(),
        )
}

/// Lets the browser's keyframe requests (PLI, FIR) through to the application: rtc's
/// interceptor chain ends every inbound RTCP packet it is not told to deliver, and these are
/// the only ones the relay acts on (the reports stay with the report interceptors).
#[derive(Default)]
struct KeyframeRequests {
    reads: VecDeque<rtc::interceptor::TaggedPacket>,
    writes: VecDeque<rtc::interceptor::TaggedPacket>,
}

impl Protocol<rtc::interceptor::TaggedPacket, rtc::interceptor::TaggedPacket, ()>
    for KeyframeRequests
{
    type Rout = rtc::interceptor::TaggedPacket;
    type Wout = rtc::interceptor::TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
        if let rtc::interceptor::Packet::Rtcp(ps) = &msg.message.packet {
            if ps.iter().any(|p| is_keyframe_request(p.as_ref())) {
                msg.message
                    .add(rtc::interceptor::Attribute::DeliverToApplication);
            }
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl rtc::interceptor::Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _: &rtc::interceptor::StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &rtc::interceptor::StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &rtc::interceptor::StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &rtc::interceptor::StreamInfo) {}
}

/// Our peer connection with the Opus track, and the video track in `video`'s codec.
fn peer(
    now: Instant,
    ssrc: u32,
    video: Option<(VideoCodec, u32)>,
) -> Result<(RTCPeerConnection, RTCRtpSenderId, Option<RTCRtpSenderId>), PeerError> {
    let mut pc = peer_connection(now, video.map(|(c, _)| c))?;
    let sender = pc
        .add_track(opus_track(ssrc, "caller"))
        .map_err(at("track"))?;
    let video = match video {
        Some((codec, ssrc)) => Some(
            pc.add_track(video_track(codec, ssrc, "caller"))
                .map_err(at("track"))?,
        ),
        None => None,
    };
    Ok((pc, sender, video))
}

/// One outgoing video track in `codec` with the given SSRC (in its own stream, so the
/// page tells it from the audio by kind alone).
pub fn video_track(codec: VideoCodec, ssrc: u32, label: &str) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("{label}-video"),
        format!("{label}-video"),
        format!("{label}-video"),
        RtpCodecKind::Video,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: video_codec(codec),
            ..Default::default()
        }],
    )
}

/// A browser for tests and benches: a sans-IO peer connection with a microphone track,
/// connected to a [`BrowserPeer`] entirely in memory.
#[doc(hidden)]
pub mod loopback {
    use super::*;

    pub struct Browser {
        pub pc: RTCPeerConnection,
        pub mic: RTCRtpSenderId,
        pub mic_ssrc: u32,
        /// A camera track, when connected with video.
        pub cam: Option<RTCRtpSenderId>,
        pub cam_ssrc: u32,
        pub addr: SocketAddr,
    }

    /// The browser's offer, the engine's answer, then datagrams shuttled both ways (real
    /// time: ICE and DTLS timers) until both ends are connected, at most 5 s.
    pub fn connect(
        engine_ice: SocketAddr,
        engine_rtp: SocketAddr,
    ) -> Result<(Browser, BrowserPeer), PeerError> {
        connect_advertised(engine_ice, engine_rtp, None)
    }

    /// As [`connect`], the engine advertising `advertise` too (1:1 NAT).
    pub fn connect_advertised(
        engine_ice: SocketAddr,
        engine_rtp: SocketAddr,
        advertise: Option<IpAddr>,
    ) -> Result<(Browser, BrowserPeer), PeerError> {
        connect_with(engine_ice, engine_rtp, None, None, advertise)
    }

    /// As [`connect`], the browser with a camera in `camera`'s codec and the engine with a
    /// video address `engine_video`.
    pub fn connect_video(
        engine_ice: SocketAddr,
        engine_rtp: SocketAddr,
        engine_video: SocketAddr,
        camera: VideoCodec,
    ) -> Result<(Browser, BrowserPeer), PeerError> {
        connect_with(
            engine_ice,
            engine_rtp,
            Some(engine_video),
            Some(camera),
            None,
        )
    }

    fn connect_with(
        engine_ice: SocketAddr,
        engine_rtp: SocketAddr,
        engine_video: Option<SocketAddr>,
        camera: Option<VideoCodec>,
        advertise: Option<IpAddr>,
    ) -> Result<(Browser, BrowserPeer), PeerError> {
        let now = Instant::now();
        let addr: SocketAddr = ([127, 0, 0, 1], 9).into();
        let mut pc = peer_connection(now, camera)?;
        let mic_ssrc = rand::random();
        let mic = pc
            .add_track(opus_track(mic_ssrc, "mic"))
            .map_err(at("track"))?;
        let cam_ssrc = rand::random();
        let cam = match camera {
            Some(c) => Some(
                pc.add_track(video_track(c, cam_ssrc, "cam"))
                    .map_err(at("track"))?,
            ),
            None => None,
        };
        let offer = pc.create_offer(None).map_err(at("offer"))?;
        pc.set_local_description(now, offer).map_err(at("offer"))?;
        pc.add_local_candidate(host_candidate(addr)?)
            .map_err(at("candidate"))?;
        pc.add_local_candidate(RTCIceCandidateInit::default())
            .map_err(at("candidate"))?;
        let offer_sdp = pc
            .local_description()
            .ok_or(PeerError::Missing("offer"))?
            .sdp;
        let (mut engine, answer) = BrowserPeer::answer_advertised(
            now,
            offer_sdp,
            engine_ice,
            engine_rtp,
            engine_video,
            advertise,
        )?;
        let answer = RTCSessionDescription::answer(answer).map_err(at("answer"))?;
        pc.set_remote_description(now, answer)
            .map_err(at("answer"))?;
        let mut b = Browser {
            pc,
            mic,
            mic_ssrc,
            cam,
            cam_ssrc,
            addr,
        };
        let (mut up_engine, mut up_browser) = (false, false);
        while now.elapsed() < std::time::Duration::from_secs(5) {
            let t = Instant::now();
            b.shuttle(&mut engine, t);
            if engine.poll_timeout().is_some_and(|d| d <= t) {
                engine.handle_timeout(t);
            }
            if b.pc.poll_timeout().is_some_and(|d| d <= t) {
                let _ = b.pc.handle_timeout(t);
            }
            while let Some(ev) = engine.poll_event() {
                up_engine |= ev == PeerEvent::Connected;
            }
            while let Some(ev) = b.pc.poll_event() {
                if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
                    up_browser |= s == RTCPeerConnectionState::Connected;
                }
            }
            if up_engine && up_browser {
                b.shuttle(&mut engine, Instant::now());
                return Ok((b, engine));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(PeerError::NotConnected)
    }

    impl Browser {
        /// Moves every pending datagram each way.
        pub fn shuttle(&mut self, engine: &mut BrowserPeer, now: Instant) {
            loop {
                let mut moved = false;
                while let Some((to, data)) = engine.poll_transmit() {
                    if to == self.addr {
                        self.receive(now, engine.ice, data);
                    }
                    moved = true;
                }
                while let Some(m) = self.pc.poll_write() {
                    engine.handle_datagram(now, self.addr, &m.message);
                    moved = true;
                }
                if !moved {
                    return;
                }
            }
        }

        pub fn receive(&mut self, now: Instant, from: SocketAddr, data: BytesMut) {
            let _ = self.pc.handle_read(TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: self.addr,
                    peer_addr: from,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: data,
            });
        }

        /// The microphone: one Opus packet (48 kHz timestamps).
        pub fn send_mic(&mut self, now: Instant, seq: u16, opus: &[u8]) -> Result<(), PeerError> {
            let p = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    payload_type: OPUS_PT,
                    sequence_number: seq,
                    timestamp: seq as u32 * 960,
                    ssrc: self.mic_ssrc,
                    ..Default::default()
                },
                payload: Bytes::copy_from_slice(opus),
            };
            let mut s = self
                .pc
                .rtp_sender(self.mic)
                .ok_or(PeerError::Missing("mic sender"))?;
            s.write_rtp(now, p).map_err(at("rtp"))
        }

        /// The camera: one packet of a frame in the session's video codec.
        pub fn send_cam(
            &mut self,
            now: Instant,
            seq: u16,
            payload: &[u8],
        ) -> Result<(), PeerError> {
            let id = self.cam.ok_or(PeerError::Missing("camera"))?;
            let mut s = self
                .pc
                .rtp_sender(id)
                .ok_or(PeerError::Missing("camera sender"))?;
            let pt = s
                .get_parameters()
                .rtp_parameters
                .codecs
                .first()
                .ok_or(PeerError::Missing("camera codec"))?
                .payload_type;
            let p = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    payload_type: pt,
                    marker: true,
                    sequence_number: seq,
                    timestamp: u32::from(seq) * 3000,
                    ssrc: self.cam_ssrc,
                    ..Default::default()
                },
                payload: Bytes::copy_from_slice(payload),
            };
            s.write_rtp(now, p).map_err(at("rtp"))
        }

        /// A PLI for the engine's video stream (the browser's decoder lost the picture).
        pub fn request_keyframe(&mut self, now: Instant, media_ssrc: u32) -> Result<(), PeerError> {
            let id = self.cam.ok_or(PeerError::Missing("camera"))?;
            let ids: Vec<_> = self.pc.get_transceivers().collect();
            let rx = ids
                .into_iter()
                .find_map(|t| {
                    let t = self.pc.rtp_transceiver(t)?;
                    (t.sender() == Some(id)).then(|| t.receiver()).flatten()
                })
                .ok_or(PeerError::Missing("video receiver"))?;
            let mut r = self
                .pc
                .rtp_receiver(rx)
                .ok_or(PeerError::Missing("video receiver"))?;
            r.write_rtcp(
                now,
                vec![Box::new(PictureLossIndication {
                    sender_ssrc: self.cam_ssrc,
                    media_ssrc,
                })],
            )
            .map_err(at("rtcp"))
        }

        /// The RTCP packets the browser has received, flattened (keeps RTP aside: none).
        pub fn rtcp_heard(&mut self) -> Vec<Box<dyn rtc::rtcp::packet::Packet>> {
            let mut v = Vec::new();
            while let Some(m) = self.pc.poll_read() {
                if let RTCMessage::RtcpPacket(_, ps) = m.message {
                    v.extend(ps);
                }
            }
            v
        }

        /// The browser's next datagram (for the engine's leg).
        pub fn pc_poll_write(&mut self) -> Option<BytesMut> {
            self.pc.poll_write().map(|m| m.message)
        }

        /// The RTP packets the browser has received (the caller's audio).
        pub fn heard(&mut self) -> Vec<rtc::rtp::Packet> {
            let mut v = Vec::new();
            while let Some(m) = self.pc.poll_read() {
                if let RTCMessage::RtpPacket(_, p) = m.message {
                    v.push(p);
                }
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::loopback::connect;
    use super::*;

    #[test]
    fn a_call_relays_both_ways_on_one_stream_and_nothing_between_calls_or_on_hold() {
        let ice: SocketAddr = ([127, 0, 0, 1], 7000).into();
        let rtp: SocketAddr = ([127, 0, 0, 1], 7002).into();
        let engine_leg: SocketAddr = ([127, 0, 0, 1], 20_000).into();
        let (mut b, mut e) = connect(ice, rtp).unwrap();
        let now = Instant::now();
        // Between calls: the microphone goes nowhere, the engine's packets too.
        b.send_mic(now, 1, &[0xF8, 1, 2]).unwrap();
        b.shuttle(&mut e, now);
        assert!(e.poll_to_engine().is_none());
        e.handle_engine_packet(
            now,
            engine_leg,
            &crate::media::rtp::build_rtp(96, false, 1, 0, 5, &[1]),
        );
        b.shuttle(&mut e, now);
        assert!(b.heard().is_empty());

        e.set_target(Some((engine_leg, 96)));
        b.send_mic(now, 2, &[0xF8, 3, 4]).unwrap();
        b.shuttle(&mut e, now);
        let (from, to, pkt) = e
            .poll_to_engine()
            .expect("the microphone reaches the engine");
        assert_eq!((from, to), (rtp, engine_leg));
        let h = crate::media::rtp::parse_rtp(&pkt).unwrap();
        assert_eq!(h.payload_type, 96, "the engine's payload type");
        assert_eq!(&pkt[h.payload_offset..], &[0xF8, 3, 4]);
        // Engine → browser, two calls: one SSRC, sequence and timestamps continue.
        let mut heard = Vec::new();
        for (call, ts0) in [
            (engine_leg, 1_000_000u32),
            (([127, 0, 0, 1], 20_002).into(), 5),
        ] {
            e.set_target(Some((call, 96)));
            for i in 0..3u16 {
                let p = crate::media::rtp::build_rtp(96, false, i, ts0 + i as u32 * 960, 9, &[7]);
                e.handle_engine_packet(now, call, &p);
                // Telephone-events and other payload types stay in the engine.
                e.handle_engine_packet(
                    now,
                    call,
                    &crate::media::rtp::build_rtp(101, false, i, 0, 9, &[1]),
                );
            }
            b.shuttle(&mut e, now);
            heard.extend(b.heard());
        }
        assert_eq!(heard.len(), 6);
        assert!(heard.iter().all(|p| p.header.ssrc == heard[0].header.ssrc));
        for w in heard.windows(2) {
            assert_eq!(
                w[1].header.sequence_number,
                w[0].header.sequence_number.wrapping_add(1)
            );
            assert_eq!(
                w[1].header.timestamp,
                w[0].header.timestamp.wrapping_add(960)
            );
        }
        assert_eq!((e.to_engine, e.to_browser), (1, 6));

        // On hold: nothing either way, until the hold ends.
        e.set_hold(true);
        b.send_mic(now, 3, &[0xF8, 5]).unwrap();
        e.handle_engine_packet(
            now,
            engine_leg,
            &crate::media::rtp::build_rtp(96, false, 9, 9, 9, &[1]),
        );
        b.shuttle(&mut e, now);
        assert!(e.poll_to_engine().is_none() && b.heard().is_empty());
        e.set_hold(false);
        b.send_mic(now, 4, &[0xF8, 6]).unwrap();
        b.shuttle(&mut e, now);
        assert!(e.poll_to_engine().is_some());
    }

    #[test]
    fn reports_go_out_every_five_seconds_not_every_second() {
        let ice: SocketAddr = ([127, 0, 0, 1], 7000).into();
        let rtp: SocketAddr = ([127, 0, 0, 1], 7002).into();
        let engine_leg: SocketAddr = ([127, 0, 0, 1], 20_000).into();
        let (mut b, mut e) = connect(ice, rtp).unwrap();
        e.set_target(Some((engine_leg, 96)));
        // 12 s of a call in virtual time, 20 ms packets each way.
        let t0 = Instant::now();
        let mut reports = 0;
        for i in 0..600u16 {
            let now = t0 + std::time::Duration::from_millis(20 * u64::from(i));
            let p = crate::media::rtp::build_rtp(96, false, i, u32::from(i) * 960, 9, &[7]);
            e.handle_engine_packet(now, engine_leg, &p);
            b.send_mic(now, i, &[0xF8, 1]).unwrap();
            if e.poll_timeout().is_some_and(|d| d <= now) {
                e.handle_timeout(now);
            }
            if b.pc.poll_timeout().is_some_and(|d| d <= now) {
                let _ = b.pc.handle_timeout(now);
            }
            while let Some(m) = b.pc.poll_write() {
                e.handle_datagram(now, b.addr, &m.message);
            }
            while e.poll_to_engine().is_some() {}
            while let Some((_, data)) = e.poll_transmit() {
                // RTCP by its packet type (RFC 5761); SRTCP leaves the header clear.
                reports += usize::from(data.len() > 1 && (192..=223).contains(&data[1]));
                b.receive(now, ice, data);
            }
            b.heard();
        }
        // A sender and a receiver report at 5 and 10 s (at 1 s it would be ~24).
        assert!((2..=6).contains(&reports), "{reports} reports in 12 s");
    }

    #[test]
    fn behind_nat_the_public_address_is_offered_beside_the_local_one_and_ice_still_connects() {
        let ice: SocketAddr = ([127, 0, 0, 1], 7010).into();
        let rtp: SocketAddr = ([127, 0, 0, 1], 7012).into();
        let public: IpAddr = [203, 0, 113, 7].into();
        let (b, _e) = super::loopback::connect_advertised(ice, rtp, Some(public)).unwrap();
        let answer = b.pc.remote_description().unwrap().sdp.clone();
        let candidates: Vec<&str> = answer
            .lines()
            .filter(|l| l.starts_with("a=candidate:"))
            .collect();
        assert!(
            candidates
                .iter()
                .any(|c| c.contains("127.0.0.1 7010 typ host")),
            "{answer}"
        );
        assert!(
            candidates
                .iter()
                .any(|c| c.contains("203.0.113.7 7010 typ srflx raddr 127.0.0.1 rport 7010")),
            "{answer}"
        );
        // Advertising the local address itself adds nothing.
        let (b, _e) = super::loopback::connect_advertised(ice, rtp, Some(ice.ip())).unwrap();
        let answer = b.pc.remote_description().unwrap().sdp.clone();
        assert!(!answer.contains("typ srflx"), "{answer}");
    }

    #[test]
    fn vp8_is_relayed_both_ways_with_keyframe_requests_and_idles_between_calls() {
        video_round_trip(VideoCodec::Vp8);
    }

    #[test]
    fn h264_likewise() {
        video_round_trip(VideoCodec::H264);
    }

    fn video_round_trip(codec: VideoCodec) {
        let ice: SocketAddr = ([127, 0, 0, 1], 7020).into();
        let rtp: SocketAddr = ([127, 0, 0, 1], 7022).into();
        let local_video: SocketAddr = ([127, 0, 0, 1], 7024).into();
        let (mut b, mut e) = super::loopback::connect_video(ice, rtp, local_video, codec).unwrap();
        assert_eq!(e.video(), Some((codec, local_video)));
        let now = Instant::now();
        let drain = |e: &mut BrowserPeer| {
            while e.poll_to_engine().is_some() {}
            std::iter::from_fn(|| e.poll_video_to_engine()).collect::<Vec<_>>()
        };
        // Between calls the camera goes nowhere.
        b.send_cam(now, 1, &[0x10, 1, 2, 3]).unwrap();
        b.shuttle(&mut e, now);
        assert!(drain(&mut e).is_empty());

        let engine_video: SocketAddr = ([127, 0, 0, 1], 20_010).into();
        let target = VideoTarget {
            rtp: engine_video,
            pt: 100,
        };
        e.set_video_target(Some(target));
        b.send_cam(now, 2, &[0x10, 4, 5]).unwrap();
        b.shuttle(&mut e, now);
        let out = drain(&mut e);
        // First an empty receiver report to the RTCP port (the relay learns our address),
        // then the camera's packet with the engine's payload type.
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].0, SocketAddr::from(([127, 0, 0, 1], 20_011)));
        assert_eq!(out[0].1[1], 201);
        assert_eq!(out[1].0, engine_video);
        let h = crate::media::rtp::parse_rtp(&out[1].1).unwrap();
        assert_eq!(h.payload_type, 100);
        assert_eq!(&out[1].1[h.payload_offset..], &[0x10, 4, 5]);

        // Engine → browser over two calls: one SSRC, sequence numbers continue, a gap stays.
        let mut heard = Vec::new();
        for (call, seqs) in [
            (engine_video, [10u16, 11, 13]),
            (([127, 0, 0, 1], 20_020).into(), [500, 501, 502]),
        ] {
            e.set_video_target(Some(VideoTarget { rtp: call, pt: 100 }));
            for s in seqs {
                let p = crate::media::rtp::build_rtp(100, true, s, u32::from(s) * 3000, 77, &[9]);
                e.handle_engine_video(now, call, &p);
                // Another payload type, or a stranger's address (another port of the
                // engine's host too): dropped.
                let other = crate::media::rtp::build_rtp(101, true, s, 0, 77, &[9]);
                e.handle_engine_video(now, call, &other);
                e.handle_engine_video(now, ([10, 0, 0, 1], 5).into(), &p);
                e.handle_engine_video(now, ([127, 0, 0, 1], 20_030).into(), &p);
            }
            b.shuttle(&mut e, now);
            heard.extend(b.heard());
        }
        let seqs: Vec<u16> = heard.iter().map(|p| p.header.sequence_number).collect();
        assert_eq!(heard.len(), 6, "{seqs:?}");
        assert!(heard.iter().all(|p| p.header.ssrc == heard[0].header.ssrc));
        let s0 = seqs[0];
        assert_eq!(
            seqs,
            [0, 1, 3, 4, 5, 6].map(|d| s0.wrapping_add(d)),
            "offsets, not renumbering"
        );
        assert_eq!(e.video_counts().to_browser, 6);

        // A PLI from the engine reaches the browser's camera as a PLI; from a stranger,
        // nothing.
        drain(&mut e);
        let mut pli = vec![0x81, 206, 0, 2];
        pli.extend_from_slice(&1u32.to_be_bytes());
        pli.extend_from_slice(&2u32.to_be_bytes());
        e.handle_engine_video(now, ([10, 0, 0, 9], 20_021).into(), &pli);
        e.handle_engine_video(now, ([127, 0, 0, 1], 20_031).into(), &pli);
        assert!(e.poll_transmit().is_none());
        e.handle_engine_video(now, ([127, 0, 0, 1], 20_021).into(), &pli);
        b.shuttle(&mut e, now);
        let rtcp = b.rtcp_heard();
        assert!(
            rtcp.iter().any(|p| p
                .as_any()
                .downcast_ref::<PictureLossIndication>()
                .is_some_and(|p| p.media_ssrc == b.cam_ssrc)),
            "{rtcp:?}"
        );
        assert_eq!(e.video_counts().plis_to_browser, 1);

        // The browser's PLI goes to the engine's RTCP port.
        b.request_keyframe(now, heard[0].header.ssrc).unwrap();
        b.shuttle(&mut e, now);
        let out = drain(&mut e);
        assert!(
            out.iter()
                .any(|(to, d)| *to == SocketAddr::from(([127, 0, 0, 1], 20_021)) && d[1] == 206),
            "{out:?}"
        );
        assert_eq!(e.video_counts().keyframe_requests_to_engine, 1);

        // After the call nothing goes either way.
        e.set_video_target(None);
        b.send_cam(now, 3, &[0x10, 6]).unwrap();
        b.shuttle(&mut e, now);
        assert!(drain(&mut e).is_empty());
    }

    #[test]
    fn without_video_in_the_offer_or_an_engine_address_the_session_is_audio_only() {
        let ice: SocketAddr = ([127, 0, 0, 1], 7030).into();
        let rtp: SocketAddr = ([127, 0, 0, 1], 7032).into();
        let (_b, e) = connect(ice, rtp).unwrap();
        assert_eq!(e.video(), None);
        assert_eq!(
            offered_video_codec(
                "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 102 104\r\na=rtpmap:96 VP9/90000\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\na=rtpmap:104 H264/90000\r\na=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
            ),
            Some(VideoCodec::H264),
            "no VP8: H.264 in packetization mode 1"
        );
        let both = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 104 96\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:104 H264/90000\r\na=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";
        assert_eq!(
            offered_video_codec(both),
            Some(VideoCodec::H264),
            "the browser's order"
        );
        assert_eq!(
            offered_video_codec(&both.replace(
                "m=video 9 UDP/TLS/RTP/SAVPF 104 96",
                "m=video 9 UDP/TLS/RTP/SAVPF 96 104"
            )),
            Some(VideoCodec::Vp8)
        );
        assert_eq!(
            offered_video_codec(
                "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 98\r\na=rtpmap:98 VP9/90000\r\n"
            ),
            None
        );
    }

    #[test]
    fn a_bad_offer_is_an_error_not_a_panic() {
        let a: SocketAddr = ([127, 0, 0, 1], 7000).into();
        for bad in [
            "",
            "v=0\r\n",
            "not sdp at all",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
        ] {
            assert!(
                BrowserPeer::answer(Instant::now(), bad.into(), a, a).is_err(),
                "{bad:?}"
            );
        }
    }
}
