//! What validation makes of a config file: the typed settings the engine runs on. Queue and
//! menu names are resolved to indices, strings are parsed (skills, hours, networks, limit
//! actions, digits), seconds are `Duration`s. Nothing here is checked or parsed again, so
//! building the engine from it cannot fail or fall back to a default.

use super::dialplan::SrtpPolicy;
use crate::acd::{QueueIdx, QueueParams};
use crate::media::ports::PortPool;
use crate::media::prompt::MusicRef;
use crate::sip::transaction::TimerConfig;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The engine's configuration, resolved. Addresses are not here: CLI overrides change them
/// after loading, so the engine reads them from [`super::Config`] itself.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Every agent with ranges expanded, in configuration order (the registrar and the ACD
    /// number them alike).
    pub agents: Vec<AgentSpec>,
    /// Index = [`QueueIdx`], in the order of the queue names.
    pub queues: Vec<QueueSettings>,
    /// Dialled number → where it goes.
    pub routes: HashMap<String, RouteTarget>,
    /// Numbers whose calls with video go to a queue of their own (`video_queue`).
    pub video_routes: HashMap<String, QueueIdx>,
    /// Trunk source networks, each with its trunk's early-media setting and name.
    pub trusted: Vec<(IpNet, bool, Arc<str>)>,
    /// Trunks identified by a TLS client certificate (mutual TLS); they are not in
    /// `trusted`, whatever their sources.
    pub cert_trunks: Vec<CertTrunk>,
    /// Each trunk's SRTP policy, by trunk name (absent: off).
    pub trunk_srtp: HashMap<Arc<str>, SrtpPolicy>,
    pub menus: BTreeMap<String, MenuSettings>,
    pub timers: TimerConfig,
    /// The centre's offset from UTC, seconds.
    pub utc_offset_s: i64,
    /// Outbound trunk for callbacks and the number they present.
    pub outbound: Option<(SocketAddr, String)>,
    /// Which numbers may be dialled out, and how often an agent may transfer out.
    pub outbound_rules: super::pattern::OutboundRules,
    pub max_transfers_per_minute: u32,
    /// Media anchoring (`[media] anchor = true`): the RTP ports and the silence timeout.
    pub anchor: Option<Anchoring>,
    /// `[routing] free_agent_order`.
    pub free_agent_order: crate::acd::FreeAgentOrder,
}

/// A configured agent after ranges are expanded, skills parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    pub id: String,
    pub credential: Credential,
    /// (skill, proficiency 1-5).
    pub skills: Vec<(String, u8)>,
    pub srtp: SrtpPolicy,
    /// Text conversations at once.
    pub max_chats: u32,
    pub cross_channel: super::dialplan::CrossChannel,
    /// Display name (wallboard, reports).
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Anchoring {
    pub pool: PortPool,
    pub timeout: Duration,
}

/// One queue, split by who uses what.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// The routing core's share: name, skill, strategy, steps, length, priority.
    pub acd: QueueParams,
    /// The call flow's share.
    pub timing: QueueTiming,
    /// Digits that open a menu while a caller waits: digit → menu name.
    pub digits: BTreeMap<char, String>,
    /// A call answered within this counts as within service level.
    pub sl_threshold: Duration,
}

#[derive(Debug, Clone)]
pub struct QueueTiming {
    pub ring_timeout: Duration,
    pub max_wait: Duration,
    pub music: MusicRef,
    pub announce: Option<Announce>,
    pub record: bool,
    /// After this long in the queue, the call moves to the other queue.
    pub overflow: Option<(Duration, QueueIdx)>,
    /// Post-call survey prompt and how long to wait for the rating.
    pub survey: Option<(String, Duration)>,
    /// The survey is made by calling the caller back this long after the call.
    pub survey_call: Option<Duration>,
    /// The digit that asks for a callback, attempts, and the pause between them.
    pub callback: Option<(char, u32, Duration)>,
    /// Opening hours (minutes after local midnight); outside them, the prompt and the queue
    /// that takes the call instead.
    pub hours: Option<(u32, u32)>,
    pub closed_prompt: Option<String>,
    pub closed_fallback: Option<QueueIdx>,
    /// The queue takes voice calls / text conversations / video calls (relayed video).
    pub voice: bool,
    pub text: bool,
    pub video: bool,
    /// The spoken callback offer: after how long (if at all), and the prompt (also used by
    /// `when_max_wait = "callback"`).
    pub callback_offer: (Option<Duration>, String),
    pub when_max_wait: Limit,
    pub when_full: Limit,
}

/// A queue's limit action with its queue resolved (the config spells it as a
/// [`super::LimitAction`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// End the call (never answered) with this status: 480 or 503.
    Reject(u16),
    Queue(QueueIdx),
    /// Play the prompt, then 480.
    Message(String),
    /// Offer the callback (the queue's callback prompt), then 480 if not taken.
    Callback,
}

/// What a queue tells its waiting callers, and how often.
#[derive(Debug, Clone)]
pub struct Announce {
    pub prompt: Option<String>,
    pub position: bool,
    pub wait: bool,
    pub language: String,
    pub every: Duration,
}

