//! The browser's media: one WebRTC peer connection per logged-in browser agent (ICE,
//! DTLS-SRTP, Opus), kept up for the whole session, relaying the current call's Opus to and
//! from the engine's media plane, which transcodes to the trunk's G.711 with the media
//! layer's transcoder (one transcoder in the process).
//!
//! The peer connection is webrtc-rs's sans-IO core (`rtc`, on which the `webrtc` crate's
//! async API is built), driven here by one task per session that owns the ICE socket, the
//! connection and the relay state. Why not the `webrtc` crate's own driver: a browser call
//! is a steady 50 packets a second each way for hours, and that driver's generic machinery
//! (a task per track, async locks and queues between them) cost more per packet than the
//! transcoding; with one task, a packet from the browser is one socket read, SRTP and a hand
//! over to the media plane (in process, see [`crate::driver::LocalRtp`]), and one to the
//! browser the reverse. This also follows the project's rule: protocol logic sans-IO, tokio
//! only in the thin loop below.
//!
//! Why one connection per session and not per call: ICE and the DTLS handshake take a few
//! hundred milliseconds; done at login, the time from the agent's answer click to audio is
//! only SIP on loopback and the engine attaching the leg.

use crate::driver::{LocalPacket, LocalRtp, Registration};
use bytes::BytesMut;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_OPUS};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The browser's Opus payload type in our answer.
const OPUS_PT: u8 = 111;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    Connected,
    /// ICE failed or the peer went away: the session treats it as the browser dropping.
    Failed,
}

enum Ctl {
    /// A call is connected: the engine's RTP address for the agent leg and the Opus payload
    /// type it offered; None between calls.
    Target(Option<(SocketAddr, u8)>),
    /// On hold nothing is relayed either way.
    Hold(bool),
}

