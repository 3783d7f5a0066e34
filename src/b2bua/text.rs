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
//! `text.close_code`, or hands it to another queue with `text.transfer_code` and the
//! queue's name; silence for `text.idle_close_s` closes it too, and one that waited
//! `max_wait_s` for an agent is closed with `text.timeout_message`.
//!
//! Every MESSAGE to an agent says what it is in `X-Dasan-Chat` (`message`, `history`: a
//! line of the conversation before this agent had it, `notice`, `closed;by=…`) and which
//! record, queue and language it belongs to (`X-Dasan-Record`, `-Queue`, `-Language`, as a
//! call's INVITE does), so the browser desktop's stand-in phone can show tabs.
//!
//! The public web chat (`POST /api/chat`) is the same conversation with another way back
//! to the sender: replies wait in the conversation's outbox until the page collects them.

use super::leg::Leg;
use super::stats::QueueWindow;
use super::{Engine, Owner};
use crate::acd::{AgentIdx, AgentState, QueueIdx};
use crate::records::{Outcome, RecordEvent};
use crate::sip::build::response;
use crate::sip::message::{Header, Message, NameAddr};
use crate::sip::{Flow, Method, Transport};
use crate::util::mask_number;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(super) type ConvKey = u64;

/// Lines a web chat's outbox keeps for its page to collect.
const WEB_OUTBOX: usize = 100;
/// How long a closed web chat still answers its page (so it learns it was closed).
const WEB_LINGER: Duration = Duration::from_secs(300);

/// Bodies above this are refused (413): a text message, not a file.
const MAX_BODY: usize = 64 * 1024;
/// Messages of a conversation kept to hand it to another agent.
const HISTORY: usize = 50;
/// Senders whose message rate is tracked at once; the oldest is forgotten beyond this.
const MAX_TRACKED_SENDERS: usize = 100_000;

/// How replies reach the sender.
pub(super) enum Back {
    /// MESSAGEs through the trunk the conversation came from (or `[outbound] text_trunk`).
    Sip(Box<Leg>),
    /// The web chat with this token: its page collects them.
    Web(String),
}

/// A line of a conversation kept for the next agent: the sender's, or an agent's reply.
#[derive(Clone)]
struct Line {
    from_sender: bool,
    text: String,
}

pub(super) struct Conversation {
    record: String,
    sender: String,
    /// The number it was written to (120).
    service: String,
    q: QueueIdx,
    back: Back,
    /// The agent it is with, and the leg towards the agent's phone.
    agent: Option<(AgentIdx, Leg)>,
    /// Lines the next agent gets first: messages that came while it waited, or the
    /// conversation so far when it is handed on.
    pending: Vec<Line>,
    /// Agents whose phones refused it, or who handed it on (not given to them again).
    refused_by: Vec<AgentIdx>,
    /// The latest lines both ways, for the next agent.
    history: VecDeque<Line>,
    waiting_sent: bool,
    last: Instant,
    /// When the first message came, when it joined its current queue, when an agent got
    /// it, and whether an agent has replied yet (for first-response time).
    opened: Instant,
    queued: Instant,
    given: Option<Instant>,
    responded: bool,
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
    pub waiting_messages: HashMap<String, String>,
    pub timeout_messages: HashMap<String, String>,
    pub close_code: String,
    pub max_message_bytes: usize,
    pub max_per_minute: u32,
    pub transfer_code: String,
    pub unsupported_message: String,
    /// Script → language, for a conversation whose route is a menu.
    pub scripts: HashMap<String, String>,
    pub text_trunk: Option<SocketAddr>,
}