/// Where a dialled number goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    Queue(QueueIdx),
    /// A menu, and the queue a caller who chooses nothing ends up in.
    Menu(String, QueueIdx),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuSettings {
    pub timeout: Duration,
    pub retries: u32,
    /// In the order the prompts play.
    pub options: Vec<MenuChoice>,
    /// Where a caller who chose nothing goes when they did not come from a queue.
    pub fallback: QueueIdx,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuChoice {
    pub digit: char,
    pub prompt: String,
    pub queue: QueueIdx,
}

impl EngineSettings {
    /// Every prompt the dialplan names, with where it is named (for a clear error when a
    /// prompt file is missing).
    pub fn prompt_names(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for q in &self.queues {
            q.prompt_names(&mut out);
        }
        for (name, m) in &self.menus {
            for o in &m.options {
                out.push((o.prompt.clone(), format!("menu '{name}'")));
            }
        }
        out
    }
}

impl QueueSettings {
    fn prompt_names(&self, out: &mut Vec<(String, String)>) {
        let (name, t) = (&self.acd.name, &self.timing);
        let mut add =
            |p: &str, what: &str| out.push((p.to_string(), format!("queue '{name}' {what}")));
        if let MusicRef::Prompt(p) = &t.music {
            add(p, "music");
        }
        if let Some(p) = t.announce.as_ref().and_then(|a| a.prompt.as_ref()) {
            add(p, "announce");
        }
        if let Some((p, _)) = &t.survey {
            add(p, "survey");
        }
        if let Some(p) = &t.closed_prompt {
            add(p, "closed_prompt");
        }
        if t.callback_offer.0.is_some() || t.when_max_wait == Limit::Callback {
            add(&t.callback_offer.1, "callback offer");
        }
        if let Limit::Message(p) = &t.when_max_wait {
            add(p, "when_max_wait");
        }
        let Some(a) = &t.announce else {
            return;
        };
        let l = &a.language;
        let numbered = |lead: &str, num: &str| {
            let mut v = vec![format!("{lead}-{l}"), format!("{num}-{l}-many")];
            v.extend((1..=10).map(|n| format!("{num}-{l}-{n}")));
            v
        };
        if a.position {
            for p in numbered("queue-position", "pos") {
                add(&p, "announce_position");
            }
        }
        if a.wait {
            for p in numbered("queue-ewt", "min") {
                add(&p, "announce_wait");
            }
        }
    }
}

/// How an agent proves who it is: a password, or only the digest hashes of one (RFC 7616
/// HA1 = H(id:realm:password)), which authenticate the phone's digest and the browser
/// login alike without the password being stored anywhere.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Password(String),
    /// Lower-case hex; at least one is present.
    Ha1 {
        md5: Option<String>,
        sha256: Option<String>,
    },
}

impl std::fmt::Debug for Credential {
    // Never print a password or a hash (a hash is as good as the password here).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Password(_) => f.write_str("Password(…)"),
            Credential::Ha1 { .. } => f.write_str("Ha1(…)"),
        }
    }
}

/// H(id:realm:password) in lower-case hex, with MD5 or SHA-256.
pub fn ha1(sha256: bool, id: &str, realm: &str, password: &str) -> String {
    use md5::Digest as _;
    let input = format!("{id}:{realm}:{password}");
    let bytes: Vec<u8> = if sha256 {
        sha2::Sha256::digest(input.as_bytes()).to_vec()
    } else {
        md5::Md5::digest(input.as_bytes()).to_vec()
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Credential {
    pub fn is_plaintext(&self) -> bool {
        matches!(self, Credential::Password(_))
    }

    /// The HA1 for MD5 or SHA-256 digest, None when only the other hash was given.
    pub fn ha1(&self, sha256: bool, id: &str, realm: &str) -> Option<String> {
        match self {
            Credential::Password(p) => Some(ha1(sha256, id, realm, p)),
            Credential::Ha1 { md5, sha256: s } => {
                if sha256 {
                    s.clone()
                } else {
                    md5.clone()
                }
            }
        }
    }

    /// Whether `typed` is this agent's password (the browser login), in constant time.
    pub fn matches(&self, id: &str, realm: &str, typed: &str) -> bool {
        match self {
            Credential::Password(p) => constant_eq(p.as_bytes(), typed.as_bytes()),
            Credential::Ha1 {
                sha256: Some(h), ..
            } => constant_eq(h.as_bytes(), ha1(true, id, realm, typed).as_bytes()),
            Credential::Ha1 { md5: Some(h), .. } => {
                constant_eq(h.as_bytes(), ha1(false, id, realm, typed).as_bytes())
            }
            Credential::Ha1 { .. } => false,
        }
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A trunk that presents a client certificate over SIP TLS: one of `fingerprints`
/// (SHA-256 of the certificate), and, when `sources` is not empty, from one of them too.
#[derive(Debug, Clone)]
pub struct CertTrunk {
    pub name: Arc<str>,
    pub fingerprints: Vec<[u8; 32]>,
    /// Names (lower case) a certificate issued by `sip.tls_client_ca` must carry, as its
    /// subject CN or a DNS subject-alternative name.
    pub subjects: Vec<String>,
    pub sources: Vec<IpNet>,
    pub early_media: bool,
}
