//! Text counselling: conversations by SIP MESSAGE (RFC 3428, page mode) through the same
//! queues as calls (`channels = ["text"]`).
//!
//! An SMS gateway on a trusted trunk sends `MESSAGE sip:120@…`; the engine answers 202 as
//! soon as the message is in the consultation record (never waiting for an agent), and
//! keeps one *conversation* per sender and service number: one record (channel `text`)
//! with every message in order. A conversation waits in its queue until an agent with the
//! queue's skill has room (`max_chats`, fewest open first, then longest without a new
//! conversation); its messages then go to the agent's phone as MESSAGEs from a conversation
//! address `sip:chat-<n>@engine`, and what the phone sends to that address (authenticated
//! as the agent, like the feature codes) goes back to the sender through the trunk, split
//! at `text.max_message_bytes` over UDP. The agent's phone closes a conversation by sending
//! `text.close_code`; silence for `text.idle_close_s` closes it too, and one that waited
//! `max_wait_s` for an agent is closed with `text.timeout_message`.

use super::leg::Leg;
use super::{Engine, Owner};
use crate::acd::{AgentIdx, AgentState, QueueIdx};
use crate::records::{Outcome, RecordEvent};
use crate::sip::build::response;
use crate::sip::message::{Header, Message, NameAddr};
use crate::sip::{Flow, Method, Transport};
use crate::util::mask_number;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub(super) type ConvKey = u64;

/// Bodies above this are refused (413): a text message, not a file.
const MAX_BODY: usize = 64 * 1024;
/// Messages of a conversation kept to hand it to another agent.
const HISTORY: usize = 50;
/// Senders whose message rate is tracked at once; the oldest is forgotten beyond this.
const MAX_TRACKED_SENDERS: usize = 100_000;

pub(super) struct Conversation {
    record: String,
    sender: String,
    /// The number it was written to (120).
    service: String,
    q: QueueIdx,
    /// Towards the sender, through the trunk the conversation came from.
    to_sender: Leg,
    /// The agent it is with, and the leg towards the agent's phone.
    agent: Option<(AgentIdx, Leg)>,
    /// Messages that came before an agent took the conversation.
    pending: Vec<String>,
    /// Agents whose phones refused it (not given to them again).
    refused_by: Vec<AgentIdx>,
    /// The sender's latest messages, for the next agent should this one's phone refuse.
    history: VecDeque<String>,
    waiting_sent: bool,
    last: Instant,
    /// While no agent has it: when it gives up (`max_wait_s`).
    wait_until: Option<Instant>,
    pub(super) armed: Option<Instant>,
}

impl Conversation {
    pub(super) fn deadline(&self, idle: Duration) -> Instant {
        let idle_at = self.last + idle;
        match self.wait_until {
            Some(w) if self.agent.is_none() => w.min(idle_at),
            _ => idle_at,
        }
    }
}

pub(super) struct TextSettings {
    pub idle_close: Duration,
    pub waiting_message: String,
    pub timeout_message: String,
    pub close_code: String,
    pub max_message_bytes: usize,
    pub max_per_minute: u32,
}

impl TextSettings {
    pub fn from_config(c: &crate::config::TextConfig) -> TextSettings {
        TextSettings {
            idle_close: Duration::from_secs(c.idle_close_s.into()),
            waiting_message: c.waiting_message.clone(),
            timeout_message: c.timeout_message.clone(),
            close_code: c.close_code.clone(),
            max_message_bytes: c.max_message_bytes.max(200),
            max_per_minute: c.max_messages_per_minute.max(1),
        }
    }
}

pub(super) struct TextState {
    pub settings: TextSettings,
    pub convs: HashMap<ConvKey, Conversation>,
    by_sender: HashMap<(String, String), ConvKey>,
    waiting: Vec<VecDeque<ConvKey>>,
    /// Per agent: open conversations, their limit, and when the agent last got one.
    chats: Vec<u32>,
    max_chats: Vec<u32>,
    exclusive: Vec<bool>,
    last_given: Vec<Option<Instant>>,
    next: ConvKey,
    /// Per sender number: when its recent messages came (a minute's worth).
    recent: HashMap<String, VecDeque<Instant>>,
}

