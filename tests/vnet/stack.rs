//! The transaction layer every simulated phone shares: dasan's own RFC 3261 transaction
//! machines for both directions, plus what RFC 3261 leaves to the UA core: ACKing each
//! 2xx, and retransmitting our 2xx until its ACK (13.3.1.4).

use bytes::Bytes;
use dasan::sip::build::{ack_for_non2xx, response};
use dasan::sip::message::{Header, Message, NameAddr, StartLine};
use dasan::sip::transaction::{
    ClientInvite, ClientInviteState, ClientNonInvite, ResponseAction, ServerInvite,
    ServerInviteState, ServerNonInvite, TimerAction, TimerConfig,
};
use dasan::sip::Method;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What the transaction layer hands its phone.
#[derive(Debug)]
pub enum Event {
    /// A new request (retransmissions are absorbed), including ACKs for our 2xx.
    Request(Message),
    /// A response the phone should see: every provisional, the first final response.
    Response(Message),
    /// A request of ours got no final response (Timer B or F); here is the request.
    TimedOut(Message),
    /// The peer cancelled this INVITE of its; it has been answered 487 already.
    Cancelled(Message),
    /// A 2xx of ours to an INVITE on this Call-ID was never ACKed.
    NoAck(String),
}

enum ClientKind {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

struct Client {
    key: String,
    request: Message,
    kind: ClientKind,
}

impl Client {
    fn poll_timeout(&self) -> Option<Instant> {
        match &self.kind {
            // RFC 3261 17.1.1.2: Timer B only ends a transaction still in Calling. dasan's
            // machine keeps it armed in Proceeding, which would end a call waiting in a
            // queue after 32 s; a phone ignores it there.
            ClientKind::Invite(t) if t.state() == ClientInviteState::Proceeding => None,
            ClientKind::Invite(t) => t.poll_timeout(),
            ClientKind::NonInvite(t) => t.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        match &mut self.kind {
            ClientKind::Invite(t) => t.handle_timeout(now),
            ClientKind::NonInvite(t) => t.handle_timeout(now),
        }
    }
}

enum ServerKind {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

struct Server {
    key: String,
    request: Message,
    kind: ServerKind,
}

impl Server {
    fn poll_timeout(&self) -> Option<Instant> {
        match &self.kind {
            ServerKind::Invite(t) => t.poll_timeout(),
            ServerKind::NonInvite(t) => t.poll_timeout(),
        }
    }
}

/// A 2xx to an INVITE, resent until the ACK comes or 64*T1 has passed.
struct Unacked {
    call_id: String,
    cseq: u32,
    bytes: Bytes,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

pub struct Stack {
    pub addr: SocketAddr,
    timers: TimerConfig,
    counter: u64,
    clients: Vec<Client>,
    servers: Vec<Server>,
    unacked: Vec<Unacked>,
    /// The ACK sent for each 2xx (by Call-ID and CSeq), resent when the 2xx is.
    acks: HashMap<(String, u32), Bytes>,
    out: VecDeque<Bytes>,
    pub retransmissions: u64,
}

/// Transaction key: top Via branch and method (ACK matches its INVITE, RFC 3261 17.2.3).
fn key(msg: &Message, method: &str) -> String {
    let branch = msg.top_via().and_then(|v| v.branch().map(str::to_string));
    format!("{}|{method}", branch.unwrap_or_default())
}

fn cseq_of(msg: &Message) -> (u32, Method) {
    msg.cseq()
        .unwrap_or_else(|| panic!("message without a valid CSeq:\n{msg:?}"))
}

/// A request with these headers (Content-Length is added when it is serialized).
pub fn request(method: Method, uri: &str, headers: Vec<(&str, String)>) -> Message {
    Message {
        start: StartLine::Request {
            method,
            uri: uri.to_string(),
        },
        headers: headers
            .into_iter()
            .map(|(name, value)| Header {
                name: name.to_string(),
                value,
            })
            .collect(),
        body: Bytes::new(),
    }
}

pub fn set_body(msg: &mut Message, content_type: &str, body: String) {
    msg.set_header("Content-Type", content_type);
    msg.body = Bytes::from(body);
}

impl Stack {
    pub fn new(addr: SocketAddr, timers: TimerConfig) -> Stack {
        Stack {
            addr,
            timers,
            counter: 0,
            clients: Vec::new(),
            servers: Vec::new(),
            unacked: Vec::new(),
            acks: HashMap::new(),
            out: VecDeque::new(),
            retransmissions: 0,
        }
    }

