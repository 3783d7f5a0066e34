//! Configuration and dialplan: typed TOML, unknown keys rejected, errors as `file:line: msg`.
//!
//! Flow (as in pingora): deserialize with defaults, then [`Config::validate`], then CLI
//! overrides in `main`. Every duration field names its unit in the key.

use ipnet::IpNet;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The default 120 dialplan, compiled into the binary.
pub const DEFAULT_CONFIG: &str = include_str!("../../dialplans/dasan120.toml");
pub const DEFAULT_CONFIG_NAME: &str = "dialplans/dasan120.toml (embedded)";
/// The password of the demo agents; the engine warns while it is in use.
pub const DEMO_PASSWORD: &str = "dasan-demo";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub sip: SipConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<TrunkConfig>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    #[serde(default, rename = "queue")]
    pub queues: BTreeMap<String, QueueConfig>,
    #[serde(default)]
    pub agents: Vec<AgentGroup>,
    #[serde(default, rename = "menu")]
    pub menus: BTreeMap<String, MenuConfig>,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub features: FeatureCodes,
    #[serde(default)]
    pub clock: ClockConfig,
    #[serde(default)]
    pub outbound: OutboundConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Threads that run SIP, media and the browser legs. Default: one per CPU the engine
    /// may run on (its affinity mask, so `taskset -c 0 dasan run` gets one). 1..=1024.
    pub worker_threads: Option<usize>,
}

impl RuntimeConfig {
    pub fn threads(&self) -> usize {
        self.worker_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Anchor calls' RTP in the engine (our SDP on both legs, 183 early media, digits,
    /// menus, recording). Default true. With false the engine relays SDP end to end:
    /// signalling only, no menus (routes to a menu are then a config error).
    pub anchor: bool,
    /// RTP port range, inclusive. Each call takes 4 ports (RTP and RTCP per leg), so the
    /// range bounds concurrent anchored calls: 20000-29999 carries 2,500. When it runs
    /// out, new calls get 503. Default 20000-29999.
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// UDP ports for browser agents' WebRTC, inclusive: each logged-in browser takes two
    /// (ICE, and the leg's RTP towards the media plane), so 30000-31999 carries 1,000. A
    /// range of their own, away from the RTP range and the kernel's ephemeral ports, so
    /// the two never take each other's ports and a firewall can open exactly these.
    /// Default 30000-31999.
    pub webrtc_port_min: u16,
    pub webrtc_port_max: u16,
    /// Seconds without RTP from a leg before the call is ended. Default 30.
    pub media_timeout_s: u32,
    /// Address for RTP and in SDP; defaults to the SIP address.
    pub ip: Option<std::net::IpAddr>,
    /// A directory of extra prompts (16-bit mono WAV at 8, 16 or 48 kHz), named by file
    /// stem; they add to, and override, the prompts built into the binary.
    pub prompts_dir: Option<PathBuf>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            anchor: true,
            rtp_port_min: 20000,
            rtp_port_max: 29999,
            webrtc_port_min: 30000,
            webrtc_port_max: 31999,
            media_timeout_s: 30,
            ip: None,
            prompts_dir: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP and TCP listen address. Default 127.0.0.1:5060.
    pub listen: SocketAddr,
    /// Address written into Via and Contact; defaults to `listen`. Required when `listen`
    /// is a wildcard address.
    pub advertise: Option<SocketAddr>,
    /// Digest realm for agent registration. Default "dasan".
    pub realm: String,
    /// RFC 3261 T1 in milliseconds. Default 500.
    pub t1_ms: u64,
    /// RFC 3261 T2 in milliseconds. Default 4000.
    pub t2_ms: u64,
    /// RFC 3261 T4 in milliseconds. Default 5000.
    pub t4_ms: u64,
    /// Calls held at once before new ones get 503. Default 50000.
    pub max_calls: usize,
    /// Longest registration accepted, seconds. Default 3600.
    pub max_expires_s: u32,
    /// Shortest registration accepted (shorter gets 423), seconds. Default 30.
    pub min_expires_s: u32,
    /// Retry-After seconds sent with 503 when shedding load. Default 5.
    pub retry_after_s: u32,
    /// Kernel socket buffer for the UDP socket, bytes. Default 8 MiB.
    pub udp_buffer_bytes: usize,
    /// Digest algorithms challenged on REGISTER, one WWW-Authenticate each, in this order
    /// (RFC 8760). Default ["MD5"]: baresip 1.0 rejects a whole 401 that lists SHA-256,
    /// and SIPp answers only the first challenge, so add "SHA-256" after "MD5" only when
    /// every phone copes with it.
    pub digest_algorithms: Vec<String>,
    /// On SIGTERM, seconds to let calls in progress finish before stopping. Default 30.
    pub drain_timeout_s: u32,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: "127.0.0.1:5060".parse().expect("literal"),
            advertise: None,
            realm: "dasan".into(),
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            max_calls: 50_000,
            max_expires_s: 3600,
            min_expires_s: 30,
            retry_after_s: 5,
            udp_buffer_bytes: 8 << 20,
            digest_algorithms: vec!["MD5".into()],
            drain_timeout_s: 30,
        }
    }
}

/// Where the engine places calls of its own (callbacks): a carrier trunk's SIP address.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// SIP address of the outbound trunk, e.g. "192.0.2.10:5060". None: no callbacks.
    pub trunk: Option<SocketAddr>,
    /// The number callbacks present. Default "120".
    pub caller_id: Option<String>,
}

/// The centre's local time, for queue opening hours.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockConfig {
    /// Offset from UTC, "+09:00" (Seoul, the default; Korea keeps no daylight saving).
    pub utc_offset: String,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            utc_offset: "+09:00".into(),
        }
    }
}

impl ClockConfig {
    /// The offset in seconds, if well formed.
    pub fn offset_s(&self) -> Option<i64> {
        let s = self.utc_offset.trim();
        let (sign, rest) = match s.as_bytes().first()? {
            b'+' => (1, &s[1..]),
            b'-' => (-1, &s[1..]),
            _ => return None,
        };
        let (h, m) = rest.split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 3600 + m * 60))
    }
}

