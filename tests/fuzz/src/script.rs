//! Drives one fresh engine with a script of network input.
//!
//! The input is a sequence of records. A record starts at the beginning of the input or at
//! a line starting with `@@`; that directive line is `@@<flow><wait>` and the rest of the
//! record is the payload. `<flow>` is one byte:
//!
//! - `t` the trunk (10.1.1.1:5060, UDP); `T` the trunk over TCP (connection 3, framed);
//! - `a` agent 1001's phone (192.0.2.1:5070, UDP); `b` agent 1002's phone over TCP
//!   (connection 2, framed);
//! - `x` an untrusted address (203.0.113.5:5060, UDP);
//! - `c` agent 1002's TCP connection closes;
//! - `m` a media event for the newest anchored call: the payload's first byte picks it
//!   (a digit, prompts done, media timeout, media failure);
//! - anything else: the trunk.
//!
//! `<wait>` is how long virtual time advances (timers firing) before the payload is
//! delivered: `0`-`9` are 0 s, 0.5 s, 1 s, 2 s, ... 128 s; anything else is no wait. The
//! first record (before any directive) comes from the trunk at once.
//!
//! Placeholders in the payload stand for what the engine last sent on that flow, with
//! SIPp's names and meaning, so SIPp scenarios translate directly and a script can answer
//! the engine's INVITE or ACK its 200: `[last_Via:]`, `[last_From:]`, `[last_To:]`,
//! `[last_Call-ID:]`, `[last_CSeq:]` (those header lines of the last message sent there),
//! `[peer_tag_param]` (`;tag=` and the To tag of the last response sent there), `[len]`
//! (the length of the payload's body), and one of our own: `[auth]`, an Authorization value
//! answering the last challenge sent there, for the request's own method and URI, as agent
//! 1001 on `a`, 1002 on `b`.

use dasan::b2bua::Engine;
use dasan::config::Config;
use dasan::media::bridge::{LegId, MediaEvent};
use dasan::media::dtmf::DigitSource;
use dasan::metrics::Metrics;
use dasan::registrar::digest::authorization;
use dasan::sip::build::Ids;
use dasan::sip::framing::{Frame, StreamFramer};
use dasan::sip::message::find_header_end;
use dasan::sip::{Flow, Message, Transport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The dialplan the `engine` target runs: the default one's shape (a queue with a language
/// menu, feature codes, text conversations), with callbacks, a survey and an outbound
/// trunk, and few ports.
pub const CONFIG: &str = r#"
[sip]
listen = "127.0.0.1:5060"
realm = "dasan"
[media]
rtp_port_min = 20000
rtp_port_max = 20039
webrtc_port_min = 30000
webrtc_port_max = 30099
media_timeout_s = 30
[outbound]
trunk = "10.2.2.2:5060"
[[trunk]]
name = "carrier"
sources = ["10.0.0.0/8"]
[[route]]
number = "120"
queue = "general"
[[route]]
number = "1209"
menu = "languages"
[queue.general]
skill = "ko"
channels = ["voice", "text"]
ring_timeout_s = 15
max_wait_s = 120
max_length = 3
wrap_up_s = 5
digits = { "9" = "languages" }
callback_digit = "8"
survey = "survey-ko"
[queue.en]
skill = "en"
record = true
when_full = "queue:general"
[menu.languages]
timeout_s = 8
retries = 1
fallback = "general"
[[menu.languages.option]]
digit = "1"
prompt = "menu-en"
queue = "en"
[[agents]]
ids = "1001-1002"
password = "pw"
skills = ["ko", "en"]
max_chats = 2
"#;

const UNIX_NOW: u64 = 1_700_000_000;

/// `DASAN_FUZZ_TRACE=1` prints every message in and out (to read what an input does:
/// run the target binary on that one file).
fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("DASAN_FUZZ_TRACE").is_some())
}

fn metrics() -> Arc<Metrics> {
    static M: OnceLock<Arc<Metrics>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Metrics::new().expect("metrics")))
        .clone()
}

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| Config::parse(CONFIG, "fuzz").expect("the fuzz dialplan loads"))
}

