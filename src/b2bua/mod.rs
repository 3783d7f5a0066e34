//! The engine: a sans-IO B2BUA that ties a caller leg, the queue and an agent leg together.
//!
//! Contract (as in quinn/str0m): feed it with [`Engine::handle_message`] and
//! [`Engine::handle_timeout`], passing the current time; then drain
//! [`Engine::poll_transmit`] and re-arm a timer for [`Engine::poll_timeout`]. It never
//! reads a clock or touches a socket, so every path runs under virtual time in tests.

mod admission;
mod anchor;
pub mod api;
mod callback;
mod features;
mod hours;
pub mod leg;
mod limits;
mod menu;
mod offering;
mod relay;
mod ring_all;
mod setup;
mod stats;
mod survey;
mod teardown;
mod text;
mod timers;
mod transfer;

pub use anchor::{MediaCommand, MusicRef};
pub use text::{TextRefusal, WebLine, WebPoll};

use crate::acd::{Acd, AgentIdx, AgentState, CallKey, NotReadyReason, QueueIdx};
pub(crate) use crate::config::{Limit, QueueTiming, RouteTarget};
use crate::metrics::Metrics;
use crate::registrar::Registrar;
use crate::sip::build::response;
use crate::sip::message::{Message, ParseError};
use crate::sip::transaction::TransactionTable;
use crate::sip::{Flow, Method, Transport};
use bytes::Bytes;
use leg::Leg;
use setup::EngineConfig;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timers::TimerRef;

/// Bytes to send and where.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub flow: Flow,
    pub data: Bytes,
    /// Set on the first INVITE to an agent: when the trunk INVITE arrived, so the driver
    /// can record post-dial delay at the moment the packet really leaves.
    pub pdd_start: Option<Instant>,
    /// Set on a sender's text MESSAGE relayed straight to its agent: when the sender's
    /// MESSAGE arrived (text delivery time, measured as post-dial delay is).
    pub text_start: Option<Instant>,
    /// Send only once the first N record events ([`Engine::poll_record`]) are durable: the
    /// messages that tell a caller the call is over wait for its record.
    pub durable_after: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The INVITE offering a call to an agent.
    AgentInvite(CallKey),
    /// Our INVITE dialling a callback's number through the outbound trunk.
    CallbackInvite(CallKey),
    /// A request relayed from the other leg; the response goes back on `server_tx`.
    Relay { call: CallKey, server_tx: u64 },
    /// BYE, CANCEL, ACK-less requests whose response only ends the transaction.
    Fire,
    /// A MESSAGE of text conversation `conv`, to its agent's phone or to its sender.
    Text { conv: text::ConvKey, to_agent: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Caller,
    Agent,
}

struct AgentLeg {
    agent: AgentIdx,
    leg: Leg,
    invite_tx: u64,
    answered: bool,
    /// Late offer: the agent's 2xx carried the offer; its ACK waits for the caller's answer.
    ack_waits_for_caller: bool,
    invite_cseq: u32,
    /// The SRTP keys our offer to the agent carried (empty: plain RTP).
    srtp: anchor::SrtpOffer,
}

/// How a call ended, as its record says (one vocabulary for records and metrics).
pub(crate) use crate::records::Outcome;

struct Relay {
    client_tx: u64,
    server_tx: u64,
    from: Side,
    request: Message,
}

struct Call {
    queue: QueueIdx,
    arrived: Instant,
    caller: Leg,
    caller_invite_tx: u64,
    /// The trunk's INVITE, kept until it has a final response.
    caller_invite: Option<Message>,
    agent: Option<AgentLeg>,
    ringing_sent: bool,
    /// 183 with our SDP (the trunk takes early media) rather than a plain 180.
    early_media: bool,
    answered: bool,
    ring_deadline: Option<Instant>,
    max_wait_at: Option<Instant>,
    relay: Option<Relay>,
    media: Option<anchor::CallMedia>,
    answered_at: Option<Instant>,
    /// The consultation record's id.
    record: String,
    /// In a menu (120+9): the call is in no queue meanwhile.
    menu: Option<MenuState>,
    digits: crate::media::dtmf::DigitCollector,
    announce_at: Option<Instant>,
    /// When the call joined its current queue (routing steps and overflow count from it).
    queued_at: Instant,
    /// The next routing step: route again then, to a wider set of agents.
    step_at: Option<Instant>,
    overflow_at: Option<Instant>,
    /// In the post-call survey: the agent has left; the deadline starts when the prompt
    /// has played.
    survey: Option<Option<Instant>>,
    /// A callback being placed: the agent is reserved first, then the caller dialled.
    callback: Option<callback::Dialling>,
    /// When the caller hears the spoken callback offer…
    callback_offer_at: Option<Instant>,
    /// …which is heard once per call.
    callback_offered: bool,
    /// The queue whose closed prompt the caller heard (its callback digit still works: the
    /// callback is placed when that queue opens).
    closed_from: Option<QueueIdx>,
    /// What the queue's max-wait limit has done to the call so far.
    limit: Option<limits::LimitState>,
    /// Ring-all: the other agents' phones ringing for this call besides `agent`.
    forks: Vec<AgentLeg>,
    /// A survey call: the consultation record its rating belongs to.
    survey_for: Option<String>,
    armed: timers::CallArmed,
}