    /// A token unique in the whole simulation (tags, Call-IDs, branches).
    pub fn token(&mut self, what: &str) -> String {
        self.counter += 1;
        let ip = self.addr.ip().to_string().replace('.', "-");
        format!("{what}{}-{ip}", self.counter)
    }

    pub fn via(&mut self) -> String {
        let b = self.token("z9hG4bK");
        format!("SIP/2.0/UDP {};branch={b};rport", self.addr)
    }

    pub fn contact(&self, user: &str) -> String {
        format!("<sip:{user}@{}>", self.addr)
    }

    /// Sends a request: ACK as is, anything else in a new client transaction.
    pub fn send(&mut self, now: Instant, req: Message) {
        let bytes = req.to_bytes();
        let method = req.method().cloned().unwrap_or(Method::Options);
        if method != Method::Ack {
            let kind = if method == Method::Invite {
                ClientKind::Invite(ClientInvite::new(now, bytes.clone(), self.timers, false))
            } else {
                ClientKind::NonInvite(ClientNonInvite::new(now, bytes.clone(), self.timers, false))
            };
            self.clients.push(Client {
                key: key(&req, method.as_str()),
                request: req,
                kind,
            });
        }
        self.out.push_back(bytes);
    }

    /// Answers `req` through its server transaction; a 2xx to an INVITE is then resent
    /// until ACKed. False when the transaction is gone or already has a final response.
    pub fn respond(&mut self, now: Instant, req: &Message, resp: Message) -> bool {
        let method = req.method().cloned().unwrap_or(Method::Options);
        let k = key(req, method.as_str());
        let Some(s) = self.servers.iter_mut().find(|s| s.key == k) else {
            return false;
        };
        let code = resp.status().unwrap_or(500);
        let bytes = resp.to_bytes();
        let sent = match &mut s.kind {
            ServerKind::Invite(t) => t.send_response(now, code, bytes.clone()),
            ServerKind::NonInvite(t) => t.send_response(now, code, bytes.clone()),
        };
        if !sent {
            return false;
        }
        if method == Method::Invite && (200..300).contains(&code) {
            self.unacked.push(Unacked {
                call_id: req.call_id().to_string(),
                cseq: cseq_of(req).0,
                bytes: bytes.clone(),
                next: now + self.timers.t1,
                interval: self.timers.t1,
                give_up: now + self.timers.t1x64(),
            });
        }
        self.out.push_back(bytes);
        true
    }

    /// Whether our INVITE server transaction for `req` still awaits a final response.
    pub fn invite_pending(&self, req: &Message) -> bool {
        let k = key(req, "INVITE");
        self.servers.iter().any(|s| {
            s.key == k
                && matches!(&s.kind, ServerKind::Invite(t) if t.state() == ServerInviteState::Proceeding)
        })
    }

    /// Drops the server transaction of `req` as if the phone had restarted.
    pub fn forget(&mut self, req: &Message) {
        let method = req.method().cloned().unwrap_or(Method::Options);
        let k = key(req, method.as_str());
        self.servers.retain(|s| s.key != k);
    }

    pub fn handle(&mut self, now: Instant, data: &[u8]) -> Option<Event> {
        let msg = Message::parse(data).unwrap_or_else(|e| {
            panic!(
                "{} got invalid SIP ({e}):\n{}",
                self.addr,
                String::from_utf8_lossy(data)
            )
        });
        match msg.method().cloned() {
            None => self.on_response(now, msg),
            Some(Method::Ack) => self.on_ack(now, msg),
            Some(Method::Cancel) => self.on_cancel(now, msg),
            Some(m) => {
                let k = key(&msg, m.as_str());
                if let Some(s) = self.servers.iter().find(|s| s.key == k) {
                    let again = match &s.kind {
                        ServerKind::Invite(t) => t.on_request_retransmission(),
                        ServerKind::NonInvite(t) => t.on_request_retransmission(),
                    };
                    if let Some(b) = again {
                        self.retransmissions += 1;
                        self.out.push_back(b);
                    }
                    return None;
                }
                let kind = if m == Method::Invite {
                    ServerKind::Invite(ServerInvite::new(self.timers, false))
                } else {
                    ServerKind::NonInvite(ServerNonInvite::new(self.timers, false))
                };
                self.servers.push(Server {
                    key: k,
                    request: msg.clone(),
                    kind,
                });
                Some(Event::Request(msg))
            }
        }
    }

