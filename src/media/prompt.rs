//! Prompts: WAV files (16-bit mono PCM at 8, 16 or 48 kHz) under `prompts/`, loaded once at
//! start, brought to 8 kHz and encoded once per codec into 20 ms frames, so playing a
//! prompt to any caller costs no encoding at all.

use super::g711::Law;
use super::opus::{Downsampler, OpusEncoder, FRAME_8K};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    Format { file: String, reason: &'static str },
    #[error("{file}: opus: {reason}")]
    Opus { file: String, reason: String },
}

/// What a waiting caller hears, by reference (the driver owns the audio).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MusicRef {
    Silence,
    Ringback,
    Prompt(String),
}

/// One prompt, encoded: 20 ms frames per codec.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub pcm8k: Vec<i16>,
    pub pcmu: Vec<Vec<u8>>,
    pub pcma: Vec<Vec<u8>>,
    pub opus: Vec<Vec<u8>>,
}

impl Prompt {
    pub fn duration_ms(&self) -> u64 {
        self.pcm8k.len() as u64 / 8
    }
}

/// Reads a RIFF/WAVE file of 16-bit mono PCM; returns (rate, samples).
pub fn read_wav(bytes: &[u8], file: &str) -> Result<(u32, Vec<i16>), PromptError> {
    let bad = |reason| PromptError::Format {
        file: file.to_string(),
        reason,
    };
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let (mut i, mut fmt, mut data) = (12usize, None, None);
    while i + 8 <= bytes.len() {
        let id = &bytes[i..i + 4];
        let len =
            u32::from_le_bytes([bytes[i + 4], bytes[i + 5], bytes[i + 6], bytes[i + 7]]) as usize;
        let body = bytes
            .get(i + 8..(i + 8).saturating_add(len).min(bytes.len()))
            .ok_or(bad("truncated chunk"))?;
        match id {
            b"fmt " if body.len() >= 16 => {
                let format = u16::from_le_bytes([body[0], body[1]]);
                let channels = u16::from_le_bytes([body[2], body[3]]);
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                let bits = u16::from_le_bytes([body[14], body[15]]);
                fmt = Some((format, channels, rate, bits));
            }
            b"data" => data = Some(body),
            _ => {}
        }
        i += 8 + len + (len & 1);
    }
    let (format, channels, rate, bits) = fmt.ok_or(bad("no fmt chunk"))?;
    if format != 1 || bits != 16 {
        return Err(bad("must be 16-bit PCM"));
    }
    if channels != 1 {
        return Err(bad("must be mono"));
    }
    if ![8000, 16000, 48000].contains(&rate) {
        return Err(bad("sample rate must be 8, 16 or 48 kHz"));
    }
    let data = data.ok_or(bad("no data chunk"))?;
    Ok((
        rate,
        data.chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect(),
    ))
}

/// Encodes 8 kHz PCM into 20 ms frames for every codec (the last frame padded with silence).
pub fn encode(pcm8k: Vec<i16>, file: &str) -> Result<Prompt, PromptError> {
    let mut padded = pcm8k.clone();
    padded.resize(pcm8k.len().div_ceil(FRAME_8K) * FRAME_8K, 0);
    let opus_err = |e: super::opus::OpusError| PromptError::Opus {
        file: file.to_string(),
        reason: e.to_string(),
    };
    let mut enc = OpusEncoder::narrowband().map_err(opus_err)?;
    let (mut pcmu, mut pcma, mut opus) = (Vec::new(), Vec::new(), Vec::new());
    for frame in padded.chunks(FRAME_8K) {
        let mut u = Vec::with_capacity(FRAME_8K);
        Law::Ulaw.encode(frame, &mut u);
        pcmu.push(u);
        let mut a = Vec::with_capacity(FRAME_8K);
        Law::Alaw.encode(frame, &mut a);
        pcma.push(a);
        let mut o = Vec::new();
        enc.encode(frame, &mut o).map_err(opus_err)?;
        opus.push(o);
    }
    Ok(Prompt {
        pcm8k,
        pcmu,
        pcma,
        opus,
    })
}

/// Decodes a WAV file's bytes to 8 kHz and encodes it for every codec.
pub fn from_wav(bytes: &[u8], file: &str) -> Result<Prompt, PromptError> {
    let (rate, pcm) = read_wav(bytes, file)?;
    let pcm8k = match rate {
        8000 => pcm,
        r => {
            let mut d = Downsampler::new((r / 8000) as usize);
            let mut v = Vec::with_capacity(pcm.len() * 8000 / r as usize);
            d.process(&pcm, &mut v);
            v
        }
    };
    encode(pcm8k, file)
}