struct MenuState {
    name: String,
    run: crate::dialplan::MenuRun,
    /// Where the caller goes if they choose nothing.
    back_to: QueueIdx,
}

impl Call {
    /// A call as it starts waiting in queue `queue`, with nothing decided yet (the caller
    /// fills in its trunk's and queue's settings): a trunk's call with its INVITE, or a
    /// callback the engine places itself, without.
    fn waiting(
        queue: QueueIdx,
        arrived: Instant,
        caller: Leg,
        invite_tx: u64,
        invite: Option<Message>,
        media: Option<anchor::CallMedia>,
        record: String,
    ) -> Call {
        Call {
            queue,
            arrived,
            caller,
            caller_invite_tx: invite_tx,
            caller_invite: invite,
            agent: None,
            ringing_sent: false,
            early_media: false,
            answered: false,
            ring_deadline: None,
            max_wait_at: None,
            relay: None,
            media,
            answered_at: None,
            record,
            menu: None,
            digits: Default::default(),
            announce_at: None,
            queued_at: arrived,
            step_at: None,
            overflow_at: None,
            callback_offer_at: None,
            callback_offered: false,
            closed_from: None,
            limit: None,
            forks: Vec::new(),
            survey_for: None,
            survey: None,
            callback: None,
            armed: Default::default(),
        }
    }
}

pub struct Engine {
    cfg: EngineConfig,
    registrar: Registrar,
    /// TLS connections whose client certificate is a trunk's: connection → index in
    /// `cfg.cert_trunks`.
    cert_conns: HashMap<u64, usize>,
    acd: Acd,
    metrics: Arc<Metrics>,
    /// Every SIP transaction; server ones carry the call they belong to, client ones what
    /// their response is for.
    tx: TransactionTable<Option<CallKey>, Owner>,
    calls: HashMap<CallKey, Call>,
    dialogs: HashMap<String, (CallKey, Side)>,
    timers: BinaryHeap<Reverse<(Instant, timers::Wake)>>,
    agent_armed: Vec<timers::AgentArmed>,
    out: VecDeque<Transmit>,
    start: Instant,
    unix_at_start: u64,
    unix_ms_at_start: i64,
    records_out: VecDeque<crate::records::RecordEvent>,
    /// Record events emitted so far (the driver's sink counts the same).
    records_emitted: u64,
    durable_gate: Option<u64>,
    overloaded: bool,
    draining: bool,
    /// Callers in a menu, per the queue they fall back to: they count against that
    /// queue's `max_length`, so a menu number is no way around the limit.
    menu_seats: Vec<usize>,
    /// When each agent last transferred calls to outside numbers (for the rate limit).
    transfers: HashMap<AgentIdx, VecDeque<Instant>>,
    anchor: Option<anchor::Anchor>,
    media_out: VecDeque<MediaCommand>,
    dialplan: crate::dialplan::Dialplan,
    /// Callbacks keeping their place in a queue (the ACD holds their key).
    callbacks: HashMap<CallKey, callback::Job>,
    /// Text conversations (SIP MESSAGE).
    text: text::TextState,
    /// Reasons given for manual not-ready states.
    not_ready_reasons: HashMap<AgentIdx, String>,
    /// Each agent's state as last recorded, since when, and its away reason.
    agent_seen: Vec<(&'static str, Instant, Option<String>)>,
    /// Display names by agent index (the ACD keeps the dialplan's order).
    agent_names: Vec<Option<String>>,
    /// The record of the call each agent is wrapping up.
    wrap_records: HashMap<AgentIdx, String>,
    /// Per queue: average talk time (exponentially weighted), for expected-wait estimates.
    talk_avg: Vec<Duration>,
    /// Per queue: service level, ASA and abandonment over a rolling window.
    windows: Vec<stats::QueueWindow>,
    /// When the message being handled reached us (kernel timestamp when known).
    received: Instant,
    /// Tags, branches, Call-IDs, record ids: the only randomness the engine uses.
    ids: crate::sip::build::Ids,
}

impl Engine {
    /// While set, new calls are refused with 503 + Retry-After; calls already admitted
    /// carry on. The driver sets it when it falls behind its input.
    pub fn set_overloaded(&mut self, on: bool) {
        self.overloaded = on;
    }

    /// While set (graceful shutdown), new calls get 503 + Retry-After like overload.
    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    pub fn transactions(&self) -> usize {
        self.tx.len()
    }

