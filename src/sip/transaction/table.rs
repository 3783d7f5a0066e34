//! The transaction layer's tables: every running transaction by id, how requests and
//! responses find theirs (RFC 3261 17.1.3 and 17.2.3, with the RFC 2543 fallback), and the
//! bookkeeping around the four state machines (retransmissions to send, transactions to
//! reclaim, the TU to tell). The transaction user (the engine) keeps only ids and, per
//! transaction, a value of its own: `S` for server transactions (the call it belongs to),
//! `C` for client transactions (what the response is for).
//!
//! Like the machines, the table never reads the clock; `now` is passed in.

use super::{
    ClientInvite, ClientNonInvite, ResponseAction, ServerInvite, ServerNonInvite, TimerAction,
    TimerConfig,
};
use crate::sip::message::Message;
use crate::sip::{Flow, Method};
use bytes::Bytes;
use std::collections::HashMap;
use std::time::Instant;

/// A transaction's id, unique across server and client transactions for the table's life.
pub type TxId = u64;

pub enum ServerKind {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

pub enum ClientKind {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

pub struct ServerTx<S> {
    key: String,
    pub kind: ServerKind,
    /// Where responses go (RFC 3261 18.2.2 with RFC 3581).
    pub flow: Flow,
    /// The TU's own data for this transaction.
    pub tu: S,
    armed: Option<Instant>,
}

pub struct ClientTx<C> {
    key: String,
    pub kind: ClientKind,
    pub flow: Flow,
    /// The TU's own data: what the response is for.
    pub owner: C,
    /// The INVITE, kept to build its ACK or CANCEL until a final response.
    pub request: Option<Message>,
    /// The ACK the TU sent for a 2xx, resent on 2xx retransmissions.
    pub ack_2xx: Option<Bytes>,
    /// The TU gave up before any provisional: CANCEL as soon as one arrives.
    pub cancel_on_provisional: bool,
    armed: Option<Instant>,
}

impl<S> ServerTx<S> {
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.kind {
            ServerKind::Invite(t) => t.poll_timeout(),
            ServerKind::NonInvite(t) => t.poll_timeout(),
        }
    }
}

impl<C> ClientTx<C> {
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.kind {
            ClientKind::Invite(t) => t.poll_timeout(),
            ClientKind::NonInvite(t) => t.poll_timeout(),
        }
    }
}

/// What a response means once its client transaction has seen it.
#[derive(Debug)]
pub struct ResponseRoute {
    /// The client transaction the response belongs to.
    pub tx: TxId,
    /// An ACK to send (or resend) for the response.
    pub send: Option<(Flow, Bytes)>,
    /// The TU must see the response: Some(true) for an INVITE's, Some(false) otherwise.
    pub to_tu: Option<bool>,
}

/// What running a client transaction's due timers came to.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientTimeout<C> {
    /// Still running (possibly after retransmitting).
    Running,
    /// Over and reclaimed (Timers D, K, M…).
    Reclaimed,
    /// Timed out (Timer B or F) and reclaimed: the TU must hear of it.
    TimedOut(C),
}

/// Every running transaction. See the module docs.
pub struct TransactionTable<S, C> {
    timers: TimerConfig,
    server: HashMap<TxId, ServerTx<S>>,
    server_ids: HashMap<String, TxId>,
    client: HashMap<TxId, ClientTx<C>>,
    client_ids: HashMap<String, TxId>,
    next_id: TxId,
    /// Server transactions alive per source address, for per-source limits.
    per_source: HashMap<std::net::IpAddr, usize>,
}

impl<S, C: Copy> TransactionTable<S, C> {
    pub fn new(timers: TimerConfig) -> Self {
        TransactionTable {
            timers,
            server: HashMap::new(),
            server_ids: HashMap::new(),
            client: HashMap::new(),
            client_ids: HashMap::new(),
            next_id: 1,
            per_source: HashMap::new(),
        }
    }

    pub fn timers(&self) -> TimerConfig {
        self.timers
    }

