//! One side of a call: the dialog state needed to send in-dialog requests to that peer
//! (RFC 3261 12.2.1.1) and the 2xx retransmission the UAS core owes it (13.3.1.4).

use crate::sip::build::Ids;
use crate::sip::message::{Header, Message, NameAddr, StartLine};
use crate::sip::{Flow, Locals, Method};
use bytes::Bytes;
use std::time::{Duration, Instant};

pub struct Leg {
    /// Where requests to this peer go (the address its messages came from).
    pub flow: Flow,
    pub call_id: String,
    /// Our From/To value on this leg, with our tag.
    pub local: String,
    /// The peer's From/To value, with its tag once known.
    pub remote: String,
    pub remote_target: String,
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    /// A 2xx to an INVITE from this peer that it has not ACKed yet.
    pub pending_2xx: Option<Pending2xx>,
    /// A SIPS dialog (RFC 5630): the request that began it had a `sips:` Request-URI, so
    /// our Contact on it is `sips:` too (RFC 3261 §8.1.1.8).
    pub sips: bool,
}

pub struct Pending2xx {
    pub bytes: Bytes,
    pub cseq: u32,
    pub next: Instant,
    pub interval: Duration,
    pub give_up: Instant,
}

impl Leg {
    /// A request in this dialog (BYE, re-INVITE, UPDATE, INFO, ACK). ACK reuses the INVITE's
    /// CSeq number; other methods take the next local CSeq.
    pub fn request(
        &mut self,
        method: Method,
        local: Locals,
        ack_cseq: Option<u32>,
        ids: &mut Ids,
    ) -> Message {
        let cseq = match (method == Method::Ack, ack_cseq) {
            (true, Some(n)) => n,
            _ => {
                self.local_cseq += 1;
                self.local_cseq
            }
        };
        let mut headers = Vec::with_capacity(10);
        let mut push = |name: &str, value: String| {
            headers.push(Header {
                name: name.into(),
                value,
            })
        };
        push("Via", via_value(self.flow, local, ids));
        push("Max-Forwards", "70".into());
        push("From", self.local.clone());
        push("To", self.remote.clone());
        push("Call-ID", self.call_id.clone());
        push("CSeq", format!("{cseq} {method}"));
        for r in &self.route_set {
            push("Route", r.clone());
        }
        Message {
            start: StartLine::Request {
                method,
                uri: self.remote_target.clone(),
            },
            headers,
            body: Bytes::new(),
        }
    }

    /// Takes the peer's target and route set from a 2xx or a request it sent (RFC 3261
    /// 12.1.2: a UAC reverses the Record-Route order; `reverse` says which side we are).
    pub fn learn_target(&mut self, msg: &Message, reverse: bool) {
        if let Some(c) = msg.header_values("Contact").next() {
            let uri = NameAddr::parse(c).uri;
            // Only a URI that can stand in a request line: a Contact with whitespace in
            // it would make every later request on this leg unparsable for the peer.
            if crate::sip::uri::is_request_uri(uri) {
                self.remote_target = uri.to_string();
            }
        }
        let mut rr: Vec<String> = msg
            .header_values("Record-Route")
            .map(str::to_string)
            .collect();
        if !rr.is_empty() {
            if reverse {
                rr.reverse();
            }
            self.route_set = rr;
        }
    }
}

pub fn via_value(flow: Flow, local: Locals, ids: &mut Ids) -> String {
    format!(
        "SIP/2.0/{} {};branch={};rport",
        flow.transport.via_name(),
        local.for_transport(flow.transport),
        ids.branch()
    )
}

/// `sips:` (any case), RFC 5630.
pub fn is_sips(uri: &str) -> bool {
    uri.trim_start()
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
}

impl Leg {
    /// Our Contact on this leg: [`contact_value`], or `sips:` on a SIPS dialog.
    pub fn contact(&self, local: Locals, user: &str) -> String {
        if self.sips && self.flow.transport == crate::sip::Transport::Tls {
            format!("<sips:{user}@{}>", local.for_transport(self.flow.transport))
        } else {
            contact_value(self.flow, local, user)
        }
    }
}

/// Our Contact for a leg on `flow`: the listener of its transport, so that the peer's
/// in-dialog requests come back the way the dialog began (RFC 3261 §12.1.1; over TLS with
/// `transport=tls`, as phones and trunks that register `sip:` URIs over TLS expect).
pub fn contact_value(flow: Flow, local: Locals, user: &str) -> String {
    let addr = local.for_transport(flow.transport);
    match flow.transport {
        crate::sip::Transport::Udp => format!("<sip:{user}@{addr}>"),
        crate::sip::Transport::Tcp => format!("<sip:{user}@{addr};transport=tcp>"),
        crate::sip::Transport::Tls => format!("<sip:{user}@{addr};transport=tls>"),
    }
}

/// Copies body and Content-Type from one message to another.
pub fn copy_body(from: &Message, to: &mut Message) {
    if !from.body.is_empty() {
        to.body = from.body.clone();
        if let Some(ct) = from.content_type() {
            to.headers.push(Header {
                name: "Content-Type".into(),
                value: ct.to_string(),
            });
        }
    }
}

/// The tag parameter of a From/To value.
pub fn tag_of(v: &str) -> String {
    NameAddr::parse(v).param("tag").unwrap_or("").to_string()
}