impl TextState {
    /// `agents`: each agent's `max_chats` and whether calls and text exclude each other.
    pub fn new(settings: TextSettings, queues: usize, agents: Vec<(u32, bool)>) -> TextState {
        TextState {
            settings,
            convs: HashMap::new(),
            by_sender: HashMap::new(),
            waiting: vec![VecDeque::new(); queues],
            chats: vec![0; agents.len()],
            last_given: vec![None; agents.len()],
            max_chats: agents.iter().map(|a| a.0).collect(),
            exclusive: agents.iter().map(|a| a.1).collect(),
            next: 1,
            recent: HashMap::new(),
        }
    }

    /// Open conversations of `a`.
    pub fn chats(&self, a: AgentIdx) -> u32 {
        self.chats.get(a as usize).copied().unwrap_or(0)
    }

    /// True when `sender` may send one more message now (and counts it).
    fn admit(&mut self, sender: &str, now: Instant) -> bool {
        if self.recent.len() >= MAX_TRACKED_SENDERS && !self.recent.contains_key(sender) {
            let minute = Duration::from_secs(60);
            self.recent
                .retain(|_, v| v.back().is_some_and(|t| now.duration_since(*t) < minute));
            if self.recent.len() >= MAX_TRACKED_SENDERS {
                return false;
            }
        }
        let q = self.recent.entry(sender.to_string()).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            q.pop_front();
        }
        if q.len() as u32 >= self.settings.max_per_minute {
            return false;
        }
        q.push_back(now);
        true
    }
}

/// Why a message body was refused, as the response says it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BodyRefusal(pub u16, pub &'static str);