/// Loads every `*.wav` in `dir`, keyed by file name without extension.
pub fn load_dir(dir: &Path) -> Result<HashMap<String, Prompt>, PromptError> {
    let io = |e, f: &Path| PromptError::Io {
        file: f.display().to_string(),
        source: e,
    };
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(e, dir))? {
        let path = entry.map_err(|e| io(e, dir))?.path();
        if path.extension().is_none_or(|x| x != "wav") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let bytes = std::fs::read(&path).map_err(|e| io(e, &path))?;
        out.insert(name, from_wav(&bytes, &path.display().to_string())?);
    }
    Ok(out)
}

// The prompts shipped in `prompts/`, compiled into the binary by build.rs so that
// `dasan run` works from anywhere; `[media] prompts_dir` adds to (and overrides) them.
include!(concat!(env!("OUT_DIR"), "/prompts.rs"));

pub fn embedded() -> Result<HashMap<String, Prompt>, PromptError> {
    EMBEDDED
        .iter()
        .map(|(name, bytes)| Ok((name.to_string(), from_wav(bytes, name)?)))
        .collect()
}

/// Korean ringback (KS X 3102 / ITU-T E.180: 440 + 480 Hz, 1 s on, 2 s off), one cycle,
/// generated rather than shipped.
pub fn ringback() -> std::sync::Arc<Prompt> {
    let pcm: Vec<i16> = (0..24_000)
        .map(|i| {
            if i >= 8000 {
                return 0;
            }
            let t = i as f32 / 8000.0;
            let w = std::f32::consts::TAU;
            (((w * 440.0 * t).sin() + (w * 480.0 * t).sin()) * 3000.0) as i16
        })
        .collect();
    // Encoding a generated, fixed-length signal cannot fail short of a broken libopus;
    // fall back to G.711-only frames rather than panic.
    let p = encode(pcm.clone(), "ringback").unwrap_or_else(|_| Prompt {
        pcmu: Vec::new(),
        pcma: Vec::new(),
        opus: Vec::new(),
        pcm8k: pcm,
    });
    std::sync::Arc::new(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_prompts_load_and_encode_for_every_codec() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let prompts = load_dir(&dir).unwrap();
        for name in [
            "menu-en",
            "menu-zh",
            "menu-ja",
            "menu-vi",
            "menu-mn",
            "queue-wait-ko",
        ] {
            let p = prompts
                .get(name)
                .unwrap_or_else(|| panic!("prompt {name} is shipped"));
            assert!(
                (1500..8000).contains(&p.duration_ms()),
                "{name}: {} ms",
                p.duration_ms()
            );
            let frames = p.pcm8k.len().div_ceil(FRAME_8K);
            assert_eq!(
                (p.pcmu.len(), p.pcma.len(), p.opus.len()),
                (frames, frames, frames)
            );
            assert!(p.pcmu.iter().all(|f| f.len() == FRAME_8K));
            let rms = (p.pcm8k.iter().map(|&s| (s as f64).powi(2)).sum::<f64>()
                / p.pcm8k.len() as f64)
                .sqrt();
            assert!(rms > 500.0, "{name} is not silent (rms {rms:.0})");
        }
    }

    #[test]
    fn embedded_prompts_match_the_files_and_ringback_is_one_second_on_two_off() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let files = load_dir(&dir).unwrap();
        let emb = embedded().unwrap();
        for (name, p) in &emb {
            assert_eq!(files[name].pcm8k, p.pcm8k, "{name}");
        }
        let r = ringback();
        assert_eq!(r.duration_ms(), 3000);
        assert_eq!(r.pcmu.len(), 150);
        let energy = |s: &[i16]| s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>();
        assert!(energy(&r.pcm8k[..8000]) > 1e9);
        assert_eq!(energy(&r.pcm8k[8000..]), 0.0);
    }

    #[test]
    fn bad_files_are_errors_with_the_file_name() {
        let err = read_wav(b"RIFF\0\0\0\0WAVE", "x.wav")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "x.wav: no fmt chunk");
        assert!(read_wav(b"hello", "y.wav").is_err());
        let mut stereo = Vec::new();
        stereo.extend_from_slice(b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0\x02\0\x40\x1f\0\0\0\0\0\0\x04\0\x10\0data\0\0\0\0");
        assert_eq!(
            read_wav(&stereo, "s.wav").unwrap_err().to_string(),
            "s.wav: must be mono"
        );
        let mut huge_chunk = b"RIFF\0\0\0\0WAVEdata\xff\xff\xff\x7f".to_vec();
        huge_chunk.extend_from_slice(&[0; 8]);
        assert!(
            read_wav(&huge_chunk, "h.wav").is_err(),
            "a lying chunk length is no panic"
        );
    }
}
