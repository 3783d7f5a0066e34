//! SIP message model, parser and serializer.
//!
//! rsip 0.4 keeps compact headers as unknown headers, rejects folded lines, `tel:` URIs,
//! unknown methods and LF-only line ends, and does not frame by Content-Length. This module
//! does that framing and normalisation itself and keeps header values as text; typed views
//! (Via, name-addr, CSeq) are parsed on demand, and URIs go through rsip (see `uri.rs`).

use bytes::Bytes;
use std::fmt::Write as _;

/// Upper bound for one message; larger input is garbage, not a message.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// More header fields than any real peer sends (RFC 4475's longest messages have ~40):
/// beyond it a message is refused before its headers cost memory and lookups.
pub const MAX_HEADERS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// A method token we do not know; answered with 501.
    Extension(String),
}

impl Method {
    pub fn parse(token: &str) -> Method {
        // rsip knows the standard methods; anything else that is a valid token is an extension.
        match token.parse::<rsip::Method>() {
            Ok(m) if token.bytes().all(|b| b.is_ascii_uppercase()) => match m {
                rsip::Method::Invite => Method::Invite,
                rsip::Method::Ack => Method::Ack,
                rsip::Method::Bye => Method::Bye,
                rsip::Method::Cancel => Method::Cancel,
                rsip::Method::Register => Method::Register,
                rsip::Method::Options => Method::Options,
                rsip::Method::Info => Method::Info,
                rsip::Method::Update => Method::Update,
                rsip::Method::PRack => Method::Prack,
                rsip::Method::Subscribe => Method::Subscribe,
                rsip::Method::Notify => Method::Notify,
                rsip::Method::Refer => Method::Refer,
                rsip::Method::Message => Method::Message,
                rsip::Method::Publish => Method::Publish,
            },
            // Methods are case-sensitive (RFC 3261 7.1): "invite" is an extension method.
            _ => Method::Extension(token.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: String },
    Response { code: u16, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Canonical (long-form) name.
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Bytes,
}

/// Why a message could not be parsed. `bad_request` tells whether enough of a request was
/// read to answer it with a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a SIP message: {0}")]
    Garbage(&'static str),
    #[error("message too large")]
    TooLarge,
    #[error("{0}")]
    BadRequest(String),
    /// A request for another SIP version: answered with 505.
    #[error("SIP version not supported")]
    VersionNotSupported,
}

const COMPACT: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'n', "Identity-Info"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

const CANONICAL: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Expires",
    "Route",
    "Record-Route",
    "Authorization",
    "WWW-Authenticate",
    "Proxy-Authorization",
    "Proxy-Authenticate",
    "User-Agent",
    "Server",
    "Allow",
    "Supported",
    "Require",
    "Retry-After",
    "Reason",
    "Event",
    "Accept",
];

fn canonical_name(raw: &str) -> String {
    if raw.len() == 1 {
        let c = raw.as_bytes()[0].to_ascii_lowercase();
        if let Some((_, long)) = COMPACT.iter().find(|(k, _)| *k == c) {
            return (*long).to_string();
        }
    }
    for c in CANONICAL {
        if c.eq_ignore_ascii_case(raw) {
            return (*c).to_string();
        }
    }
    raw.to_string()
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Finds the end of the header block: returns (index of first body byte).
pub fn find_header_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

impl Message {
    /// Parses one complete message (a UDP datagram, or a frame cut by [`crate::sip::framing`]).
    pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
        if buf.len() > MAX_MESSAGE_LEN {
            return Err(ParseError::TooLarge);
        }
        let head_end = find_header_end(buf).unwrap_or(buf.len());
        let head = std::str::from_utf8(&buf[..head_end])
            .map_err(|_| ParseError::Garbage("header block is not UTF-8"))?;
        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let first = loop {
            match lines.next() {
                Some("") => continue, // leading CRLFs (keep-alives before a message) are allowed
                Some(l) => break l,
                None => return Err(ParseError::Garbage("empty")),
            }
        };
        let start = parse_start_line(first)?;
        let is_request = matches!(start, StartLine::Request { .. });
        let bad = |msg: String| {
            if is_request {
                ParseError::BadRequest(msg)
            } else {
                ParseError::Garbage("malformed response")
            }
        };

        let mut headers: Vec<Header> = Vec::with_capacity(16);
        for line in lines {
            if line.is_empty() {
                break;
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                // RFC 3261 7.3.1: a folded line continues the previous header value.
                match headers.last_mut() {
                    Some(h) => {
                        h.value.push(' ');
                        h.value.push_str(line.trim());
                    }
                    None => return Err(bad("Malformed Header Folding".into())),
                }
                continue;
            }
            if headers.len() >= MAX_HEADERS {
                return Err(bad("Too Many Header Fields".into()));
            }
            let Some(colon) = line.find(':') else {
                return Err(bad("Malformed Header Line".into()));
            };
            let name = line[..colon].trim_end();
            if name.is_empty() || !name.bytes().all(is_token_char) {
                return Err(bad("Malformed Header Name".into()));
            }
            headers.push(Header {
                name: canonical_name(name),
                value: line[colon + 1..].trim().to_string(),
            });
        }

        let rest = &buf[head_end.min(buf.len())..];
        let mut msg = Message {
            start,
            headers,
            body: Bytes::new(),
        };
        let first_length = {
            let mut lengths = msg.header_values("Content-Length").map(str::trim);
            let first = lengths.next();
            if lengths.any(|v| Some(v) != first) {
                // RFC 4475 3.3.8: the body's end cannot be known.
                return Err(bad("Conflicting Content-Length".into()));
            }
            first.map(str::to_string)
        };
        let body_len = match first_length {
            Some(v) => {
                let len: usize = v
                    .parse()
                    .map_err(|_| bad("Invalid Content-Length".into()))?;
                if len > rest.len() {
                    return Err(bad("Content-Length Exceeds Message".into()));
                }
                len
            }
            None => rest.len(),
        };
        let body = &rest[..body_len];
        msg.body = Bytes::copy_from_slice(body);
        msg.check_mandatory().map_err(|e| bad(e.to_string()))?;
        Ok(msg)
    }

    fn check_mandatory(&self) -> Result<(), Unusable> {
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if self.header(name).is_none() {
                return Err(Unusable::Missing(name));
            }
        }
        let (_, cseq_method) = self.cseq().ok_or(Unusable::InvalidCseq)?;
        if let StartLine::Request { method, .. } = &self.start {
            if &cseq_method != method && *method != Method::Ack && *method != Method::Cancel {
                return Err(Unusable::CseqMismatch);
            }
        }
        self.top_via().ok_or(Unusable::InvalidVia).map(|_| ())
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// All values of a header, with comma-separated lists split into their elements.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| split_list(&h.value))
    }

    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        if let Some(h) = self
            .headers
            .iter_mut()
            .find(|h| h.name.eq_ignore_ascii_case(name))
        {
            h.value = value;
        } else {
            self.headers.push(Header {
                name: name.to_string(),
                value,
            });
        }
    }

    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or("")
    }

    pub fn cseq(&self) -> Option<(u32, Method)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        let m = Method::parse(it.next()?);
        if it.next().is_some() {
            return None;
        }
        Some((n, m))
    }

    pub fn top_via(&self) -> Option<Via> {
        self.header_values("Via").next().and_then(Via::parse)
    }

    pub fn from_tag(&self) -> Option<String> {
        self.header("From")
            .and_then(|v| NameAddr::parse(v).param("tag").map(str::to_string))
    }

    pub fn to_tag(&self) -> Option<String> {
        self.header("To")
            .and_then(|v| NameAddr::parse(v).param("tag").map(str::to_string))
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("Content-Type")
    }

    /// Serializes with CRLF line ends and a correct Content-Length.
    pub fn to_bytes(&self) -> Bytes {
        let mut s = String::with_capacity(512 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(s, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(s, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for h in &self.headers {
            if h.name.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            let _ = write!(s, "{}: {}\r\n", h.name, h.value);
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        Bytes::from(out)
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code
            .parse()
            .map_err(|_| ParseError::Garbage("bad status code"))?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::Garbage("status code out of range"));
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.to_string(),
        });
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let method = parts[0];
    if parts.len() < 3 || method.is_empty() || !method.bytes().all(is_token_char) {
        return Err(ParseError::Garbage("bad start line"));
    }
    let version = parts[parts.len() - 1];
    if !version.starts_with("SIP/") {
        return Err(ParseError::Garbage("bad start line"));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(ParseError::VersionNotSupported);
    }
    if parts.len() != 3 {
        // RFC 4475 3.1.2.5/3.1.2.6: whitespace inside the Request-URI.
        return Err(ParseError::BadRequest("Invalid Request-URI".into()));
    }
    let uri = parts[1];
    if uri.is_empty() || !uri.contains(':') {
        return Err(ParseError::BadRequest("Invalid Request-URI".into()));
    }
    Ok(StartLine::Request {
        method: Method::parse(method),
        uri: uri.to_string(),
    })
}

/// Splits a header value on commas that are outside quotes and angle brackets.
/// A message that parsed but lacks what RFC 3261 8.1.1 requires of every request; the
/// text is the 400's reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Unusable {
    #[error("Missing {0}")]
    Missing(&'static str),
    #[error("Invalid CSeq")]
    InvalidCseq,
    #[error("CSeq Method Mismatch")]
    CseqMismatch,
    #[error("Invalid Via")]
    InvalidVia,
}

pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut quoted, mut angle, mut escape, mut start) = (false, false, false, 0);
    for (i, c) in value.char_indices() {
        if escape {
            escape = false;
            continue;
        }
        match c {
            '\\' if quoted => escape = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty())
}