/// The text of a MESSAGE: `text/plain` (UTF-8) or `message/cpim` (RFC 3862) wrapping
/// `text/plain`.
pub(super) fn message_text(msg: &Message) -> Result<String, BodyRefusal> {
    if msg.body.len() > MAX_BODY {
        return Err(BodyRefusal(413, "Message Too Large"));
    }
    let ct = msg
        .content_type()
        .unwrap_or("text/plain")
        .to_ascii_lowercase();
    let body: &[u8] = &msg.body;
    let (ct, body) = if ct.starts_with("message/cpim") {
        // CPIM headers, a blank line, MIME headers, a blank line, the content.
        let text = std::str::from_utf8(body).map_err(|_| BodyRefusal(415, "Not UTF-8"))?;
        let mut parts = text.splitn(3, "\r\n\r\n");
        let (_, mime, inner) = (parts.next(), parts.next(), parts.next());
        let (Some(mime), Some(inner)) = (mime, inner) else {
            return Err(BodyRefusal(400, "Bad CPIM"));
        };
        let inner_ct = mime
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_ascii_lowercase())
            })
            .unwrap_or_else(|| "text/plain".into());
        (inner_ct, inner.as_bytes())
    } else {
        (ct, body)
    };
    let mut params = ct.split(';').map(str::trim);
    if params.next() != Some("text/plain") {
        return Err(BodyRefusal(415, "Only Text Is Supported"));
    }
    let charset_ok = params
        .filter_map(|p| p.strip_prefix("charset="))
        .all(|c| matches!(c.trim_matches('"'), "utf-8" | "us-ascii"));
    if !charset_ok {
        return Err(BodyRefusal(415, "Only UTF-8 Is Supported"));
    }
    let text = std::str::from_utf8(body).map_err(|_| BodyRefusal(415, "Not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(BodyRefusal(400, "Empty Message"));
    }
    // A line break some senders end the body with is not part of what was written.
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// A sender's number as it may stand in a URI's user part or a quoted display name:
/// digits, letters and `+-.*#_` only (a gateway may send anything in From).
pub(super) fn uri_user(sender: &str) -> String {
    let s: String = sender
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+-.*#_".contains(*c))
        .take(64)
        .collect();
    if s.is_empty() {
        "anonymous".into()
    } else {
        s
    }
}

/// `text` in pieces of at most `max` bytes, cut at character boundaries.
pub(super) fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

impl Engine {
    /// A MESSAGE: from a sender through a trunk, or from an agent's phone to one of its
    /// conversations (`sip:chat-<n>@…`).
    pub(super) fn on_message(&mut self, now: Instant, tx: u64, flow: Flow, msg: Message) {
        let target = msg
            .request_uri()
            .and_then(crate::sip::uri::parse_sip_uri)
            .and_then(|u| u.user);
        match target.as_deref().and_then(|u| u.strip_prefix("chat-")) {
            Some(n) => {
                let key = n.parse().unwrap_or(0);
                self.on_agent_text(now, tx, flow, msg, key)
            }
            None => self.on_sender_text(now, tx, flow, msg),
        }
    }

    fn on_sender_text(&mut self, now: Instant, tx: u64, flow: Flow, msg: Message) {
        let Some((_, trunk)) = self.trunk_of(flow) else {
            self.refuse_stateless(tx, &msg, 403);
            return;
        };
        let dialled = msg
            .request_uri()
            .and_then(crate::sip::uri::dialled_number)
            .unwrap_or_default();
        let q = match self.cfg.routes.get(&dialled) {
            Some(crate::config::RouteTarget::Queue(q)) => *q,
            Some(crate::config::RouteTarget::Menu(_, fallback)) => *fallback,
            None => {
                self.refuse_stateless(tx, &msg, 404);
                return;
            }
        };
        if !self.cfg.queues[q].text {
            let r = response(&msg, 488, Some("No Text Here"), Some(&self.ids.token(10)));
            self.respond_stateless(tx, r);
            return;
        }
        // The sender: the trunk's asserted identity, else From.
        let sender = msg
            .header("P-Asserted-Identity")
            .or_else(|| msg.header("From"))
            .and_then(|v| crate::sip::uri::dialled_number(NameAddr::parse(v).uri))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "anonymous".into());
        // Every message counts towards the sender's rate, refused ones too.
        if !self.text.admit(&sender, now) {
            self.metrics
                .security
                .with_label_values(&["text_flood"])
                .inc();
            let r = response(&msg, 429, None, Some(&self.ids.token(10)));
            self.respond_stateless(tx, r);
            return;
        }
        let text = match message_text(&msg) {
            Ok(t) => t,
            Err(BodyRefusal(code, phrase)) => {
                let mut r = response(&msg, code, Some(phrase), Some(&self.ids.token(10)));
                if code == 415 {
                    r.set_header("Accept", "text/plain, message/cpim");
                }
                self.respond_stateless(tx, r);
                return;
            }
        };
        let key = match self.text.by_sender.get(&(sender.clone(), dialled.clone())) {
            Some(&k) => k,
            None => {
                // New conversations are bounded like calls: the queue's max_length waiting,
                // sip.max_calls open in all.
                let full = self.text.waiting[q].len() >= self.acd.max_length(q)
                    || self.text.convs.len() >= self.cfg.max_calls;
                if full {
                    let mut r = response(&msg, 503, Some("Queue Full"), Some(&self.ids.token(10)));
                    r.set_header("Retry-After", self.cfg.retry_after_s.to_string());
                    self.respond_stateless(tx, r);
                    return;
                }
                self.open_conversation(now, &msg, flow, &trunk, &sender, &dialled, q)
            }
        };
        let Some(record) = self.text.convs.get(&key).map(|c| c.record.clone()) else {
            return;
        };
        let at_ms = self.unix_ms(now);
        self.record(RecordEvent::Message {
            id: record,
            at_ms,
            direction: "in",
            sender: sender.clone(),
            text: text.clone(),
        });
        let ok = response(&msg, 202, Some("Accepted"), Some(&self.ids.token(10)));
        // Acknowledged only once the message is in the record (kill -9 loses nothing).
        self.after_records(|e| e.respond(now, tx, ok));
        let Some(c) = self.text.convs.get_mut(&key) else {
            return;
        };
        c.last = now;
        if c.history.len() == HISTORY {
            c.history.pop_front();
        }
        c.history.push_back(text.clone());
        if c.agent.is_some() {
            self.text_to_agent(now, key, &text);
        } else {
            c.pending.push(text);
            self.text_dispatch(now, q);
            self.text_waiting_notice(now, key);
        }
        self.arm(super::timers::TimerRef::Text(key));
    }

    #[allow(clippy::too_many_arguments)]
    fn open_conversation(
        &mut self,
        now: Instant,
        msg: &Message,
        flow: Flow,
        trunk: &str,
        sender: &str,
        dialled: &str,
        q: QueueIdx,
    ) -> ConvKey {
        let key = self.text.next;
        self.text.next += 1;
        let record = super::admission::new_record_id(&mut self.ids);
        self.record(RecordEvent::Arrived {
            id: record.clone(),
            sip_call_id: msg.call_id().to_string(),
            trunk: trunk.to_string(),
            caller: sender.to_string(),
            dialled: dialled.to_string(),
            channel: "text",
            queue: self.acd.queue_name(q).to_string(),
            language: self.acd.queue_skill(q).to_string(),
            at_ms: self.unix_ms(now),
        });
        let host = self.cfg.local.for_transport(flow.transport);
        // Replies go to the sender's number at the trunk the message came from, in the
        // Call-ID of its first message (RFC 3428 leaves it free; gateways that keep a
        // conversation by Call-ID find it).
        let to_sender = Leg {
            flow,
            call_id: msg.call_id().to_string(),
            local: format!("<sip:{dialled}@{host}>;tag={}", self.ids.token(12)),
            remote: format!("<sip:{}@{}>", uri_user(sender), flow.remote),
            remote_target: format!("sip:{}@{}", uri_user(sender), flow.remote),
            route_set: Vec::new(),
            local_cseq: 0,
            pending_2xx: None,
            sips: false,
        };
        tracing::info!(conversation = key, sender = %mask_number(sender), queue = self.acd.queue_name(q), "text conversation opened");
        self.text.convs.insert(
            key,
            Conversation {
                record,
                sender: sender.to_string(),
                service: dialled.to_string(),
                q,
                to_sender,
                agent: None,
                pending: Vec::new(),
                refused_by: Vec::new(),
                history: VecDeque::new(),
                waiting_sent: false,
                last: now,
                wait_until: Some(now + self.cfg.queues[q].max_wait),
                armed: None,
            },
        );
        self.text
            .by_sender
            .insert((sender.to_string(), dialled.to_string()), key);
        self.text.waiting[q].push_back(key);
        key
    }

    /// The first time a conversation has to wait: `text.waiting_message` to the sender.
    fn text_waiting_notice(&mut self, now: Instant, key: ConvKey) {
        let notice = self.text.settings.waiting_message.clone();
        let Some(c) = self.text.convs.get_mut(&key) else {
            return;
        };
        if c.agent.is_some() || c.waiting_sent || notice.is_empty() {
            return;
        }
        c.waiting_sent = true;
        self.text_to_sender(now, key, &notice, "engine");
    }

    /// Gives waiting conversations of `q` to agents with room, oldest first.
    pub(super) fn text_dispatch(&mut self, now: Instant, q: QueueIdx) {
        while let Some(&key) = self.text.waiting.get(q).and_then(|w| w.front()) {
            let Some(c) = self.text.convs.get(&key) else {
                self.text.waiting[q].pop_front();
                continue;
            };
            let Some(a) = self.text_agent_for(q, &c.refused_by) else {
                return;
            };
            self.text.waiting[q].pop_front();
            self.give_conversation(now, key, a);
        }
    }

    /// An agent for a conversation of `q`: registered, taking the queue, not not-ready or
    /// logged out, with room; fewest open conversations, then longest without a new one.
    fn text_agent_for(&self, q: QueueIdx, not: &[AgentIdx]) -> Option<AgentIdx> {
        (0..self.acd.agent_count() as AgentIdx)
            .filter(|a| !not.contains(a))
            .filter(|&a| {
                let exclusive = self
                    .text
                    .exclusive
                    .get(a as usize)
                    .copied()
                    .unwrap_or(false);
                let free = match self.acd.agent_state(a) {
                    AgentState::Ready => true,
                    AgentState::Offered(_) | AgentState::OnCall(_) => !exclusive,
                    _ => false,
                };
                free && self.acd.queues_for_agent(a).any(|x| x == q)
                    && self.text.chats(a)
                        < self.text.max_chats.get(a as usize).copied().unwrap_or(0)
                    && self.registrar.best_binding(a).is_some()
            })
            .min_by_key(|&a| {
                let given = self.text.last_given.get(a as usize).copied().flatten();
                (self.text.chats(a), given)
            })
    }

    fn give_conversation(&mut self, now: Instant, key: ConvKey, a: AgentIdx) {
        let Some(b) = self.registrar.best_binding(a) else {
            return;
        };
        let (flow, target) = (b.flow, b.uri.clone());
        let agent_id = self.acd.agent_id(a).to_string();
        let host = self.cfg.local.for_transport(flow.transport);
        let Some(c) = self.text.convs.get_mut(&key) else {
            return;
        };
        let leg = Leg {
            flow,
            call_id: format!("{}@dasan", self.ids.token(20)),
            local: format!(
                "\"{}\" <sip:chat-{key}@{host}>;tag={}",
                uri_user(&c.sender),
                self.ids.token(12)
            ),
            remote: format!("<sip:{agent_id}@{host}>"),
            sips: super::leg::is_sips(&target),
            remote_target: target,
            route_set: Vec::new(),
            local_cseq: 0,
            pending_2xx: None,
        };
        c.agent = Some((a, leg));
        c.wait_until = None;
        let pending = std::mem::take(&mut c.pending);
        let record = c.record.clone();
        if let Some(n) = self.text.chats.get_mut(a as usize) {
            *n += 1;
        }
        if let Some(t) = self.text.last_given.get_mut(a as usize) {
            *t = Some(now);
        }
        self.text_hold_voice(now, a);
        let at_ms = self.unix_ms(now);
        self.record(RecordEvent::Offered {
            id: record.clone(),
            agent: agent_id.clone(),
            at_ms,
        });
        self.record(RecordEvent::Answered {
            id: record,
            agent: agent_id.clone(),
            at_ms,
        });
        tracing::info!(conversation = key, agent = %agent_id, "text conversation given to an agent");
        for t in pending {
            self.text_to_agent(now, key, &t);
        }
        self.arm(super::timers::TimerRef::Text(key));
    }

    /// Whether `a`'s open conversations keep it from calls: all of `max_chats` open
    /// (voice over text), or any (exclusive). Released, it may take a waiting call now.
    fn text_hold_voice(&mut self, now: Instant, a: AgentIdx) {
        let i = a as usize;
        let chats = self.text.chats(a);
        let held = if self.text.exclusive.get(i).copied().unwrap_or(false) {
            chats > 0
        } else {
            chats >= self.text.max_chats.get(i).copied().unwrap_or(u32::MAX)
        };
        if self.acd.hold_voice(a, held) {
            let queues: Vec<QueueIdx> = self.acd.queues_for_agent(a).collect();
            for q in queues {
                self.dispatch(now, q);
            }
        }
    }

    /// One MESSAGE with `text` to the conversation's agent.
    fn text_to_agent(&mut self, now: Instant, key: ConvKey, text: &str) {
        let local = self.cfg.local;
        let Some((_, leg)) = self.text.convs.get_mut(&key).and_then(|c| c.agent.as_mut()) else {
            return;
        };
        let mut req = leg.request(Method::Message, local, None, &mut self.ids);
        let flow = leg.flow;
        set_text(&mut req, text);
        self.start_client(
            now,
            flow,
            req,
            Owner::Text {
                conv: key,
                to_agent: true,
            },
            None,
        );
    }

    /// `text` to the sender (split over UDP); recorded as an outgoing message by `by`.
    fn text_to_sender(&mut self, now: Instant, key: ConvKey, text: &str, by: &str) {
        let local = self.cfg.local;
        let max = self.text.settings.max_message_bytes;
        let at_ms = self.unix_ms(now);
        let Some(c) = self.text.convs.get_mut(&key) else {
            return;
        };
        let record = c.record.clone();
        let flow = c.to_sender.flow;
        let parts = if flow.transport == Transport::Udp {
            split_text(text, max)
        } else {
            vec![text]
        };
        let mut reqs = Vec::with_capacity(parts.len());
        for p in parts {
            let mut req = c
                .to_sender
                .request(Method::Message, local, None, &mut self.ids);
            set_text(&mut req, p);
            reqs.push(req);
        }
        self.record(RecordEvent::Message {
            id: record,
            at_ms,
            direction: "out",
            sender: by.to_string(),
            text: text.to_string(),
        });
        for req in reqs {
            self.start_client(
                now,
                flow,
                req,
                Owner::Text {
                    conv: key,
                    to_agent: false,
                },
                None,
            );
        }
    }

    /// A MESSAGE from an agent's phone to conversation `key`.
    fn on_agent_text(&mut self, now: Instant, tx: u64, flow: Flow, msg: Message, key: ConvKey) {
        let unix = self.unix_now(now);
        let agent = match self.registrar.authenticate(&msg, flow, now, unix) {
            Ok(a) => a,
            Err(resp) => {
                self.note_auth_events("sip-message");
                self.respond_stateless(tx, resp);
                return;
            }
        };
        let theirs = self
            .text
            .convs
            .get(&key)
            .is_some_and(|c| c.agent.as_ref().is_some_and(|(a, _)| *a == agent));
        if !theirs {
            let r = response(
                &msg,
                481,
                Some("No Such Conversation"),
                Some(&self.ids.token(10)),
            );
            self.respond_stateless(tx, r);
            return;
        }
        let text = match message_text(&msg) {
            Ok(t) => t,
            Err(BodyRefusal(code, phrase)) => {
                let r = response(&msg, code, Some(phrase), Some(&self.ids.token(10)));
                self.respond_stateless(tx, r);
                return;
            }
        };
        let agent_id = self.acd.agent_id(agent).to_string();
        if text.trim() == self.text.settings.close_code {
            self.close_conversation(now, key, Outcome::Answered, "agent");
        } else {
            self.text_to_sender(now, key, &text, &agent_id);
            if let Some(c) = self.text.convs.get_mut(&key) {
                c.last = now;
            }
            self.arm(super::timers::TimerRef::Text(key));
        }
        let ok = response(&msg, 202, Some("Accepted"), Some(&self.ids.token(10)));
        self.after_records(|e| e.respond(now, tx, ok));
    }

    /// Ends a conversation: its record, the agent's room, the queue's next one.
    pub(super) fn close_conversation(
        &mut self,
        now: Instant,
        key: ConvKey,
        outcome: Outcome,
        side: &'static str,
    ) {
        let Some(c) = self.text.convs.remove(&key) else {
            return;
        };
        self.text
            .by_sender
            .remove(&(c.sender.clone(), c.service.clone()));
        if let Some(w) = self.text.waiting.get_mut(c.q) {
            w.retain(|k| *k != key);
        }
        let at_ms = self.unix_ms(now);
        self.record(RecordEvent::Ended {
            id: c.record.clone(),
            outcome,
            side,
            sip_cause: 0,
            at_ms,
        });
        tracing::info!(
            conversation = key,
            ?outcome,
            side,
            "text conversation closed"
        );
        if let Some((a, _)) = c.agent {
            if let Some(n) = self.text.chats.get_mut(a as usize) {
                *n = n.saturating_sub(1);
            }
            self.text_hold_voice(now, a);
            let queues: Vec<QueueIdx> = self.acd.queues_for_agent(a).collect();
            for q in queues {
                self.text_dispatch(now, q);
            }
        }
    }

    /// A conversation's deadline came: idle, or waited too long for an agent.
    pub(super) fn text_timer(&mut self, now: Instant, key: ConvKey) {
        let idle = self.text.settings.idle_close;
        let Some(c) = self.text.convs.get(&key) else {
            return;
        };
        if now < c.deadline(idle) {
            return;
        }
        if c.agent.is_none() && c.wait_until.is_some_and(|w| w <= now) {
            let notice = self.text.settings.timeout_message.clone();
            if !notice.is_empty() {
                self.text_to_sender(now, key, &notice, "engine");
            }
            self.close_conversation(now, key, Outcome::TimedOut, "engine");
        } else {
            let outcome = if c.agent.is_some() {
                Outcome::Answered
            } else {
                Outcome::TimedOut
            };
            self.close_conversation(now, key, outcome, "engine");
        }
    }

    /// A MESSAGE we sent got a final response (or none: `status` None).
    pub(super) fn text_delivery(
        &mut self,
        now: Instant,
        key: ConvKey,
        to_agent: bool,
        status: Option<u16>,
    ) {
        if status.is_some_and(|s| s < 300) {
            return;
        }
        let code = status.map_or("no answer".to_string(), |s| s.to_string());
        let Some(c) = self.text.convs.get_mut(&key) else {
            return;
        };
        if to_agent {
            // The phone refused or is gone: the conversation goes back to the front of
            // its queue for another agent.
            tracing::warn!(conversation = key, %code, "agent's phone refused a message: conversation requeued");
            let freed = c.agent.take().map(|(a, _)| a);
            c.refused_by.extend(freed);
            // The next agent gets what the sender wrote so far.
            c.pending = c.history.iter().cloned().collect();
            let q = c.q;
            c.wait_until = Some(now + self.cfg.queues[q].max_wait);
            self.text.waiting[q].push_front(key);
            if let Some(a) = freed {
                if let Some(n) = self.text.chats.get_mut(a as usize) {
                    *n = n.saturating_sub(1);
                }
                self.text_hold_voice(now, a);
            }
            self.text_dispatch(now, q);
            self.text_waiting_notice(now, key);
            self.arm(super::timers::TimerRef::Text(key));
        } else {
            // The trunk refused a reply: the agent hears of it, nothing is dropped silently.
            tracing::warn!(conversation = key, %code, "reply not delivered to the sender");
            let record = c.record.clone();
            let at_ms = self.unix_ms(now);
            self.record(RecordEvent::Message {
                id: record,
                at_ms,
                direction: "out",
                sender: "engine".into(),
                text: format!("[not delivered: {code}]"),
            });
            self.text_to_agent(now, key, &format!("[dasan] reply not delivered ({code})"));
        }
    }
}