impl TextSettings {
    pub fn from_config(
        c: &crate::config::TextConfig,
        text_trunk: Option<SocketAddr>,
    ) -> TextSettings {
        TextSettings {
            idle_close: Duration::from_secs(c.idle_close_s.into()),
            waiting_message: c.waiting_message.clone(),
            timeout_message: c.timeout_message.clone(),
            waiting_messages: c.waiting_messages.clone().into_iter().collect(),
            timeout_messages: c.timeout_messages.clone().into_iter().collect(),
            close_code: c.close_code.clone(),
            max_message_bytes: c.max_message_bytes.max(200),
            max_per_minute: c.max_messages_per_minute.max(1),
            transfer_code: c.transfer_code.clone(),
            unsupported_message: c.unsupported_message.clone(),
            scripts: c.scripts.clone().into_iter().collect(),
            text_trunk,
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
    /// Per queue: the text channel's service figures (first response as the answer).
    pub windows: Vec<QueueWindow>,
    /// Web chats by token.
    web: HashMap<String, WebChat>,
}

/// A public web chat: its conversation while open, and what its page has not collected.
struct WebChat {
    conv: Option<ConvKey>,
    next: u64,
    lines: VecDeque<WebLine>,
    closed_at: Option<Instant>,
}

/// A line for the web chat's page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WebLine {
    pub seq: u64,
    pub at_ms: i64,
    /// "counsellor" or "engine" (notices).
    pub from: &'static str,
    pub text: String,
}

/// What a web chat's page collects: lines after the one it has, and whether it is over.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct WebPoll {
    pub lines: Vec<WebLine>,
    pub closed: bool,
}

/// Why a text message was not taken: the status a SIP sender gets, and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRefusal(pub u16, pub &'static str);

impl TextState {
    /// `thresholds`: each queue's service-level threshold; `agents`: each agent's
    /// `max_chats` and whether calls and text exclude each other.
    pub fn new(
        settings: TextSettings,
        now: Instant,
        thresholds: &[Duration],
        agents: Vec<(u32, bool)>,
    ) -> TextState {
        TextState {
            settings,
            convs: HashMap::new(),
            by_sender: HashMap::new(),
            waiting: vec![VecDeque::new(); thresholds.len()],
            windows: thresholds
                .iter()
                .map(|t| QueueWindow::new(now, *t))
                .collect(),
            web: HashMap::new(),
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

    /// `a`'s `max_chats`.
    pub fn max_chats(&self, a: AgentIdx) -> u32 {
        self.max_chats.get(a as usize).copied().unwrap_or(0)
    }

    /// Conversations waiting in `q`, and how long the oldest has.
    pub fn waiting_in(&self, q: QueueIdx, now: Instant) -> (usize, Duration) {
        let Some(w) = self.waiting.get(q) else {
            return (0, Duration::ZERO);
        };
        let oldest = w
            .iter()
            .filter_map(|k| self.convs.get(k))
            .map(|c| now.saturating_duration_since(c.queued))
            .max()
            .unwrap_or_default();
        (w.len(), oldest)
    }

    /// Conversations of `q` with an agent.
    pub fn open_in(&self, q: QueueIdx) -> usize {
        self.convs
            .values()
            .filter(|c| c.q == q && c.agent.is_some())
            .count()
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

/// A body that is not text (a picture, a file).
const UNSUPPORTED: BodyRefusal = BodyRefusal(415, "Only Text Is Supported");

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
        return Err(UNSUPPORTED);
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

/// The script most of `text`'s letters are in, as `text.scripts` names it: kana makes it
/// Japanese (which writes kanji too), Vietnamese letters among Latin ones Vietnamese.
/// None: no letters.
pub(super) fn script_of(text: &str) -> Option<&'static str> {
    use crate::config::settings::TEXT_SCRIPTS;
    // Counted in TEXT_SCRIPTS' order: hangul, latin, vietnamese, han, kana, cyrillic.
    let mut n = [0usize; 6];
    for c in text.chars() {
        let i = match c as u32 {
            0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F => 0,
            0x1EA0..=0x1EF9
            | 0x0102
            | 0x0103
            | 0x0110
            | 0x0111
            | 0x01A0
            | 0x01A1
            | 0x01AF
            | 0x01B0 => 2,
            0x4E00..=0x9FFF | 0x3400..=0x4DBF => 3,
            0x3040..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9F => 4,
            0x0400..=0x04FF => 5,
            u if u < 0x0250 && c.is_alphabetic() => 1,
            _ => continue,
        };
        n[i] += 1;
    }
    let others = n[0].max(n[3]).max(n[5]);
    if n[4] > 0 && n[4] + n[3] >= n[0].max(n[1]) {
        return Some(TEXT_SCRIPTS[4]);
    }
    if n[2] > 0 && n[1] + n[2] >= others {
        return Some(TEXT_SCRIPTS[2]);
    }
    n[2] = 0;
    n[4] = 0;
    let (i, max) = n.iter().enumerate().rev().max_by_key(|(_, v)| **v)?;
    (*max > 0).then_some(TEXT_SCRIPTS[i])
}

/// Where a text came from, and how the answer goes back.
pub(super) enum Origin<'a> {
    Sip {
        msg: &'a Message,
        flow: Flow,
        trunk: &'a str,
    },
    Web {
        token: &'a str,
    },
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
        // The sender: the trunk's asserted identity, else From.
        let sender = msg
            .header("P-Asserted-Identity")
            .or_else(|| msg.header("From"))
            .and_then(|v| crate::sip::uri::dialled_number(NameAddr::parse(v).uri))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "anonymous".into());
        let text = message_text(&msg);
        let origin = Origin::Sip {
            msg: &msg,
            flow,
            trunk: &trunk,
        };
        match self.take_text(now, origin, &sender, &dialled, text) {
            Ok(key) => {
                let ok = response(&msg, 202, Some("Accepted"), Some(&self.ids.token(10)));
                // Acknowledged only once the message is in the record (kill -9 loses nothing),
                // and the waiting notice after the acknowledgement, as a sender expects.
                self.after_records(|e| {
                    e.respond(now, tx, ok);
                    e.text_waiting_notice(now, key);
                });
            }
            Err(TextRefusal(code, phrase)) => {
                let mut r = response(&msg, code, Some(phrase), Some(&self.ids.token(10)));
                if code == 415 && phrase == UNSUPPORTED.1 {
                    self.text_unsupported(now, &msg, flow, &sender);
                }
                match code {
                    415 => r.set_header("Accept", "text/plain, message/cpim"),
                    503 => r.set_header("Retry-After", self.cfg.retry_after_s.to_string()),
                    _ => {}
                }
                self.respond_stateless(tx, r);
            }
        }
    }