/// `"09:00-22:00"` → minutes after midnight (start, end); end before start spans midnight.
pub fn parse_hours(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('-')?;
    let hm = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
    };
    let (start, end) = (hm(a)?, hm(b)?);
    (start != end).then_some((start, end))
}

/// Numbers an agent dials from its registered phone to change its own state (the phone
/// authenticates with the agent's credentials, proxy digest). The answer is a final
/// `603` whose reason phrase names the new state ("Ready", "Not Ready", "Logged Out").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureCodes {
    /// Toggle ready / not-ready. Default "*21".
    pub toggle_ready: String,
    /// Log out (the next REGISTER logs in again). Default "*22".
    pub logout: String,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        FeatureCodes {
            toggle_ready: "*21".into(),
            logout: "*22".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// HTTP listen address (health, metrics, API). Default 127.0.0.1:8080.
    pub listen: SocketAddr,
    /// API bearer tokens and their roles. With none here and no DASAN_API_TOKEN in the
    /// environment, the engine generates a supervisor token at first start and keeps it in
    /// `<data dir>/api-token` (mode 0600).
    pub tokens: Vec<TokenConfig>,
    /// How long a browser agent's login lasts (the desktop's session token for the API).
    /// Default 43200 (12 hours, a long shift).
    pub session_ttl_s: u32,
}

/// One API token. Roles: `supervisor` (everything, caller numbers in clear), `reporting`
/// (read-only, caller numbers masked), `agent` (its own agent only; needs `agent`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: Spanned<String>,
    pub role: Spanned<String>,
    #[serde(default)]
    pub agent: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".parse().expect("literal"),
            tokens: Vec::new(),
            session_ttl_s: 43_200,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Data directory (records.db, recordings/, the generated API token). Default
    /// ./dasan-data.
    pub dir: PathBuf,
    /// A record change is committed (fsync'd) within this many milliseconds while the
    /// writer keeps up; slower commits are logged. Default 100.
    pub flush_interval_ms: u64,
    /// Record changes queued for the writer before further ones wait in memory (counted in
    /// dasan_record_queue_full_total). Default 65536.
    pub record_queue: usize,
    /// Keep records in PostgreSQL instead of SQLite: a `postgresql://user:pass@host/db`
    /// URL. Default: SQLite at `<dir>/records.db`, no server needed.
    pub database: Option<String>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: PathBuf::from("./dasan-data"),
            flush_interval_ms: 100,
            record_queue: 65_536,
            database: None,
        }
    }
}

/// A carrier trunk: INVITEs from these source networks are trusted without authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub name: String,
    pub sources: Vec<Spanned<String>>,
    /// Answer this trunk's calls with `183 Session Progress` and play the queue's audio as
    /// early media (default true). False: a plain `180 Ringing` and the caller's own
    /// ringback, for peers that cannot take a 183 (SIPp's built-in `uac_pcap`). Media is
    /// still anchored; digits then only arrive by SIP INFO until the call is answered.
    #[serde(default = "d_true")]
    pub early_media: bool,
}

fn d_true() -> bool {
    true
}

/// A dialled number and the queue it reaches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub number: Spanned<String>,
    /// The queue the number reaches (zero-ARS: straight to an agent)…
    #[serde(default)]
    pub queue: Option<Spanned<String>>,
    /// …or a menu (120+9: the language menu).
    #[serde(default)]
    pub menu: Option<Spanned<String>>,
}

/// A short menu: one prompt per option, a digit picks a queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuConfig {
    /// Seconds to wait for a digit after the prompts. Default 8.
    #[serde(default = "d_menu_timeout")]
    pub timeout_s: u32,
    /// Times the prompts are replayed after no or a wrong digit, before the caller goes
    /// back to the queue they came from (never dropped). Default 2.
    #[serde(default = "d_menu_retries")]
    pub retries: u32,
    /// Where a caller goes who chose nothing, when they did not come from a queue (a
    /// number routed straight to the menu). Default: the first option's queue.
    #[serde(default)]
    pub fallback: Option<Spanned<String>>,
    #[serde(rename = "option")]
    pub options: Vec<MenuOption>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuOption {
    pub digit: Spanned<String>,
    /// Prompt name: a WAV file under prompts/ without the extension.
    pub prompt: Spanned<String>,
    pub queue: Spanned<String>,
}

fn d_menu_timeout() -> u32 {
    8
}
fn d_menu_retries() -> u32 {
    2
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Offer each call to the ready agent that has waited longest since their last call.
    #[default]
    LongestIdleAgent,
    /// The ready agent who has gone longest without being offered a call.
    RoundRobin,
    /// The ready agent who has answered the fewest calls (then longest idle).
    FewestCalls,
    /// Always the first ready agent in configuration order.
    TopDown,
    /// Ring every eligible ready agent at once (up to 32); the first to answer takes it.
    RingAll,
}

impl Strategy {
    pub fn core(self) -> crate::acd::Strategy {
        match self {
            Strategy::LongestIdleAgent => crate::acd::Strategy::LongestIdle,
            Strategy::RingAll => crate::acd::Strategy::RingAll,
            Strategy::RoundRobin => crate::acd::Strategy::RoundRobin,
            Strategy::FewestCalls => crate::acd::Strategy::FewestCalls,
            Strategy::TopDown => crate::acd::Strategy::TopDown,
        }
    }
}

/// What happens at a queue's limit (max wait, max length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitAction {
    /// End the call (never answered) with this status: 480 or 503.
    Reject(u16),
    /// Move the call to the named queue.
    Queue(String),
    /// Play the prompt, then 480.
    Message(String),
    /// Offer the callback (the queue's callback prompt), then 480 if not taken.
    Callback,
}

impl LimitAction {
    pub fn parse(s: &str) -> Option<LimitAction> {
        match s.split_once(':') {
            None if s == "480" => Some(LimitAction::Reject(480)),
            None if s == "503" => Some(LimitAction::Reject(503)),
            None if s == "callback" => Some(LimitAction::Callback),
            Some(("queue", q)) if !q.is_empty() => Some(LimitAction::Queue(q.to_string())),
            Some(("message", p)) if is_prompt_name(p) => Some(LimitAction::Message(p.to_string())),
            _ => None,
        }
    }
}