    /// (agent id, state name) for every agent.
    pub fn agent_states(&self) -> Vec<(String, &'static str)> {
        (0..self.acd.agent_count() as AgentIdx)
            .map(|a| {
                (
                    self.acd.agent_id(a).to_string(),
                    self.acd.agent_state(a).name(),
                )
            })
            .collect()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// The wall clock at `start` in Unix milliseconds, for record timestamps finer than the
    /// seconds `new` takes.
    pub fn with_unix_ms(mut self, ms: i64) -> Engine {
        self.unix_ms_at_start = ms;
        self
    }

    pub(crate) fn unix_ms(&self, now: Instant) -> i64 {
        self.unix_ms_at_start + now.saturating_duration_since(self.start).as_millis() as i64
    }

    /// Brings the scrape-time gauges up to date: agents by queue and state, and each
    /// queue's service level, ASA and abandonment over the window.
    pub fn refresh_metrics(&mut self, now: Instant) {
        self.note_wrap_ups(now);
        const STATES: [&str; 7] = [
            "logged-out",
            "ready",
            "offered",
            "on-call",
            "wrap-up",
            "busy-delay",
            "not-ready",
        ];
        let nq = self.acd.queue_count();
        let mut counts = vec![[0i64; STATES.len()]; nq];
        for a in 0..self.acd.agent_count() as AgentIdx {
            let name = self.acd.agent_state(a).name();
            let si = STATES.iter().position(|s| *s == name).unwrap_or(0);
            for q in self.acd.queues_for_agent(a) {
                counts[q][si] += 1;
            }
        }
        for (q, row) in counts.iter().enumerate() {
            let qn = self.acd.queue_name(q);
            for (si, n) in row.iter().enumerate() {
                self.metrics
                    .agents
                    .with_label_values(&[qn, STATES[si]])
                    .set(*n);
            }
            let f = self.windows[q].figures(now);
            self.metrics
                .queue_service_level
                .with_label_values(&[qn])
                .set(f.service_level);
            self.metrics.queue_asa.with_label_values(&[qn]).set(f.asa_s);
            self.metrics
                .queue_abandon
                .with_label_values(&[qn])
                .set(f.abandon);
            self.metrics
                .queue_wrap_up
                .with_label_values(&[qn])
                .set(f.average_wrap_up_s);
            let (text_waiting, text_oldest) = self.text.waiting_in(q, now);
            let voice_oldest = self.oldest_waiting_call(q, now);
            for (channel, n, oldest) in [
                ("voice", self.acd.waiting(q), voice_oldest),
                ("text", text_waiting, text_oldest),
            ] {
                self.metrics
                    .waiting
                    .with_label_values(&[qn, channel])
                    .set(n as i64);
                self.metrics
                    .oldest_wait
                    .with_label_values(&[qn, channel])
                    .set(oldest.as_secs_f64());
            }
        }
    }

    /// How long the longest-waiting call of `q` (in the queue, not in its menu) has waited.
    pub(crate) fn oldest_waiting_call(&self, q: QueueIdx, now: Instant) -> Duration {
        self.acd
            .waiting_calls(q)
            .filter_map(|k| self.calls.get(&k))
            .map(|c| now.saturating_duration_since(c.arrived))
            .max()
            .unwrap_or_default()
    }

    /// The agent's part in a call ended: wrap-up (or ready), and the record its
    /// after-call work will be written to.
    pub(crate) fn agent_call_ended(
        &mut self,
        q: crate::acd::QueueIdx,
        agent: AgentIdx,
        key: CallKey,
        record: String,
        now: Instant,
    ) {
        self.acd.call_ended(q, agent, key, now);
        if !record.is_empty() {
            self.wrap_records.insert(agent, record);
        }
    }

    /// Takes what the ACD noted since the last look: wrap-ups it measured go into the
    /// queues' windows and onto the call's record; agents whose state changed get their
    /// time in state restarted, and going away (not-ready, logged out) or coming back is
    /// recorded for the agent summary.
    pub(crate) fn note_wrap_ups(&mut self, now: Instant) {
        let ups: Vec<_> = self.acd.take_wrap_ups().collect();
        for (q, a, d) in ups {
            self.windows[q].wrapped_up(now, d);
            // No wrap-up (the queue has none) writes nothing.
            if let Some(id) = self.wrap_records.remove(&a).filter(|_| !d.is_zero()) {
                self.record(crate::records::RecordEvent::WrapUp {
                    id,
                    wrap_ms: d.as_millis() as i64,
                });
            }
        }
        for a in self.acd.take_changed() {
            self.agent_changed(a, now);
        }
    }

    fn agent_changed(&mut self, a: AgentIdx, now: Instant) {
        let state = self.acd.agent_state(a);
        let (name, away) = match state {
            AgentState::NotReady(NotReadyReason::Rona) => ("not-ready", Some("rona".to_string())),
            AgentState::NotReady(NotReadyReason::Manual) => (
                "not-ready",
                Some(
                    self.not_ready_reasons
                        .get(&a)
                        .cloned()
                        .unwrap_or_else(|| "manual".into()),
                ),
            ),
            AgentState::LoggedOut => ("logged-out", None),
            s => (s.name(), None),
        };
        let Some(seen) = self.agent_seen.get_mut(a as usize) else {
            return;
        };
        if seen.0 == name && seen.2 == away {
            return;
        }
        let was_away = matches!(seen.0, "not-ready" | "logged-out");
        let is_away = matches!(name, "not-ready" | "logged-out");
        *seen = (name, now, away.clone());
        if is_away || was_away {
            let at_ms = self.unix_ms(now);
            self.record(crate::records::RecordEvent::AgentState {
                agent: self.acd.agent_id(a).to_string(),
                state: if is_away { name } else { "available" },
                reason: away,
                at_ms,
            });
        }
    }

    /// When the agent entered its current state (as the engine last saw it).
    pub(crate) fn agent_since(&self, a: AgentIdx) -> Option<Instant> {
        self.agent_seen.get(a as usize).map(|s| s.1)
    }

    /// Record changes emitted so far: a reply that must wait until they are durable
    /// waits for this count.
    pub fn records_emitted(&self) -> u64 {
        self.records_emitted
    }

    /// Consultation record changes for the store.
    pub fn poll_record(&mut self) -> Option<crate::records::RecordEvent> {
        self.records_out.pop_front()
    }

    /// A record change from outside the call flow (API notes, audit): it goes through the
    /// engine so that its place among the call's own changes is kept.
    pub fn push_record(&mut self, ev: crate::records::RecordEvent) {
        self.record(ev);
    }

    pub(crate) fn record(&mut self, ev: crate::records::RecordEvent) {
        self.records_emitted += 1;
        self.records_out.push_back(ev);
    }

    fn unix_now(&self, now: Instant) -> u64 {
        self.unix_at_start + now.saturating_duration_since(self.start).as_secs()
    }

    fn send(&mut self, flow: Flow, data: Bytes) {
        self.out.push_back(Transmit {
            flow,
            data,
            pdd_start: None,
            text_start: None,
            durable_after: self.durable_gate,
        });
    }

    /// Runs `f` with every message it sends held until the records emitted so far are
    /// durable.
    pub(crate) fn after_records<R>(&mut self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let prev = self.durable_gate.replace(self.records_emitted);
        let r = f(self);
        self.durable_gate = prev;
        r
    }

    /// A message that reached the host at `received` (earlier than `now` when it waited in
    /// a socket queue): post-dial delay is measured from then.
    pub fn handle_datagram(&mut self, now: Instant, received: Instant, flow: Flow, data: &[u8]) {
        self.received = received.min(now);
        self.dispatch_message(now, flow, data);
        self.note_wrap_ups(now);
    }

    /// One complete SIP message from the network (a datagram or a framed stream message).
    pub fn handle_message(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        self.received = now;
        self.dispatch_message(now, flow, data);
        self.note_wrap_ups(now);
    }

    fn dispatch_message(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return; // keep-alive
        }
        match Message::parse(data) {
            Ok(msg) => match msg.method().cloned() {
                Some(method) => self.on_request(now, flow, msg, method),
                None => self.on_response(now, msg),
            },
            Err(ParseError::BadRequest(reason)) => {
                self.metrics.sip_parse_errors.inc();
                self.reject_malformed(flow, data, 400, &reason);
            }
            Err(ParseError::VersionNotSupported) => {
                self.metrics.sip_parse_errors.inc();
                self.reject_malformed(flow, data, 505, "Version Not Supported");
            }
            Err(_) => self.metrics.sip_garbage.inc(),
        }
    }

