//! SDP (RFC 8866) parsing and generation, and the offer/answer choice (RFC 3264) for the
//! audio stream: the first offered codec we support wins; telephone-event rides along.

use super::srtp::{Crypto, SrtpKeys};
use std::fmt::Write as _;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The answer's direction for an offered one (RFC 3264 6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
    /// Opus at 48 kHz (RFC 7587: always `opus/48000/2` in SDP).
    Opus,
}

impl Codec {
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => 48000,
        }
    }

    fn rtpmap(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU/8000",
            Codec::Pcma => "PCMA/8000",
            Codec::Opus => "opus/48000/2",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    pub pt: u8,
    pub name: String,
    pub rate: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDesc {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<u8>,
    pub rtpmaps: Vec<Rtpmap>,
    pub direction: Direction,
    pub connection: Option<IpAddr>,
    /// The `a=crypto` lines we can use (RFC 4568), in the offerer's order.
    pub crypto: Vec<Crypto>,
    /// How many `a=crypto` lines there were, usable or not.
    pub crypto_lines: usize,
    /// `a=fmtp` lines: payload type and parameters (at most 512 bytes each).
    pub fmtps: Vec<(u8, String)>,
    /// `b=AS` (kbit/s), or `b=TIAS` (bit/s) in kbit/s.
    pub bandwidth_kbps: Option<u32>,
    /// `a=rtcp-fb` lines (RFC 4585 4.2): the payload type (None: `*`) and the feedback,
    /// lower case; at most 32 kept.
    pub rtcp_fb: Vec<(Option<u8>, String)>,
}

impl MediaDesc {
    /// `RTP/SAVP` (or `RTP/SAVPF`): SRTP or nothing.
    pub fn is_savp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/SAVP") || self.proto.eq_ignore_ascii_case("RTP/SAVPF")
    }

    /// The encoding a payload type stands for: rtpmap first, then the static table.
    pub fn encoding(&self, pt: u8) -> Option<(String, u32)> {
        if let Some(m) = self.rtpmaps.iter().find(|m| m.pt == pt) {
            return Some((m.name.to_ascii_lowercase(), m.rate));
        }
        match pt {
            0 => Some(("pcmu".into(), 8000)),
            8 => Some(("pcma".into(), 8000)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub origin_session: String,
    pub connection: Option<IpAddr>,
    pub media: Vec<MediaDesc>,
    pub session_direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP line {0}: {1}")]
    Syntax(usize, &'static str),
    #[error("no audio stream")]
    NoAudio,
    /// 488 Not Acceptable Here.
    #[error("no codec in common")]
    NoCommonCodec,
    #[error("no connection address for the audio stream")]
    NoConnection,
}

fn direction_of(attr: &str) -> Option<Direction> {
    match attr {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

impl Sdp {
    pub fn parse(text: &str) -> Result<Sdp, SdpError> {
        let mut sdp = Sdp {
            origin_session: String::new(),
            connection: None,
            media: Vec::new(),
            session_direction: Direction::SendRecv,
        };
        let mut seen_v = false;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or(SdpError::Syntax(n, "expected <type>=<value>"))?;
            match key {
                "v" => {
                    if value != "0" {
                        return Err(SdpError::Syntax(n, "version must be 0"));
                    }
                    seen_v = true;
                }
                "o" => {
                    sdp.origin_session = value.split_whitespace().nth(1).unwrap_or("").to_string()
                }
                "c" => {
                    let addr = value
                        .split_whitespace()
                        .nth(2)
                        .and_then(|a| a.split('/').next())
                        .and_then(|a| a.parse().ok())
                        .ok_or(SdpError::Syntax(n, "bad connection address"))?;
                    match sdp.media.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => sdp.connection = Some(addr),
                    }
                }
                "m" => {
                    let mut it = value.split_whitespace();
                    let kind = it
                        .next()
                        .ok_or(SdpError::Syntax(n, "bad m= line"))?
                        .to_string();
                    let port = it
                        .next()
                        .and_then(|p| p.split('/').next())
                        .and_then(|p| p.parse().ok())
                        .ok_or(SdpError::Syntax(n, "bad port"))?;
                    let proto = it
                        .next()
                        .ok_or(SdpError::Syntax(n, "bad m= line"))?
                        .to_string();
                    let formats = it.filter_map(|f| f.parse().ok()).collect();
                    sdp.media.push(MediaDesc {
                        kind,
                        port,
                        proto,
                        formats,
                        rtpmaps: Vec::new(),
                        direction: sdp.session_direction,
                        connection: None,
                        crypto: Vec::new(),
                        crypto_lines: 0,
                        fmtps: Vec::new(),
                        bandwidth_kbps: None,
                        rtcp_fb: Vec::new(),
                    });
                }
                "b" => {
                    // An absurd figure is a figure: it is capped where it is used.
                    let (kind, v) = value.split_once(':').unwrap_or((value, ""));
                    let v: Option<u64> = v.trim().parse().ok();
                    let kbps = match kind {
                        "AS" => v,
                        "TIAS" => v.map(|b| b / 1000),
                        _ => None,
                    };
                    if let (Some(m), Some(k)) = (sdp.media.last_mut(), kbps) {
                        m.bandwidth_kbps = Some(k.min(u64::from(u32::MAX)) as u32);
                    }
                }
                "a" => {
                    let (name, val) = value.split_once(':').unwrap_or((value, ""));
                    if let Some(d) = direction_of(name) {
                        match sdp.media.last_mut() {
                            Some(m) => m.direction = d,
                            None => sdp.session_direction = d,
                        }
                    } else if name == "crypto" {
                        if let Some(m) = sdp.media.last_mut() {
                            m.crypto_lines += 1;
                            m.crypto.extend(Crypto::parse(val));
                        }
                    } else if name == "rtcp-fb" {
                        if let (Some(m), Some((pt, fb))) =
                            (sdp.media.last_mut(), val.split_once(' '))
                        {
                            let pt = if pt == "*" {
                                Some(None)
                            } else {
                                pt.parse().ok().map(Some)
                            };
                            if let (Some(pt), true) = (pt, m.rtcp_fb.len() < 32 && fb.len() <= 64) {
                                m.rtcp_fb.push((pt, fb.trim().to_ascii_lowercase()));
                            }
                        }
                    } else if name == "fmtp" {
                        if let (Some(m), Some((pt, params))) =
                            (sdp.media.last_mut(), val.split_once(' '))
                        {
                            if let (Ok(pt), true) = (pt.parse(), params.len() <= 512) {
                                m.fmtps.push((pt, params.trim().to_string()));
                            }
                        }
                    } else if name == "rtpmap" {
                        let m = sdp
                            .media
                            .last_mut()
                            .ok_or(SdpError::Syntax(n, "rtpmap outside media"))?;
                        let (pt, enc) = val
                            .split_once(' ')
                            .ok_or(SdpError::Syntax(n, "bad rtpmap"))?;
                        let mut e = enc.split('/');
                        let name = e.next().unwrap_or("").to_string();
                        let rate = e.next().and_then(|r| r.parse().ok()).unwrap_or(0);
                        let pt = pt
                            .parse()
                            .map_err(|_| SdpError::Syntax(n, "bad rtpmap payload type"))?;
                        m.rtpmaps.push(Rtpmap { pt, name, rate });
                    }
                }
                _ => {}
            }
        }
        if !seen_v {
            return Err(SdpError::Syntax(1, "missing v=0"));
        }
        Ok(sdp)
    }

    pub fn audio(&self) -> Option<&MediaDesc> {
        self.media.iter().find(|m| m.kind == "audio" && m.port != 0)
    }

    /// Where the peer wants audio sent.
    pub fn audio_target(&self) -> Option<(IpAddr, u16)> {
        let a = self.audio()?;
        Some((a.connection.or(self.connection)?, a.port))
    }
}

/// What both sides agreed on for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub pt: u8,
    /// telephone-event payload type and clock rate, if offered.
    pub dtmf: Option<(u8, u32)>,
    pub direction: Direction,
    pub remote: (IpAddr, u16),
    /// The stream was `RTP/SAVP`: it must be answered (or was answered) with SRTP.
    pub savp: bool,
    /// The peer's first usable `a=crypto` line.
    pub crypto: Option<Crypto>,
    /// The keys the leg runs with, once the engine chose SRTP for it.
    pub srtp: Option<SrtpKeys>,
}

/// Picks the first offered codec we support, in the offerer's order (RFC 3264 6.1).
pub fn negotiate(offer: &Sdp, supported: &[Codec]) -> Result<Negotiated, SdpError> {
    let audio = offer.audio().ok_or(SdpError::NoAudio)?;
    let remote = offer.audio_target().ok_or(SdpError::NoConnection)?;
    let mut choice = None;
    let mut dtmf = None;
    for &pt in &audio.formats {
        let Some((name, rate)) = audio.encoding(pt) else {
            continue;
        };
        let codec = match name.as_str() {
            "pcmu" => Some(Codec::Pcmu),
            "pcma" => Some(Codec::Pcma),
            "opus" if rate == 48000 => Some(Codec::Opus),
            "telephone-event" => {
                if dtmf.is_none() && (rate == 8000 || rate == 48000) {
                    dtmf = Some((pt, rate));
                }
                None
            }
            _ => None,
        };
        if let Some(c) = codec.filter(|c| supported.contains(c)) {
            if choice.is_none() {
                choice = Some((c, pt));
            }
        }
    }
    let (codec, pt) = choice.ok_or(SdpError::NoCommonCodec)?;
    // telephone-event must share the chosen codec's clock (RFC 4733 2.1).
    let dtmf = dtmf.filter(|&(_, r)| r == codec.clock_rate());
    Ok(Negotiated {
        codec,
        pt,
        dtmf,
        direction: audio.direction.answer(),
        remote,
        savp: audio.is_savp(),
        crypto: audio.crypto.first().cloned(),
        srtp: None,
    })
}

/// Our SDP (offer or answer) for one audio stream.
pub fn build(
    session_id: u64,
    version: u64,
    addr: IpAddr,
    port: u16,
    codecs: &[(Codec, u8)],
    dtmf: Option<(u8, u32)>,
    direction: Direction,
) -> String {
    build_secure(
        session_id,
        version,
        addr,
        port,
        codecs,
        dtmf,
        direction,
        false,
        &[],
    )
}

/// [`build`] with SDES: `savp` for `RTP/SAVP` (else `RTP/AVP`, best-effort SRTP when
/// `crypto` is not empty) and our `a=crypto` lines.
#[allow(clippy::too_many_arguments)]
pub fn build_secure(
    session_id: u64,
    version: u64,
    addr: IpAddr,
    port: u16,
    codecs: &[(Codec, u8)],
    dtmf: Option<(u8, u32)>,
    direction: Direction,
    savp: bool,
    crypto: &[Crypto],
) -> String {
    let ip = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut fmts: Vec<String> = codecs.iter().map(|(_, pt)| pt.to_string()).collect();
    if let Some((pt, _)) = dtmf {
        fmts.push(pt.to_string());
    }
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "v=0\r\no=dasan {session_id} {version} IN {ip} {addr}\r\ns=dasan\r\nc=IN {ip} {addr}\r\nt=0 0\r\nm=audio {port} {} {}\r\n",
        if savp { "RTP/SAVP" } else { "RTP/AVP" },
        fmts.join(" ")
    );
    for c in crypto {
        let _ = write!(s, "a={}\r\n", c.attr());
    }
    for (c, pt) in codecs {
        let _ = write!(s, "a=rtpmap:{pt} {}\r\n", c.rtpmap());
        if *c == Codec::Opus {
            let _ = write!(s, "a=fmtp:{pt} useinbandfec=1\r\n");
        }
    }
    if let Some((pt, rate)) = dtmf {
        let _ = write!(
            s,
            "a=rtpmap:{pt} telephone-event/{rate}\r\na=fmtp:{pt} 0-16\r\n"
        );
    }
    let _ = write!(s, "a=ptime:20\r\na={}\r\n", direction.attr());
    s
}

/// The video codecs relayed without transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// Constrained Baseline (profile-level-id 42xxxx), packetization-mode 1.
    H264,
    Vp8,
}

impl VideoCodec {
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "H264",
            VideoCodec::Vp8 => "VP8",
        }
    }
}