fn udp(addr: &str) -> Flow {
    Flow::udp(addr.parse().expect("address"))
}

fn tcp(addr: &str, conn: u64) -> Flow {
    Flow {
        transport: Transport::Tcp,
        remote: addr.parse::<SocketAddr>().expect("address"),
        conn,
    }
}

/// What the engine last sent on a flow (for the placeholders).
#[derive(Default)]
struct Last {
    any: Option<Message>,
    response: Option<Message>,
    challenge: Option<String>,
}

/// One engine and the script's view of it.
pub struct Run {
    pub engine: Engine,
    pub now: Instant,
    last: HashMap<Flow, Last>,
    framers: HashMap<u64, StreamFramer>,
    calls: Vec<u64>,
}

impl Run {
    /// A fresh engine on `config` (seeded, so every run of an input is the same).
    pub fn new(config: &Config) -> Run {
        let now = Instant::now();
        let engine = Engine::new(config, metrics(), now, UNIX_NOW, Ids::seeded(0x120));
        Run {
            engine,
            now,
            last: HashMap::new(),
            framers: HashMap::new(),
            calls: Vec::new(),
        }
    }

    /// Delivers one payload on `flow` (through a framer for TCP), then drains the output.
    pub fn deliver(&mut self, flow: Flow, payload: &[u8]) {
        if trace() {
            eprintln!(
                "<< {:?} from {flow:?}\n{}",
                self.now,
                String::from_utf8_lossy(payload)
            );
        }
        if flow.transport == Transport::Tcp {
            let framer = self.framers.entry(flow.conn).or_default();
            framer.push(payload);
            let mut frames = Vec::new();
            loop {
                match framer.next_frame() {
                    Ok(Some(Frame::Message(m))) => frames.push(m),
                    Ok(Some(Frame::Ping)) => {}
                    Ok(None) => break,
                    Err(_) => {
                        // The driver closes a connection that lost its framing.
                        self.framers.remove(&flow.conn);
                        self.engine.connection_closed(self.now, flow.conn);
                        break;
                    }
                }
            }
            for m in frames {
                self.engine.handle_message(self.now, flow, &m);
                self.drain();
            }
        } else {
            self.engine.handle_message(self.now, flow, payload);
        }
        self.drain();
    }