fn set_text(req: &mut Message, text: &str) {
    req.headers.push(Header {
        name: "Content-Type".into(),
        value: "text/plain;charset=UTF-8".into(),
    });
    req.body = Bytes::from(text.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ct: Option<&str>, body: &[u8]) -> Message {
        let mut raw = format!(
            "MESSAGE sip:120@dasan SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKm\r\nFrom: <sip:01012345678@carrier>;tag=a\r\nTo: <sip:120@dasan>\r\nCall-ID: m1\r\nCSeq: 1 MESSAGE\r\n{}Content-Length: {}\r\n\r\n",
            ct.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default(),
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        Message::parse(&raw).unwrap()
    }

    #[test]
    fn bodies_are_text_or_refused_with_the_right_code() {
        let ok = |ct, b: &str| message_text(&msg(ct, b.as_bytes()));
        assert_eq!(
            ok(Some("text/plain;charset=UTF-8"), "버스 시간표 😀"),
            Ok("버스 시간표 😀".into())
        );
        assert_eq!(ok(None, "hello\r\n"), Ok("hello".into()));
        let cpim = "From: <sip:a@b>\r\nTo: <sip:120@c>\r\n\r\nContent-Type: text/plain;charset=utf-8\r\n\r\n안녕하세요";
        assert_eq!(ok(Some("message/cpim"), cpim), Ok("안녕하세요".into()));
        let code = |ct, b: &[u8]| message_text(&msg(ct, b)).unwrap_err().0;
        assert_eq!(code(Some("image/png"), b"\x89PNG"), 415);
        assert_eq!(code(Some("text/plain;charset=euc-kr"), b"abc"), 415);
        assert_eq!(code(Some("text/plain"), b"\xff\xfe bad"), 415);
        assert_eq!(code(Some("text/plain"), b"   "), 400);
        assert_eq!(code(Some("message/cpim"), b"no blank lines"), 400);
        // (The parser refuses such a message before; a body built in memory reaches here.)
        let mut big = msg(Some("text/plain"), b"a");
        big.body = Bytes::from(vec![b'a'; MAX_BODY + 1]);
        assert_eq!(message_text(&big).unwrap_err().0, 413);
    }

    #[test]
    fn a_sender_that_is_not_a_number_cannot_break_a_uri() {
        // Found by the engine fuzzer: a From user with a space made an invalid request.
        assert_eq!(uri_user("0101111222SAGE sip"), "0101111222SAGEsip");
        assert_eq!(uri_user("\"><script>"), "script");
        assert_eq!(uri_user(" "), "anonymous");
        assert_eq!(uri_user("+82-10-1234"), "+82-10-1234");
    }

    #[test]
    fn long_text_splits_at_character_boundaries() {
        let t = "가".repeat(1000); // 3 bytes each
        let parts = split_text(&t, 1300);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= 1300));
        assert_eq!(parts.concat(), t);
        assert_eq!(split_text("short", 1300), vec!["short"]);
    }
}