/// The video stream one side offered or answered, as far as the relay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoNeg {
    pub codec: VideoCodec,
    pub pt: u8,
    /// The codec's `a=fmtp` parameters, passed on as they came.
    pub fmtp: Option<String>,
    pub remote: (IpAddr, u16),
    pub direction: Direction,
    pub kbps: Option<u32>,
    /// How the peer takes keyframe requests, from its `a=rtcp-fb` lines.
    pub keyframe: KeyframeBy,
}

/// How to ask a peer for a keyframe: an RTCP PLI where it declared `nack pli`, else a FIR
/// where it declared `ccm fir`, else SIP INFO `picture_fast_update` (RFC 5168), the way
/// of video phones that declare no RTCP feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyframeBy {
    #[default]
    Pli,
    Fir,
    SipInfo,
}

impl KeyframeBy {
    fn of(m: &MediaDesc, pt: u8) -> KeyframeBy {
        let has = |fb: &str| {
            m.rtcp_fb
                .iter()
                .any(|(p, f)| p.is_none_or(|p| p == pt) && f == fb)
        };
        if has("nack pli") {
            KeyframeBy::Pli
        } else if has("ccm fir") {
            KeyframeBy::Fir
        } else {
            KeyframeBy::SipInfo
        }
    }
}

/// Whether an H.264 fmtp describes what the relay passes through: packetization mode 1
/// or 0 (the relay does not look into the payload; the agent is offered the same fmtp,
/// so both ends packetize alike), not the interleaved mode 2; and a Constrained Baseline
/// (or Baseline) profile-level-id of six hex digits, or none (RFC 6184 8.1: absent means
/// 420010, Baseline).
fn h264_fmtp_ok(fmtp: &str) -> bool {
    let mut mode_ok = true;
    let mut profile_ok = true;
    for p in fmtp.split(';').map(str::trim) {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "packetization-mode" => mode_ok = matches!(v.trim(), "0" | "1"),
            "profile-level-id" => {
                let v = v.trim();
                profile_ok = v.len() == 6
                    && v.bytes().all(|b| b.is_ascii_hexdigit())
                    && v[..2].eq_ignore_ascii_case("42");
            }
            _ => {}
        }
    }
    mode_ok && profile_ok
}