/// A parsed Via header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    pub fn parse(v: &str) -> Option<Via> {
        let (proto, rest) = v.trim().split_once(|c: char| c.is_whitespace())?;
        let mut p = proto.split('/');
        let (Some(name), Some(_ver), Some(transport)) = (p.next(), p.next(), p.next()) else {
            return None;
        };
        if !name.trim().eq_ignore_ascii_case("SIP") {
            return None;
        }
        let rest = rest.trim_start();
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(sent_by.trim())?;
        Some(Via {
            transport: transport.trim().to_ascii_uppercase(),
            host,
            port,
            params: parse_params(params),
        })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    pub fn has_param(&self, name: &str) -> bool {
        self.params
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch")
    }

    /// `host[:port]` as it appears on the wire (IPv6 in brackets).
    pub fn sent_by(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    pub fn to_header_value(&self) -> String {
        let mut s = format!("SIP/2.0/{} {}", self.transport, self.sent_by());
        for (k, v) in &self.params {
            s.push(';');
            s.push_str(k);
            if let Some(v) = v {
                s.push('=');
                s.push_str(v);
            }
        }
        s
    }

    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        if let Some(p) = self
            .params
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            p.1 = value;
        } else {
            self.params.push((name.to_string(), value));
        }
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`. Returns the host without brackets.
pub fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.trim().parse().ok()?),
            None if after.trim().is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            Some((h.trim().to_string(), Some(p.trim().parse().ok()?)))
        }
        Some(_) => Some((s.to_string(), None)), // bare IPv6 without brackets
        None => Some((s.trim().to_string(), None)),
    }
}

pub fn parse_params(s: &str) -> Vec<(String, Option<String>)> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (
                k.trim().to_string(),
                Some(v.trim().trim_matches('"').to_string()),
            ),
            None => (p.to_string(), None),
        })
        .collect()
}

/// `"Display" <uri>;params` or `uri;params` (From, To, Contact, Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub display: Option<&'a str>,
    pub uri: &'a str,
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    pub fn parse(v: &'a str) -> NameAddr<'a> {
        let v = v.trim();
        if let Some(lt) = find_unquoted(v, '<') {
            let after = &v[lt + 1..];
            let gt = after.find('>').unwrap_or(after.len());
            let display = v[..lt].trim();
            let params = after.get(gt + 1..).unwrap_or("").trim_start();
            NameAddr {
                display: (!display.is_empty()).then_some(display),
                uri: &after[..gt],
                params: params.strip_prefix(';').unwrap_or(params),
            }
        } else {
            // Without angle brackets, everything after the first ';' is a header parameter.
            let (uri, params) = v.split_once(';').unwrap_or((v, ""));
            NameAddr {
                display: None,
                uri,
                params,
            }
        }
    }

    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.split(';').find_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn find_unquoted(s: &str, needle: char) -> Option<usize> {
    let mut quoted = false;
    let mut escape = false;
    for (i, c) in s.char_indices() {
        if escape {
            escape = false;
            continue;
        }
        match c {
            '\\' if quoted => escape = true,
            '"' => quoted = !quoted,
            c if c == needle && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:120@127.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKabc;rport\r\n\
Max-Forwards: 70\r\n\
f: \"Kim, A\" <sip:0212345678@carrier>;tag=1\r\n\
t: <sip:120@127.0.0.1>\r\n\
i: abc@carrier\r\n\
CSeq: 1 INVITE\r\n\
Subject: folded\r\n  value\r\n\
m: <sip:carrier@127.0.0.1:5070>\r\n\
c: application/sdp\r\n\
l: 4\r\n\r\nv=0\r\nEXTRA";

    #[test]
    fn compact_folded_ipv6_and_content_length() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.call_id(), "abc@carrier");
        assert_eq!(m.header("Subject"), Some("folded value"));
        assert_eq!(m.from_tag().as_deref(), Some("1"));
        assert_eq!(&m.body[..], b"v=0\r");
        let via = m.top_via().unwrap();
        assert_eq!(via.host, "2001:db8::9");
        assert_eq!(via.port, Some(5070));
        assert!(via.has_param("rport"));
        assert_eq!(via.branch(), Some("z9hG4bKabc"));
    }

    #[test]
    fn lf_only_and_tel_uri() {
        let raw = "OPTIONS tel:+82-2-120 SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\nFrom: <tel:+8221234>;tag=a\nTo: <tel:120>\nCall-ID: x\nCSeq: 7 OPTIONS\n\n";
        let m = Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.request_uri(), Some("tel:+82-2-120"));
        assert_eq!(m.cseq(), Some((7, Method::Options)));
    }

    #[test]
    fn unknown_method_is_extension() {
        let raw = "FOO sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=a\r\nTo: <sip:x@y>\r\nCall-ID: x\r\nCSeq: 1 FOO\r\n\r\n";
        let m = Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.method(), Some(&Method::Extension("FOO".into())));
    }

    #[test]
    fn missing_header_is_bad_request() {
        let raw = "INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=a\r\nTo: <sip:x@y>\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(
            Message::parse(raw.as_bytes()),
            Err(ParseError::BadRequest("Missing Call-ID".into()))
        );
    }

    #[test]
    fn garbage_is_garbage() {
        for raw in [
            &b"\x00\x01\x02"[..],
            b"hello",
            b"SIP/2.0 999 X\r\n\r\n",
            b"",
        ] {
            assert!(matches!(Message::parse(raw), Err(ParseError::Garbage(_))));
        }
    }

    #[test]
    fn list_split_respects_quotes() {
        let v: Vec<_> = split_list("\"a,b\" <sip:x@y>;q=1, <sip:z@w,>").collect();
        assert_eq!(v, vec!["\"a,b\" <sip:x@y>;q=1", "<sip:z@w,>"]);
    }

    #[test]
    fn roundtrip_sets_content_length() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        let again = Message::parse(&m.to_bytes()).unwrap();
        assert_eq!(again.header("Content-Length"), Some("4"));
        assert_eq!(again.body, m.body);
    }
}