    /// Answers a malformed request with 400 when enough of it can be read to address the
    /// response; otherwise it is dropped.
    fn reject_malformed(&mut self, flow: Flow, data: &[u8], code: u16, reason: &str) {
        let text = String::from_utf8_lossy(data);
        let mut vias = Vec::new();
        let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
        for line in text.split('\n').skip(1) {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
            match name.as_str() {
                "via" | "v" => vias.push(value),
                "from" | "f" => from = Some(value),
                "to" | "t" => to = Some(value),
                "call-id" | "i" => call_id = Some(value),
                "cseq" => cseq = Some(value),
                _ => {}
            }
        }
        let (Some(via), Some(from), Some(to), Some(call_id), Some(cseq)) =
            (vias.first(), from, to, call_id, cseq)
        else {
            self.metrics.sip_garbage.inc();
            return;
        };
        if crate::sip::Via::parse(via).is_none() {
            self.metrics.sip_garbage.inc();
            return;
        }
        let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
        let raw = format!(
            "SIP/2.0 {code} {reason}\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
        );
        let dest = self.response_flow_for(flow, crate::sip::Via::parse(via).as_ref());
        let method = cseq
            .split_whitespace()
            .nth(1)
            .map(method_label)
            .unwrap_or("other");
        self.metrics
            .sip_responses_sent
            .with_label_values(&[method, code_label(code)])
            .inc();
        self.send(dest, Bytes::from(raw));
    }

    /// RFC 3261 18.2.2 with RFC 3581: responses over UDP go to the source address when the
    /// Via asks for rport, else to the source IP and the Via port. Never a DNS lookup.
    fn response_flow_for(&self, flow: Flow, via: Option<&crate::sip::Via>) -> Flow {
        if flow.transport.is_reliable() {
            return flow;
        }
        match via {
            Some(v) if !v.has_param("rport") => {
                Flow::udp(SocketAddr::new(flow.remote.ip(), v.port.unwrap_or(5060)))
            }
            _ => flow,
        }
    }