/// The first offered video stream (port not 0, plain RTP) and its first codec the relay
/// passes through, in the offerer's order. None: no such stream or codec (the call is
/// audio only).
pub fn negotiate_video(offer: &Sdp) -> Option<VideoNeg> {
    let m = offer
        .media
        .iter()
        .find(|m| m.kind == "video" && m.port != 0)?;
    if m.is_savp() || !m.proto.to_ascii_uppercase().starts_with("RTP/AVP") {
        return None;
    }
    let ip = m.connection.or(offer.connection)?;
    m.formats.iter().find_map(|&pt| {
        let (name, rate) = m.encoding(pt)?;
        let fmtp = m
            .fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, f)| f.clone());
        let codec = match (name.as_str(), rate) {
            ("vp8", 90000) => VideoCodec::Vp8,
            ("h264", 90000) if fmtp.as_deref().is_some_and(h264_fmtp_ok) => VideoCodec::H264,
            _ => return None,
        };
        Some(VideoNeg {
            codec,
            pt,
            fmtp,
            remote: (ip, m.port),
            direction: m.direction,
            kbps: m.bandwidth_kbps,
            keyframe: KeyframeBy::of(m, pt),
        })
    })
}

/// Our m=video section for `v`'s codec on `port`: the same payload type and fmtp, the
/// bandwidth capped at `max_kbps`, and the feedback the relay translates (PLI, FIR).
pub fn video_section(port: u16, v: &VideoNeg, max_kbps: u32, direction: Direction) -> String {
    let kbps = v.kbps.unwrap_or(max_kbps).min(max_kbps);
    let pt = v.pt;
    let mut s = format!(
        "m=video {port} RTP/AVP {pt}\r\nb=AS:{kbps}\r\nb=TIAS:{}\r\na=rtpmap:{pt} {}/90000\r\n",
        u64::from(kbps) * 1000,
        v.codec.name()
    );
    if let Some(f) = &v.fmtp {
        let _ = write!(s, "a=fmtp:{pt} {f}\r\n");
    }
    let _ = write!(
        s,
        "a=rtcp-fb:{pt} nack pli\r\na=rtcp-fb:{pt} ccm fir\r\na={}\r\n",
        direction.attr()
    );
    s
}