impl QueueConfig {
    /// The prompt offering a callback: configured, or "callback-offer-<language>".
    pub fn callback_prompt_name(&self) -> String {
        self.callback_prompt.as_ref().map_or_else(
            || format!("callback-offer-{}", self.language),
            |p| p.get_ref().clone(),
        )
    }

    fn offers_callback(&self) -> bool {
        self.callback_offer_after_s.is_some()
            || LimitAction::parse(self.when_max_wait.get_ref()) == Some(LimitAction::Callback)
    }
}

/// A routing step: from `after_s` seconds of waiting, agents with at least this
/// proficiency in the queue's skill may take the call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    pub after_s: u32,
    pub min_proficiency: u8,
}

/// After `after_s` seconds without an agent, the call moves to `queue`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverflowConfig {
    pub after_s: u32,
    pub queue: Spanned<String>,
}

/// `"ko"` (proficiency 5) or `"en:3"`: a skill and a proficiency 1–5.
pub fn parse_skill(s: &str) -> Result<(String, u8), String> {
    match s.split_once(':') {
        None if !s.trim().is_empty() => Ok((s.trim().to_string(), 5)),
        Some((name, level)) if !name.trim().is_empty() => match level.trim().parse::<u8>() {
            Ok(p @ 1..=5) => Ok((name.trim().to_string(), p)),
            _ => Err(format!(
                "skill '{s}': the proficiency after ':' must be 1 to 5"
            )),
        },
        _ => Err(format!("skill '{s}' is empty")),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Skill an agent needs to take this queue's calls.
    pub skill: String,
    #[serde(default)]
    pub strategy: Strategy,
    /// Routing steps that widen over time, e.g. `[{after_s = 0, min_proficiency = 4},
    /// {after_s = 30, min_proficiency = 1}]`. Default: any proficiency from the start.
    #[serde(default, rename = "step")]
    pub steps: Vec<StepConfig>,
    /// Move calls that waited this long to another queue. Default: none.
    #[serde(default)]
    pub overflow: Option<OverflowConfig>,
    /// When an agent serves several queues, higher priority queues' calls go first.
    /// Default 0.
    #[serde(default)]
    pub priority: i32,
    /// Ring-no-answers in a row before an agent is set not-ready (RONA); fewer only skip
    /// the agent for busy_delay_s. Default 1.
    #[serde(default = "d_max_no_answer")]
    pub max_no_answer: u32,
    /// Seconds an agent's phone rings before the call moves on (RONA). Default 15.
    #[serde(default = "d_ring")]
    pub ring_timeout_s: u32,
    /// Seconds a caller waits for an agent before 480. Default 300.
    #[serde(default = "d_max_wait")]
    pub max_wait_s: u32,
    /// Calls waiting at once (queued or ringing) before new ones get 503. Default 1000.
    #[serde(default = "d_max_len")]
    pub max_length: usize,
    /// Seconds of wrap-up after a call before the agent is ready again. Default 0.
    #[serde(default)]
    pub wrap_up_s: u32,
    /// Seconds an agent who answered busy (486/600/603) is skipped. Default 5.
    #[serde(default = "d_busy")]
    pub busy_delay_s: u32,
    /// Digits that act while a caller waits (queued, or an agent's phone ringing): digit →
    /// menu. Zero-ARS: nothing is announced; a caller who knows presses it.
    #[serde(default)]
    pub digits: BTreeMap<String, Spanned<String>>,
    /// What a waiting caller hears as early media: "ringback" (default: a ring tone, no
    /// voice), "silence", or a prompt name played in a loop (music on hold).
    #[serde(default = "d_music")]
    pub music: Spanned<String>,
    /// A prompt announced to waiting callers every `announce_every_s` (e.g. "please hold").
    /// None by default: zero-ARS speaks to no one unless configured.
    #[serde(default)]
    pub announce: Option<Spanned<String>>,
    /// Tell waiting callers their place in the queue ("queue-position-<language>" then
    /// "pos-<language>-N", 1-10 or "many"). Default false.
    #[serde(default)]
    pub announce_position: bool,
    /// Tell waiting callers the expected wait in minutes ("queue-ewt-<language>" then
    /// "min-<language>-M"): place × the queue's average talk time ÷ agents logged in with
    /// the skill. Default false.
    #[serde(default)]
    pub announce_wait: bool,
    /// Language of the queue's announcements (prompt name suffix). Default "ko"; prompts
    /// ship for "ko" and "en".
    #[serde(default = "d_language")]
    pub language: String,
    /// Seconds between announcements, the first one after this long too. Default 30.
    #[serde(default = "d_announce_every")]
    pub announce_every_s: u32,
    /// Opening hours in the centre's local time, "09:00-22:00". Default: always open.
    #[serde(default)]
    pub hours: Option<Spanned<String>>,
    /// Outside the hours: the caller hears this prompt (in the queue's language)…
    #[serde(default)]
    pub closed_prompt: Option<Spanned<String>>,
    /// …and waits in this queue instead. Without one, the call is refused with 480.
    #[serde(default)]
    pub closed_fallback: Option<Spanned<String>>,
    /// Callback keeping the place in line (virtual hold): pressing this digit while waiting
    /// ends the call (480 "Callback Scheduled"); when its place reaches the head the engine
    /// reserves an agent, then dials the caller through `[outbound] trunk`. Default none.
    #[serde(default)]
    pub callback_digit: Option<Spanned<String>>,
    /// Dialling attempts before a callback is given up. Default 3.
    #[serde(default = "d_callback_attempts")]
    pub callback_attempts: u32,
    /// Seconds between attempts (the callback rejoins the back of the queue). Default 60.
    #[serde(default = "d_callback_retry")]
    pub callback_retry_s: u32,
    /// After this many seconds of waiting the caller hears `callback_prompt` once, offering
    /// the callback (needs callback_digit). Default: never spoken (the digit still works).
    #[serde(default)]
    pub callback_offer_after_s: Option<u32>,
    /// The prompt that offers a callback. Default "callback-offer-<language>".
    #[serde(default)]
    pub callback_prompt: Option<Spanned<String>>,
    /// What a caller gets at max_wait_s: "480" (default: 480 Temporarily Unavailable),
    /// "queue:NAME" (moves to that queue), "message:PROMPT" (the prompt, then 480), or
    /// "callback" (the callback prompt; the call ends with 480 20 s later unless the caller
    /// presses callback_digit).
    #[serde(default = "d_when_max_wait")]
    pub when_max_wait: Spanned<String>,
    /// What a new call gets when max_length calls wait: "503" (default, with Retry-After),
    /// "480", or "queue:NAME" (waits in that queue instead).
    #[serde(default = "d_when_full")]
    pub when_full: Spanned<String>,
    /// Post-call survey ("happy call"): when the agent hangs up first, the caller hears this
    /// prompt and rates the call 1-5 by DTMF; the score goes to the record. Default none.
    #[serde(default)]
    pub survey: Option<Spanned<String>>,
    /// Survey by a call instead: this many seconds after an answered call ends, the engine
    /// calls the caller back through `[outbound] trunk`, plays `survey` and stores the
    /// 1-5 rating in the consultation's record (one attempt; the survey call has its own
    /// record, channel "survey"). Default none: the survey, if any, is in the call.
    #[serde(default)]
    pub survey_call_after_s: Option<u32>,
    /// Seconds to wait for the rating after the prompt. Default 10.
    #[serde(default = "d_survey_timeout")]
    pub survey_timeout_s: u32,
    /// Service-level threshold: a call answered within this many seconds counts as within
    /// service level (dasan_queue_service_level_ratio). Default 20.
    #[serde(default = "d_sl")]
    pub sl_threshold_s: u32,
    /// Record answered calls (stereo WAV, caller left, agent right) under
    /// `<data dir>/recordings/`, named by the trunk's Call-ID. Default false.
    #[serde(default)]
    pub record: bool,
}

fn d_music() -> Spanned<String> {
    Spanned::new(0..0, "ringback".into())
}
fn d_when_max_wait() -> Spanned<String> {
    Spanned::new(0..0, "480".into())
}
fn d_when_full() -> Spanned<String> {
    Spanned::new(0..0, "503".into())
}
fn d_callback_attempts() -> u32 {
    3
}
fn d_callback_retry() -> u32 {
    60
}
fn d_survey_timeout() -> u32 {
    10
}
fn d_max_no_answer() -> u32 {
    1
}
fn d_sl() -> u32 {
    20
}
fn d_language() -> String {
    "ko".into()
}
fn d_announce_every() -> u32 {
    30
}

fn d_ring() -> u32 {
    15
}
fn d_max_wait() -> u32 {
    300
}
fn d_max_len() -> usize {
    1000
}
fn d_busy() -> u32 {
    5
}

/// One agent (`ids = "1001"`) or a numbered range (`ids = "1001-1020"`) sharing settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentGroup {
    pub ids: Spanned<String>,
    pub password: String,
    pub skills: Vec<String>,
}

