//! The dialplan tables as written: trunks, routes, queues, menus, agents and feature codes.
//! Values that name something else (a queue, a menu) or need parsing (hours, skills, limit
//! actions) keep their spans, so validation can point at their line.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// `"09:00-22:00"` → minutes after midnight (start, end); end before start spans midnight.
pub fn parse_hours(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('-')?;
    let hm = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        // `then`, not `then_some`: the minutes must not be computed for a huge hour.
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then(|| h * 60 + m)
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
/// A carrier trunk: INVITEs from these source networks are trusted without authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub name: String,
    /// Networks or addresses the trunk's signalling comes from.
    #[serde(default)]
    pub sources: Vec<Spanned<String>>,
    /// SHA-256 fingerprints (`AB:CD:…`, 32 bytes) of client certificates that identify
    /// this trunk over SIP TLS (mutual TLS), instead of its source address or, with
    /// `sources` too, in addition to it. Needs `sip.tls_listen`.
    #[serde(default)]
    pub tls_client_certs: Vec<Spanned<String>>,
    /// Names that identify this trunk over mutual TLS when its certificate is issued by a
    /// CA in `sip.tls_client_ca`: the certificate's subject CN or one of its DNS
    /// subject-alternative names (exact, case-insensitive; no wildcards).
    #[serde(default)]
    pub tls_client_subjects: Vec<Spanned<String>>,
    /// Answer this trunk's calls with `183 Session Progress` and play the queue's audio as
    /// early media (default true). False: a plain `180 Ringing` and the caller's own
    /// ringback, for peers that cannot take a 183 (SIPp's built-in `uac_pcap`). Media is
    /// still anchored; digits then only arrive by SIP INFO until the call is answered.
    #[serde(default = "d_true")]
    pub early_media: bool,
    /// SRTP on this trunk's calls (SDES, RFC 4568): `off` (the default), `optional` or
    /// `mandatory`. Keys travel in SDP, so only over TLS (needs `sip.tls_listen`).
    #[serde(default)]
    pub srtp: Option<Spanned<SrtpPolicy>>,
}

/// Whether a leg's RTP is encrypted (SRTP with SDES keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpPolicy {
    /// Plain RTP; an `RTP/SAVP` offer is refused with 488.
    #[default]
    Off,
    /// SRTP when the peer offers (or accepts) it over TLS, plain RTP otherwise.
    Optional,
    /// SRTP or no call: an offer without usable keys, or signalling not over TLS, gets
    /// 488; an agent not registered over TLS is not offered calls.
    Mandatory,
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
    /// A call whose offer has video goes to this queue instead (sign-language counselling:
    /// the queue must take `"video"`).
    #[serde(default)]
    pub video_queue: Option<Spanned<String>>,
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

/// How a queue picks among eligible ready agents: the router's own type, named in the
/// dialplan in kebab case (`longest-idle-agent`, `round-robin`, …).
pub use crate::acd::Strategy;

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

/// A skill that is not `name` or `name:1`..`name:5`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkillError {
    #[error("skill '{0}': the proficiency after ':' must be 1 to 5")]
    Proficiency(String),
    #[error("skill '{0}' is empty")]
    Empty(String),
}

/// `"ko"` (proficiency 5) or `"en:3"`: a skill and a proficiency 1–5.
pub fn parse_skill(s: &str) -> Result<(String, u8), SkillError> {
    match s.split_once(':') {
        None if !s.trim().is_empty() => Ok((s.trim().to_string(), 5)),
        Some((name, level)) if !name.trim().is_empty() => match level.trim().parse::<u8>() {
            Ok(p @ 1..=5) => Ok((name.trim().to_string(), p)),
            _ => Err(SkillError::Proficiency(s.to_string())),
        },
        _ => Err(SkillError::Empty(s.to_string())),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Skill an agent needs to take this queue's calls.
    pub skill: Spanned<String>,
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
    /// Agents with this queue's skill kept back for it: while no more than this many are
    /// ready, none of them is offered another queue's call (for a scarce skill, e.g. a
    /// foreign language, whose agents also serve the Korean queue). Default 0.
    #[serde(default)]
    pub reserve: u32,
    /// The longest another queue's call is held back by `reserve`: once it has waited
    /// this long, a kept agent may take it. Default 10.
    #[serde(default = "d_reserve_hold")]
    pub reserve_max_hold_s: u32,
    /// What the queue takes: "voice", "text" (SIP MESSAGE conversations) or both.
    /// Default `["voice"]`.
    #[serde(default = "d_channels")]
    pub channels: Vec<Spanned<String>>,
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
    /// The share of calls to answer within `sl_threshold_s`, in percent: the target line
    /// of the reports' service-level chart and the wallboard's alert. Default 80.
    #[serde(default = "d_sl_target")]
    pub sl_target_percent: u32,
    /// The wallboard marks a queue whose longest wait is over this many seconds. Default 60.
    #[serde(default = "d_wait_alert")]
    pub wait_alert_s: u32,
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
fn d_reserve_hold() -> u32 {
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
fn d_channels() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "voice".to_string())]
}

fn d_max_len() -> usize {
    1000
}
fn d_busy() -> u32 {
    5
}
fn d_sl_target() -> u32 {
    80
}
fn d_wait_alert() -> u32 {
    60
}

/// One agent (`ids = "1001"`) or a numbered range (`ids = "1001-1020"`) sharing settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentGroup {
    pub ids: Spanned<String>,
    /// The password in clear; or, for one agent, the digest hashes below instead
    /// (`dasan passwd AGENT` prints them). A hash is bound to the agent id and to
    /// `sip.realm`: changing the realm needs new hashes.
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub password_ha1_md5: Option<Spanned<String>>,
    #[serde(default)]
    pub password_ha1_sha256: Option<Spanned<String>>,
    pub skills: Vec<Spanned<String>>,
    /// SRTP towards these agents' phones (see [`SrtpPolicy`]); browser agents always have
    /// DTLS-SRTP.
    #[serde(default)]
    pub srtp: Option<Spanned<SrtpPolicy>>,
    /// Text conversations each of these agents handles at once (1-10). Default 3.
    #[serde(default)]
    pub max_chats: Option<Spanned<u32>>,
    /// Calls and text together: "voice_over_text" (default: a call may be offered while
    /// fewer than max_chats conversations are open, and conversations are given during
    /// a call) or "exclusive" (no call while a conversation is open, no conversation
    /// during a call).
    #[serde(default)]
    pub cross_channel: CrossChannel,
    /// Display names, one per id in `ids` order, for the wallboard and the reports
    /// (`names = ["Kim Minji", "Lee Jun"]`). Default none: agents are shown by id.
    #[serde(default)]
    pub names: Option<Spanned<Vec<String>>>,
}

/// See [`AgentGroup::cross_channel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossChannel {
    #[default]
    VoiceOverText,
    Exclusive,
}

pub(super) fn is_prompt_name(p: &str) -> bool {
    !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