    /// Server and client transactions running.
    pub fn len(&self) -> usize {
        self.server.len() + self.client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn id(&mut self) -> TxId {
        self.next_id += 1;
        self.next_id
    }

    /// The server transaction `key` belongs to, if one runs.
    pub fn find_server(&self, key: &str) -> Option<TxId> {
        self.server_ids.get(key).copied()
    }

    /// A retransmitted request: the response to send again, if any (17.2.1, 17.2.2).
    pub fn retransmitted(&self, id: TxId) -> Option<(Flow, Bytes)> {
        let tx = self.server.get(&id)?;
        let bytes = match &tx.kind {
            ServerKind::Invite(t) => t.on_request_retransmission(),
            ServerKind::NonInvite(t) => t.on_request_retransmission(),
        }?;
        Some((tx.flow, bytes))
    }

    /// Starts a server transaction for a new request.
    pub fn new_server(&mut self, key: String, invite: bool, flow: Flow, tu: S) -> TxId {
        let reliable = flow.transport.is_reliable();
        let kind = if invite {
            ServerKind::Invite(ServerInvite::new(self.timers, reliable))
        } else {
            ServerKind::NonInvite(ServerNonInvite::new(self.timers, reliable))
        };
        let id = self.id();
        *self.per_source.entry(flow.remote.ip()).or_insert(0) += 1;
        self.server_ids.insert(key.clone(), id);
        self.server.insert(
            id,
            ServerTx {
                key,
                kind,
                flow,
                tu,
                armed: None,
            },
        );
        id
    }

    pub fn server(&self, id: TxId) -> Option<&ServerTx<S>> {
        self.server.get(&id)
    }

    pub fn server_mut(&mut self, id: TxId) -> Option<&mut ServerTx<S>> {
        self.server.get_mut(&id)
    }

    /// Hands a response to its server transaction: where to send it, or None when the
    /// transaction is gone or its state takes no response now.
    pub fn respond(&mut self, id: TxId, now: Instant, code: u16, bytes: Bytes) -> Option<Flow> {
        let t = self.server.get_mut(&id)?;
        let ok = match &mut t.kind {
            ServerKind::Invite(s) => s.send_response(now, code, bytes),
            ServerKind::NonInvite(s) => s.send_response(now, code, bytes),
        };
        ok.then_some(t.flow)
    }

    /// Runs a server transaction's due timers; retransmissions go to `resend`. True when it
    /// is over and reclaimed.
    pub fn server_timeout(
        &mut self,
        id: TxId,
        now: Instant,
        resend: &mut Vec<(Flow, Bytes)>,
    ) -> bool {
        loop {
            let Some(tx) = self.server.get_mut(&id) else {
                return false;
            };
            if tx.poll_timeout().is_none_or(|t| t > now) {
                return false;
            }
            let action = match &mut tx.kind {
                ServerKind::Invite(t) => t.handle_timeout(now),
                ServerKind::NonInvite(t) => t.handle_timeout(now),
            };
            match action {
                Some(TimerAction::Retransmit(b)) => resend.push((tx.flow, b)),
                Some(TimerAction::Timeout(_)) | Some(TimerAction::Terminated(_)) => {
                    self.remove_server(id);
                    return true;
                }
                None => return false,
            }
        }
    }

    /// Ends a server transaction at once and returns where its response goes: for an
    /// answer that must not keep state (a refusal before authentication), so that it is
    /// sent exactly once and never retransmitted by Timer G.
    pub fn forget_server(&mut self, id: TxId) -> Option<Flow> {
        let flow = self.server.get(&id)?.flow;
        self.remove_server(id);
        Some(flow)
    }

    /// Server transactions alive, in total and from `source`.
    pub fn servers_from(&self, source: std::net::IpAddr) -> (usize, usize) {
        (
            self.server.len(),
            self.per_source.get(&source).copied().unwrap_or(0),
        )
    }

    fn remove_server(&mut self, id: TxId) {
        if let Some(tx) = self.server.remove(&id) {
            let ip = tx.flow.remote.ip();
            if let Some(n) = self.per_source.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&ip);
                }
            }
            self.server_ids.remove(&tx.key);
        }
    }

    /// Starts a client transaction for `req` (its first copy is the caller's to send).
    pub fn new_client(
        &mut self,
        now: Instant,
        flow: Flow,
        req: Message,
        owner: C,
    ) -> (TxId, Bytes) {
        let bytes = req.to_bytes();
        let reliable = flow.transport.is_reliable();
        let method = req.method().cloned().unwrap_or(Method::Invite);
        let branch = req
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        let key = client_key(&branch, &method);
        let invite = method == Method::Invite;
        let kind = if invite {
            ClientKind::Invite(ClientInvite::new(now, bytes.clone(), self.timers, reliable))
        } else {
            ClientKind::NonInvite(ClientNonInvite::new(
                now,
                bytes.clone(),
                self.timers,
                reliable,
            ))
        };
        let id = self.id();
        self.client_ids.insert(key.clone(), id);
        self.client.insert(
            id,
            ClientTx {
                key,
                kind,
                flow,
                owner,
                request: invite.then_some(req),
                ack_2xx: None,
                cancel_on_provisional: false,
                armed: None,
            },
        );
        (id, bytes)
    }

    pub fn client(&self, id: TxId) -> Option<&ClientTx<C>> {
        self.client.get(&id)
    }

    pub fn client_mut(&mut self, id: TxId) -> Option<&mut ClientTx<C>> {
        self.client.get_mut(&id)
    }

    /// Matches a response to its client transaction (RFC 3261 17.1.3: branch and CSeq
    /// method together, since a CANCEL shares its INVITE's branch) and runs it through the
    /// machine. None for a stray response (not ours, or its transaction is gone).
    pub fn on_response(&mut self, now: Instant, msg: &Message) -> Option<ResponseRoute> {
        let status = msg.status()?;
        let branch = msg.top_via().and_then(|v| v.branch().map(str::to_string))?;
        let (_, method) = msg.cseq()?;
        let id = *self.client_ids.get(&client_key(&branch, &method))?;
        let tx = self.client.get_mut(&id)?;
        let flow = tx.flow;
        let route = |send, to_tu| ResponseRoute {
            tx: id,
            send,
            to_tu,
        };
        Some(match &mut tx.kind {
            ClientKind::Invite(ci) => {
                let request = tx.request.as_ref();
                let action = ci.on_response(now, status, || match request {
                    Some(req) => crate::sip::build::ack_for_non2xx(req, msg).to_bytes(),
                    None => Bytes::new(),
                });
                match action {
                    ResponseAction::PassToTuAndAck(ack) => route(Some((flow, ack)), Some(true)),
                    ResponseAction::ResendAck(ack) => route(Some((flow, ack)), None),
                    // A retransmitted 2xx we have ACKed: the same ACK again, nothing new
                    // for the TU.
                    ResponseAction::PassToTu if status >= 200 && tx.ack_2xx.is_some() => {
                        route(tx.ack_2xx.clone().map(|a| (flow, a)), None)
                    }
                    ResponseAction::PassToTu => route(None, Some(true)),
                    ResponseAction::Absorb => route(None, None),
                }
            }
            ClientKind::NonInvite(cn) => route(None, cn.on_response(now, status).then_some(false)),
        })
    }

    /// After a final response the INVITE is no longer needed (no CANCEL; ACKs are built):
    /// dropping it keeps lingering transactions small.
    pub fn forget_request(&mut self, id: TxId) {
        if let Some(tx) = self.client.get_mut(&id) {
            tx.request = None;
        }
    }

    /// Runs a client transaction's due timers; retransmissions go to `resend`.
    pub fn client_timeout(
        &mut self,
        id: TxId,
        now: Instant,
        resend: &mut Vec<(Flow, Bytes)>,
    ) -> ClientTimeout<C> {
        loop {
            let Some(tx) = self.client.get_mut(&id) else {
                return ClientTimeout::Running;
            };
            if tx.poll_timeout().is_none_or(|t| t > now) {
                return ClientTimeout::Running;
            }
            let action = match &mut tx.kind {
                ClientKind::Invite(t) => t.handle_timeout(now),
                ClientKind::NonInvite(t) => t.handle_timeout(now),
            };
            match action {
                Some(TimerAction::Retransmit(b)) => resend.push((tx.flow, b)),
                Some(TimerAction::Timeout(_)) => {
                    let owner = tx.owner;
                    self.remove_client(id);
                    return ClientTimeout::TimedOut(owner);
                }
                Some(TimerAction::Terminated(_)) => {
                    self.remove_client(id);
                    return ClientTimeout::Reclaimed;
                }
                None => return ClientTimeout::Running,
            }
        }
    }

    fn remove_client(&mut self, id: TxId) {
        if let Some(tx) = self.client.remove(&id) {
            self.client_ids.remove(&tx.key);
        }
    }

    /// The transaction's next deadline if the owner's timer heap must get a new entry for
    /// it (none is armed, or the armed one is later); records it as armed.
    pub fn arm(&mut self, t: TxRef) -> Option<Instant> {
        let (next, armed) = match t {
            TxRef::Server(id) => {
                let tx = self.server.get_mut(&id)?;
                (tx.poll_timeout()?, &mut tx.armed)
            }
            TxRef::Client(id) => {
                let tx = self.client.get_mut(&id)?;
                (tx.poll_timeout()?, &mut tx.armed)
            }
        };
        if armed.is_none_or(|a| next < a) {
            *armed = Some(next);
            return Some(next);
        }
        None
    }

    /// A heap entry for `t` at `at` came due: true if it is the one armed (it is then
    /// disarmed), false if a later re-arm superseded it or the transaction is gone.
    pub fn fire(&mut self, t: TxRef, at: Instant) -> bool {
        let armed = match t {
            TxRef::Server(id) => self.server.get_mut(&id).map(|t| &mut t.armed),
            TxRef::Client(id) => self.client.get_mut(&id).map(|t| &mut t.armed),
        };
        match armed {
            Some(slot) if *slot == Some(at) => {
                *slot = None;
                true
            }
            _ => false,
        }
    }
}

