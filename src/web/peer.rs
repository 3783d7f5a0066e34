//! A browser agent's media leg, sans-IO: the WebRTC peer connection (webrtc-rs's sans-IO
//! core, `rtc`: ICE, DTLS-SRTP, Opus) and the relay between it and the engine's media plane.
//! Datagrams from the browser, RTP from the engine and the time go in; datagrams for the
//! browser, RTP for the engine, state changes and the next deadline come out. The tokio side
//! is [`super::bridge`].
//!
//! The browser sees one outgoing stream for the whole session: one SSRC, continuous sequence
//! numbers and timestamps across calls, so its jitter buffer never sees a new stream; each
//! call's timestamps are offset from the engine's at its first packet.

use bytes::{Bytes, BytesMut};
use rtc::interceptor::{ReceiverReportBuilder, Registry, SenderReportBuilder, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_OPUS};
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
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
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
    failed: bool,
    events: VecDeque<PeerEvent>,
    /// Packets relayed browser → engine and engine → browser.
    pub to_engine: u64,
    pub to_browser: u64,
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
        Self::answer_advertised(now, offer_sdp, ice, local_rtp, None)
    }

    /// As [`BrowserPeer::answer`]; behind 1:1 NAT `advertise` is the public address in
    /// front of `ice`'s: offered as a server-reflexive candidate at `ice`'s port (its base
    /// is `ice`, so the connection still runs over that socket), beside the host one for
    /// browsers on the engine's own network.
    pub fn answer_advertised(
        now: Instant,
        offer_sdp: String,
        ice: SocketAddr,
        local_rtp: SocketAddr,
        advertise: Option<IpAddr>,
    ) -> Result<(BrowserPeer, String), PeerError> {
        let ssrc = rand::random::<u32>();
        let (mut pc, sender) = peer(now, ssrc)?;
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

    /// A call is connected (relay to the engine's `addr` with its Opus `pt`), or None
    /// between calls. Either way the call is no longer on hold.
    pub fn set_target(&mut self, target: Option<(SocketAddr, u8)>) {
        self.target = target;
        self.offset = None;
        self.hold = false;
    }

    /// On hold nothing is relayed either way.
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
            let RTCMessage::RtpPacket(_, p) = message else {
                continue; // RTCP: the report interceptors already took what they need
            };
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
/// control and simulcast are for video. No mDNS: it needs a multicast-capable interface (absent where only loopback
/// exists) and a server's candidates are plain addresses anyway. Also the browser side of
/// the tests and the bench.
pub fn opus_peer_connection(now: Instant) -> Result<RTCPeerConnection, PeerError> {
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    RTCPeerConnectionBuilder::new()
        .with_media_engine(opus_media_engine()?)
        .with_setting_engine(settings)
        .with_interceptor_registry(rtcp_reports())
        .build(now)
        .map_err(at("peer connection"))
}

/// How often each leg sends its sender and receiver reports: RFC 3550's 5 s, as the trunk
/// legs do (`media::session`) and as browsers do for audio, rather than webrtc-rs's default
/// of every second, which for an engine of hundreds of idle and talking browser legs was a
/// timer and an SRTCP packet per leg per second for nothing a call needs.
pub const RTCP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

fn rtcp_reports() -> Registry {
    Registry::new()
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

fn peer(now: Instant, ssrc: u32) -> Result<(RTCPeerConnection, RTCRtpSenderId), PeerError> {
    let mut pc = opus_peer_connection(now)?;
    let sender = pc
        .add_track(opus_track(ssrc, "caller"))
        .map_err(at("track"))?;
    Ok((pc, sender))
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
        let now = Instant::now();
        let addr: SocketAddr = ([127, 0, 0, 1], 9).into();
        let mut pc = opus_peer_connection(now)?;
        let mic_ssrc = rand::random();
        let mic = pc
            .add_track(opus_track(mic_ssrc, "mic"))
            .map_err(at("track"))?;
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
        let (mut engine, answer) =
            BrowserPeer::answer_advertised(now, offer_sdp, engine_ice, engine_rtp, advertise)?;
        let answer = RTCSessionDescription::answer(answer).map_err(at("answer"))?;
        pc.set_remote_description(now, answer)
            .map_err(at("answer"))?;
        let mut b = Browser {
            pc,
            mic,
            mic_ssrc,
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
