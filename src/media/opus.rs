//! Opus (RFC 6716/7587) through audiopus, and the G.711 ↔ Opus transcoder.
//!
//! The transcoder lets libopus work at 8 kHz on both sides: G.711 audio is narrowband, so
//! nothing is lost, and it is much cheaper than encoding 48 kHz input (see
//! `benches/media.rs`). The RTP clock of Opus stays 48 kHz whatever the input rate
//! (RFC 7587 4.1). `Downsampler` brings 16/48 kHz PCM (prompts) down to 8 kHz.
//! Only used when the two legs share no codec; matching codecs are relayed untouched.

use super::g711::Law;
use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Channels, SampleRate};

/// 20 ms at 48 kHz.
pub const FRAME_48K: usize = 960;
/// 20 ms at 8 kHz.
pub const FRAME_8K: usize = 160;

#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    #[error("opus: {0}")]
    Codec(#[from] audiopus::Error),
}

pub struct OpusEncoder(Encoder);
pub struct OpusDecoder {
    dec: Decoder,
    /// Samples in 120 ms at the decoder's rate.
    max_frame: usize,
}

/// A 20 ms mono packet is far below this at any bitrate libopus picks for speech.
const MAX_PACKET: usize = 1500;

/// Complexity 0 of 10. On a spoken prompt at 8 kHz (2026-11-26) the encoder took 28 µs
/// per 20 ms at 0, 47 µs at 3 and 118 µs at 9, while the decoded speech was as close to the
/// input at every setting (SNR 9.4 dB at 0, 9.2 at 3, 9.5 at 9: at telephone bandwidth
/// SILK spends the extra effort on nothing a G.711 trunk can carry). The encoder is most
/// of a transcoded call's cost, and browser calls are all transcoded.
const COMPLEXITY: u8 = 0;

/// The narrowband encoder's bitrate: half of the G.711 leg it stands in for.
const NARROWBAND_BITRATE: i32 = 32_000;

impl OpusEncoder {
    /// A 48 kHz mono encoder.
    pub fn new() -> Result<Self, OpusError> {
        Self::with_rate(SampleRate::Hz48000)
    }

    pub fn with_rate(rate: SampleRate) -> Result<Self, OpusError> {
        let mut e = Encoder::new(rate, Channels::Mono, Application::Voip)?;
        e.set_complexity(COMPLEXITY)?;
        Ok(OpusEncoder(e))
    }

    /// An 8 kHz mono encoder for audio from a G.711 leg: Opus's CELT mode (restricted
    /// low delay) at a fixed 32 kbit/s instead of SILK at its ~10 kbit/s default. On the
    /// same spoken prompt (2026-11-26, this 2-core VM) the encoder took 13.9 µs per 20 ms
    /// instead of 29.1, the decoded speech was 24.6 dB SNR instead of 8.7 (SILK is built
    /// for low bitrates, not for keeping the waveform), and the look-ahead is 2.5 ms
    /// instead of 6.5. Every Opus decoder decodes every mode (RFC 6716), so peers see no
    /// difference but the sound; the bitrate is still half the G.711 leg's.
    pub fn narrowband() -> Result<Self, OpusError> {
        let mut e = Encoder::new(SampleRate::Hz8000, Channels::Mono, Application::LowDelay)?;
        e.set_complexity(COMPLEXITY)?;
        e.set_bitrate(audiopus::Bitrate::BitsPerSecond(NARROWBAND_BITRATE))?;
        Ok(OpusEncoder(e))
    }

    /// Encodes one 20 ms frame of mono PCM at the encoder's rate.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), OpusError> {
        append_in_place(out, MAX_PACKET, |room| self.0.encode(pcm, room))
    }
}

impl OpusDecoder {
    /// A 48 kHz mono decoder.
    pub fn new() -> Result<Self, OpusError> {
        Self::with_rate(SampleRate::Hz48000)
    }

    pub fn with_rate(rate: SampleRate) -> Result<Self, OpusError> {
        Ok(OpusDecoder {
            dec: Decoder::new(rate, Channels::Mono)?,
            max_frame: rate as usize * 120 / 1000,
        })
    }

    /// Decodes one packet (or conceals a lost one when `packet` is `None`) to PCM at the
    /// decoder's rate.
    pub fn decode(&mut self, packet: Option<&[u8]>, out: &mut Vec<i16>) -> Result<(), OpusError> {
        // Room for the longest packet (120 ms, RFC 6716) at this rate.
        let dec = &mut self.dec;
        append_in_place(out, self.max_frame, |room| dec.decode(packet, room, false))
    }
}

/// Lets libopus write straight after what `out` holds, into `room` extra elements, and
/// keeps what it wrote (no scratch buffer per frame); on an error `out` is as it was.
fn append_in_place<T: Copy + Default>(
    out: &mut Vec<T>,
    room: usize,
    write: impl FnOnce(&mut [T]) -> Result<usize, audiopus::Error>,
) -> Result<(), OpusError> {
    let start = out.len();
    out.resize(start + room, T::default());
    match write(&mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n.min(room));
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e.into())
        }
    }
}

/// Integer-factor decimation to 8 kHz (48 → 8 with factor 6, 16 → 8 with factor 2): a
/// 3.4 kHz windowed-sinc low-pass, then every `factor`-th sample.
pub struct Downsampler {
    taps: Vec<f32>,
    history: Vec<f32>,
    factor: usize,
    phase: usize,
}

impl Default for Downsampler {
    fn default() -> Self {
        Downsampler::new(6)
    }
}