    /// A sender's message, by SIP or the web chat: checked, recorded, and on its way to the
    /// conversation's agent or waiting with it. The conversation's key, or why not.
    pub(super) fn take_text(
        &mut self,
        now: Instant,
        origin: Origin<'_>,
        sender: &str,
        dialled: &str,
        text: Result<String, BodyRefusal>,
    ) -> Result<ConvKey, TextRefusal> {
        // Whether the number offers a language choice (a menu, or 120+9 while waiting):
        // then the script of a new conversation's first message makes it.
        let route = match self.cfg.routes.get(dialled) {
            Some(crate::config::RouteTarget::Queue(q)) => {
                (*q, self.dialplan.has_waiting_menu(self.acd.queue_name(*q)))
            }
            Some(crate::config::RouteTarget::Menu(_, fallback)) => (*fallback, true),
            None => return Err(TextRefusal(404, "Not Found")),
        };
        if !self.cfg.queues[route.0].text {
            return Err(TextRefusal(488, "No Text Here"));
        }
        // Every message counts towards the sender's rate, refused ones too.
        if !self.text.admit(sender, now) {
            self.metrics
                .security
                .with_label_values(&["text_flood"])
                .inc();
            return Err(TextRefusal(429, "Too Many Requests"));
        }
        let text = text.map_err(|BodyRefusal(code, phrase)| TextRefusal(code, phrase))?;
        let key = match self
            .text
            .by_sender
            .get(&(sender.to_string(), dialled.to_string()))
        {
            Some(&k) => k,
            None => {
                // A route with a menu (120 and its 120+9 choices): the script of the first
                // message picks the language's queue, if one takes text.
                let detected = route.1.then(|| self.queue_for_script(now, &text)).flatten();
                let q = detected.unwrap_or(route.0);
                // Out of hours, its closed fallback takes it if that one takes text; else
                // it waits for the opening (or max_wait_s).
                let q = match self.open_queue(q, now) {
                    Some((f, _)) if self.cfg.queues[f].text => f,
                    _ => q,
                };
                // New conversations are bounded like calls: the queue's max_length waiting,
                // sip.max_calls open in all.
                let full = self.text.waiting[q].len() >= self.acd.max_length(q)
                    || self.text.convs.len() >= self.cfg.max_calls;
                if full {
                    return Err(TextRefusal(503, "Queue Full"));
                }
                self.open_conversation(now, origin, sender, dialled, q)
            }
        };
        let Some(c) = self.text.convs.get_mut(&key) else {
            return Err(TextRefusal(500, "Server Internal Error"));
        };
        let (record, q) = (c.record.clone(), c.q);
        c.last = now;
        remember(&mut c.history, true, &text);
        let with_agent = c.agent.is_some();
        if !with_agent {
            c.pending.push(Line {
                from_sender: true,
                text: text.clone(),
            });
        }
        let at_ms = self.unix_ms(now);
        self.record(RecordEvent::Message {
            id: record,
            at_ms,
            direction: "in",
            sender: sender.to_string(),
            text: text.clone(),
        });
        self.metrics
            .text_messages
            .with_label_values(&[self.acd.queue_name(q), "in"])
            .inc();
        if with_agent {
            self.text_to_agent(now, key, &text, "message");
            if let Some(t) = self.out.back_mut() {
                t.text_start = Some(self.received);
            }
        } else {
            self.text_dispatch(now, q);
        }
        self.arm(super::timers::TimerRef::Text(key));
        Ok(key)
    }