/// A configured agent after ranges are expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    pub id: String,
    pub password: String,
    pub skills: Vec<String>,
}

/// Where a validation error points: a span from the parser, or the first line that sets
/// a key (or opens a table) for values serde does not keep spans of.
enum Where {
    Span(std::ops::Range<usize>),
    Key(String),
}

impl From<std::ops::Range<usize>> for Where {
    fn from(r: std::ops::Range<usize>) -> Where {
        Where::Span(r)
    }
}

fn line_of_key(src: &str, key: &str) -> usize {
    src.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(key) && l[key.len()..].trim_start().starts_with(['=', ']', '.'])
        })
        .map(|i| i + 1)
        .unwrap_or(1)
}

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

impl Config {
    /// Loads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        Config::parse(&src, &file)
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn parse(src: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(src).map_err(|e| ConfigError::Invalid {
            file: file.to_string(),
            line: e.span().map(|s| line_of(src, s.start)).unwrap_or(1),
            message: e.message().trim().to_string(),
        })?;
        cfg.validate()
            .map_err(|(at, message)| ConfigError::Invalid {
                file: file.to_string(),
                line: match at {
                    Where::Span(span) => line_of(src, span.start),
                    Where::Key(key) => line_of_key(src, &key),
                },
                message,
            })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), (Where, String)> {
        if let Some(n) = self.runtime.worker_threads {
            if !(1..=1024).contains(&n) {
                return Err((
                    Where::Key("worker_threads".into()),
                    format!("runtime.worker_threads must be 1..=1024, not {n}"),
                ));
            }
        }
        let m = &self.media;
        let media = || Where::Key("[media".into());
        if m.rtp_port_min > m.rtp_port_max || m.rtp_port_min < 1024 {
            return Err((
                media(),
                "media.rtp_port_min must be 1024..=rtp_port_max".into(),
            ));
        }
        if m.webrtc_port_min > m.webrtc_port_max || m.webrtc_port_min < 1024 {
            return Err((
                media(),
                "media.webrtc_port_min must be 1024..=webrtc_port_max".into(),
            ));
        }
        if m.webrtc_port_min <= m.rtp_port_max && m.rtp_port_min <= m.webrtc_port_max {
            return Err((
                media(),
                format!(
                    "media: the WebRTC ports {}-{} overlap the RTP ports {}-{}",
                    m.webrtc_port_min, m.webrtc_port_max, m.rtp_port_min, m.rtp_port_max
                ),
            ));
        }
        for t in &self.trunks {
            for s in &t.sources {
                if s.get_ref().parse::<IpNet>().is_err()
                    && s.get_ref().parse::<std::net::IpAddr>().is_err()
                {
                    return Err((
                        s.span().into(),
                        format!(
                            "trunk '{}': '{}' is not an address or network",
                            t.name,
                            s.get_ref()
                        ),
                    ));
                }
            }
        }
        let mut numbers = HashSet::new();
        for r in &self.routes {
            match (&r.queue, &r.menu) {
                (Some(q), None) if !self.queues.contains_key(q.get_ref()) => {
                    return Err((
                        q.span().into(),
                        format!(
                            "route '{}' names unknown queue '{}'",
                            r.number.get_ref(),
                            q.get_ref()
                        ),
                    ));
                }
                (None, Some(m)) if !self.menus.contains_key(m.get_ref()) => {
                    return Err((
                        m.span().into(),
                        format!(
                            "route '{}' names unknown menu '{}'",
                            r.number.get_ref(),
                            m.get_ref()
                        ),
                    ));
                }
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err((
                        r.number.span().into(),
                        format!(
                            "route '{}' needs exactly one of queue or menu",
                            r.number.get_ref()
                        ),
                    ));
                }
            }
            if let (Some(m), false) = (&r.menu, self.media.anchor) {
                return Err((
                    m.span().into(),
                    format!(
                        "route '{}' goes to a menu, which needs [media] anchor = true",
                        r.number.get_ref()
                    ),
                ));
            }
            if !numbers.insert(r.number.get_ref().clone()) {
                return Err((
                    r.number.span().into(),
                    format!("number '{}' is routed twice", r.number.get_ref()),
                ));
            }
        }
        for (name, q) in &self.queues {
            let at = || Where::Key(format!("[queue.{name}"));
            let mut last = None;
            for st in &q.steps {
                if !(1..=5).contains(&st.min_proficiency) || last.is_some_and(|l| st.after_s <= l) {
                    return Err((
                        at(),
                        format!(
                            "queue '{name}': steps need min_proficiency 1-5 and increasing after_s"
                        ),
                    ));
                }
                last = Some(st.after_s);
            }
            if let Some(o) = &q.overflow {
                if !self.queues.contains_key(o.queue.get_ref()) || o.queue.get_ref() == name {
                    return Err((
                        o.queue.span().into(),
                        format!(
                            "queue '{name}': overflow to unknown queue '{}'",
                            o.queue.get_ref()
                        ),
                    ));
                }
            }
            if let Some(h) = &q.hours {
                if parse_hours(h.get_ref()).is_none() {
                    return Err((
                        h.span().into(),
                        format!(
                            "queue '{name}': hours '{}' must look like \"09:00-22:00\"",
                            h.get_ref()
                        ),
                    ));
                }
            }
            if let Some(f) = &q.closed_fallback {
                if !self.queues.contains_key(f.get_ref()) || f.get_ref() == name {
                    return Err((
                        f.span().into(),
                        format!(
                            "queue '{name}': closed_fallback names unknown queue '{}'",
                            f.get_ref()
                        ),
                    ));
                }
            }
            if let Some(d) = &q.callback_digit {
                if !is_dtmf(d.get_ref()) || self.outbound.trunk.is_none() || !self.media.anchor {
                    return Err((
                        d.span().into(),
                        format!("queue '{name}': callback_digit must be a DTMF digit, and callbacks need [outbound] trunk and [media] anchor = true"),
                    ));
                }
            }
            let limit = |v: &Spanned<String>,
                         allowed: &dyn Fn(&LimitAction) -> bool,
                         what: &str| {
                match LimitAction::parse(v.get_ref()) {
                    Some(LimitAction::Queue(t)) if !self.queues.contains_key(&t) || t == *name => {
                        Err((
                            v.span().into(),
                            format!("queue '{name}': {what} names unknown queue '{t}'"),
                        ))
                    }
                    Some(a) if allowed(&a) => Ok(()),
                    _ => Err((
                        v.span().into(),
                        format!(
                            "queue '{name}': {what} '{}' is not one of {}",
                            v.get_ref(),
                            if what == "when_full" {
                                "\"503\", \"480\", \"queue:NAME\""
                            } else {
                                "\"480\", \"queue:NAME\", \"message:PROMPT\", \"callback\""
                            }
                        ),
                    )),
                }
            };
            limit(
                &q.when_max_wait,
                &|a| *a != LimitAction::Reject(503),
                "when_max_wait",
            )?;
            limit(
                &q.when_full,
                &|a| matches!(a, LimitAction::Reject(_) | LimitAction::Queue(_)),
                "when_full",
            )?;
            if q.offers_callback() && q.callback_digit.is_none() {
                return Err((
                    at(),
                    format!("queue '{name}': a callback offer (callback_offer_after_s or when_max_wait = \"callback\") needs callback_digit"),
                ));
            }
            if q.survey_call_after_s.is_some()
                && (q.survey.is_none() || self.outbound.trunk.is_none() || !self.media.anchor)
            {
                return Err((
                    at(),
                    format!("queue '{name}': survey_call_after_s needs survey, [outbound] trunk and [media] anchor = true"),
                ));
            }
            if q.max_no_answer == 0 {
                return Err((
                    at(),
                    format!("queue '{name}': max_no_answer must be at least 1"),
                ));
            }
            for p in [
                Some(&q.music),
                q.announce.as_ref(),
                q.survey.as_ref(),
                q.closed_prompt.as_ref(),
                q.callback_prompt.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                if !is_prompt_name(p.get_ref()) {
                    return Err((
                        p.span().into(),
                        format!(
                            "queue '{name}': '{}' must be ringback, silence or a prompt name",
                            p.get_ref()
                        ),
                    ));
                }
            }
            if !is_prompt_name(&q.language) {
                return Err((
                    Where::Key(format!("[queue.{name}")),
                    format!("queue '{name}': language '{}' is not a name", q.language),
                ));
            }
            if (q.announce.is_some() || q.announce_position || q.announce_wait)
                && q.announce_every_s == 0
            {
                return Err((
                    Where::Key(format!("[queue.{name}")),
                    format!("queue '{name}': announce_every_s must be > 0"),
                ));
            }
            if q.ring_timeout_s == 0 || q.max_wait_s == 0 || q.max_length == 0 {
                return Err((
                    Where::Key(format!("[queue.{name}")),
                    format!(
                        "queue '{name}': ring_timeout_s, max_wait_s and max_length must be > 0"
                    ),
                ));
            }
        }
        for (name, q) in &self.queues {
            for (digit, menu) in &q.digits {
                if !is_dtmf(digit) {
                    return Err((
                        Where::Key(format!("[queue.{name}")),
                        format!("queue '{name}': '{digit}' is not a DTMF digit"),
                    ));
                }
                if !self.menus.contains_key(menu.get_ref()) {
                    return Err((
                        menu.span().into(),
                        format!(
                            "queue '{name}': digit {digit} names unknown menu '{}'",
                            menu.get_ref()
                        ),
                    ));
                }
            }
        }
        for (name, m) in &self.menus {
            if let Some(f) = &m.fallback {
                if !self.queues.contains_key(f.get_ref()) {
                    return Err((
                        f.span().into(),
                        format!("menu '{name}': unknown fallback queue '{}'", f.get_ref()),
                    ));
                }
            }
            let mut digits = HashSet::new();
            if m.options.is_empty() {
                return Err((
                    Where::Key(format!("[menu.{name}")),
                    format!("menu '{name}' has no options"),
                ));
            }
            for o in &m.options {
                if !is_dtmf(o.digit.get_ref()) || !digits.insert(o.digit.get_ref().clone()) {
                    return Err((
                        o.digit.span().into(),
                        format!(
                            "menu '{name}': digit '{}' is not a DTMF digit or is used twice",
                            o.digit.get_ref()
                        ),
                    ));
                }
                if !self.queues.contains_key(o.queue.get_ref()) {
                    return Err((
                        o.queue.span().into(),
                        format!("menu '{name}': unknown queue '{}'", o.queue.get_ref()),
                    ));
                }
                let p = o.prompt.get_ref();
                if !is_prompt_name(p) {
                    return Err((
                        o.prompt.span().into(),
                        format!(
                            "menu '{name}': prompt '{p}' must be a file name without extension"
                        ),
                    ));
                }
            }
        }
        for t in &self.http.tokens {
            let role = t.role.get_ref().as_str();
            if !matches!(role, "supervisor" | "reporting" | "agent") {
                return Err((
                    t.role.span().into(),
                    format!("token role '{role}': use supervisor, reporting or agent"),
                ));
            }
            if (role == "agent") != t.agent.is_some() {
                return Err((
                    t.role.span().into(),
                    "an agent token names its agent (agent = \"1001\"); other roles do not".into(),
                ));
            }
            if t.token.get_ref().len() < 16 {
                return Err((
                    t.token.span().into(),
                    "API tokens must be at least 16 characters".into(),
                ));
            }
        }
        if self.clock.offset_s().is_none() {
            return Err((
                Where::Key("utc_offset".into()),
                "clock.utc_offset must look like \"+09:00\"".into(),
            ));
        }
        if let Some(url) = &self.data.database {
            if !url.starts_with("postgresql://") && !url.starts_with("postgres://") {
                return Err((
                    Where::Key("database".into()),
                    "data.database must be a postgresql:// URL (leave it out for SQLite)".into(),
                ));
            }
        }
        if self.data.flush_interval_ms == 0 || self.data.record_queue == 0 {
            return Err((
                Where::Key("[data".into()),
                "data.flush_interval_ms and data.record_queue must be > 0".into(),
            ));
        }
        let mut seen = HashSet::new();
        for g in &self.agents {
            let ids = expand_ids(g.ids.get_ref()).map_err(|m| (g.ids.span().into(), m))?;
            for sk in &g.skills {
                parse_skill(sk).map_err(|m| (g.ids.span().into(), m))?;
            }
            if g.password.is_empty() {
                return Err((
                    g.ids.span().into(),
                    "agent password must not be empty".into(),
                ));
            }
            for id in ids {
                if !seen.insert(id.clone()) {
                    return Err((
                        g.ids.span().into(),
                        format!("agent '{id}' is defined twice"),
                    ));
                }
            }
        }
        let s = &self.sip;
        if s.t1_ms == 0 || s.t1_ms > 60_000 {
            return Err((
                Where::Key("t1_ms".into()),
                "sip.t1_ms must be 1..=60000".into(),
            ));
        }
        if s.t2_ms < s.t1_ms || s.t2_ms > 600_000 {
            return Err((
                Where::Key("t2_ms".into()),
                "sip.t2_ms must be t1_ms..=600000".into(),
            ));
        }
        if s.t4_ms == 0 || s.t4_ms > 600_000 {
            return Err((
                Where::Key("t4_ms".into()),
                "sip.t4_ms must be 1..=600000".into(),
            ));
        }
        if s.digest_algorithms.is_empty()
            || s.digest_algorithms
                .iter()
                .any(|a| a != "MD5" && a != "SHA-256")
        {
            return Err((
                Where::Key("digest_algorithms".into()),
                "sip.digest_algorithms: list one or both of \"MD5\", \"SHA-256\"".into(),
            ));
        }
        if s.min_expires_s > s.max_expires_s {
            return Err((
                Where::Key("min_expires_s".into()),
                "sip: min_expires_s > max_expires_s".into(),
            ));
        }
        Ok(())
    }

    /// All agents with ranges expanded, in configuration order.
    pub fn agent_specs(&self) -> Vec<AgentSpec> {
        let mut out = Vec::new();
        for g in &self.agents {
            for id in expand_ids(g.ids.get_ref()).unwrap_or_default() {
                out.push(AgentSpec {
                    id,
                    password: g.password.clone(),
                    skills: g.skills.clone(),
                });
            }
        }
        out
    }

    /// Every prompt the dialplan names, with where it is named (for a clear error when a
    /// prompt file is missing).
    pub fn prompt_names(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, q) in &self.queues {
            let m = q.music.get_ref();
            if m != "ringback" && m != "silence" {
                out.push((m.clone(), format!("queue '{name}' music")));
            }
            if let Some(a) = &q.announce {
                out.push((a.get_ref().clone(), format!("queue '{name}' announce")));
            }
            if let Some(sv) = &q.survey {
                out.push((sv.get_ref().clone(), format!("queue '{name}' survey")));
            }
            if let Some(c) = &q.closed_prompt {
                out.push((c.get_ref().clone(), format!("queue '{name}' closed_prompt")));
            }
            if q.offers_callback() {
                out.push((
                    q.callback_prompt_name(),
                    format!("queue '{name}' callback offer"),
                ));
            }
            if let Some(LimitAction::Message(p)) = LimitAction::parse(q.when_max_wait.get_ref()) {
                out.push((p, format!("queue '{name}' when_max_wait")));
            }
            let l = &q.language;
            let numbered = |lead: &str, num: &str| {
                let mut v = vec![format!("{lead}-{l}"), format!("{num}-{l}-many")];
                v.extend((1..=10).map(|n| format!("{num}-{l}-{n}")));
                v
            };
            if q.announce_position {
                for p in numbered("queue-position", "pos") {
                    out.push((p, format!("queue '{name}' announce_position")));
                }
            }
            if q.announce_wait {
                for p in numbered("queue-ewt", "min") {
                    out.push((p, format!("queue '{name}' announce_wait")));
                }
            }
        }
        for (name, m) in &self.menus {
            for o in &m.options {
                out.push((o.prompt.get_ref().clone(), format!("menu '{name}'")));
            }
        }
        out
    }

    pub fn uses_demo_credentials(&self) -> bool {
        self.agents.iter().any(|g| g.password == DEMO_PASSWORD)
    }

    pub fn advertised_sip(&self) -> SocketAddr {
        self.sip.advertise.unwrap_or(self.sip.listen)
    }

    /// Checks that only make sense after CLI overrides: wildcard binds and demo passwords.
    pub fn check_runtime(&self) -> Result<(), String> {
        // The security refusal comes first, whatever else is wrong.
        if self.uses_demo_credentials()
            && (!self.sip.listen.ip().is_loopback() || !self.http.listen.ip().is_loopback())
        {
            return Err(format!(
                "refusing to listen on a non-loopback address while demo agents use the password '{DEMO_PASSWORD}': change the agents' passwords first"
            ));
        }
        if self.sip.listen.ip().is_unspecified() && self.sip.advertise.is_none() {
            return Err("sip.listen is a wildcard address: set sip.advertise".into());
        }
        Ok(())
    }
}