    fn on_request(&mut self, now: Instant, flow: Flow, mut msg: Message, method: Method) {
        let label = match &method {
            Method::Extension(_) => "other",
            m => m.as_str(),
        };
        self.metrics.sip_requests.with_label_values(&[label]).inc();
        // RFC 3261 18.2.1 / RFC 3581: record where the request really came from.
        let via = msg.top_via();
        if let Some(mut v) = via.clone() {
            if v.host != flow.remote.ip().to_string() || v.has_param("rport") {
                v.set_param("received", Some(flow.remote.ip().to_string()));
            }
            if v.has_param("rport") && flow.transport == Transport::Udp {
                v.set_param("rport", Some(flow.remote.port().to_string()));
            }
            if let Some(h) = msg.headers.iter_mut().find(|h| h.name == "Via") {
                // Only the first value of the first Via header is the top Via.
                let rest: Vec<&str> = crate::sip::message::split_list(&h.value).skip(1).collect();
                let mut value = v.to_header_value();
                for r in rest {
                    value.push_str(", ");
                    value.push_str(r);
                }
                h.value = value;
            }
        }
        let resp_flow = self.response_flow_for(flow, via.as_ref());
        if method == Method::Ack {
            self.on_ack(now, msg);
            return;
        }
        let Some(key) = crate::sip::transaction::server_key(&msg, &method) else {
            self.metrics.sip_garbage.inc();
            return;
        };
        if let Some(id) = self.tx.find_server(&key) {
            // A retransmission: the transaction answers it.
            if let Some((f, bytes)) = self.tx.retransmitted(id) {
                self.metrics.sip_retransmissions.inc();
                self.send(f, bytes);
            }
            return;
        }
        if self.over_transaction_limit(flow) {
            self.metrics
                .security
                .with_label_values(&["transaction_limit"])
                .inc();
            let mut r = response(&msg, 503, None, Some(&self.ids.token(10)));
            r.set_header("Retry-After", self.cfg.retry_after_s.to_string());
            self.send(resp_flow, r.to_bytes());
            return;
        }
        let id = self
            .tx
            .new_server(key, method == Method::Invite, resp_flow, None);
        self.metrics.sip_transactions.inc();
        if let Some(mf) = msg.header("Max-Forwards") {
            if mf.trim() == "0" && method != Method::Options {
                self.reply(now, id, &msg, 483, None);
                return;
            }
        }
        // RFC 5630: a SIPS request is TLS on every hop; one that came over UDP or TCP is
        // not served (416, as for a scheme we cannot serve here), nor a registration of a
        // `sips:` Contact that we would reach without TLS.
        let sips_contact = method == Method::Register
            && msg
                .header_values("Contact")
                .any(|c| c.to_ascii_lowercase().contains("sips:"));
        if (msg.request_uri().is_some_and(leg::is_sips) || sips_contact)
            && flow.transport != Transport::Tls
        {
            let mut r = response(&msg, 416, Some("SIPS Needs TLS"), Some(&self.ids.token(10)));
            r.set_header("Warning", "399 dasan \"sips: only over TLS\"");
            self.respond_stateless(id, r);
            return;
        }
        // RFC 3261 12.2.2: a request with a To tag belongs to a dialog; one we do not have
        // (or whose tags do not match) is refused, whatever its method.
        if msg.to_tag().is_some()
            && !matches!(method, Method::Cancel | Method::Register)
            && self.matching_dialog(&msg).is_none()
        {
            self.metrics
                .security
                .with_label_values(&["unknown_dialog"])
                .inc();
            self.refuse_stateless(id, &msg, 481);
            return;
        }
        match method {
            Method::Invite if msg.to_tag().is_none() => self.on_new_invite(now, id, flow, msg),
            Method::Invite | Method::Update | Method::Info => self.on_relayable(now, id, msg),
            Method::Cancel => self.on_cancel(now, id, msg),
            Method::Refer => self.on_refer(now, id, msg),
            Method::Message => self.on_message(now, id, flow, msg),
            Method::Bye => self.on_bye(now, id, msg),
            Method::Register => {
                let unix = self.unix_now(now);
                let (resp, change) = self.registrar.handle(&msg, flow, now, unix);
                self.note_auth_events("sip-register");
                if change.is_none() {
                    // Challenges and refusals keep no state (no amplification, no memory).
                    self.respond_stateless(id, resp);
                    return;
                }
                self.respond(now, id, resp);
                if let Some((agent, change)) = change {
                    self.on_registration(now, agent, change);
                }
            }
            // Answers that change nothing keep no state: a retransmission is answered anew.
            Method::Options => {
                let mut r = response(&msg, 200, None, Some(&self.ids.token(10)));
                r.set_header("Allow", ALLOW);
                r.set_header("Accept", "application/sdp");
                self.respond_stateless(id, r);
            }
            Method::Extension(_) => {
                let mut r = response(&msg, 501, None, Some(&self.ids.token(10)));
                r.set_header("Allow", ALLOW);
                self.respond_stateless(id, r);
            }
            _ => {
                let mut r = response(&msg, 405, None, Some(&self.ids.token(10)));
                r.set_header("Allow", ALLOW);
                self.respond_stateless(id, r);
            }
        }
    }