    fn on_ack(&mut self, now: Instant, msg: Message) -> Option<Event> {
        let k = key(&msg, "INVITE");
        if let Some(s) = self.servers.iter_mut().find(|s| s.key == k) {
            if let ServerKind::Invite(t) = &mut s.kind {
                if t.state() != ServerInviteState::Accepted {
                    t.on_ack(now);
                    return None;
                }
            }
        }
        let cseq = cseq_of(&msg).0;
        let before = self.unacked.len();
        self.unacked
            .retain(|u| !(u.call_id == msg.call_id() && u.cseq == cseq));
        // Only the first ACK of a 2xx is news; the rest answer our retransmissions.
        (self.unacked.len() < before).then_some(Event::Request(msg))
    }

    fn on_cancel(&mut self, now: Instant, msg: Message) -> Option<Event> {
        let k = key(&msg, "CANCEL");
        if let Some(s) = self.servers.iter().find(|s| s.key == k) {
            if let ServerKind::NonInvite(t) = &s.kind {
                if let Some(b) = t.on_request_retransmission() {
                    self.retransmissions += 1;
                    self.out.push_back(b);
                }
            }
            return None;
        }
        self.servers.push(Server {
            key: k,
            request: msg.clone(),
            kind: ServerKind::NonInvite(ServerNonInvite::new(self.timers, false)),
        });
        let invite = self
            .servers
            .iter()
            .find(|s| s.key == key(&msg, "INVITE"))
            .map(|s| s.request.clone());
        let Some(invite) = invite else {
            self.respond(now, &msg, response(&msg, 481, None, None));
            return None;
        };
        // RFC 3261 9.2: the CANCEL's To tag is the one our responses to the INVITE carry.
        let tag = self.to_tag_sent(&invite);
        self.respond(now, &msg, response(&msg, 200, None, tag.as_deref()));
        if !self.invite_pending(&invite) {
            return None;
        }
        let r487 = response(&invite, 487, None, tag.as_deref());
        self.respond(now, &invite, r487);
        Some(Event::Cancelled(invite))
    }

    /// The To tag this phone put on its responses to `invite` (the UA chooses one per call
    /// and keeps it in its own state; the stack finds it from the last response sent).
    fn to_tag_sent(&self, invite: &Message) -> Option<String> {
        let k = key(invite, "INVITE");
        let s = self.servers.iter().find(|s| s.key == k)?;
        let ServerKind::Invite(t) = &s.kind else {
            return None;
        };
        let last = t.on_request_retransmission()?;
        Message::parse(&last).ok()?.to_tag()
    }

    fn on_response(&mut self, now: Instant, msg: Message) -> Option<Event> {
        let status = msg.status()?;
        let (cseq, method) = cseq_of(&msg);
        let k = key(&msg, method.as_str());
        let Some(c) = self.clients.iter_mut().find(|c| c.key == k) else {
            // A 2xx retransmitted after its transaction ended still needs its ACK.
            if let Some(ack) = self.acks.get(&(msg.call_id().to_string(), cseq)) {
                self.out.push_back(ack.clone());
            }
            return None;
        };
        match &mut c.kind {
            ClientKind::NonInvite(t) => t.on_response(now, status).then_some(Event::Response(msg)),
            ClientKind::Invite(t) => {
                let req = &c.request;
                match t.on_response(now, status, || ack_for_non2xx(req, &msg).to_bytes()) {
                    ResponseAction::PassToTuAndAck(ack) => {
                        self.out.push_back(ack);
                        Some(Event::Response(msg))
                    }
                    ResponseAction::ResendAck(ack) => {
                        self.out.push_back(ack);
                        None
                    }
                    ResponseAction::PassToTu if status >= 200 => {
                        let ack_key = (msg.call_id().to_string(), cseq);
                        if let Some(ack) = self.acks.get(&ack_key) {
                            self.out.push_back(ack.clone());
                            return None;
                        }
                        let invite = c.request.clone();
                        let ack = self.ack_for_2xx(&invite, &msg).to_bytes();
                        self.acks.insert(ack_key, ack.clone());
                        self.out.push_back(ack);
                        Some(Event::Response(msg))
                    }
                    ResponseAction::PassToTu => Some(Event::Response(msg)),
                    ResponseAction::Absorb => None,
                }
            }
        }
    }

