//! Call recording: a stereo 16-bit WAV at 8 kHz, caller on the left channel and agent on
//! the right. Each side's decoded audio is queued as it arrives and written in pairs; when
//! one side sends nothing (muted phone, silence suppression) the other is not held back for
//! longer than [`MAX_SKEW`] samples: the silent side is padded with silence instead.

use std::collections::VecDeque;
use std::io::{Seek, SeekFrom, Write};

/// 400 ms at 8 kHz.
const MAX_SKEW: usize = 3200;
const RATE: u32 = 8000;

pub struct Recorder<W: Write + Seek> {
    out: W,
    left: VecDeque<i16>,
    right: VecDeque<i16>,
    frames: u32,
    buf: Vec<u8>,
}

impl<W: Write + Seek> Recorder<W> {
    /// Writes a placeholder header; [`Recorder::finish`] fills in the sizes.
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(&header(0))?;
        Ok(Recorder {
            out,
            left: VecDeque::new(),
            right: VecDeque::new(),
            frames: 0,
            buf: Vec::with_capacity(4 * 1024),
        })
    }

    /// Decoded 8 kHz audio from the caller (`caller = true`) or the agent.
    pub fn push(&mut self, caller: bool, pcm: &[i16]) -> std::io::Result<()> {
        let (mine, other) = if caller {
            (&mut self.left, &mut self.right)
        } else {
            (&mut self.right, &mut self.left)
        };
        mine.extend(pcm);
        if mine.len() > MAX_SKEW && other.is_empty() {
            let pad = mine.len() - MAX_SKEW;
            other.extend(std::iter::repeat_n(0, pad));
        }
        self.drain_pairs()
    }

    fn drain_pairs(&mut self) -> std::io::Result<()> {
        let n = self.left.len().min(self.right.len());
        if n == 0 {
            return Ok(());
        }
        self.buf.clear();
        for (l, r) in self.left.drain(..n).zip(self.right.drain(..n)) {
            self.buf.extend_from_slice(&l.to_le_bytes());
            self.buf.extend_from_slice(&r.to_le_bytes());
        }
        self.frames = self.frames.saturating_add(n as u32);
        self.out.write_all(&self.buf)
    }

    /// Pads the shorter side, writes the rest and the final header; returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        let n = self.left.len().max(self.right.len());
        self.left.resize(n, 0);
        self.right.resize(n, 0);
        self.drain_pairs()?;
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&header(self.frames))?;
        self.out.flush()?;
        Ok(self.out)
    }

    pub fn seconds(&self) -> f64 {
        self.frames as f64 / RATE as f64
    }
}

fn header(frames: u32) -> [u8; 44] {
    let data = frames.saturating_mul(4);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data.saturating_add(36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&2u16.to_le_bytes()); // stereo
    h[24..28].copy_from_slice(&RATE.to_le_bytes());
    h[28..32].copy_from_slice(&(RATE * 4).to_le_bytes());
    h[32..34].copy_from_slice(&4u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn samples(wav: &[u8]) -> Vec<(i16, i16)> {
        wav[44..]
            .chunks(4)
            .map(|c| {
                (
                    i16::from_le_bytes([c[0], c[1]]),
                    i16::from_le_bytes([c[2], c[3]]),
                )
            })
            .collect()
    }

    #[test]
    fn caller_left_agent_right_and_a_valid_header() {
        let mut r = Recorder::new(Cursor::new(Vec::new())).unwrap();
        r.push(true, &[100; 160]).unwrap();
        r.push(false, &[-200; 160]).unwrap();
        r.push(true, &[1; 80]).unwrap();
        let wav = r.finish().unwrap().into_inner();
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(&wav[24..28], &8000u32.to_le_bytes());
        assert_eq!(&wav[22..24], &2u16.to_le_bytes(), "stereo");
        let s = samples(&wav);
        assert_eq!(s.len(), 240);
        assert_eq!(
            u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]),
            960
        );
        assert!(s[..160].iter().all(|&p| p == (100, -200)));
        assert!(
            s[160..].iter().all(|&p| p == (1, 0)),
            "the short side is padded"
        );
    }

    #[test]
    fn a_silent_side_does_not_hold_the_other_back() {
        let mut r = Recorder::new(Cursor::new(Vec::new())).unwrap();
        for _ in 0..50 {
            r.push(true, &[5; 160]).unwrap(); // one second of caller, agent muted
        }
        assert!(
            r.seconds() >= 0.55,
            "written {}s while the agent sent nothing",
            r.seconds()
        );
        let wav = r.finish().unwrap().into_inner();
        assert_eq!(samples(&wav).len(), 8000);
    }
}
