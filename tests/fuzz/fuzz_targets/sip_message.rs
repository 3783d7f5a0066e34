//! The SIP parser (`Message::parse`) on one datagram, and what the engine reads from a
//! parsed message: Via, CSeq, tags, name-addrs and URIs. A message that parses must
//! serialize to bytes that parse again to the same message.
#![no_main]

use dasan::sip::message::{split_list, NameAddr, MAX_HEADERS};
use dasan::sip::{uri, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(data) else {
        return;
    };
    let _ = (m.method(), m.status(), m.request_uri(), m.call_id());
    let _ = (m.cseq(), m.from_tag(), m.to_tag(), m.content_type());
    if let Some(v) = m.top_via() {
        let _ = (v.branch(), v.sent_by(), v.to_header_value());
    }
    for name in ["From", "To", "Contact", "Route", "Record-Route", "Refer-To"] {
        for value in m.header_values(name) {
            for part in split_list(value) {
                let na = NameAddr::parse(part);
                let _ = na.param("tag");
                let _ = uri::parse_sip_uri(na.uri);
            }
        }
    }
    if let Some(u) = m.request_uri() {
        let _ = uri::parse_sip_uri(u);
    }
    // Serializing adds a Content-Length: at the header limit that one is over it.
    let has_length = m.header("Content-Length").is_some();
    if m.headers.len() < MAX_HEADERS || has_length {
        let again = Message::parse(&m.to_bytes());
        assert!(
            again.is_ok(),
            "re-serialized message does not parse: {again:?}"
        );
    }
});