impl Downsampler {
    pub fn new(factor: usize) -> Downsampler {
        let factor = factor.max(1);
        let n = 8 * factor;
        let cutoff = 3400.0 / (8000.0 * factor as f32);
        let taps: Vec<f32> = (0..n)
            .map(|i| {
                let x = i as f32 - (n - 1) as f32 / 2.0;
                let sinc = if x == 0.0 {
                    2.0 * cutoff
                } else {
                    (2.0 * std::f32::consts::PI * cutoff * x).sin() / (std::f32::consts::PI * x)
                };
                let w =
                    0.54 - 0.46 * (2.0 * std::f32::consts::PI * i as f32 / (n - 1) as f32).cos();
                sinc * w
            })
            .collect();
        let sum: f32 = taps.iter().sum();
        Downsampler {
            taps: taps.iter().map(|t| t / sum).collect(),
            history: vec![0.0; n],
            factor,
            phase: 0,
        }
    }
}

impl Downsampler {
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        for &s in input {
            self.history.rotate_left(1);
            if let Some(last) = self.history.last_mut() {
                *last = s as f32;
            }
            self.phase += 1;
            if self.phase == self.factor {
                self.phase = 0;
                let y: f32 = self
                    .history
                    .iter()
                    .zip(&self.taps)
                    .map(|(h, t)| h * t)
                    .sum();
                out.push(y.clamp(-32768.0, 32767.0) as i16);
            }
        }
    }
}

/// One direction of G.711 → Opus.
pub struct G711ToOpus {
    law: Law,
    enc: OpusEncoder,
    pcm8: Vec<i16>,
}

impl G711ToOpus {
    pub fn new(law: Law) -> Result<Self, OpusError> {
        Ok(G711ToOpus {
            law,
            enc: OpusEncoder::narrowband()?,
            pcm8: Vec::new(),
        })
    }

    /// One 20 ms G.711 payload in, one Opus payload out.
    pub fn process(&mut self, g711: &[u8], out: &mut Vec<u8>) -> Result<(), OpusError> {
        self.pcm8.clear();
        self.law.decode(g711, &mut self.pcm8);
        self.pcm8.resize(FRAME_8K, 0);
        self.enc.encode(&self.pcm8, out)
    }
}

/// One direction of Opus → G.711.
pub struct OpusToG711 {
    law: Law,
    dec: OpusDecoder,
    pcm8: Vec<i16>,
}

impl OpusToG711 {
    pub fn new(law: Law) -> Result<Self, OpusError> {
        Ok(OpusToG711 {
            law,
            dec: OpusDecoder::with_rate(SampleRate::Hz8000)?,
            pcm8: Vec::new(),
        })
    }

    /// One Opus payload (None: lost, concealed) in, G.711 for the same duration out. A
    /// payload libopus refuses (corrupt, or empty) is concealed like a lost one: a bad
    /// packet from the network costs 20 ms of audio, never the call.
    pub fn process(&mut self, opus: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), OpusError> {
        self.pcm8.clear();
        if self.dec.decode(opus, &mut self.pcm8).is_err() {
            self.pcm8.clear();
            self.dec.decode(None, &mut self.pcm8)?;
        }
        self.law.encode(&self.pcm8, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: usize, freq: f32, n: usize, amp: f32) -> Vec<i16> {
        (0..n)
            .map(|i| {
                ((2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * amp) as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    #[test]
    fn opus_round_trip_keeps_a_tone() {
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let input = sine(48000, 440.0, FRAME_48K * 50, 8000.0);
        let mut out = Vec::new();
        for frame in input.chunks(FRAME_48K) {
            let mut pkt = Vec::new();
            enc.encode(frame, &mut pkt).unwrap();
            assert!(!pkt.is_empty() && pkt.len() < 400);
            dec.decode(Some(&pkt), &mut out).unwrap();
        }
        assert_eq!(out.len(), input.len());
        // Skip the codec's start-up; the level must survive within 25%.
        let (a, b) = (rms(&input[9600..]), rms(&out[9600..]));
        assert!((b / a - 1.0).abs() < 0.25, "rms in {a:.0} out {b:.0}");
        let mut lost = Vec::new();
        dec.decode(None, &mut lost).unwrap();
        assert!(!lost.is_empty(), "packet loss is concealed");
    }

    #[test]
    fn g711_through_opus_and_back() {
        let mut to_opus = G711ToOpus::new(Law::Ulaw).unwrap();
        let mut to_g711 = OpusToG711::new(Law::Alaw).unwrap();
        let tone = sine(8000, 697.0, FRAME_8K * 50, 6000.0);
        let mut out8 = Vec::new();
        for frame in tone.chunks(FRAME_8K) {
            let mut g = Vec::new();
            Law::Ulaw.encode(frame, &mut g);
            let mut op = Vec::new();
            to_opus.process(&g, &mut op).unwrap();
            let mut a = Vec::new();
            to_g711.process(Some(&op), &mut a).unwrap();
            assert_eq!(a.len(), FRAME_8K, "20 ms in, 20 ms out");
            Law::Alaw.decode(&a, &mut out8);
        }
        let (a, b) = (rms(&tone[1600..]), rms(&out8[1600..]));
        assert!((b / a - 1.0).abs() < 0.3, "rms in {a:.0} out {b:.0}");
    }

    #[test]
    fn downsampler_rejects_above_4khz() {
        let mut d = Downsampler::default();
        let mut out = Vec::new();
        d.process(&sine(48000, 10_000.0, 9600, 10_000.0), &mut out);
        assert_eq!(out.len(), 1600);
        assert!(
            rms(&out[100..]) < 500.0,
            "10 kHz must not alias into the 8 kHz output: {}",
            rms(&out[100..])
        );
    }
}