/// Our one-audio-stream answer (`answer`, as [`build_secure`] makes it) shaped to `offer`
/// (RFC 3264 6): one m-line per offered stream, in the offer's order; the audio stream we
/// negotiated where it was offered, and every other stream (video, a second audio, data)
/// rejected with port 0 and its first format. A video call to a voice-only queue thus
/// becomes an audio call rather than a failure.
pub fn answer_matching(offer: &Sdp, answer: &str) -> String {
    answer_streams(offer, answer, None)
}

/// [`answer_matching`], with `video` (a [`video_section`]) in place of the first offered
/// video stream instead of its refusal.
pub fn answer_streams(offer: &Sdp, answer: &str, video: Option<&str>) -> String {
    let Some(at) = answer.find("m=audio ") else {
        return answer.to_string();
    };
    let video_at = video.and(
        offer
            .media
            .iter()
            .position(|m| m.kind == "video" && m.port != 0),
    );
    let (session, audio) = answer.split_at(at);
    let chosen = offer
        .media
        .iter()
        .position(|m| m.kind == "audio" && m.port != 0);
    let mut out = String::with_capacity(answer.len() + 32 * offer.media.len());
    out.push_str(session);
    for (i, m) in offer.media.iter().enumerate() {
        if Some(i) == chosen {
            out.push_str(audio);
        } else if let (true, Some(v)) = (Some(i) == video_at, video) {
            out.push_str(v);
        } else {
            let fmt = m.formats.first().map_or("0".to_string(), |f| f.to_string());
            let _ = write!(out, "m={} 0 {} {fmt}\r\n", m.kind, m.proto);
        }
    }
    if chosen.is_none() {
        out.push_str(audio);
    }
    out
}