    /// Takes everything the engine wants to send, remembering the last message, response
    /// and challenge per flow, and the anchored calls.
    pub fn drain(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            if trace() {
                eprintln!(">> to {:?}\n{}", t.flow, String::from_utf8_lossy(&t.data));
            }
            let Ok(m) = Message::parse(&t.data) else {
                // A 400 echoes the peer's broken headers (RFC 3261 8.2.6), so a response
                // may not parse; a request the engine sends always must.
                assert!(
                    t.data.starts_with(b"SIP/2.0 "),
                    "the engine sent an invalid request: {:?}",
                    String::from_utf8_lossy(&t.data)
                );
                continue;
            };
            let last = self.last.entry(t.flow).or_default();
            if m.method().is_none() {
                if let Some(ch) = m
                    .header("WWW-Authenticate")
                    .or(m.header("Proxy-Authenticate"))
                {
                    last.challenge = Some(ch.to_string());
                }
                last.response = Some(m.clone());
            }
            last.any = Some(m);
        }
        while let Some(c) = self.engine.poll_media() {
            if let dasan::b2bua::MediaCommand::Start { call, .. } = c {
                self.calls.push(call);
            }
        }
        while self.engine.poll_record().is_some() {}
    }

    /// Advances virtual time by `d`, firing every timer due on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        let mut wakes = 0u32;
        while let Some(t) = self.engine.poll_timeout() {
            if t > end {
                break;
            }
            wakes += 1;
            assert!(
                wakes < 1_000_000,
                "timer storm: the engine never gets past {t:?}"
            );
            self.now = self.now.max(t);
            self.engine.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    /// A media event for the newest anchored call.
    fn media_event(&mut self, payload: &[u8]) {
        let Some(&call) = self.calls.last() else {
            return;
        };
        let ev = match payload.first().copied().unwrap_or(b'1') {
            b'P' => MediaEvent::PromptsDone { call },
            b'T' => MediaEvent::Timeout { call },
            b'F' => MediaEvent::Failed {
                call,
                reason: "fuzz".into(),
            },
            d => MediaEvent::Digit {
                call,
                leg: if d & 0x80 != 0 {
                    LegId::Agent
                } else {
                    LegId::Caller
                },
                digit: (d & 0x7F) as char,
                source: DigitSource::Rfc4733,
            },
        };
        self.engine.handle_media_event(self.now, ev);
        self.drain();
    }

    /// `payload` with the placeholders replaced by what the engine sent on `flow`. One pass,
    /// byte by byte: slice comparisons at every position would each go through libFuzzer's
    /// memcmp hook and slow the target down by half.
    fn substitute(&self, flow: Flow, user: &str, payload: &[u8]) -> Vec<u8> {
        if !payload.contains(&b'[') {
            return payload.to_vec();
        }
        let last = self.last.get(&flow);
        let any = last.and_then(|l| l.any.as_ref());
        let lines = |name: &str| -> String {
            any.map(|m| {
                m.header_values(name)
                    .map(|v| format!("{name}: {v}"))
                    .collect::<Vec<_>>()
                    .join("\r\n")
            })
            .unwrap_or_default()
        };
        let mut out = Vec::with_capacity(payload.len() + 256);
        let mut len_at = None;
        let mut i = 0;
        while i < payload.len() {
            if payload[i] == b'[' {
                let end = payload[i..].iter().take(20).position(|&b| b == b']');
                if let Some(end) = end {
                    let name = &payload[i..=i + end];
                    let value = match name {
                        b"[last_Via:]" => Some(lines("Via")),
                        b"[last_From:]" => Some(lines("From")),
                        b"[last_To:]" => Some(lines("To")),
                        b"[last_Call-ID:]" => Some(lines("Call-ID")),
                        b"[last_CSeq:]" => Some(lines("CSeq")),
                        b"[peer_tag_param]" => Some(
                            last.and_then(|l| l.response.as_ref())
                                .and_then(|r| r.to_tag())
                                .map(|t| format!(";tag={t}"))
                                .unwrap_or_default(),
                        ),
                        b"[auth]" => {
                            let (method, uri) = request_line(payload);
                            Some(
                                last.and_then(|l| l.challenge.as_deref())
                                    .and_then(|ch| {
                                        authorization(ch, user, "pw", &method, &uri, "fz")
                                    })
                                    .unwrap_or_default(),
                            )
                        }
                        b"[len]" => {
                            len_at = Some(out.len());
                            Some(String::new())
                        }
                        _ => None,
                    };
                    if let Some(v) = value {
                        out.extend_from_slice(v.as_bytes());
                        i += end + 1;
                        continue;
                    }
                }
            }
            out.push(payload[i]);
            i += 1;
        }
        if let Some(at) = len_at {
            // In the header block: the body after it is what it measures.
            let body = find_header_end(&out).map_or(0, |h| out.len() - h);
            let n = body.to_string();
            out.splice(at..at, n.bytes());
        }
        out
    }

    /// Runs a whole script (see the module doc).
    pub fn script(&mut self, data: &[u8]) {
        for (directive, payload) in records(data) {
            let (f, wait) = match directive {
                Some(d) => (d.first().copied(), d.get(1).copied()),
                None => (None, None),
            };
            if let Some(w @ b'0'..=b'9') = wait {
                let ms = if w == b'0' { 0 } else { 500u64 << (w - b'1') };
                self.advance(Duration::from_millis(ms));
            }
            let (flow, user) = match f {
                Some(b'T') => (tcp("10.1.1.1:40000", 3), ""),
                Some(b'a') => (udp("192.0.2.1:5070"), "1001"),
                Some(b'b') => (tcp("192.0.2.2:5070", 2), "1002"),
                Some(b'x') => (udp("203.0.113.5:5060"), ""),
                Some(b'c') => {
                    self.framers.remove(&2);
                    self.engine.connection_closed(self.now, 2);
                    self.drain();
                    continue;
                }
                Some(b'm') => {
                    self.media_event(payload);
                    continue;
                }
                _ => (udp("10.1.1.1:5060"), ""),
            };
            let payload = self.substitute(flow, user, payload);
            self.deliver(flow, &payload);
        }
        // Let the transaction timers run out (64*T1 = 32 s) and the ring timeout (15 s);
        // longer waits are the script's to ask for (`9` is 128 s).
        self.advance(Duration::from_secs(40));
    }
}