    /// The call and side an in-dialog request belongs to; for an unknown dialog the request
    /// is answered 481 (RFC 3261 12.2.2) and None.
    fn dialog_of(&mut self, now: Instant, tx: u64, msg: &Message) -> Option<(CallKey, Side)> {
        let found = self.matching_dialog(msg);
        if found.is_none() {
            self.metrics
                .security
                .with_label_values(&["unknown_dialog"])
                .inc();
            self.reply(now, tx, msg, 481, None);
        }
        found
    }

    /// Removes a call from the table, giving back its menu seat if it held one.
    fn take_call(&mut self, key: CallKey) -> Option<Call> {
        let call = self.calls.remove(&key)?;
        if let Some(m) = &call.menu {
            self.release_menu_seat(m.back_to);
        }
        Some(call)
    }

    fn release_menu_seat(&mut self, q: QueueIdx) {
        if let Some(n) = self.menu_seats.get_mut(q) {
            *n = n.saturating_sub(1);
        }
    }

    /// Whether queue `q` has no room for one more caller: its members (waiting or being
    /// offered) and the callers in a menu that falls back to it, against `max_length`.
    fn queue_full(&self, q: QueueIdx) -> bool {
        let seats = self.menu_seats.get(q).copied().unwrap_or(0);
        self.acd.members(q) + seats >= self.acd.max_length(q)
    }

    /// Whether a new server transaction from `source` would pass the bounds on state kept
    /// for requests: four per call the engine may hold in total, and
    /// `max_transactions_per_source` for a source outside the trunks' networks.
    fn over_transaction_limit(&self, flow: Flow) -> bool {
        let (total, mine) = self.tx.servers_from(flow.remote.ip());
        if total >= self.cfg.max_calls.saturating_mul(4).max(1_000) {
            return true;
        }
        // A trunk (by network or by certificate) is bounded by max_calls instead.
        mine >= self.cfg.max_transactions_per_source && self.trunk_of(flow).is_none()
    }

    /// Whether the engine may dial `number` for `kind` (transfer, callback, survey) asked
    /// by `who`: only numbers `[outbound] allow` lets out. Every attempt, allowed or not,
    /// goes to the audit trail and the log (the number masked there).
    fn outbound_audited(&mut self, now: Instant, number: &str, kind: &str, who: &str) -> bool {
        let allowed = self.cfg.outbound_rules.permits(number);
        self.record(crate::records::RecordEvent::Audit {
            at_ms: self.unix_ms(now),
            actor: who.to_string(),
            action: format!("outbound {kind}"),
            target: number.to_string(),
            detail: if allowed {
                "dialled".into()
            } else {
                "refused: not allowed by [outbound] allow/deny".into()
            },
        });
        if allowed {
            tracing::info!(kind, who, number = %crate::util::mask_number(number), "outbound call");
        } else {
            self.outbound_refused(now, number, kind, who);
        }
        allowed
    }

    fn outbound_refused(&mut self, _now: Instant, number: &str, kind: &str, who: &str) {
        self.metrics
            .security
            .with_label_values(&["outbound_denied"])
            .inc();
        tracing::warn!(
            kind,
            who = %crate::util::sanitize_for_log(who),
            number = %crate::util::mask_number(number),
            "outbound call refused: destination not allowed"
        );
    }

    /// An agent's transfers to outside numbers: at most `max_transfers_per_minute`.
    fn transfer_rate_ok(&mut self, now: Instant, agent: AgentIdx) -> bool {
        let limit = self.cfg.max_transfers_per_minute as usize;
        let times = self.transfers.entry(agent).or_default();
        while times.front().is_some_and(|&t| {
            now.saturating_duration_since(t) >= std::time::Duration::from_secs(60)
        }) {
            times.pop_front();
        }
        if times.len() >= limit {
            self.metrics
                .security
                .with_label_values(&["transfer_rate_limited"])
                .inc();
            tracing::warn!(agent, "outside transfer refused: rate limit");
            return false;
        }
        times.push_back(now);
        true
    }

    /// Puts a call in queue `q` if it has room (see [`Engine::queue_full`]).
    fn try_enqueue(&mut self, q: QueueIdx, key: CallKey, now: Instant) -> bool {
        !self.queue_full(q) && self.acd.enqueue(q, key, now).is_ok()
    }

    /// Counts what authentication saw and logs each block once, in a form fail2ban-style
    /// tools can match (as the desktop login does):
    /// `auth blocked: source=<ip> account=<name> service=<s> until=<unix> scope=<source|account>`.
    fn note_auth_events(&mut self, service: &str) {
        use crate::registrar::AuthEvent;
        for e in self.registrar.take_events() {
            let label = match &e {
                AuthEvent::Failed { .. } => "auth_failed",
                AuthEvent::Blocked { .. } => "auth_blocked",
                AuthEvent::Refused { .. } => "auth_refused_while_blocked",
                AuthEvent::Replayed { .. } => "auth_replayed",
            };
            self.metrics.security.with_label_values(&[label]).inc();
            match e {
                AuthEvent::Blocked {
                    scope,
                    source,
                    account,
                    until,
                } => tracing::warn!(
                    "auth blocked: source={source} account={} service={service} until={} scope={}",
                    crate::util::sanitize_for_log(&account),
                    self.unix_now(until),
                    match scope {
                        crate::util::throttle::Scope::Source => "source",
                        crate::util::throttle::Scope::Account => "account",
                    }
                ),
                AuthEvent::Replayed { source, account } => tracing::info!(
                    "auth replay refused: source={source} account={} service={service}",
                    crate::util::sanitize_for_log(&account)
                ),
                AuthEvent::Failed { .. } | AuthEvent::Refused { .. } => {}
            }
        }
    }