/// The key a request matches its server transaction by (RFC 3261 17.2.3): the branch
/// and sent-by of the top Via and the method (ACK matches the INVITE); for RFC 2543
/// peers without the magic cookie, the request's identity. None without a Via.
pub fn server_key(msg: &Message, method: &Method) -> Option<String> {
    let via = msg.top_via()?;
    let m = match method {
        Method::Ack | Method::Invite => "INVITE",
        other => other.as_str(),
    };
    Some(match via.branch() {
        Some(b) if b.starts_with("z9hG4bK") => format!("{b}|{}|{m}", via.sent_by()),
        _ => format!(
            "2543|{}|{}|{}|{}|{}|{m}",
            msg.request_uri().unwrap_or(""),
            msg.from_tag().unwrap_or_default(),
            msg.call_id(),
            msg.cseq().map(|(n, _)| n).unwrap_or(0),
            via.sent_by()
        ),
    })
}

/// A transaction as the owner's timer heap names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxRef {
    Server(TxId),
    Client(TxId),
}

fn client_key(branch: &str, method: &Method) -> String {
    format!("{branch}|{method}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn request(method: &str, branch: &str) -> Message {
        let raw = format!(
            "{method} sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:120@dasan>\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes()).unwrap()
    }

    fn flow() -> Flow {
        Flow::udp("10.0.0.1:5060".parse().unwrap())
    }

    #[test]
    fn requests_match_by_branch_sent_by_and_method_and_ack_finds_its_invite() {
        let inv = request("INVITE", "z9hG4bKa");
        let k = server_key(&inv, &Method::Invite).unwrap();
        let ack = request("ACK", "z9hG4bKa");
        assert_eq!(server_key(&ack, &Method::Ack), Some(k.clone()));
        let bye = request("BYE", "z9hG4bKa");
        assert_ne!(server_key(&bye, &Method::Bye), Some(k.clone()));
        let old = request("INVITE", "1234");
        assert!(server_key(&old, &Method::Invite)
            .unwrap()
            .starts_with("2543|"));
        let mut t = TransactionTable::<u8, ()>::new(TimerConfig::default());
        let id = t.new_server(k.clone(), true, flow(), 7);
        assert_eq!(t.find_server(&k), Some(id));
        assert_eq!(t.server(id).map(|s| s.tu), Some(7));
        assert_eq!(
            t.retransmitted(id),
            None,
            "no response yet: nothing to resend"
        );
        let now = Instant::now();
        assert_eq!(
            t.respond(id, now, 100, Bytes::from_static(b"100")),
            Some(flow())
        );
        assert_eq!(
            t.retransmitted(id).map(|r| r.1),
            Some(Bytes::from_static(b"100"))
        );
    }

    #[test]
    fn a_client_transaction_retransmits_times_out_and_is_reclaimed() {
        let now = Instant::now();
        let mut t = TransactionTable::<(), char>::new(TimerConfig::default());
        let (id, _) = t.new_client(now, flow(), request("OPTIONS", "z9hG4bKo"), 'x');
        assert_eq!(t.len(), 1);
        let first = t.arm(TxRef::Client(id)).unwrap();
        assert_eq!(first, now + Duration::from_millis(500), "Timer E = T1");
        assert_eq!(t.arm(TxRef::Client(id)), None, "already armed at that time");
        assert!(t.fire(TxRef::Client(id), first));
        let mut resend = Vec::new();
        assert_eq!(
            t.client_timeout(id, first, &mut resend),
            ClientTimeout::Running
        );
        assert_eq!(resend.len(), 1, "Timer E retransmits");
        // Timer F: 64*T1 without a response.
        let end = now + Duration::from_secs(32);
        let mut outcome = ClientTimeout::Running;
        while outcome == ClientTimeout::Running {
            let Some(at) = t.client(id).and_then(|c| c.poll_timeout()) else {
                break;
            };
            assert!(at <= end);
            outcome = t.client_timeout(id, at, &mut resend);
        }
        assert_eq!(outcome, ClientTimeout::TimedOut('x'));
        assert!(t.is_empty(), "reclaimed with its match key");
        assert!(t
            .on_response(end, &request("OPTIONS", "z9hG4bKo"))
            .is_none());
    }
}