impl Negotiated {
    /// A sendrecv stream with telephone-event at 101, for tests and benchmarks.
    pub fn simple(codec: Codec, pt: u8, remote: std::net::SocketAddr) -> Negotiated {
        Negotiated {
            codec,
            pt,
            dtmf: Some((101, codec.clock_rate())),
            direction: Direction::SendRecv,
            remote: (remote.ip(), remote.port()),
            savp: false,
            crypto: None,
            srtp: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11,16\r\n";

    #[test]
    fn match_in_offer_order_with_dtmf() {
        let sdp = Sdp::parse(SIPP).unwrap();
        let n = negotiate(&sdp, &[Codec::Pcmu, Codec::Pcma, Codec::Opus]).unwrap();
        assert_eq!((n.codec, n.pt, n.dtmf), (Codec::Pcma, 8, Some((101, 8000))));
        assert_eq!(n.remote, ("127.0.0.1".parse().unwrap(), 6000));
        assert_eq!(n.direction, Direction::SendRecv);
    }

    #[test]
    fn opus_only_offer_and_static_payload_without_rtpmap() {
        let opus = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 7000 RTP/AVP 111\r\nc=IN IP4 127.0.0.2\r\na=rtpmap:111 opus/48000/2\r\n";
        let n = negotiate(&Sdp::parse(opus).unwrap(), &[Codec::Pcmu, Codec::Opus]).unwrap();
        assert_eq!((n.codec, n.pt), (Codec::Opus, 111));
        assert_eq!(
            n.remote.0,
            "127.0.0.2".parse::<IpAddr>().unwrap(),
            "media-level c= wins"
        );
        let bare = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 7000 RTP/AVP 0\r\n";
        assert_eq!(
            negotiate(&Sdp::parse(bare).unwrap(), &[Codec::Pcmu])
                .unwrap()
                .codec,
            Codec::Pcmu
        );
    }

    #[test]
    fn no_common_codec_is_488() {
        let g729 =
            "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 7000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        assert_eq!(
            negotiate(
                &Sdp::parse(g729).unwrap(),
                &[Codec::Pcmu, Codec::Pcma, Codec::Opus]
            ),
            Err(SdpError::NoCommonCodec)
        );
        let video = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=video 7000 RTP/AVP 96\r\n";
        assert_eq!(
            negotiate(&Sdp::parse(video).unwrap(), &[Codec::Pcmu]),
            Err(SdpError::NoAudio)
        );
    }

    #[test]
    fn an_answer_has_a_line_for_every_offered_stream() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                     m=video 9000 RTP/AVP 96 97\r\na=rtpmap:96 H264/90000\r\na=rtpmap:97 VP8/90000\r\n\
                     m=audio 8000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
                     m=application 5000 UDP/BFCP *\r\n";
        let offer = Sdp::parse(offer).unwrap();
        let ours = build(
            7,
            1,
            "192.0.2.1".parse().unwrap(),
            40000,
            &[(Codec::Pcmu, 0)],
            Some((101, 8000)),
            Direction::SendRecv,
        );
        let answer = answer_matching(&offer, &ours);
        let parsed = Sdp::parse(&answer).unwrap();
        let lines: Vec<(&str, u16)> = parsed
            .media
            .iter()
            .map(|m| (m.kind.as_str(), m.port))
            .collect();
        assert_eq!(
            lines,
            [("video", 0), ("audio", 40000), ("application", 0)],
            "{answer}"
        );
        assert!(answer.contains("m=video 0 RTP/AVP 96\r\n"), "{answer}");
        assert_eq!(
            parsed.audio_target(),
            Some(("192.0.2.1".parse().unwrap(), 40000))
        );
        // An audio-only offer is answered as before.
        let plain = Sdp::parse("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 8000 RTP/AVP 0\r\n").unwrap();
        assert_eq!(answer_matching(&plain, &ours), ours);
    }