fn is_prompt_name(p: &str) -> bool {
    !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_dtmf(s: &str) -> bool {
    s.len() == 1 && s.bytes().all(|b| b"0123456789*#ABCD".contains(&b))
}

/// `"1001"` → one id; `"1001-1020"` → the range, keeping the width of the numbers.
pub fn expand_ids(s: &str) -> Result<Vec<String>, String> {
    let s = s.trim();
    let valid = |x: &str| {
        !x.is_empty()
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+".contains(&b))
    };
    match s.split_once('-') {
        None if valid(s) => Ok(vec![s.to_string()]),
        None => Err(format!("invalid agent id '{s}'")),
        Some((a, b)) => {
            let (Ok(x), Ok(y)) = (a.parse::<u64>(), b.parse::<u64>()) else {
                return Err(format!(
                    "agent range '{s}' must be two numbers like 1001-1020"
                ));
            };
            if x > y || y - x >= 1_000_000 || a.len() != b.len() {
                return Err(format!(
                    "agent range '{s}' is empty, too large, or mixes widths"
                ));
            }
            Ok((x..=y).map(|n| format!("{n:0w$}", w = a.len())).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_provisions_demo_agents() {
        let cfg = Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME).unwrap();
        let agents = cfg.agent_specs();
        assert_eq!(agents.len(), 20);
        assert_eq!(agents[0].id, "1001");
        assert_eq!(agents[19].id, "1020");
        assert!(agents.iter().all(|a| a.skills.contains(&"ko".to_string())));
        let langs: Vec<_> = agents[10..].iter().map(|a| a.skills[1].as_str()).collect();
        assert_eq!(
            langs,
            ["en", "en", "zh", "zh", "ja", "ja", "vi", "vi", "mn", "mn"]
        );
        assert!(cfg.uses_demo_credentials());
        assert_eq!(cfg.routes[0].number.get_ref(), "120");
        assert_eq!(
            cfg.routes[0].queue.as_ref().map(|q| q.get_ref().as_str()),
            Some("general")
        );
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let src = "[sip]\nlisten = \"127.0.0.1:5060\"\nlistne = 1\n";
        let err = Config::parse(src, "x.toml").unwrap_err().to_string();
        assert!(err.starts_with("x.toml:3: unknown field `listne`"), "{err}");
    }

    #[test]
    fn route_to_unknown_queue_names_line() {
        let src = "[[route]]\nnumber = \"120\"\nqueue = \"nope\"\n";
        let err = Config::parse(src, "y.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("y.toml:3: route '120' names unknown queue 'nope'"),
            "{err}"
        );
    }

    #[test]
    fn bad_range_and_duplicates() {
        assert!(expand_ids("1020-1001").is_err());
        assert!(expand_ids("a-b").is_err());
        assert!(expand_ids("998-1000").is_err(), "mixed widths");
        assert_eq!(
            expand_ids("0998-1000").unwrap(),
            vec!["0998", "0999", "1000"]
        );
        let src = "[[agents]]\nids = \"1-3\"\npassword = \"x\"\nskills = []\n[[agents]]\nids = \"2\"\npassword = \"x\"\nskills = []\n";
        let err = Config::parse(src, "z.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("z.toml:6: agent '2' is defined twice"),
            "{err}"
        );
    }

    #[test]
    fn menus_are_checked() {
        let base = "[queue.general]\nskill = \"ko\"\n[queue.en]\nskill = \"en\"\n";
        let ok = format!("{base}[menu.lang]\n[[menu.lang.option]]\ndigit = \"1\"\nprompt = \"menu-en\"\nqueue = \"en\"\n[[route]]\nnumber = \"1209\"\nmenu = \"lang\"\n");
        assert!(Config::parse(&ok, "m").is_ok());
        let bad_queue = ok.replace("queue = \"en\"", "queue = \"xx\"");
        let err = Config::parse(&bad_queue, "m").unwrap_err().to_string();
        assert!(
            err.starts_with("m:9: menu 'lang': unknown queue 'xx'"),
            "{err}"
        );
        let both = format!("{base}[[route]]\nnumber = \"1\"\n");
        assert!(Config::parse(&both, "m")
            .unwrap_err()
            .to_string()
            .contains("exactly one of queue or menu"));
        let bad_digit =
            format!("{base}[queue.x]\nskill = \"ko\"\ndigits = {{ \"99\" = \"lang\" }}\n");
        assert!(Config::parse(&bad_digit, "m")
            .unwrap_err()
            .to_string()
            .contains("not a DTMF digit"));
    }

    #[test]
    fn values_without_spans_point_at_their_key() {
        let src = "[sip]\nrealm = \"x\"\nt1_ms = 0\n";
        let err = Config::parse(src, "t.toml").unwrap_err().to_string();
        assert!(err.starts_with("t.toml:3: sip.t1_ms"), "{err}");
        let src = "[http]\n\n[queue.general]\nskill = \"ko\"\nmax_length = 0\n";
        let err = Config::parse(src, "q.toml").unwrap_err().to_string();
        assert!(err.starts_with("q.toml:3: queue 'general'"), "{err}");
        let src = "[sip]\nt1_ms = 18446744073709551615\n";
        assert!(
            Config::parse(src, "o.toml").is_err(),
            "huge timers are refused, not overflowed"
        );
    }

    #[test]
    fn worker_threads_default_to_the_cpus_and_are_checked_with_their_line() {
        let src = "[queue.general]\nskill = \"ko\"\n\n[runtime]\nworker_threads = 0\n";
        let e = Config::parse(src, "r.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("r.toml:5: runtime.worker_threads must be 1..=1024, not 0"),
            "{e}"
        );
        let one = Config::parse(&src.replace("= 0", "= 1"), "r.toml").unwrap();
        assert_eq!(one.runtime.threads(), 1);
        let typo = Config::parse(&src.replace("worker_threads", "workers"), "r.toml")
            .unwrap_err()
            .to_string();
        assert!(typo.starts_with("r.toml:5:"), "{typo}");
        let default = Config::parse("", "d.toml").unwrap();
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(default.runtime.threads(), cpus);
    }

    #[test]
    fn port_ranges_are_checked_with_their_line() {
        let cfg = |media: &str| format!("[queue.general]\nskill = \"ko\"\n\n[media]\n{media}\n");
        let e = Config::parse(
            &cfg("webrtc_port_min = 29000\nwebrtc_port_max = 30999"),
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("p.toml:4:")
                && e.contains("WebRTC ports 29000-30999 overlap the RTP ports 20000-29999"),
            "{e}"
        );
        let e = Config::parse(&cfg("rtp_port_min = 500\nrtp_port_max = 400"), "p.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rtp_port_min must be 1024..=rtp_port_max"),
            "{e}"
        );
        let e = Config::parse(
            &cfg("webrtc_port_min = 40000\nwebrtc_port_max = 39999"),
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("webrtc_port_min must be"), "{e}");
        let ok = Config::parse(
            &cfg("webrtc_port_min = 40000\nwebrtc_port_max = 40001"),
            "p.toml",
        )
        .unwrap();
        assert_eq!(
            (ok.media.webrtc_port_min, ok.media.webrtc_port_max),
            (40000, 40001)
        );
        let d = Config::parse(crate::config::DEFAULT_CONFIG, "default.toml").unwrap();
        assert_eq!(
            (d.media.webrtc_port_min, d.media.webrtc_port_max),
            (30000, 31999)
        );
    }

    #[test]
    fn limit_actions_are_checked_with_their_line() {
        let q = |extra: &str| {
            format!("[outbound]\ntrunk = \"127.0.0.1:5090\"\n[queue.general]\nskill = \"ko\"\n{extra}\n[queue.en]\nskill = \"en\"\n")
        };
        let err = |extra: &str| Config::parse(&q(extra), "l.toml").unwrap_err().to_string();
        let e = err("when_max_wait = \"queue:nope\"");
        assert!(
            e.starts_with("l.toml:5:") && e.contains("unknown queue 'nope'"),
            "{e}"
        );
        let e = err("when_full = \"message:closed-en\"");
        assert!(e.contains("\"503\", \"480\", \"queue:NAME\""), "{e}");
        let e = err("when_max_wait = \"503\"");
        assert!(e.contains("when_max_wait '503' is not one of"), "{e}");
        let e = err("when_max_wait = \"callback\"");
        assert!(e.contains("needs callback_digit"), "{e}");
        let e = err("callback_offer_after_s = 30");
        assert!(e.contains("needs callback_digit"), "{e}");
        let ok = q("when_max_wait = \"queue:en\"\nwhen_full = \"queue:en\"");
        assert!(Config::parse(&ok, "l.toml").is_ok());
        let ok = q("when_max_wait = \"message:closed-en\"\nwhen_full = \"480\"");
        assert!(Config::parse(&ok, "l.toml").is_ok());
        let cb =
            q("callback_digit = \"*\"\ncallback_offer_after_s = 30\nwhen_max_wait = \"callback\"");
        let cfg = Config::parse(&cb, "l.toml").unwrap();
        assert!(cfg
            .prompt_names()
            .iter()
            .any(|(p, _)| p == "callback-offer-ko"));
    }

    #[test]
    fn demo_credentials_refuse_public_listen() {
        let mut cfg = Config::parse(DEFAULT_CONFIG, "d").unwrap();
        assert!(cfg.check_runtime().is_ok());
        cfg.sip.listen = "192.0.2.1:5060".parse().unwrap();
        assert!(cfg.check_runtime().unwrap_err().contains("demo"));
    }

    #[test]
    fn hours_offsets_and_skills_parse_or_name_the_problem() {
        assert_eq!(parse_hours("09:00-22:00"), Some((540, 1320)));
        assert_eq!(parse_hours("22:00-06:00"), Some((1320, 360)), "overnight");
        for bad in ["9-22", "09:00-09:00", "25:00-01:00", "09:60-10:00", ""] {
            assert_eq!(parse_hours(bad), None, "{bad}");
        }
        let c = |o: &str| {
            ClockConfig {
                utc_offset: o.into(),
            }
            .offset_s()
        };
        assert_eq!(
            (c("+09:00"), c("-03:30"), c("09:00")),
            (Some(32_400), Some(-12_600), None)
        );
        assert_eq!(parse_skill("en:3"), Ok(("en".into(), 3)));
        assert_eq!(parse_skill("ko"), Ok(("ko".into(), 5)));
        assert!(parse_skill("en:9").is_err() && parse_skill(":2").is_err());
        let err = Config::parse("[queue.en]\nskill = \"en\"\nhours = \"9 to 5\"\n", "h.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("h.toml:3: queue 'en': hours"), "{err}");
        let cfg = Config::parse(
            "[queue.q]\nskill = \"ko\"\nstrategy = \"ring-all\"\n",
            "r.toml",
        )
        .unwrap();
        assert_eq!(
            cfg.queues["q"].strategy.core(),
            crate::acd::Strategy::RingAll
        );
        let err = Config::parse(
            "[queue.q]\nskill = \"ko\"\nstrategy = \"ring-some\"\n",
            "r.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("r.toml:3:"), "{err}");
    }
}
