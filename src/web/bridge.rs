//! The browser's media: one WebRTC peer connection per logged-in browser agent (ICE,
//! DTLS-SRTP, Opus, by the `webrtc` crate), kept up for the whole session, and a plain RTP
//! socket towards the engine's media plane. While a call is connected, Opus packets are
//! relayed both ways between the two; the engine transcodes to the trunk's G.711 with the
//! media layer's transcoder, so there is one transcoder in the process.
//!
//! Why one connection per session and not per call: ICE and the DTLS handshake take a few
//! hundred milliseconds; done at login, the time from the agent's answer click to audio is
//! only SIP on loopback and the engine attaching the leg.

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_OPUS};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::shared::marshal::{Marshal, Unmarshal};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState,
};

/// The browser's Opus payload type in our answer.
const OPUS_PT: u8 = 111;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    Connected,
    /// ICE failed or the peer went away: the session treats it as the browser dropping.
    Failed,
}

/// Where the current call's audio goes (the engine's RTP address for the agent leg and the
/// payload type it offered), or None between calls.
#[derive(Default)]
struct Target {
    engine: Option<(SocketAddr, u8)>,
}

pub struct Bridge {
    pc: Arc<dyn PeerConnection>,
    socket: Arc<UdpSocket>,
    target: Arc<Mutex<Target>>,
    /// On hold: nothing is relayed either way.
    pub hold: Arc<AtomicBool>,
    /// Packets relayed browser → engine and engine → browser (for the tests and stats).
    pub to_engine: Arc<AtomicU64>,
    pub to_browser: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Handler {
    events: mpsc::Sender<PeerEvent>,
    gathered: mpsc::Sender<()>,
    socket: Arc<UdpSocket>,
    target: Arc<Mutex<Target>>,
    hold: Arc<AtomicBool>,
    to_engine: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let ev = match state {
            RTCPeerConnectionState::Connected => PeerEvent::Connected,
            RTCPeerConnectionState::Failed
            | RTCPeerConnectionState::Disconnected
            | RTCPeerConnectionState::Closed => PeerEvent::Failed,
            _ => return,
        };
        let _ = self.events.try_send(ev);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let socket = self.socket.clone();
        let target = self.target.clone();
        let hold = self.hold.clone();
        let counter = self.to_engine.clone();
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                match ev {
                    // (Padding-only packets are the browser probing bandwidth: no audio.)
                    TrackRemoteEvent::OnRtpPacket(p) if p.payload.is_empty() => {}
                    TrackRemoteEvent::OnRtpPacket(mut p) => {
                        let dest = target.lock().ok().and_then(|t| t.engine);
                        let Some((addr, pt)) = dest.filter(|_| !hold.load(Ordering::Relaxed))
                        else {
                            continue;
                        };
                        p.header.payload_type = pt;
                        p.header.extension = false;
                        p.header.extensions.clear();
                        if let Ok(bytes) = p.marshal() {
                            if socket.send_to(&bytes, addr).await.is_ok() {
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

impl Bridge {
    /// Answers the browser's offer. `ip` is the address ICE and the engine-side RTP socket
    /// bind (the engine's media address). Returns the bridge, the SDP answer (ICE gathered,
    /// no trickle) and the peer's state changes.
    pub async fn answer(
        ip: IpAddr,
        offer_sdp: String,
    ) -> Result<(Bridge, String, mpsc::Receiver<PeerEvent>), String> {
        let socket = Arc::new(
            UdpSocket::bind(SocketAddr::new(ip, 0))
                .await
                .map_err(|e| format!("RTP socket: {e}"))?,
        );
        let (events_tx, events) = mpsc::channel(8);
        let (gathered_tx, mut gathered) = mpsc::channel(1);
        let target = Arc::new(Mutex::new(Target::default()));
        let hold = Arc::new(AtomicBool::new(false));
        let to_engine = Arc::new(AtomicU64::new(0));
        let handler = Arc::new(Handler {
            events: events_tx,
            gathered: gathered_tx,
            socket: socket.clone(),
            target: target.clone(),
            hold: hold.clone(),
            to_engine: to_engine.clone(),
        });
        let pc = opus_peer(handler, ip).await?;
        let ssrc = rand::random::<u32>();
        let track = opus_track(ssrc, "caller");
        pc.add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| format!("track: {e}"))?;
        let offer = rtc::peer_connection::sdp::RTCSessionDescription::offer(offer_sdp)
            .map_err(|e| format!("offer: {e}"))?;
        pc.set_remote_description(offer)
            .await
            .map_err(|e| format!("offer: {e}"))?;
        let answer = pc
            .create_answer(None)
            .await
            .map_err(|e| format!("answer: {e}"))?;
        pc.set_local_description(answer)
            .await
            .map_err(|e| format!("answer: {e}"))?;
        // Every candidate in the answer: the browser needs no trickle.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), gathered.recv()).await;
        let sdp = pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or("no local description")?;
        let to_browser = Arc::new(AtomicU64::new(0));
        let relay = tokio::spawn(engine_to_browser(
            socket.clone(),
            track,
            ssrc,
            target.clone(),
            hold.clone(),
            to_browser.clone(),
        ));
        Ok((
            Bridge {
                pc,
                socket,
                target,
                hold,
                to_engine,
                to_browser,
                tasks: vec![relay],
            },
            sdp,
            events,
        ))
    }

    /// Our RTP address towards the engine (the SDP of the agent leg's answer).
    pub fn local_rtp(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// A call is connected: relay to the engine's `addr` with its Opus `pt`; None stops.
    pub fn set_target(&self, target: Option<(SocketAddr, u8)>) {
        if let Ok(mut t) = self.target.lock() {
            t.engine = target;
        }
        self.hold.store(false, Ordering::Relaxed);
    }

    pub async fn close(self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.pc.close().await;
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

/// A peer connection speaking only Opus, with the default interceptors, ICE on `ip`. Also
/// the simulated browsers' stack in `webload`.
pub async fn opus_peer(
    handler: Arc<dyn PeerConnectionEventHandler>,
    ip: IpAddr,
) -> Result<Arc<dyn PeerConnection>, String> {
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
    let registry = webrtc::peer_connection::register_default_interceptors(
        webrtc::peer_connection::Registry::new(),
        &mut media,
    )
    .map_err(|e| format!("interceptors: {e}"))?;
    // No mDNS: it needs a multicast-capable interface (absent where only loopback exists)
    // and a server's candidates are plain addresses anyway.
    let settings = rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(handler)
        .with_udp_addrs(vec![SocketAddr::new(ip, 0)])
        .build()
        .await
        .map_err(|e| format!("peer connection: {e}"))?;
    Ok(Arc::new(pc))
}

/// One outgoing Opus stream with the given SSRC. `label` names it in the SDP's msid, so it
/// must be one token (no spaces: the browser would refuse the answer).
pub fn opus_track(ssrc: u32, label: &str) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
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
    )))
}

/// Engine → browser: Opus from the engine's RTP, re-stamped onto the session's one
/// outgoing stream (one SSRC, continuous sequence numbers and timestamps across calls, so
/// the browser's jitter buffer never sees a new stream).
async fn engine_to_browser(
    socket: Arc<UdpSocket>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    target: Arc<Mutex<Target>>,
    hold: Arc<AtomicBool>,
    counter: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 2048];
    let mut seq: u16 = rand::random();
    let mut last_ts: u32 = rand::random();
    // Offset from the engine's timestamps to ours, fixed at each call's first packet.
    let mut offset: Option<(u32, SocketAddr)> = None;
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let expected = target
            .lock()
            .ok()
            .and_then(|t| t.engine)
            .map(|(a, pt)| (a.ip(), pt));
        let Some((ip, pt)) = expected else {
            offset = None;
            continue;
        };
        if from.ip() != ip || n < 12 {
            continue;
        }
        let mut raw = &buf[..n];
        let Ok(mut p) = rtc::rtp::Packet::unmarshal(&mut raw) else {
            continue;
        };
        if p.header.payload_type != pt || hold.load(Ordering::Relaxed) {
            continue; // telephone-event, comfort noise; or on hold
        }
        let off = match offset {
            Some((o, src)) if src == from => o,
            _ => {
                let o = last_ts.wrapping_add(960).wrapping_sub(p.header.timestamp);
                offset = Some((o, from));
                o
            }
        };
        seq = seq.wrapping_add(1);
        p.header.sequence_number = seq;
        p.header.timestamp = p.header.timestamp.wrapping_add(off);
        last_ts = p.header.timestamp;
        p.header.ssrc = ssrc;
        p.header.payload_type = OPUS_PT;
        if track.write_rtp(p).await.is_ok() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}
