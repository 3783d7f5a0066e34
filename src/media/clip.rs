//! The picture a waiting video caller sees (sans-IO): a short clip, already encoded, looped
//! into the caller's video stream until an agent answers. It is sent in the codec the
//! caller negotiated, without transcoding, so a clip exists once per codec: VP8 as IVF,
//! H.264 as an Annex B stream (Constrained Baseline). Each starts with a keyframe, which is
//! where the loop restarts and where a keyframe request from the caller jumps to.
//!
//! The clips are packetized once at start (RFC 7741 for VP8, RFC 6184 for H.264), so a
//! waiting caller costs a header per packet. The shipped default is
//! `prompts/waiting-sign.{ivf,h264}` (scripts/make-waiting-clip.sh).

use super::rtp::build_rtp;
use super::sdp::VideoCodec;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest RTP payload we make; with headers a packet stays under a 1,280-byte path.
const MAX_PAYLOAD: usize = 1100;
const CLOCK: u32 = 90_000;

pub const DEFAULT_VP8: &[u8] = include_bytes!("../../prompts/waiting-sign.ivf");
pub const DEFAULT_H264: &[u8] = include_bytes!("../../prompts/waiting-sign.h264");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClipError {
    #[error("not an IVF file (no DKIF header)")]
    NotIvf,
    #[error("IVF codec is {0}, not VP80")]
    IvfCodec(String),
    #[error("frame {0} runs past the end of the file")]
    Truncated(usize),
    #[error("no frames")]
    Empty,
    #[error("the first frame is not a keyframe (the loop must restart on one)")]
    NoKeyframe,
    #[error("no Annex B start code: not an H.264 elementary stream")]
    NotAnnexB,
    #[error(
        "a NAL unit of {0} bytes: more than one packet holds, and packetization mode 0 cannot split it (encode with slices of at most {MAX_PAYLOAD} bytes)"
    )]
    NalTooLarge(usize),
}

/// A clip ready to send: per frame, its RTP payloads in order.
#[derive(Debug, Clone)]
pub struct Clip {
    frames: Vec<Vec<Vec<u8>>>,
}

impl Clip {
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// A VP8 clip from an IVF file.
    pub fn vp8(ivf: &[u8]) -> Result<Clip, ClipError> {
        let frames = ivf_frames(ivf)?;
        // VP8 frame tag (RFC 6386 9.1): bit 0 of the first byte is 0 for a keyframe.
        if frames
            .first()
            .is_none_or(|f| f.first().is_none_or(|b| b & 1 != 0))
        {
            return Err(ClipError::NoKeyframe);
        }
        let frames = frames
            .iter()
            .enumerate()
            .map(|(i, f)| packetize_vp8(f, i as u16))
            .collect();
        Ok(Clip { frames })
    }

    /// An H.264 clip from an Annex B stream; `mode1`: the caller takes packetization mode 1
    /// (FU-A for NAL units larger than a packet), else every NAL unit must fit one.
    pub fn h264(annexb: &[u8], mode1: bool) -> Result<Clip, ClipError> {
        let units = access_units(annexb)?;
        if !units
            .first()
            .is_some_and(|au| au.iter().any(|n| nal_type(n) == 5))
        {
            return Err(ClipError::NoKeyframe);
        }
        let mut frames = Vec::with_capacity(units.len());
        for au in &units {
            let mut packets = Vec::new();
            for nal in au {
                if nal.len() <= MAX_PAYLOAD {
                    packets.push(nal.to_vec());
                } else if mode1 {
                    packets.extend(fu_a(nal));
                } else {
                    return Err(ClipError::NalTooLarge(nal.len()));
                }
            }
            frames.push(packets);
        }
        Ok(Clip { frames })
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The frames of an IVF file (a 32-byte header, then a 12-byte header per frame).
fn ivf_frames(b: &[u8]) -> Result<Vec<&[u8]>, ClipError> {
    if b.len() < 32 || &b[..4] != b"DKIF" {
        return Err(ClipError::NotIvf);
    }
    if &b[8..12] != b"VP80" {
        return Err(ClipError::IvfCodec(
            String::from_utf8_lossy(&b[8..12]).into_owned(),
        ));
    }
    let header = u16::from_le_bytes([b[6], b[7]]) as usize;
    let mut at = header.max(32);
    let mut out = Vec::new();
    while at < b.len() {
        if at + 12 > b.len() {
            return Err(ClipError::Truncated(out.len()));
        }
        let len = le32(b, at) as usize;
        let start = at + 12;
        let end = start.checked_add(len).filter(|&e| e <= b.len());
        let Some(end) = end else {
            return Err(ClipError::Truncated(out.len()));
        };
        out.push(&b[start..end]);
        at = end;
    }
    if out.is_empty() {
        return Err(ClipError::Empty);
    }
    Ok(out)
}

/// A VP8 frame in packets (RFC 7741 4.2): the payload descriptor carries a 15-bit
/// PictureID, and S on the frame's first packet.
fn packetize_vp8(frame: &[u8], picture: u16) -> Vec<Vec<u8>> {
    let id = (picture & 0x7FFF) | 0x8000;
    let chunk = MAX_PAYLOAD - 4;
    let mut out = Vec::with_capacity(frame.len() / chunk + 1);
    for (i, part) in frame.chunks(chunk).enumerate() {
        let mut p = Vec::with_capacity(part.len() + 4);
        // X, S (first packet), partition 0; I (PictureID present), then M + the ID.
        p.push(if i == 0 { 0x90 } else { 0x80 });
        p.push(0x80);
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(part);
        out.push(p);
    }
    out
}

fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1F)
}

