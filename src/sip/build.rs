//! Building responses (RFC 3261 8.2.6), ACKs for non-2xx (17.1.1.3) and CANCELs (9.1).

use super::message::{Header, Message, StartLine};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        429 => "Too Many Requests",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        504 => "Server Time-out",
        603 => "Decline",
        _ => "Unknown",
    }
}

/// Tags, branches, Call-IDs, nonce keys and SDP session ids, from a generator the owner
/// was given: seeded from the operating system in production, from a fixed seed in tests,
/// so that a test run (and a failing seed) replays exactly.
pub struct Ids(StdRng);

impl Ids {
    /// 256 bits of seed (production: from the operating system, see `util::entropy`).
    pub fn from_seed(seed: [u8; 32]) -> Ids {
        Ids(StdRng::from_seed(seed))
    }

    /// A reproducible generator for tests and simulations.
    pub fn seeded(seed: u64) -> Ids {
        Ids(StdRng::seed_from_u64(seed))
    }

    /// An independent generator drawn from this one (for a component with its own, such
    /// as the registrar's nonce key).
    pub fn fork(&mut self) -> Ids {
        let mut seed = [0u8; 32];
        self.0.fill_bytes(&mut seed);
        Ids::from_seed(seed)
    }

    /// A token of `len` characters from `[a-z0-9]`.
    pub fn token(&mut self, len: usize) -> String {
        crate::util::token_from(&mut self.0, len)
    }

    /// A new RFC 3261 branch (with the magic cookie).
    pub fn branch(&mut self) -> String {
        format!("z9hG4bK{}", self.token(16))
    }

    pub fn u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Key material (SRTP master keys): the generator is a CSPRNG seeded from the OS.
    pub fn fill(&mut self, out: &mut [u8]) {
        self.0.fill_bytes(out);
    }
}

/// A response to `req` (RFC 3261 8.2.6.2): Via, From, To, Call-ID and CSeq copied; the To
/// tag added when `to_tag` is given and the request's To has none.
pub fn response(req: &Message, code: u16, reason: Option<&str>, to_tag: Option<&str>) -> Message {
    let mut headers = Vec::with_capacity(8);
    for h in &req.headers {
        match h.name.as_str() {
            "Via" | "From" | "Call-ID" | "CSeq" => headers.push(h.clone()),
            "To" => {
                let mut value = h.value.clone();
                if let Some(tag) = to_tag {
                    if code > 100 && req.to_tag().is_none() {
                        value.push_str(";tag=");
                        value.push_str(tag);
                    }
                }
                headers.push(Header {
                    name: "To".into(),
                    value,
                });
            }
            _ => {}
        }
    }
    // RFC 3261 12.1.1: a UAS copies Record-Route into dialog-creating responses.
    if (101..300).contains(&code) {
        headers.extend(
            req.headers
                .iter()
                .filter(|h| h.name == "Record-Route")
                .cloned(),
        );
    }
    headers.push(Header {
        name: "Server".into(),
        value: concat!("dasan/", env!("CARGO_PKG_VERSION")).into(),
    });
    Message {
        start: StartLine::Response {
            code,
            reason: reason.unwrap_or(reason_phrase(code)).to_string(),
        },
        headers,
        body: Bytes::new(),
    }
}

/// The ACK for a non-2xx final response to `invite` (RFC 3261 17.1.1.3): same branch,
/// Request-URI, Call-ID, From and Route; To from the response; CSeq method ACK.
pub fn ack_for_non2xx(invite: &Message, resp: &Message) -> Message {
    let mut headers = Vec::with_capacity(8);
    if let Some(v) = invite.header_values("Via").next() {
        headers.push(Header {
            name: "Via".into(),
            value: v.to_string(),
        });
    }
    headers.push(Header {
        name: "Max-Forwards".into(),
        value: "70".into(),
    });
    for name in ["From", "Call-ID"] {
        if let Some(v) = invite.header(name) {
            headers.push(Header {
                name: name.into(),
                value: v.to_string(),
            });
        }
    }
    if let Some(v) = resp.header("To") {
        headers.push(Header {
            name: "To".into(),
            value: v.to_string(),
        });
    }
    let cseq = invite.cseq().map(|(n, _)| n).unwrap_or(1);
    headers.push(Header {
        name: "CSeq".into(),
        value: format!("{cseq} ACK"),
    });
    for h in invite.headers.iter().filter(|h| h.name == "Route") {
        headers.push(h.clone());
    }
    Message {
        start: StartLine::Request {
            method: super::Method::Ack,
            uri: invite.request_uri().unwrap_or("").to_string(),
        },
        headers,
        body: Bytes::new(),
    }
}

/// A CANCEL for a pending INVITE (RFC 3261 9.1): same top Via (branch), Request-URI,
/// Call-ID, From, To, Route and CSeq number.
pub fn cancel_for(invite: &Message) -> Message {
    let mut m = ack_for_non2xx(invite, invite);
    m.start = StartLine::Request {
        method: super::Method::Cancel,
        uri: invite.request_uri().unwrap_or("").to_string(),
    };
    let cseq = invite.cseq().map(|(n, _)| n).unwrap_or(1);
    m.set_header("CSeq", format!("{cseq} CANCEL"));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Message {
        Message::parse(
            b"INVITE sip:1001@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=f\r\nTo: <sip:1001@b>\r\nCall-ID: c\r\nCSeq: 4 INVITE\r\nRoute: <sip:p;lr>\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap()
    }

    #[test]
    fn response_copies_and_tags() {
        let r = response(&invite(), 180, None, Some("tt"));
        assert_eq!(r.to_tag().as_deref(), Some("tt"));
        assert_eq!(r.cseq(), Some((4, super::super::Method::Invite)));
        let r100 = response(&invite(), 100, None, Some("tt"));
        assert_eq!(r100.to_tag(), None, "100 Trying carries no tag");
    }

    #[test]
    fn ack_and_cancel_keep_branch() {
        let inv = invite();
        let resp = response(&inv, 486, None, Some("tt"));
        let ack = ack_for_non2xx(&inv, &resp);
        assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKx"));
        assert_eq!(ack.to_tag().as_deref(), Some("tt"));
        assert_eq!(ack.header("CSeq"), Some("4 ACK"));
        assert_eq!(ack.header("Route"), Some("<sip:p;lr>"));
        let c = cancel_for(&inv);
        assert_eq!(c.header("CSeq"), Some("4 CANCEL"));
        assert_eq!(c.to_tag(), None);
        assert_eq!(c.request_uri(), Some("sip:1001@127.0.0.1:5070"));
    }
}
