//! TCP stream framing (`StreamFramer`): arbitrary bytes in arbitrary chunks. The first
//! byte seeds the chunk sizes; the frames must not depend on how the stream was cut.
#![no_main]

use dasan::sip::framing::{Frame, FramingError, StreamFramer};
use libfuzzer_sys::fuzz_target;

/// Every frame up to the first error (or the end), feeding `data` in pieces of the sizes
/// `sizes` cycles through (1..=64 bytes; one piece if `sizes` is empty).
fn frames(data: &[u8], sizes: &[u8]) -> (Vec<Frame>, Option<FramingError>) {
    let mut f = StreamFramer::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < data.len() {
        let n = match sizes.get(i % sizes.len().max(1)) {
            Some(s) => 1 + (*s as usize % 64),
            None => data.len(),
        };
        let end = (at + n).min(data.len());
        f.push(&data[at..end]);
        at = end;
        i += 1;
        loop {
            match f.next_frame() {
                Ok(Some(fr)) => out.push(fr),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let n = (n as usize % 8).min(rest.len());
    let (sizes, data) = rest.split_at(n);
    let (whole, whole_err) = frames(data, &[]);
    let (cut, cut_err) = frames(data, sizes);
    for m in whole.iter().chain(&cut) {
        if let Frame::Message(b) = m {
            let _ = dasan::sip::Message::parse(b);
        }
    }
    // The framing is a function of the bytes, not of where the reads split them.
    if whole_err.is_none() && cut_err.is_none() {
        assert_eq!(whole, cut, "frames differ when the stream is cut");
    }
});