/// The NAL units of an Annex B stream, grouped by access unit (picture): a new one starts
/// at a parameter set, SEI or delimiter after a slice, or at a slice whose
/// first_mb_in_slice is 0 (its first header bit set, ue(v) of 0) after a slice.
fn access_units(b: &[u8]) -> Result<Vec<Vec<&[u8]>>, ClipError> {
    let mut nals = Vec::new();
    let mut i = 0;
    let mut start = None;
    while i + 3 <= b.len() {
        if b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1 {
            if let Some(s) = start {
                // A four-byte start code leaves its leading zero on the unit before.
                let mut end = i;
                while end > s && b[end - 1] == 0 {
                    end -= 1;
                }
                nals.push(&b[s..end]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    let Some(s) = start else {
        return Err(ClipError::NotAnnexB);
    };
    nals.push(&b[s..]);
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    let mut after_slice = false;
    for nal in nals.into_iter().filter(|n| !n.is_empty()) {
        let t = nal_type(nal);
        let slice = matches!(t, 1 | 5);
        let first_slice = slice && nal.get(1).is_some_and(|b| b & 0x80 != 0);
        let starts = units.is_empty() || (after_slice && (matches!(t, 6..=9) || first_slice));
        if starts {
            units.push(Vec::new());
        }
        if let Some(u) = units.last_mut() {
            u.push(nal);
        }
        after_slice = slice;
    }
    if units.is_empty() {
        return Err(ClipError::Empty);
    }
    Ok(units)
}

/// A NAL unit too large for one packet, in fragmentation units (RFC 6184 5.8).
fn fu_a(nal: &[u8]) -> Vec<Vec<u8>> {
    let (head, body) = (nal[0], &nal[1..]);
    let indicator = (head & 0xE0) | 28;
    let parts: Vec<&[u8]> = body.chunks(MAX_PAYLOAD - 2).collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let mut p = Vec::with_capacity(part.len() + 2);
            let se = if i == 0 { 0x80 } else { 0 } | if i == last { 0x40 } else { 0 };
            p.push(indicator);
            p.push(se | (head & 0x1F));
            p.extend_from_slice(part);
            p
        })
        .collect()
}

/// The clips for each codec and their frame rate, shared by every waiting caller.
#[derive(Debug, Clone)]
pub struct WaitingClips {
    pub vp8: Option<Arc<Clip>>,
    pub h264_mode1: Option<Arc<Clip>>,
    pub h264_mode0: Option<Arc<Clip>>,
    pub frame: Duration,
}

impl WaitingClips {
    /// From the encoded clips (each optional: a codec without one shows no picture).
    /// H.264 is prepared for both packetization modes; a stream with a NAL unit too large
    /// for mode 0 serves mode-1 callers only.
    pub fn new(
        vp8: Option<&[u8]>,
        h264: Option<&[u8]>,
        fps: u32,
    ) -> Result<WaitingClips, (&'static str, ClipError)> {
        let vp8 = vp8
            .map(Clip::vp8)
            .transpose()
            .map_err(|e| ("VP8", e))?
            .map(Arc::new);
        let h264_mode1 = h264
            .map(|b| Clip::h264(b, true))
            .transpose()
            .map_err(|e| ("H.264", e))?
            .map(Arc::new);
        let h264_mode0 = h264.and_then(|b| Clip::h264(b, false).ok()).map(Arc::new);
        Ok(WaitingClips {
            vp8,
            h264_mode1,
            h264_mode0,
            frame: Duration::from_micros(1_000_000 / u64::from(fps.clamp(1, 60))),
        })
    }

    /// The built-in clips at 10 frames a second.
    pub fn builtin() -> WaitingClips {
        // The shipped clips are checked by a unit test; should they ever fail to parse,
        // callers wait without a picture rather than the engine failing to start.
        WaitingClips::new(Some(DEFAULT_VP8), Some(DEFAULT_H264), 10).unwrap_or(WaitingClips {
            vp8: None,
            h264_mode1: None,
            h264_mode0: None,
            frame: Duration::from_millis(100),
        })
    }

    /// The clip for a negotiated codec (`fmtp`: the caller's H.264 parameters).
    pub fn for_codec(&self, codec: VideoCodec, fmtp: Option<&str>) -> Option<Arc<Clip>> {
        match codec {
            VideoCodec::Vp8 => self.vp8.clone(),
            VideoCodec::H264 => {
                let mode1 = fmtp.is_some_and(|f| {
                    f.split(';').any(|p| {
                        p.split_once('=').is_some_and(|(k, v)| {
                            k.trim().eq_ignore_ascii_case("packetization-mode") && v.trim() == "1"
                        })
                    })
                });
                if mode1 {
                    self.h264_mode1.clone()
                } else {
                    self.h264_mode0.clone()
                }
            }
        }
    }
}

/// One waiting caller's player: the clip in a loop, as RTP of its own source, which the
/// caller leg's rewrite turns into the call's continuous stream.
#[derive(Debug)]
pub struct Player {
    clip: Arc<Clip>,
    frame_len: Duration,
    next: usize,
    due: Instant,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

impl Player {
    pub fn new(clip: Arc<Clip>, frame_len: Duration, now: Instant, ssrc: u32) -> Player {
        Player {
            clip,
            frame_len,
            next: 0,
            due: now,
            seq: 0,
            ts: 0,
            ssrc,
        }
    }

    pub fn poll_timeout(&self) -> Instant {
        self.due
    }

    /// From the keyframe again (a keyframe request, or the picture shown anew).
    pub fn restart(&mut self, now: Instant) {
        self.next = 0;
        self.due = self.due.min(now);
    }

    /// The packets of the frame due by `now` (none before), with payload type `pt`. A
    /// player that fell behind skips ahead rather than sending a burst.
    pub fn poll(&mut self, now: Instant, pt: u8) -> Vec<Vec<u8>> {
        if now < self.due {
            return Vec::new();
        }
        let Some(frame) = self.clip.frames.get(self.next) else {
            return Vec::new();
        };
        let ticks = (self.frame_len.as_micros() as u64 * u64::from(CLOCK) / 1_000_000) as u32;
        let last = frame.len().saturating_sub(1);
        let out = frame
            .iter()
            .enumerate()
            .map(|(i, payload)| {
                self.seq = self.seq.wrapping_add(1);
                build_rtp(pt, i == last, self.seq, self.ts, self.ssrc, payload)
            })
            .collect();
        self.ts = self.ts.wrapping_add(ticks);
        self.next = (self.next + 1) % self.clip.frames.len();
        self.due += self.frame_len;
        if self.due < now {
            self.due = now + self.frame_len;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::parse_rtp;

    #[test]
    fn the_shipped_clips_parse_start_on_a_keyframe_and_fit_packets() {
        let c = WaitingClips::builtin();
        let vp8 = c.vp8.expect("VP8 clip");
        assert_eq!(vp8.frames(), 20);
        let h1 = c.h264_mode1.expect("H.264 clip");
        let h0 = c.h264_mode0.expect("mode 0 too: slices fit a packet");
        assert_eq!(h1.frames(), 20);
        assert_eq!(h0.frames(), 20);
        for clip in [&vp8, &h1, &h0] {
            for f in &clip.frames {
                assert!(f.iter().all(|p| p.len() <= MAX_PAYLOAD));
            }
        }
        // The H.264 clip begins with SPS, PPS and an IDR slice.
        let first: Vec<u8> = h1.frames[0].iter().map(|n| nal_type(n)).collect();
        assert_eq!(&first[..2], &[7, 8]);
        assert!(first.contains(&5));
        // The VP8 keyframe's payload: S set, then the frame tag and the start code.
        let p = &vp8.frames[0][0];
        assert_eq!(p[0], 0x90);
        assert_eq!(&p[4 + 3..4 + 6], &[0x9d, 0x01, 0x2a]);
        assert!(vp8.frames[0].len() > 1, "a keyframe spans packets");
        assert_eq!(vp8.frames[0][1][0], 0x80, "no S on the second");
    }

    #[test]
    fn broken_clips_are_refused_with_the_reason() {
        assert_eq!(Clip::vp8(b"hello").unwrap_err(), ClipError::NotIvf);
        let mut ivf = DEFAULT_VP8.to_vec();
        ivf[8..12].copy_from_slice(b"AV01");
        assert!(matches!(Clip::vp8(&ivf), Err(ClipError::IvfCodec(_))));
        let cut = &DEFAULT_VP8[..DEFAULT_VP8.len() - 10];
        assert!(matches!(Clip::vp8(cut), Err(ClipError::Truncated(_))));
        assert_eq!(Clip::vp8(&DEFAULT_VP8[..32]).unwrap_err(), ClipError::Empty);
        assert_eq!(
            Clip::h264(b"\x01\x02", true).unwrap_err(),
            ClipError::NotAnnexB
        );
        // A stream that starts on a P slice (no IDR).
        assert_eq!(
            Clip::h264(b"\x00\x00\x01\x41\x9a\x00", true).unwrap_err(),
            ClipError::NoKeyframe
        );
        // A 3,000-byte IDR slice: FU-A in mode 1, refused in mode 0.
        let mut big = vec![0, 0, 0, 1, 0x65, 0x88];
        big.resize(3000, 7);
        let c = Clip::h264(&big, true).unwrap();
        let f = &c.frames[0];
        assert_eq!(f.len(), 3);
        assert_eq!((f[0][0] & 0x1F, f[0][1]), (28, 0x80 | 5));
        assert_eq!(f[2][1], 0x40 | 5);
        assert_eq!(
            f.iter().map(|p| p.len() - 2).sum::<usize>(),
            3000 - 4 - 1,
            "every byte after the NAL header once"
        );
        assert!(matches!(
            Clip::h264(&big, false),
            Err(ClipError::NalTooLarge(2996))
        ));
    }

    #[test]
    fn the_player_loops_at_the_frame_rate_and_a_restart_goes_back_to_the_keyframe() {
        let c = WaitingClips::builtin();
        let t0 = Instant::now();
        let mut p = Player::new(c.vp8.clone().unwrap(), c.frame, t0, 7);
        let first = p.poll(t0, 96);
        assert!(first.len() > 1);
        let last = parse_rtp(first.last().unwrap()).unwrap();
        assert!(last.marker && last.payload_type == 96 && last.ssrc == 7);
        assert!(!parse_rtp(&first[0]).unwrap().marker);
        assert!(p.poll(t0 + Duration::from_millis(50), 96).is_empty());
        assert_eq!(p.poll_timeout(), t0 + Duration::from_millis(100));
        let mut ts = Vec::new();
        for i in 1..=20u64 {
            let out = p.poll(t0 + Duration::from_millis(100 * i), 96);
            ts.push(parse_rtp(&out[0]).unwrap().timestamp);
        }
        assert!(ts.windows(2).all(|w| w[1] - w[0] == 9000), "{ts:?}");
        // Frame 20 is the loop's first frame again: the keyframe.
        let at = t0 + Duration::from_millis(2100);
        p.restart(at);
        let again = p.poll(at, 96);
        assert_eq!(again.len(), first.len());
        // Far behind: one frame, then the next a frame later, no burst.
        let late = at + Duration::from_secs(5);
        assert!(!p.poll(late, 96).is_empty());
        assert!(p.poll(late, 96).is_empty());
        assert_eq!(p.poll_timeout(), late + c.frame);
    }

    #[test]
    fn h264_mode_follows_the_callers_fmtp() {
        let c = WaitingClips::builtin();
        let m1 = c
            .for_codec(
                VideoCodec::H264,
                Some("profile-level-id=42e01f;packetization-mode=1"),
            )
            .unwrap();
        assert!(Arc::ptr_eq(&m1, c.h264_mode1.as_ref().unwrap()));
        let m0 = c.for_codec(VideoCodec::H264, None).unwrap();
        assert!(Arc::ptr_eq(&m0, c.h264_mode0.as_ref().unwrap()));
    }
}