    /// The open queue taking text whose skill is the language of `text`'s script.
    fn queue_for_script(&self, now: Instant, text: &str) -> Option<QueueIdx> {
        let lang = self.text.settings.scripts.get(script_of(text)?)?;
        (0..self.acd.queue_count()).find(|&q| {
            self.cfg.queues[q].text
                && self.acd.queue_skill(q).eq_ignore_ascii_case(lang)
                && self.queue_open(q, now)
        })
    }

    fn open_conversation(
        &mut self,
        now: Instant,
        origin: Origin<'_>,
        sender: &str,
        dialled: &str,
        q: QueueIdx,
    ) -> ConvKey {
        let key = self.text.next;
        self.text.next += 1;
        let record = super::admission::new_record_id(&mut self.ids);
        let (sip_call_id, trunk) = match &origin {
            Origin::Sip { msg, trunk, .. } => (msg.call_id().to_string(), trunk.to_string()),
            Origin::Web { token } => (format!("web-{token}"), "web".to_string()),
        };
        self.record(RecordEvent::Arrived {
            id: record.clone(),
            sip_call_id,
            trunk,
            caller: sender.to_string(),
            dialled: dialled.to_string(),
            channel: "text",
            queue: self.acd.queue_name(q).to_string(),
            language: self.acd.queue_skill(q).to_string(),
            at_ms: self.unix_ms(now),
        });
        let back = match origin {
            Origin::Sip { msg, flow, .. } => {
                Back::Sip(Box::new(self.sender_leg(msg, flow, sender, dialled)))
            }
            Origin::Web { token } => {
                if let Some(w) = self.text.web.get_mut(token) {
                    w.conv = Some(key);
                }
                Back::Web(token.to_string())
            }
        };
        tracing::info!(conversation = key, sender = %mask_number(sender), queue = self.acd.queue_name(q), "text conversation opened");
        self.text.convs.insert(
            key,
            Conversation {
                record,
                sender: sender.to_string(),
                service: dialled.to_string(),
                q,
                back,
                agent: None,
                pending: Vec::new(),
                refused_by: Vec::new(),
                history: VecDeque::new(),
                waiting_sent: false,
                last: now,
                opened: now,
                queued: now,
                given: None,
                responded: false,
                wait_until: Some(now + self.cfg.queues[q].max_wait),
                armed: None,
            },
        );
        self.text
            .by_sender
            .insert((sender.to_string(), dialled.to_string()), key);
        self.text.waiting[q].push_back(key);
        if let Some(w) = self.text.windows.get_mut(q) {
            w.offered(now);
        }
        key
    }

