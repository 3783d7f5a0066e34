//! DTMF from three sources, deduplicated into one digit stream per call: RFC 4733
//! telephone-events, SIP INFO (`application/dtmf-relay`), and in-band tones on G.711
//! found with the Goertzel algorithm.

use std::time::{Duration, Instant};

pub const DIGITS: &[u8; 16] = b"0123456789*#ABCD";

pub fn event_to_digit(e: u8) -> Option<char> {
    DIGITS.get(e as usize).map(|&d| d as char)
}

pub fn digit_to_event(d: char) -> Option<u8> {
    DIGITS
        .iter()
        .position(|&x| x as char == d.to_ascii_uppercase())
        .map(|i| i as u8)
}

/// An RFC 4733 telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(p: &[u8]) -> Option<TelephoneEvent> {
        if p.len() < 4 {
            return None;
        }
        Some(TelephoneEvent {
            event: p[0],
            end: p[1] & 0x80 != 0,
            volume: p[1] & 0x3F,
            duration: u16::from_be_bytes([p[2], p[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (self.end as u8) << 7 | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// Payloads to send one digit as RFC 4733 events (RFC 4733 2.5): one every 20 ms of
/// `duration_ms`, then the end packet three times. All share one RTP timestamp; the
/// first carries the marker bit.
pub fn events_for_digit(digit: char, duration_ms: u16, rate: u32) -> Option<Vec<(bool, [u8; 4])>> {
    let event = digit_to_event(digit)?;
    let step = (rate / 50) as u16;
    let total = (duration_ms as u32 * rate / 1000) as u16;
    let mut out = Vec::new();
    let mut d = step;
    while d < total {
        out.push((
            out.is_empty(),
            TelephoneEvent {
                event,
                end: false,
                volume: 10,
                duration: d,
            }
            .to_bytes(),
        ));
        d += step;
    }
    for _ in 0..3 {
        out.push((
            out.is_empty(),
            TelephoneEvent {
                event,
                end: true,
                volume: 10,
                duration: total,
            }
            .to_bytes(),
        ));
    }
    Some(out)
}

/// Turns a stream of telephone-event packets into digits: one digit per event, however
/// many times its packets are repeated (they share an RTP timestamp).
#[derive(Default)]
pub struct EventReceiver {
    last_ts: Option<u32>,
}

impl EventReceiver {
    pub fn on_packet(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<char> {
        let ev = TelephoneEvent::parse(payload)?;
        if self.last_ts == Some(rtp_timestamp) {
            return None;
        }
        self.last_ts = Some(rtp_timestamp);
        event_to_digit(ev.event)
    }
}

/// `Signal=5` out of an `application/dtmf-relay` INFO body.
pub fn parse_dtmf_relay(body: &str) -> Option<char> {
    body.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("signal") {
            return None;
        }
        let v = v.trim();
        let c = v.chars().next()?;
        match v {
            "10" => Some('*'),
            "11" => Some('#'),
            _ if v.len() == 1 && digit_to_event(c).is_some() => Some(c.to_ascii_uppercase()),
            _ => None,
        }
    })
}

const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// 205 samples at 8 kHz (25.6 ms): the classic block length, bins near all eight tones.
pub const BLOCK: usize = 205;

fn goertzel(samples: &[f32], freq: f32, rate: f32) -> f32 {
    let k = (0.5 + samples.len() as f32 * freq / rate).floor();
    let w = 2.0 * std::f32::consts::PI * k / samples.len() as f32;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// In-band DTMF detector for 8 kHz audio. A digit is reported once, after it has been
/// present for two consecutive blocks (~51 ms), and again only after a gap.
#[derive(Default)]
pub struct ToneDetector {
    buf: Vec<f32>,
    candidate: Option<char>,
    hits: u8,
    reported: Option<char>,
}

impl ToneDetector {
    pub fn push(&mut self, pcm: &[i16]) -> Vec<char> {
        let mut out = Vec::new();
        for &s in pcm {
            self.buf.push(s as f32);
            if self.buf.len() == BLOCK {
                let d = detect_block(&self.buf);
                self.buf.clear();
                if d.is_some() && d == self.candidate {
                    self.hits = self.hits.saturating_add(1);
                } else {
                    self.candidate = d;
                    self.hits = 1;
                }
                match d {
                    Some(c) if self.hits >= 2 && self.reported != Some(c) => {
                        self.reported = Some(c);
                        out.push(c);
                    }
                    None => self.reported = None,
                    _ => {}
                }
            }
        }
        out
    }
}

fn detect_block(block: &[f32]) -> Option<char> {
    let energy: f32 = block.iter().map(|x| x * x).sum();
    if energy < (BLOCK as f32) * 100.0 * 100.0 {
        return None; // too quiet (below ~-50 dBm0)
    }
    let rows: Vec<f32> = ROWS.iter().map(|&f| goertzel(block, f, 8000.0)).collect();
    let cols: Vec<f32> = COLS.iter().map(|&f| goertzel(block, f, 8000.0)).collect();
    let (ri, &r) = rows.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    let (ci, &c) = cols.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    // Both tones clearly above the others in their group, twist within ~8 dB, and the two
    // tones carrying most of the block's energy (speech spreads it out).
    let second = |v: &[f32], i: usize| {
        v.iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, x)| *x)
            .fold(0.0, f32::max)
    };
    if r < 6.0 * second(&rows, ri) || c < 6.0 * second(&cols, ci) {
        return None;
    }
    if r > 6.3 * c || c > 6.3 * r {
        return None;
    }
    let tone_energy = 2.0 * (r + c) / BLOCK as f32;
    if tone_energy < 0.5 * energy {
        return None;
    }
    Some(KEYPAD[ri][ci])
}

/// Where a digit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitSource {
    Rfc4733,
    SipInfo,
    InBand,
}

/// Merges the three sources: a phone may send the same key press as an RFC 4733 event and
/// leave the tone in the audio, or send INFO too. The same digit from another source
/// within the window counts once.
pub struct DigitCollector {
    window: Duration,
    last: Option<(char, DigitSource, Instant)>,
}

impl Default for DigitCollector {
    fn default() -> Self {
        DigitCollector {
            window: Duration::from_millis(250),
            last: None,
        }
    }
}

impl DigitCollector {
    pub fn on_digit(&mut self, now: Instant, digit: char, source: DigitSource) -> Option<char> {
        if let Some((d, s, t)) = self.last {
            if d == digit && s != source && now.duration_since(t) < self.window {
                return None;
            }
        }
        self.last = Some((digit, source, now));
        Some(digit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freqs: &[f32], ms: usize, amp: f32) -> Vec<i16> {
        (0..ms * 8)
            .map(|i| {
                let t = i as f32 / 8000.0;
                (freqs
                    .iter()
                    .map(|f| (2.0 * std::f32::consts::PI * f * t).sin())
                    .sum::<f32>()
                    * amp) as i16
            })
            .collect()
    }

    #[test]
    fn rfc4733_roundtrip_and_dedup() {
        let pkts = events_for_digit('9', 100, 8000).unwrap();
        assert!(pkts[0].0, "marker on the first packet");
        assert_eq!(pkts.len(), 4 + 3, "80,160,240,320 then three end packets");
        let last = TelephoneEvent::parse(&pkts[6].1).unwrap();
        assert_eq!(
            last,
            TelephoneEvent {
                event: 9,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        let mut rx = EventReceiver::default();
        let digits: Vec<char> = pkts
            .iter()
            .filter_map(|(_, p)| rx.on_packet(1234, p))
            .collect();
        assert_eq!(digits, vec!['9']);
        assert_eq!(
            rx.on_packet(5678, &events_for_digit('1', 60, 8000).unwrap()[0].1),
            Some('1')
        );
        assert_eq!(TelephoneEvent::parse(&[1, 2]), None);
        assert_eq!(event_to_digit(11), Some('#'));
        assert_eq!(digit_to_event('d'), Some(15));
    }

    #[test]
    fn dtmf_relay_bodies() {
        assert_eq!(parse_dtmf_relay("Signal=9\r\nDuration=160\r\n"), Some('9'));
        assert_eq!(parse_dtmf_relay("signal= 11\nDuration=100"), Some('#'));
        assert_eq!(parse_dtmf_relay("Duration=100"), None);
        assert_eq!(parse_dtmf_relay("Signal=Z"), None);
    }

    #[test]
    fn goertzel_finds_every_key_and_ignores_single_tones_and_silence() {
        for (ri, row) in KEYPAD.iter().enumerate() {
            for (ci, &key) in row.iter().enumerate() {
                let mut d = ToneDetector::default();
                let mut pcm = tone(&[ROWS[ri], COLS[ci]], 80, 6000.0);
                pcm.extend(vec![0; 400]);
                pcm.extend(tone(&[ROWS[ri], COLS[ci]], 80, 6000.0));
                assert_eq!(d.push(&pcm), vec![key, key], "key {key}: once per press");
            }
        }
        let mut d = ToneDetector::default();
        assert!(
            d.push(&tone(&[440.0], 200, 8000.0)).is_empty(),
            "dial tone is not a digit"
        );
        assert!(
            d.push(&tone(&[697.0], 200, 8000.0)).is_empty(),
            "one tone is not a digit"
        );
        assert!(d.push(&vec![0; 1600]).is_empty());
        assert!(
            d.push(&tone(&[697.0, 1209.0], 20, 6000.0)).is_empty(),
            "20 ms is too short"
        );
    }

    #[test]
    fn through_g711_still_detected() {
        let pcm = tone(&[852.0, 1477.0], 100, 5000.0);
        let mut enc = Vec::new();
        super::super::g711::Law::Ulaw.encode(&pcm, &mut enc);
        let mut dec = Vec::new();
        super::super::g711::Law::Ulaw.decode(&enc, &mut dec);
        assert_eq!(ToneDetector::default().push(&dec), vec!['9']);
    }

    #[test]
    fn collector_merges_sources() {
        let t0 = Instant::now();
        let mut c = DigitCollector::default();
        assert_eq!(c.on_digit(t0, '9', DigitSource::Rfc4733), Some('9'));
        assert_eq!(
            c.on_digit(t0 + Duration::from_millis(40), '9', DigitSource::InBand),
            None
        );
        assert_eq!(
            c.on_digit(t0 + Duration::from_millis(500), '9', DigitSource::Rfc4733),
            Some('9'),
            "a second press"
        );
        assert_eq!(
            c.on_digit(t0 + Duration::from_millis(520), '1', DigitSource::SipInfo),
            Some('1')
        );
    }
}