/// The REGISTER that logs agent 1001 (UDP) in, answered to the challenge the seeded
/// engine gives (nonces are stateless, so it holds for every fresh engine). Agent 1002 (TCP)
/// is left to the scripts: a registration is a third of an empty run's cost.
fn registrations(config: &Config) -> &'static [(Flow, Vec<u8>)] {
    static R: OnceLock<Vec<(Flow, Vec<u8>)>> = OnceLock::new();
    R.get_or_init(|| {
        let mut run = Run::new(config);
        let mut out = Vec::new();
        for (id, flow, host) in [("1001", udp("192.0.2.1:5070"), "192.0.2.1:5070")] {
            let via = if flow.transport == Transport::Tcp { "TCP" } else { "UDP" };
            let reg = |auth: &str, cseq: u32| {
                format!(
                    "REGISTER sip:dasan SIP/2.0\r\nVia: SIP/2.0/{via} {host};branch=z9hG4bKreg{cseq}\r\nFrom: <sip:{id}@dasan>;tag=r{id}\r\nTo: <sip:{id}@dasan>\r\nCall-ID: reg-{id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{id}@{host}>\r\nExpires: 3600\r\n{auth}Content-Length: 0\r\n\r\n"
                )
            };
            run.deliver(flow, reg("", 1).as_bytes());
            let ch = run
                .last
                .get(&flow)
                .and_then(|l| l.challenge.clone())
                .expect("a challenge");
            let auth = authorization(&ch, id, "pw", "REGISTER", "sip:dasan", "fz").expect("auth");
            let msg = reg(&format!("Authorization: {auth}\r\n"), 2);
            run.deliver(flow, msg.as_bytes());
            let ok = run.last.get(&flow).and_then(|l| l.response.as_ref());
            assert_eq!(ok.and_then(Message::status), Some(200), "agent {id} registers");
            out.push((flow, msg.into_bytes()));
        }
        out
    })
}

/// The `engine` target: a fresh engine on [`CONFIG`] with agent 1001 registered, then the
/// script.
pub fn run(data: &[u8]) {
    let config = config();
    let regs = registrations(config);
    let mut run = Run::new(config);
    for (flow, msg) in regs {
        run.deliver(*flow, msg);
    }
    run.script(data);
}

/// The records of a script: (directive after `@@`, payload).
pub fn records(data: &[u8]) -> Vec<(Option<&[u8]>, &[u8])> {
    // Byte comparisons, not slice ones (see `substitute`).
    let at = |i: usize| data[i] == b'@' && data.get(i + 1) == Some(&b'@');
    let mut starts = Vec::new();
    if data.is_empty() || !at(0) {
        starts.push(0);
    }
    for i in 0..data.len() {
        if at(i) && (i == 0 || data[i - 1] == b'\n') {
            starts.push(i);
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(data.len());
        let rec = &data[s..end];
        if rec.len() >= 2 && rec[0] == b'@' && rec[1] == b'@' {
            let d = &rec[2..];
            let nl = d.iter().position(|&b| b == b'\n').unwrap_or(d.len());
            out.push((Some(&d[..nl]), d.get(nl + 1..).unwrap_or(&[])));
        } else {
            out.push((None, rec));
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// The method and Request-URI of a request's first line (empty strings otherwise).
pub fn request_line(msg: &[u8]) -> (String, String) {
    let line = msg.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut it = line.split_whitespace();
    let method = it.next().unwrap_or("").to_string();
    let uri = it.next().unwrap_or("").to_string();
    (method, uri)
}