    /// Towards `sender` of `msg`: `[outbound] text_trunk`, else the trunk it came from, in
    /// the Call-ID of the message (RFC 3428 leaves it free; gateways that keep a
    /// conversation by Call-ID find it).
    fn sender_leg(&mut self, msg: &Message, flow: Flow, sender: &str, dialled: &str) -> Leg {
        let flow = match self.text.settings.text_trunk {
            Some(addr) => Flow::udp(addr),
            None => flow,
        };
        let host = self.cfg.local.for_transport(flow.transport);
        Leg {
            flow,
            call_id: msg.call_id().to_string(),
            local: format!("<sip:{dialled}@{host}>;tag={}", self.ids.token(12)),
            remote: format!("<sip:{}@{}>", uri_user(sender), flow.remote),
            remote_target: format!("sip:{}@{}", uri_user(sender), flow.remote),
            route_set: Vec::new(),
            local_cseq: 0,
            pending_2xx: None,
            sips: false,
        }
    }

    /// A picture or another body that is not text: the sender hears, by text, that only
    /// text is read here (`text.unsupported_message`; its rate counts as the sender's).
    fn text_unsupported(&mut self, now: Instant, msg: &Message, flow: Flow, sender: &str) {
        let notice = self.text.settings.unsupported_message.clone();
        if notice.is_empty() {
            return;
        }
        let dialled = msg
            .request_uri()
            .and_then(crate::sip::uri::dialled_number)
            .unwrap_or_default();
        let mut leg = self.sender_leg(msg, flow, sender, &dialled);
        let flow = leg.flow;
        let mut req = leg.request(Method::Message, self.cfg.local, None, &mut self.ids);
        set_text(&mut req, &notice);
        self.start_client(now, flow, req, Owner::Fire, None);
    }

    /// The waiting (or, `timeout`, the closing) notice in the language of queue `q`.
    fn notice_for(&self, q: QueueIdx, timeout: bool) -> String {
        let s = &self.text.settings;
        let (by_language, default) = if timeout {
            (&s.timeout_messages, &s.timeout_message)
        } else {
            (&s.waiting_messages, &s.waiting_message)
        };
        by_language
            .get(self.acd.queue_skill(q))
            .unwrap_or(default)
            .clone()
    }