    #[test]
    fn video_is_negotiated_by_codec_and_fmtp_in_the_offerers_order() {
        let offer = |fmtp: &str| {
            Sdp::parse(&format!(
                "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 8000 RTP/AVP 0\r\n\
                 m=video 9000 RTP/AVP 100 96 97\r\nb=AS:99999999999\r\n\
                 a=rtpmap:100 H265/90000\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 {fmtp}\r\n\
                 a=rtpmap:97 VP8/90000\r\n"
            ))
            .unwrap()
        };
        let baseline = negotiate_video(&offer("packetization-mode=1")).unwrap();
        assert_eq!(
            baseline.codec,
            VideoCodec::H264,
            "no profile-level-id: Baseline"
        );
        let v = negotiate_video(&offer("profile-level-id=42e01f;packetization-mode=1")).unwrap();
        assert_eq!((v.codec, v.pt), (VideoCodec::H264, 96), "H.265 skipped");
        assert_eq!(v.remote, ("10.0.0.1".parse().unwrap(), 9000));
        assert_eq!(v.kbps, Some(u32::MAX), "absurd b=AS capped to a number");
        // Mode 0 (baresip's first H.264) passes through as well.
        let m0 = negotiate_video(&offer("packetization-mode=0;profile-level-id=42e01f")).unwrap();
        assert_eq!(m0.codec, VideoCodec::H264);
        // Interleaved mode 2, a High profile or a malformed profile: VP8 instead.
        for bad in [
            "profile-level-id=42e01f;packetization-mode=2",
            "profile-level-id=640028;packetization-mode=1",
            "profile-level-id=zz;packetization-mode=1",
        ] {
            let v = negotiate_video(&offer(bad)).unwrap();
            assert_eq!((v.codec, v.pt), (VideoCodec::Vp8, 97), "{bad}");
        }
        let sec = video_section(41000, &v, 1500, Direction::SendRecv);
        assert!(
            sec.starts_with("m=video 41000 RTP/AVP 96\r\nb=AS:1500\r\n"),
            "{sec}"
        );
        assert!(sec.contains("a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n"));
        assert!(sec.contains("a=rtcp-fb:96 nack pli\r\n"));
        // What a peer declares decides how it is asked for keyframes.
        let with_fb = |fb: &str| {
            let sdp = format!("v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5000 RTP/AVP 97\r\na=rtpmap:97 VP8/90000\r\n{fb}");
            negotiate_video(&Sdp::parse(&sdp).unwrap())
                .unwrap()
                .keyframe
        };
        assert_eq!(with_fb("a=rtcp-fb:* nack pli\r\n"), KeyframeBy::Pli);
        assert_eq!(
            with_fb("a=rtcp-fb:97 ccm fir\r\na=rtcp-fb:97 nack\r\n"),
            KeyframeBy::Fir
        );
        assert_eq!(
            with_fb("a=rtcp-fb:96 nack pli\r\n"),
            KeyframeBy::SipInfo,
            "another type's"
        );
        assert_eq!(with_fb(""), KeyframeBy::SipInfo);
        assert_eq!(
            with_fb("a=rtcp-fb:zz nack pli\r\na=rtcp-fb:97\r\n"),
            KeyframeBy::SipInfo
        );
        // Unknown codecs only, SRTP video, or none: no video.
        let unknown = Sdp::parse(
            "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 9000 RTP/AVP 100\r\na=rtpmap:100 H265/90000\r\n",
        )
        .unwrap();
        assert!(negotiate_video(&unknown).is_none());
        let savp = Sdp::parse(
            "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 9000 RTP/SAVP 97\r\na=rtpmap:97 VP8/90000\r\n",
        )
        .unwrap();
        assert!(negotiate_video(&savp).is_none());
        // The answer carries our video section where the offer had video.
        let ours = build(
            7,
            1,
            "192.0.2.1".parse().unwrap(),
            40000,
            &[(Codec::Pcmu, 0)],
            None,
            Direction::SendRecv,
        );
        let o = offer("x");
        let answer = answer_streams(&o, &ours, Some(&sec));
        let parsed = Sdp::parse(&answer).unwrap();
        let kinds: Vec<(&str, u16)> = parsed
            .media
            .iter()
            .map(|m| (m.kind.as_str(), m.port))
            .collect();
        assert_eq!(kinds, [("audio", 40000), ("video", 41000)]);
        assert_eq!(negotiate_video(&parsed).unwrap().kbps, Some(1500));
    }