pub struct Bridge {
    ctl: mpsc::UnboundedSender<Ctl>,
    local_rtp: SocketAddr,
    /// Packets relayed browser → engine and engine → browser (for the tests and stats).
    pub to_engine: Arc<AtomicU64>,
    pub to_browser: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Bridge {
    /// Answers the browser's offer. `ip` is the address ICE and the engine-side RTP address
    /// bind (the engine's media address); `local` is the engine's in-process RTP switch.
    /// Returns the bridge, the SDP answer (every candidate in it: no trickle) and the peer's
    /// state changes.
    pub async fn answer(
        ip: IpAddr,
        offer_sdp: String,
        local: &LocalRtp,
    ) -> Result<(Bridge, String, mpsc::Receiver<PeerEvent>), String> {
        let ice = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|e| format!("ICE socket: {e}"))?;
        // The engine-side RTP address: bound so that it is ours, and read in case a packet
        // comes by UDP rather than through the in-process switch.
        let rtp = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|e| format!("RTP socket: {e}"))?;
        let ice_addr = ice.local_addr().map_err(|e| e.to_string())?;
        let local_rtp = rtp.local_addr().map_err(|e| e.to_string())?;
        let ssrc = rand::random::<u32>();
        let now = Instant::now();
        let (mut pc, sender) = peer(ssrc).map_err(|e| format!("peer connection: {e}"))?;
        let offer = RTCSessionDescription::offer(offer_sdp).map_err(|e| format!("offer: {e}"))?;
        pc.set_remote_description(now, offer)
            .map_err(|e| format!("offer: {e}"))?;
        let host = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: ice_addr.ip().to_string(),
                port: ice_addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(|e| format!("candidate: {e}"))?;
        let init = RTCIceCandidate::from(&host)
            .to_json()
            .map_err(|e| format!("candidate: {e}"))?;
        pc.add_local_candidate(init)
            .map_err(|e| format!("candidate: {e}"))?;
        // End of gathering: one host candidate is all a server has.
        pc.add_local_candidate(RTCIceCandidateInit::default())
            .map_err(|e| format!("candidate: {e}"))?;
        let answer = pc.create_answer(None).map_err(|e| format!("answer: {e}"))?;
        pc.set_local_description(now, answer)
            .map_err(|e| format!("answer: {e}"))?;
        let sdp = pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or("no local description")?;
        let (events_tx, events) = mpsc::channel(8);
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let to_engine = Arc::new(AtomicU64::new(0));
        let to_browser = Arc::new(AtomicU64::new(0));
        let inbox = local.register(local_rtp);
        let relay = Relay {
            pc,
            sender,
            ssrc,
            ice,
            ice_addr,
            rtp,
            local_rtp,
            local: local.clone(),
            target: None,
            hold: false,
            seq: rand::random(),
            last_ts: rand::random(),
            offset: None,
            events: events_tx,
            to_engine: to_engine.clone(),
            to_browser: to_browser.clone(),
        };
        let task = tokio::spawn(relay.run(ctl_rx, inbox));
        Ok((
            Bridge {
                ctl,
                local_rtp,
                to_engine,
                to_browser,
                task,
            },
            sdp,
            events,
        ))
    }

    /// Our RTP address towards the engine (the SDP of the agent leg's answer).
    pub fn local_rtp(&self) -> Option<SocketAddr> {
        Some(self.local_rtp)
    }

    /// A call is connected: relay to the engine's `addr` with its Opus `pt`; None stops.
    /// Either way the call is no longer on hold.
    pub fn set_target(&self, target: Option<(SocketAddr, u8)>) {
        let _ = self.ctl.send(Ctl::Hold(false));
        let _ = self.ctl.send(Ctl::Target(target));
    }

    pub fn set_hold(&self, on: bool) {
        let _ = self.ctl.send(Ctl::Hold(on));
    }

    /// Closes the connection (the browser is told by DTLS close_notify) and ends the task.
    pub async fn close(self) {
        drop(self.ctl);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
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
pub fn opus_media_engine() -> Result<MediaEngine, String> {
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .map_err(|e| format!("codec: {e}"))?;
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

/// The engine's peer connection: Opus only, RTCP sender and receiver reports (RFC 3550) and
/// nothing else: NACK, transport-wide congestion control and simulcast are for video. No
/// mDNS: it needs a multicast-capable interface (absent where only loopback exists) and a
/// server's candidates are plain addresses anyway.
fn peer(ssrc: u32) -> Result<(RTCPeerConnection, RTCRtpSenderId), String> {
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_media_engine(opus_media_engine()?)
        .with_setting_engine(settings)
        .with_interceptor_registry(configure_rtcp_reports(Registry::new()))
        .build(Instant::now())
        .map_err(|e| e.to_string())?;
    let sender = pc
        .add_track(opus_track(ssrc, "caller"))
        .map_err(|e| format!("track: {e}"))?;
    Ok((pc, sender))
}

/// The session's relay task: the peer connection, its socket and the call's relay state.
struct Relay {
    pc: RTCPeerConnection,
    sender: RTCRtpSenderId,
    ssrc: u32,
    ice: UdpSocket,
    ice_addr: SocketAddr,
    rtp: UdpSocket,
    local_rtp: SocketAddr,
    local: LocalRtp,
    target: Option<(SocketAddr, u8)>,
    hold: bool,
    /// The browser sees one stream for the whole session: one SSRC, continuous sequence
    /// numbers and timestamps across calls, so its jitter buffer never sees a new stream.
    seq: u16,
    last_ts: u32,
    /// Offset from the engine's timestamps to ours, fixed at each call's first packet.
    offset: Option<(u32, SocketAddr)>,
    events: mpsc::Sender<PeerEvent>,
    to_engine: Arc<AtomicU64>,
    to_browser: Arc<AtomicU64>,
}

impl Relay {
    async fn run(
        mut self,
        mut ctl: mpsc::UnboundedReceiver<Ctl>,
        inbox: (Registration, mpsc::Receiver<LocalPacket>),
    ) {
        let (_registration, mut inbox) = inbox;
        let mut buf = vec![0u8; 2048];
        let mut rtp_buf = vec![0u8; 2048];
        let mut failed = false;
        // One timer for the task's life, moved only when the connection's deadline moves
        // (a new timer per packet was a measurable part of the relay's cost).
        let far = || Instant::now() + Duration::from_secs(3600);
        let mut deadline = far();
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::pin!(sleep);
        loop {
            self.flush();
            if !failed {
                failed = self.drain_events();
            }
            self.drain_reads();
            let wake = self.pc.poll_timeout().unwrap_or_else(far);
            if wake != deadline {
                deadline = wake;
                sleep.as_mut().reset(wake.into());
            }
            tokio::select! {
                c = ctl.recv() => match c {
                    Some(Ctl::Target(t)) => {
                        self.target = t;
                        self.offset = None;
                    }
                    Some(Ctl::Hold(on)) => self.hold = on,
                    None => break,
                },
                r = self.ice.recv_from(&mut buf) => {
                    if let Ok((n, peer_addr)) = r {
                        let _ = self.pc.handle_read(TaggedBytesMut {
                            now: Instant::now(),
                            transport: TransportContext {
                                local_addr: self.ice_addr,
                                peer_addr,
                                ecn: None,
                                transport_protocol: TransportProtocol::UDP,
                            },
                            message: BytesMut::from(&buf[..n]),
                        });
                    }
                }
                Some(p) = inbox.recv() => self.relay_to_browser(p.from, &p.data),
                r = self.rtp.recv_from(&mut rtp_buf) => {
                    if let Ok((n, from)) = r {
                        let data = rtp_buf[..n].to_vec();
                        self.relay_to_browser(from, &data);
                    }
                }
                _ = &mut sleep => {
                    let _ = self.pc.handle_timeout(Instant::now());
                    // Until the connection names its next deadline.
                    deadline = far();
                    sleep.as_mut().reset(deadline.into());
                }
            }
        }
        let _ = self.pc.close();
        self.flush();
    }

    /// Everything the connection wants on the wire (a full socket buffer drops it, as
    /// any UDP sender would).
    fn flush(&mut self) {
        while let Some(msg) = self.pc.poll_write() {
            let _ = self.ice.try_send_to(&msg.message, msg.transport.peer_addr);
        }
    }

    /// Connection state changes to the session; true once the connection failed.
    fn drain_events(&mut self) -> bool {
        let mut failed = false;
        while let Some(ev) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = ev {
                let ev = match state {
                    RTCPeerConnectionState::Connected => PeerEvent::Connected,
                    RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Disconnected
                    | RTCPeerConnectionState::Closed => {
                        failed = true;
                        PeerEvent::Failed
                    }
                    _ => continue,
                };
                let _ = self.events.try_send(ev);
            }
        }
        failed
    }

    /// Browser → engine: the call's Opus, with the engine's payload type, to the agent leg.
    fn drain_reads(&mut self) {
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            let RTCMessage::RtpPacket(_, p) = message else {
                continue; // RTCP: the interceptors already took what they need
            };
            // (Padding-only packets are the browser probing bandwidth: no audio.)
            let Some((engine, pt)) = self.target.filter(|_| !self.hold) else {
                continue;
            };
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
            let sent = match self.local.deliver(self.local_rtp, engine, data) {
                Ok(delivered) => delivered,
                Err(data) => self.rtp.try_send_to(&data, engine).is_ok(),
            };
            if sent {
                self.to_engine.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Engine → browser: the agent leg's Opus, re-stamped onto the session's one stream.
    fn relay_to_browser(&mut self, from: SocketAddr, data: &[u8]) {
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
            payload: bytes::Bytes::copy_from_slice(r.payload()),
        };
        let Some(mut sender) = self.pc.rtp_sender(self.sender) else {
            return;
        };
        if sender.write_rtp(Instant::now(), packet).is_ok() {
            self.to_browser.fetch_add(1, Ordering::Relaxed);
        }
        self.flush();
    }
}