    /// The first time a conversation has to wait: `text.waiting_message` to the sender.
    pub(super) fn text_waiting_notice(&mut self, now: Instant, key: ConvKey) {
        let Some(q) = self.text.convs.get(&key).map(|c| c.q) else {
            return;
        };
        let notice = self.notice_for(q, false);
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
                    && self.text.chats(a) < self.text.max_chats(a)
                    && self.registrar.best_binding(a).is_some()
            })
            .min_by_key(|&a| {
                let given = self.text.last_given.get(a as usize).copied().flatten();
                (self.text.chats(a), given)
            })
    }

    /// `a`'s count of open conversations moved by `delta` (+1 or -1), and what follows
    /// from it: whether calls may be offered, the gauge.
    fn text_count(&mut self, now: Instant, a: AgentIdx, up: bool) {
        if let Some(n) = self.text.chats.get_mut(a as usize) {
            *n = if up { *n + 1 } else { n.saturating_sub(1) };
        }
        self.metrics
            .agent_chats
            .with_label_values(&[self.acd.agent_id(a)])
            .set(self.text.chats(a).into());
        self.text_hold_voice(now, a);
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
        c.given = Some(now);
        let pending = std::mem::take(&mut c.pending);
        let record = c.record.clone();
        if let Some(t) = self.text.last_given.get_mut(a as usize) {
            *t = Some(now);
        }
        self.text_count(now, a, true);
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
        for line in pending {
            let kind = if line.from_sender {
                "message"
            } else {
                "history"
            };
            self.text_to_agent(now, key, &line.text, kind);
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
            chats >= self.text.max_chats(a)
        };
        if self.acd.hold_voice(a, held) {
            let queues: Vec<QueueIdx> = self.acd.queues_for_agent(a).collect();
            for q in queues {
                self.dispatch(now, q);
            }
        }
    }

    /// One MESSAGE to the conversation's agent; `kind` goes in `X-Dasan-Chat`.
    fn text_to_agent(&mut self, now: Instant, key: ConvKey, text: &str, kind: &str) {
        let local = self.cfg.local;
        let Some(c) = self.text.convs.get_mut(&key) else {
            return;
        };
        let (q, record) = (c.q, c.record.clone());
        let Some((_, leg)) = c.agent.as_mut() else {
            return;
        };
        let mut req = leg.request(Method::Message, local, None, &mut self.ids);
        let flow = leg.flow;
        for (name, value) in [
            ("X-Dasan-Chat", kind.to_string()),
            ("X-Dasan-Record", record),
            ("X-Dasan-Queue", self.acd.queue_name(q).to_string()),
            ("X-Dasan-Language", self.acd.queue_skill(q).to_string()),
        ] {
            req.headers.push(Header {
                name: name.into(),
                value,
            });
        }
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
        let (record, q) = (c.record.clone(), c.q);
        let mut reqs = Vec::new();
        match &mut c.back {
            Back::Sip(leg) => {
                let parts = if leg.flow.transport == Transport::Udp {
                    split_text(text, max)
                } else {
                    vec![text]
                };
                for p in parts {
                    let mut req = leg.request(Method::Message, local, None, &mut self.ids);
                    set_text(&mut req, p);
                    reqs.push((leg.flow, req));
                }
            }
            Back::Web(token) => {
                if let Some(w) = self.text.web.get_mut(token.as_str()) {
                    w.push(
                        at_ms,
                        if by == "engine" {
                            "engine"
                        } else {
                            "counsellor"
                        },
                        text,
                    );
                }
            }
        }
        self.record(RecordEvent::Message {
            id: record,
            at_ms,
            direction: "out",
            sender: by.to_string(),
            text: text.to_string(),
        });
        self.metrics
            .text_messages
            .with_label_values(&[self.acd.queue_name(q), "out"])
            .inc();
        for (flow, req) in reqs {
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
        self.agent_text(now, key, agent, &text);
        let ok = response(&msg, 202, Some("Accepted"), Some(&self.ids.token(10)));
        self.after_records(|e| e.respond(now, tx, ok));
    }

    /// What agent `a` wrote in conversation `key`: a reply, the close code, or the
    /// transfer code with a queue.
    fn agent_text(&mut self, now: Instant, key: ConvKey, a: AgentIdx, text: &str) {
        let word = text.trim();
        if word == self.text.settings.close_code {
            self.close_conversation(now, key, Outcome::Answered, "agent");
            return;
        }
        if let Some(target) = word.strip_prefix(self.text.settings.transfer_code.as_str()) {
            if let Err(why) = self.transfer_conversation(now, key, a, target.trim()) {
                self.text_to_agent(now, key, &format!("[dasan] {why}"), "notice");
            }
            return;
        }
        let agent_id = self.acd.agent_id(a).to_string();
        self.text_to_sender(now, key, text, &agent_id);
        let Some(c) = self.text.convs.get_mut(&key) else {
            return;
        };
        c.last = now;
        remember(&mut c.history, false, &format!("[{agent_id}] {text}"));
        if !c.responded {
            c.responded = true;
            let (q, waited) = (c.q, now.saturating_duration_since(c.opened));
            self.metrics
                .first_response
                .with_label_values(&[self.acd.queue_name(q), "text"])
                .observe(waited.as_secs_f64());
            if let Some(w) = self.text.windows.get_mut(q) {
                w.answered(now, waited);
            }
        }
        self.arm(super::timers::TimerRef::Text(key));
    }

    /// Hands conversation `key` from agent `a` to the queue named `target` (or the one
    /// taking text whose skill it names), with its history.
    fn transfer_conversation(
        &mut self,
        now: Instant,
        key: ConvKey,
        a: AgentIdx,
        target: &str,
    ) -> Result<(), String> {
        let q = self
            .acd
            .queue_index(target)
            .filter(|&q| self.cfg.queues[q].text)
            .or_else(|| {
                (0..self.acd.queue_count()).find(|&q| {
                    self.cfg.queues[q].text && self.acd.queue_skill(q).eq_ignore_ascii_case(target)
                })
            })
            .ok_or_else(|| format!("no queue taking text is called '{target}'"))?;
        self.text_to_agent(
            now,
            key,
            "[dasan] conversation transferred",
            "closed;by=transfer",
        );
        let Some(c) = self.text.convs.get_mut(&key) else {
            return Ok(());
        };
        let from = c.q;
        c.agent = None;
        c.refused_by.push(a);
        c.pending = c.history.iter().cloned().collect();
        c.q = q;
        c.queued = now;
        c.wait_until = Some(now + self.cfg.queues[q].max_wait);
        let record = c.record.clone();
        self.record(RecordEvent::Queue {
            id: record,
            queue: self.acd.queue_name(q).to_string(),
            language: self.acd.queue_skill(q).to_string(),
        });
        tracing::info!(
            conversation = key,
            from = self.acd.queue_name(from),
            to = self.acd.queue_name(q),
            "text conversation transferred"
        );
        self.text.waiting[q].push_back(key);
        self.text_count(now, a, false);
        self.text_dispatch(now, q);
        self.text_dispatch_for(now, a);
        self.arm(super::timers::TimerRef::Text(key));
        Ok(())
    }

    /// Waiting conversations of every queue `a` takes, now that `a` has room.
    fn text_dispatch_for(&mut self, now: Instant, a: AgentIdx) {
        let queues: Vec<QueueIdx> = self.acd.queues_for_agent(a).collect();
        for q in queues {
            self.text_dispatch(now, q);
        }
    }

    /// Ends a conversation: its record, the agent's room, the queue's next one.
    pub(super) fn close_conversation(
        &mut self,
        now: Instant,
        key: ConvKey,
        outcome: Outcome,
        side: &'static str,
    ) {
        if self.text.convs.get(&key).is_some_and(|c| c.agent.is_some()) {
            let kind = format!("closed;by={side}");
            self.text_to_agent(now, key, "[dasan] conversation closed", &kind);
        }
        let Some(c) = self.text.convs.remove(&key) else {
            return;
        };
        self.text
            .by_sender
            .remove(&(c.sender.clone(), c.service.clone()));
        if let Some(w) = self.text.waiting.get_mut(c.q) {
            w.retain(|k| *k != key);
        }
        if let Back::Web(token) = &c.back {
            if let Some(w) = self.text.web.get_mut(token.as_str()) {
                w.conv = None;
                w.closed_at = Some(now);
            }
        }
        let qn = self.acd.queue_name(c.q).to_string();
        match c.given {
            Some(given) => {
                let handle = now.saturating_duration_since(given);
                self.metrics
                    .handle
                    .with_label_values(&[&qn, "text"])
                    .observe(handle.as_secs_f64());
                if let Some(w) = self.text.windows.get_mut(c.q) {
                    w.talked(now, handle);
                }
            }
            None => {
                if let Some(w) = self.text.windows.get_mut(c.q) {
                    w.abandoned(now, now.saturating_duration_since(c.queued));
                }
            }
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
            self.text_count(now, a, false);
            self.text_dispatch_for(now, a);
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
            let notice = self.notice_for(c.q, true);
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
            let Some((a, _)) = c.agent.take() else {
                return;
            };
            // The phone refused or is gone: the conversation goes back to the front of
            // its queue for another agent, who gets the conversation so far.
            tracing::warn!(conversation = key, %code, "agent's phone refused a message: conversation requeued");
            c.refused_by.push(a);
            c.pending = c.history.iter().cloned().collect();
            let q = c.q;
            c.queued = now;
            c.wait_until = Some(now + self.cfg.queues[q].max_wait);
            self.text.waiting[q].push_front(key);
            self.text_count(now, a, false);
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
            self.text_to_agent(
                now,
                key,
                &format!("[dasan] reply not delivered ({code})"),
                "notice",
            );
        }
    }

    /// A public web chat begins: a token for its page, or why not. Its first message
    /// goes as [`Engine::web_chat_send`]'s do.
    pub fn web_chat_start(
        &mut self,
        now: Instant,
        service: &str,
        text: &str,
    ) -> Result<(String, WebPoll), TextRefusal> {
        // Closed chats linger a while for their pages; the table is bounded like calls.
        self.text.web.retain(|_, w| {
            w.closed_at
                .is_none_or(|t| now.duration_since(t) < WEB_LINGER)
        });
        if self.text.web.len() >= self.cfg.max_calls {
            return Err(TextRefusal(503, "Queue Full"));
        }
        let token = self.ids.token(24);
        self.text.web.insert(
            token.clone(),
            WebChat {
                conv: None,
                next: 1,
                lines: VecDeque::new(),
                closed_at: None,
            },
        );
        match self.web_chat_text(now, &token, service, text) {
            Ok(()) => Ok((
                token.clone(),
                self.web_chat_poll(&token, 0).unwrap_or_default(),
            )),
            Err(e) => {
                self.text.web.remove(&token);
                Err(e)
            }
        }
    }

    /// A message from web chat `token`'s page.
    pub fn web_chat_send(
        &mut self,
        now: Instant,
        token: &str,
        text: &str,
    ) -> Result<(), TextRefusal> {
        let Some(w) = self.text.web.get(token) else {
            return Err(TextRefusal(404, "No Such Chat"));
        };
        if w.closed_at.is_some() {
            return Err(TextRefusal(410, "Chat Closed"));
        }
        let service = w
            .conv
            .and_then(|k| self.text.convs.get(&k))
            .map(|c| c.service.clone())
            .unwrap_or_default();
        self.web_chat_text(now, token, &service, text)
    }

    fn web_chat_text(
        &mut self,
        now: Instant,
        token: &str,
        service: &str,
        text: &str,
    ) -> Result<(), TextRefusal> {
        let text = text.trim_end_matches(['\r', '\n']);
        let checked = if text.len() > MAX_BODY {
            Err(BodyRefusal(413, "Message Too Large"))
        } else if text.trim().is_empty() {
            Err(BodyRefusal(400, "Empty Message"))
        } else {
            Ok(text.to_string())
        };
        // The sender as records and agents see it: the chat, not a number.
        let sender = format!("web-{}", token.get(..8).unwrap_or(token));
        let key = self.take_text(now, Origin::Web { token }, &sender, service, checked)?;
        self.text_waiting_notice(now, key);
        Ok(())
    }

    /// Lines for web chat `token`'s page after `after`, and whether it is over. None: no
    /// such chat.
    pub fn web_chat_poll(&self, token: &str, after: u64) -> Option<WebPoll> {
        let w = self.text.web.get(token)?;
        Some(WebPoll {
            lines: w.lines.iter().filter(|l| l.seq > after).cloned().collect(),
            closed: w.closed_at.is_some(),
        })
    }

    /// The page closed its chat: the conversation ends as the sender's.
    pub fn web_chat_close(&mut self, now: Instant, token: &str) -> Result<(), TextRefusal> {
        let conv = self
            .text
            .web
            .get(token)
            .ok_or(TextRefusal(404, "No Such Chat"))?
            .conv;
        if let Some(k) = conv {
            self.close_conversation(now, k, Outcome::Answered, "caller");
        }
        Ok(())
    }
}