    #[test]
    fn hold_directions() {
        for (attr, want) in [
            ("sendonly", Direction::RecvOnly),
            ("inactive", Direction::Inactive),
            ("recvonly", Direction::SendOnly),
        ] {
            let s = format!("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 7000 RTP/AVP 0\r\na={attr}\r\n");
            assert_eq!(
                negotiate(&Sdp::parse(&s).unwrap(), &[Codec::Pcmu])
                    .unwrap()
                    .direction,
                want
            );
        }
        let session_level = "v=0\r\nc=IN IP4 127.0.0.1\r\na=sendonly\r\nm=audio 7000 RTP/AVP 0\r\n";
        assert_eq!(
            negotiate(&Sdp::parse(session_level).unwrap(), &[Codec::Pcmu])
                .unwrap()
                .direction,
            Direction::RecvOnly
        );
    }

    #[test]
    fn build_parses_back() {
        let s = build(
            7,
            1,
            "127.0.0.1".parse().unwrap(),
            20000,
            &[(Codec::Pcmu, 0), (Codec::Opus, 111)],
            Some((101, 8000)),
            Direction::SendRecv,
        );
        let p = Sdp::parse(&s).unwrap();
        let a = p.audio().unwrap();
        assert_eq!(a.formats, vec![0, 111, 101]);
        assert_eq!(
            p.audio_target(),
            Some(("127.0.0.1".parse().unwrap(), 20000))
        );
        assert_eq!(a.encoding(111), Some(("opus".into(), 48000)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Sdp::parse("hello").is_err());
        assert!(Sdp::parse("v=1\r\n").is_err());
        assert!(Sdp::parse("v=0\r\nm=audio x RTP/AVP 0\r\n").is_err());
        assert!(Sdp::parse("v=0\r\na=rtpmap:0 PCMU/8000\r\n").is_err());
        assert_eq!(
            negotiate(
                &Sdp::parse("v=0\r\nm=audio 7000 RTP/AVP 0\r\n").unwrap(),
                &[Codec::Pcmu]
            ),
            Err(SdpError::NoConnection)
        );
    }
}