    /// RFC 3261 13.2.2.4: the ACK for a 2xx is a new request in the dialog.
    fn ack_for_2xx(&mut self, invite: &Message, ok: &Message) -> Message {
        let target = ok
            .header("Contact")
            .map(|c| NameAddr::parse(c).uri.to_string())
            .unwrap_or_else(|| invite.request_uri().unwrap_or("").to_string());
        let header = |m: &Message, n: &str| m.header(n).unwrap_or("").to_string();
        request(
            Method::Ack,
            &target,
            vec![
                ("Via", self.via()),
                ("Max-Forwards", "70".into()),
                ("From", header(invite, "From")),
                ("To", header(ok, "To")),
                ("Call-ID", header(invite, "Call-ID")),
                ("CSeq", format!("{} ACK", cseq_of(invite).0)),
            ],
        )
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let mut i = 0;
        while i < self.clients.len() {
            let c = &mut self.clients[i];
            let mut done = false;
            while c.poll_timeout().is_some_and(|t| t <= now) {
                match c.handle_timeout(now) {
                    Some(TimerAction::Retransmit(b)) => {
                        self.retransmissions += 1;
                        self.out.push_back(b);
                    }
                    Some(TimerAction::Timeout(_)) => {
                        events.push(Event::TimedOut(c.request.clone()));
                        done = true;
                        break;
                    }
                    Some(TimerAction::Terminated(_)) => {
                        done = true;
                        break;
                    }
                    None => break,
                }
            }
            if done {
                self.clients.swap_remove(i);
            } else {
                i += 1;
            }
        }
        let mut i = 0;
        while i < self.servers.len() {
            let s = &mut self.servers[i];
            let mut done = false;
            while s.poll_timeout().is_some_and(|t| t <= now) {
                let action = match &mut s.kind {
                    ServerKind::Invite(t) => t.handle_timeout(now),
                    ServerKind::NonInvite(t) => t.handle_timeout(now),
                };
                match action {
                    Some(TimerAction::Retransmit(b)) => {
                        self.retransmissions += 1;
                        self.out.push_back(b);
                    }
                    Some(_) => {
                        done = true;
                        break;
                    }
                    None => break,
                }
            }
            if done {
                self.servers.swap_remove(i);
            } else {
                i += 1;
            }
        }
        let t2 = self.timers.t2;
        let mut i = 0;
        while i < self.unacked.len() {
            let u = &mut self.unacked[i];
            if u.next > now {
                i += 1;
            } else if now >= u.give_up {
                events.push(Event::NoAck(u.call_id.clone()));
                self.unacked.swap_remove(i);
            } else {
                u.interval = (u.interval * 2).min(t2);
                u.next = now + u.interval;
                self.retransmissions += 1;
                self.out.push_back(u.bytes.clone());
                i += 1;
            }
        }
        events
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let c = self.clients.iter().filter_map(Client::poll_timeout);
        let s = self.servers.iter().filter_map(Server::poll_timeout);
        let u = self.unacked.iter().map(|u| u.next);
        c.chain(s).chain(u).min()
    }

    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    /// No transaction and no 2xx awaiting its ACK.
    pub fn idle(&self) -> bool {
        self.clients.is_empty() && self.servers.is_empty() && self.unacked.is_empty()
    }

    /// What is still open, for failure reports.
    pub fn describe(&self) -> String {
        let c: Vec<_> = self.clients.iter().map(|c| c.key.as_str()).collect();
        let s: Vec<_> = self.servers.iter().map(|s| s.key.as_str()).collect();
        format!(
            "clients {c:?} servers {s:?} unacked 2xx {}",
            self.unacked.len()
        )
    }
}

/// A dialog as one side sees it (RFC 3261 12): enough to send requests in it.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    /// Our From/To value, with our tag.
    pub local: String,
    /// The peer's, with its tag once known.
    pub remote: String,
    pub target: String,
    pub cseq: u32,
    pub user: String,
}

impl Dialog {
    pub fn request(&mut self, stack: &mut Stack, method: Method) -> Message {
        self.cseq += 1;
        let cseq = format!("{} {method}", self.cseq);
        request(
            method,
            &self.target.clone(),
            vec![
                ("Via", stack.via()),
                ("Max-Forwards", "70".into()),
                ("From", self.local.clone()),
                ("To", self.remote.clone()),
                ("Call-ID", self.call_id.clone()),
                ("CSeq", cseq),
                ("Contact", stack.contact(&self.user)),
            ],
        )
    }
}

/// A plain response with our tag (none on 100).
pub fn reply(req: &Message, code: u16, tag: &str) -> Message {
    response(req, code, None, Some(tag))
}