impl WebChat {
    fn push(&mut self, at_ms: i64, from: &'static str, text: &str) {
        if self.lines.len() == WEB_OUTBOX {
            self.lines.pop_front();
        }
        self.lines.push_back(WebLine {
            seq: self.next,
            at_ms,
            from,
            text: text.to_string(),
        });
        self.next += 1;
    }
}

/// Keeps the latest [`HISTORY`] lines.
fn remember(history: &mut VecDeque<Line>, from_sender: bool, text: &str) {
    if history.len() == HISTORY {
        history.pop_front();
    }
    history.push_back(Line {
        from_sender,
        text: text.to_string(),
    });
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
    fn the_script_of_a_first_message_names_its_language() {
        assert_eq!(script_of("Where is the nearest hospital?"), Some("latin"));
        assert_eq!(script_of("버스 시간표 알려주세요 🚌"), Some("hangul"));
        assert_eq!(script_of("こんにちは、病院はどこですか"), Some("kana"));
        assert_eq!(script_of("你好，医院在哪里"), Some("han"));
        assert_eq!(script_of("Сайн байна уу"), Some("cyrillic"));
        assert_eq!(script_of("Xin chào, tôi cần giúp đỡ"), Some("vietnamese"));
        assert_eq!(
            script_of("Hello 안녕하세요 여러분"),
            Some("hangul"),
            "most letters"
        );
        assert_eq!(script_of("010-1234 !!! 🚌"), None);
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