    /// The call and side whose dialog is identified by the request's Call-ID, From tag
    /// and To tag (RFC 3261 12.2.2): the Call-ID alone is not enough, as anyone who saw
    /// it (or guessed it) could otherwise hang up, re-route or re-negotiate the call.
    fn matching_dialog(&self, msg: &Message) -> Option<(CallKey, Side)> {
        let &(key, side) = self.dialogs.get(msg.call_id())?;
        let call = self.calls.get(&key)?;
        let call_id = msg.call_id();
        let legs: Vec<&leg::Leg> = match side {
            Side::Caller => vec![&call.caller],
            Side::Agent => call
                .agent
                .iter()
                .chain(call.forks.iter())
                .map(|a| &a.leg)
                .filter(|l| l.call_id == call_id)
                .collect(),
        };
        let (from, to) = (msg.from_tag(), msg.to_tag());
        let matches = legs.iter().any(|l| {
            from.as_deref().unwrap_or("") == leg::tag_of(&l.remote)
                && to.as_deref().unwrap_or("") == leg::tag_of(&l.local)
        });
        matches.then_some((key, side))
    }

    /// A plain response with the given code to a request on server transaction `tx`.
    fn reply(&mut self, now: Instant, tx: u64, req: &Message, code: u16, to_tag: Option<&str>) {
        let tag = to_tag
            .map(str::to_string)
            .unwrap_or_else(|| self.ids.token(10));
        let r = response(req, code, None, Some(&tag));
        self.respond(now, tx, r);
    }

    /// Sends a response once, without a transaction: for refusals before authentication
    /// or trust (403, 401/407 challenges, 481, 503). A spoofed source gets one answer per
    /// request it sends, never Timer G's retransmissions, and no state is kept for it.
    fn respond_stateless(&mut self, tx: u64, resp: Message) {
        let Some(code) = resp.status() else { return };
        let Some(flow) = self.tx.forget_server(tx) else {
            return;
        };
        self.metrics.sip_transactions.dec();
        let method = resp
            .cseq()
            .map(|(_, m)| method_label(m.as_str()))
            .unwrap_or("other");
        self.metrics
            .sip_responses_sent
            .with_label_values(&[method, code_label(code)])
            .inc();
        self.send(flow, resp.to_bytes());
    }

    /// A stateless refusal with the given code (see [`Engine::respond_stateless`]).
    fn refuse_stateless(&mut self, tx: u64, req: &Message, code: u16) {
        let tag = self.ids.token(10);
        self.respond_stateless(tx, response(req, code, None, Some(&tag)));
    }

    /// Sends a response through its server transaction.
    fn respond(&mut self, now: Instant, tx: u64, resp: Message) {
        let Some(code) = resp.status() else { return };
        let bytes = resp.to_bytes();
        if let Some(flow) = self.tx.respond(tx, now, code, bytes.clone()) {
            let method = resp
                .cseq()
                .map(|(_, m)| method_label(m.as_str()))
                .unwrap_or("other");
            self.metrics
                .sip_responses_sent
                .with_label_values(&[method, code_label(code)])
                .inc();
            self.send(flow, bytes);
            self.arm(TimerRef::Server(tx));
        }
    }

    fn on_response(&mut self, now: Instant, msg: Message) {
        let Some(status) = msg.status() else { return };
        if msg.top_via().is_none_or(|v| v.branch().is_none()) {
            self.metrics.sip_garbage.inc();
            return;
        }
        let Some(route) = self.tx.on_response(now, &msg) else {
            return; // stray response: not ours or its transaction is gone
        };
        if let Some((flow, ack)) = route.send {
            self.send(flow, ack);
        }
        let id = route.tx;
        match route.to_tu {
            Some(true) => {
                self.on_invite_response(now, id, msg);
                if status >= 200 {
                    self.tx.forget_request(id);
                }
            }
            Some(false) => self.on_non_invite_response(now, id, msg),
            None => {}
        }
        self.arm(TimerRef::Client(id));
    }

    /// Starts a client transaction and sends its request.
    fn start_client(
        &mut self,
        now: Instant,
        flow: Flow,
        req: Message,
        owner: Owner,
        pdd_start: Option<Instant>,
    ) -> u64 {
        let (id, bytes) = self.tx.new_client(now, flow, req, owner);
        self.metrics.sip_transactions.inc();
        self.out.push_back(Transmit {
            flow,
            data: bytes,
            pdd_start,
            text_start: None,
            durable_after: self.durable_gate,
        });
        self.arm(TimerRef::Client(id));
        id
    }

