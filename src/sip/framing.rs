//! Stream framing for SIP over TCP (RFC 3261 18.3): messages are cut by Content-Length,
//! which is mandatory on streams; a bare CRLF CRLF is an RFC 5626 keep-alive ping.

use super::message::{find_header_end, MAX_MESSAGE_LEN};
use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Message(Bytes),
    /// RFC 5626 4.4.1: a double CRLF ping; answer with a single CRLF pong.
    Ping,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("message exceeds {MAX_MESSAGE_LEN} bytes")]
    TooLarge,
    #[error("invalid Content-Length on a stream")]
    BadContentLength,
}

#[derive(Default)]
pub struct StreamFramer {
    buf: BytesMut,
}

impl StreamFramer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of an incomplete message buffered.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Returns the next complete frame, `Ok(None)` when more bytes are needed, or an error
    /// after which the connection should be closed (the stream has lost its framing).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        // Keep-alives: CRLFCRLF is a ping; a lone CRLF (pong or padding) is skipped.
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                return Ok(Some(Frame::Ping));
            }
            // A CRLF not followed by CR is a pong or padding, whatever comes after it; one
            // followed by CR may still become a ping (wait for the fourth byte).
            if self.buf.starts_with(b"\r\n")
                && (self.buf.len() >= 4 || self.buf.get(2).is_some_and(|&b| b != b'\r'))
            {
                self.buf.advance(2);
                continue;
            }
            if self.buf.first() == Some(&b'\n') {
                self.buf.advance(1);
                continue;
            }
            if self.buf.as_ref() == b"\r\n" || self.buf.as_ref() == b"\r\n\r" {
                return Ok(None);
            }
            break;
        }
        let Some(head_end) = find_header_end(&self.buf) else {
            if self.buf.len() > MAX_MESSAGE_LEN {
                return Err(FramingError::TooLarge);
            }
            return Ok(None);
        };
        let len = content_length(&self.buf[..head_end])?;
        // A peer's Content-Length can be near usize::MAX: the sum must not wrap.
        let total = head_end
            .checked_add(len)
            .filter(|&t| t <= MAX_MESSAGE_LEN)
            .ok_or(FramingError::TooLarge)?;
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let text = String::from_utf8_lossy(head);
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            return value
                .trim()
                .parse()
                .map_err(|_| FramingError::BadContentLength);
        }
    }
    // A stream message without Content-Length is taken to have no body (RFC 3261 18.3 makes
    // the header mandatory; being lenient here loses nothing since no body can be framed).
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:x SIP/2.0\r\nl: 3\r\n\r\nabc";

    #[test]
    fn two_messages_in_one_read_and_one_split_across_reads() {
        let mut f = StreamFramer::new();
        let mut data = MSG.to_vec();
        data.extend_from_slice(b"\r\n\r\n");
        data.extend_from_slice(MSG);
        data.extend_from_slice(&MSG[..10]);
        f.push(&data);
        assert_eq!(
            f.next_frame(),
            Ok(Some(Frame::Message(Bytes::from_static(MSG))))
        );
        assert_eq!(f.next_frame(), Ok(Some(Frame::Ping)));
        assert_eq!(
            f.next_frame(),
            Ok(Some(Frame::Message(Bytes::from_static(MSG))))
        );
        assert_eq!(f.next_frame(), Ok(None));
        f.push(&MSG[10..]);
        assert_eq!(
            f.next_frame(),
            Ok(Some(Frame::Message(Bytes::from_static(MSG))))
        );
    }

    #[test]
    fn body_split_waits() {
        let mut f = StreamFramer::new();
        f.push(&MSG[..MSG.len() - 1]);
        assert_eq!(f.next_frame(), Ok(None));
        f.push(&MSG[MSG.len() - 1..]);
        assert!(matches!(f.next_frame(), Ok(Some(Frame::Message(_)))));
    }

    /// Found by fuzzing: CRLF LF arriving alone (before the rest of the stream) was taken
    /// for an empty header block and framed as a 3-byte message, while the same bytes in one
    /// read were skipped as keep-alives. Framing must not depend on where reads split.
    #[test]
    fn keepalive_bytes_frame_the_same_however_reads_split() {
        let mut data = b"\r\n\n\r\n".to_vec();
        data.extend_from_slice(MSG);
        let mut whole = StreamFramer::new();
        whole.push(&data);
        let mut cut = StreamFramer::new();
        let mut got = Vec::new();
        for piece in [&data[..3], &data[3..]] {
            cut.push(piece);
            while let Some(f) = cut.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, vec![Frame::Message(Bytes::from_static(MSG))]);
        assert_eq!(
            whole.next_frame(),
            Ok(Some(Frame::Message(Bytes::from_static(MSG))))
        );
        assert_eq!(whole.next_frame(), Ok(None));
    }

    /// Found by fuzzing: a Content-Length near usize::MAX overflowed the frame's length
    /// (a panic with overflow checks, a wrapped length that cut the stream without them).
    #[test]
    fn a_huge_content_length_is_too_large_not_an_overflow() {
        let mut f = StreamFramer::new();
        f.push(format!("OPTIONS sip:x SIP/2.0\r\nl: {}\r\n\r\n", usize::MAX).as_bytes());
        assert_eq!(f.next_frame(), Err(FramingError::TooLarge));
    }

    #[test]
    fn oversized_and_bad_length() {
        let mut f = StreamFramer::new();
        f.push(&vec![b'a'; MAX_MESSAGE_LEN + 1]);
        assert_eq!(f.next_frame(), Err(FramingError::TooLarge));
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: zz\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::BadContentLength));
    }
}