    /// A running bridge reported something.
    pub fn handle_media_event(&mut self, now: Instant, ev: crate::media::bridge::MediaEvent) {
        use crate::media::bridge::MediaEvent;
        let key = ev.call();
        match ev {
            MediaEvent::Timeout { call } => {
                tracing::info!(call, "no RTP: ending the call");
                self.end_call(now, call, 408, "SIP;cause=408;text=\"media timeout\"");
            }
            MediaEvent::Failed { call, reason } => {
                tracing::warn!(call, "media failed: {reason}");
                if let Some(m) = self.calls.get_mut(&call).and_then(|c| c.media.as_mut()) {
                    m.started = false; // nothing to stop
                }
                self.end_call(now, call, 503, "SIP;cause=500;text=\"media failure\"");
            }
            MediaEvent::Digit {
                call,
                leg: crate::media::bridge::LegId::Caller,
                digit,
                source,
            } => self.on_digit(now, call, digit, source),
            MediaEvent::Digit { .. } => {}
            MediaEvent::PromptsDone { call } => self.on_prompts_done(now, call),
            MediaEvent::PictureFastUpdate { call, leg } => {
                self.send_picture_fast_update(now, call, leg)
            }
            // The record may be complete already (the relay ends after the call): the
            // statistics are one more change to it.
            MediaEvent::Video {
                record, summary, ..
            } => {
                self.record(crate::records::RecordEvent::Video {
                    id: record,
                    summary,
                });
                return;
            }
        }
        self.arm(TimerRef::Call(key));
    }

    /// The driver saw a TCP connection close.
    /// A TLS connection's client presented a certificate (already checked against the
    /// pins by the TLS layer): if it is a trunk's, the connection speaks for that trunk.
    /// A TLS client presented a certificate: `fingerprint`, and `ca_names` (CN and DNS
    /// names, lower case) when it chains to the configured client CA. A pinned fingerprint
    /// names its trunk first; else a CA-issued name in a trunk's `tls_client_subjects`.
    pub fn connection_identified(&mut self, conn: u64, fingerprint: [u8; 32], ca_names: &[String]) {
        let trunks = &self.cfg.cert_trunks;
        let found = trunks
            .iter()
            .position(|t| t.fingerprints.contains(&fingerprint))
            .or_else(|| {
                trunks
                    .iter()
                    .position(|t| t.subjects.iter().any(|s| ca_names.contains(s)))
            });
        if let Some(i) = found {
            tracing::info!(trunk = %self.cfg.cert_trunks[i].name, conn, "TLS client certificate identifies a trunk");
            self.cert_conns.insert(conn, i);
        }
    }

    /// The trunk a request on `flow` comes from, with its early-media setting: by client
    /// certificate on TLS (and source, when that trunk lists sources), else by source
    /// network among the trunks without certificates.
    fn trunk_of(&self, flow: Flow) -> Option<(bool, Arc<str>)> {
        let ip = flow.remote.ip();
        if flow.transport == Transport::Tls {
            if let Some(t) = self
                .cert_conns
                .get(&flow.conn)
                .map(|&i| &self.cfg.cert_trunks[i])
            {
                if t.sources.is_empty() || t.sources.iter().any(|n| n.contains(&ip)) {
                    return Some((t.early_media, t.name.clone()));
                }
            }
        }
        self.cfg
            .trusted
            .iter()
            .find(|(n, _, _)| n.contains(&ip))
            .map(|(_, e, name)| (*e, name.clone()))
    }

    pub fn connection_closed(&mut self, now: Instant, conn: u64) {
        self.cert_conns.remove(&conn);
        for a in self.registrar.connection_closed(conn) {
            tracing::info!(
                agent = self.acd.agent_id(a),
                "TCP connection closed: logged out"
            );
            self.acd.logout(a, now);
        }
    }

    fn on_registration(&mut self, now: Instant, a: AgentIdx, change: crate::registrar::Change) {
        use crate::registrar::Change;
        match change {
            Change::LoggedIn => {
                tracing::info!(agent = self.acd.agent_id(a), "registered: ready");
                self.acd.login(a, now);
                self.dispatch_for_agent(now, a);
            }
            Change::LoggedOut => {
                tracing::info!(agent = self.acd.agent_id(a), "unregistered: logged out");
                self.acd.logout(a, now);
            }
            Change::None => {}
        }
        self.arm(TimerRef::Agent(a));
    }

    pub(super) fn dispatch_for_agent(&mut self, now: Instant, a: AgentIdx) {
        for q in self.acd.dispatch_order(a) {
            self.dispatch(now, q);
        }
    }
}

pub(crate) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REGISTER, REFER, MESSAGE";

/// A bounded label set: the methods we know, else "other".
fn method_label(m: &str) -> &'static str {
    const KNOWN: [&str; 11] = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "UPDATE",
        "PRACK",
        "SUBSCRIBE",
        "MESSAGE",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(m))
        .copied()
        .unwrap_or("other")
}

fn code_label(code: u16) -> &'static str {
    match code {
        100 => "100",
        180 => "180",
        183 => "183",
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        415 => "415",
        416 => "416",
        423 => "423",
        480 => "480",
        481 => "481",
        483 => "483",
        486 => "486",
        487 => "487",
        488 => "488",
        491 => "491",
        500 => "500",
        501 => "501",
        503 => "503",
        505 => "505",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
