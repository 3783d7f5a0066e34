//! Configuration and dialplan: typed TOML, unknown keys rejected, errors as `file:line: msg`.
//!
//! Flow (as in pingora): deserialize with defaults, then validate, then CLI overrides in
//! `main`. Every duration field names its unit in the key. Validation does not just say
//! yes or no: it builds the [`EngineSettings`] the engine runs on, with every name resolved
//! and every string parsed, so nothing is parsed twice and no mistake becomes a default.
//!
//! - [`settings`]: process settings (`[sip]`, `[http]`, `[data]`, `[media]`, …).
//! - [`dialplan`]: trunks, routes, queues, menus, agents, feature codes as written.
//! - `validate`: the checks, section by section, producing the typed settings.
//! - [`engine`]: those typed settings.

pub mod dialplan;
pub mod engine;
pub mod pattern;
pub mod settings;
mod validate;

pub use dialplan::{
    expand_ids, parse_hours, parse_skill, AgentGroup, CrossChannel, FeatureCodes, LimitAction,
    MenuConfig, MenuOption, OverflowConfig, QueueConfig, RouteConfig, SrtpPolicy, StepConfig,
    Strategy, TrunkConfig,
};
pub use engine::{
    ha1, AgentSpec, Anchoring, Announce, CertTrunk, Credential, EngineSettings, Limit, MenuChoice,
    MenuSettings, QueueSettings, QueueTiming, RouteTarget,
};
pub use settings::{
    split_host_port, ClockConfig, DataConfig, DigestAlgorithm, HttpConfig, IceServerConfig,
    MediaConfig, OutboundConfig, RoutingConfig, RuntimeConfig, SipConfig, TextConfig, TokenConfig,
    VideoConfig, WebOrigin, WebRtcConfig,
};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

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

/// Something that loads but is probably not what was meant, e.g. a queue only overflow
/// reaches that no agent can serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: warning: {}", self.file, self.line, self.message)
    }
}

/// The file as written, before validation. [`Config`] has the same sections; keeping this
/// one private means a `Config` can only come from [`Config::parse`], validated.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    sip: SipConfig,
    #[serde(default)]
    http: HttpConfig,
    #[serde(default)]
    data: DataConfig,
    #[serde(default, rename = "trunk")]
    trunks: Vec<TrunkConfig>,
    #[serde(default, rename = "route")]
    routes: Vec<RouteConfig>,
    #[serde(default, rename = "queue")]
    queues: BTreeMap<String, QueueConfig>,
    #[serde(default)]
    agents: Vec<AgentGroup>,
    #[serde(default, rename = "menu")]
    menus: BTreeMap<String, MenuConfig>,
    #[serde(default)]
    media: MediaConfig,
    #[serde(default)]
    features: FeatureCodes,
    #[serde(default)]
    clock: ClockConfig,
    #[serde(default)]
    outbound: OutboundConfig,
    #[serde(default)]
    runtime: RuntimeConfig,
    #[serde(default)]
    webrtc: WebRtcConfig,
    #[serde(default)]
    text: TextConfig,
    #[serde(default)]
    video: VideoConfig,
    #[serde(default)]
    routing: RoutingConfig,
}

/// A validated configuration: the sections as written (the drivers read the process
/// settings, and CLI overrides change them) and the typed [`EngineSettings`] validation
/// made of them.
#[derive(Debug, Clone)]
pub struct Config {
    pub sip: SipConfig,
    pub http: HttpConfig,
    pub data: DataConfig,
    pub trunks: Vec<TrunkConfig>,
    pub routes: Vec<RouteConfig>,
    pub queues: BTreeMap<String, QueueConfig>,
    pub agents: Vec<AgentGroup>,
    pub menus: BTreeMap<String, MenuConfig>,
    pub media: MediaConfig,
    pub features: FeatureCodes,
    pub clock: ClockConfig,
    pub outbound: OutboundConfig,
    pub runtime: RuntimeConfig,
    pub webrtc: WebRtcConfig,
    pub text: TextConfig,
    pub video: VideoConfig,
    engine: Arc<EngineSettings>,
    warnings: Vec<ConfigWarning>,
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

impl Where {
    fn line(&self, src: &str) -> usize {
        match self {
            Where::Span(span) => line_of(src, span.start),
            Where::Key(key) => line_of_key(src, key),
        }
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

    /// Parses and validates TOML text; `file` names it in errors and warnings.
    pub fn parse(src: &str, file: &str) -> Result<Config, ConfigError> {
        let f: ConfigFile = toml::from_str(src).map_err(|e| ConfigError::Invalid {
            file: file.to_string(),
            line: e.span().map(|s| line_of(src, s.start)).unwrap_or(1),
            message: e.message().trim().to_string(),
        })?;
        let (engine, warnings) =
            validate::validate(&f).map_err(|(at, message)| ConfigError::Invalid {
                file: file.to_string(),
                line: at.line(src),
                message,
            })?;
        let warnings = warnings
            .into_iter()
            .map(|(at, message)| ConfigWarning {
                file: file.to_string(),
                line: at.line(src),
                message,
            })
            .collect();
        Ok(Config {
            sip: f.sip,
            http: f.http,
            data: f.data,
            trunks: f.trunks,
            routes: f.routes,
            queues: f.queues,
            agents: f.agents,
            menus: f.menus,
            media: f.media,
            features: f.features,
            clock: f.clock,
            outbound: f.outbound,
            runtime: f.runtime,
            webrtc: f.webrtc,
            text: f.text,
            video: f.video,
            engine: Arc::new(engine),
            warnings,
        })
    }

    /// What the engine runs on: the dialplan resolved and parsed at load.
    pub fn engine(&self) -> &EngineSettings {
        &self.engine
    }

    /// What loaded but looks wrong; `check-config` prints these and `run` logs them.
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// All agents with ranges expanded, in configuration order.
    pub fn agent_specs(&self) -> &[AgentSpec] {
        &self.engine.agents
    }

    /// Every prompt the dialplan names, with where it is named (for a clear error when a
    /// prompt file is missing).
    pub fn prompt_names(&self) -> Vec<(String, String)> {
        self.engine.prompt_names()
    }

    pub fn uses_demo_credentials(&self) -> bool {
        self.agents.iter().any(|g| g.password == DEMO_PASSWORD)
    }

    pub fn advertised_sip(&self) -> SocketAddr {
        self.sip.advertise.unwrap_or(self.sip.listen)
    }

    /// The TLS listener's address as peers reach it: `tls_listen`, or on a wildcard bind
    /// the advertised address with the TLS port.
    pub fn advertised_sip_tls(&self) -> Option<SocketAddr> {
        self.sip.tls_listen.map(|t| {
            if t.ip().is_unspecified() {
                SocketAddr::new(self.advertised_sip().ip(), t.port())
            } else {
                t
            }
        })
    }

    /// Every trunk's pinned client-certificate fingerprint (for the TLS listener).
    pub fn tls_client_pins(&self) -> Vec<[u8; 32]> {
        self.engine
            .cert_trunks
            .iter()
            .flat_map(|t| t.fingerprints.iter().copied())
            .collect()
    }

    /// Via and Contact addresses for each transport.
    pub fn sip_locals(&self) -> crate::sip::Locals {
        crate::sip::Locals {
            plain: self.advertised_sip(),
            tls: self.advertised_sip_tls(),
        }
    }

    /// Checks that only make sense after CLI overrides: wildcard binds and demo passwords.
    pub fn check_runtime(&self) -> Result<(), RuntimeError> {
        // The security refusal comes first, whatever else is wrong.
        if self.uses_demo_credentials()
            && (!self.sip.listen.ip().is_loopback() || !self.http.listen.ip().is_loopback())
        {
            return Err(RuntimeError::DemoPasswordExposed);
        }
        if self.sip.listen.ip().is_unspecified() && self.sip.advertise.is_none() {
            return Err(RuntimeError::WildcardWithoutAdvertise);
        }
        if !self.http.listen.ip().is_loopback() && !self.http.https() && !self.http.insecure {
            return Err(RuntimeError::PlainHttpExposed(self.http.listen));
        }
        Ok(())
    }
}

/// A configuration that loaded but cannot run as the command line left it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("refusing to listen on a non-loopback address while demo agents use the password '{DEMO_PASSWORD}': change the agents' passwords first")]
    DemoPasswordExposed,
    #[error("sip.listen is a wildcard address: set sip.advertise")]
    WildcardWithoutAdvertise,
    #[error("refusing plain HTTP on {0}, a non-loopback address: agents' passwords and API tokens would cross the network in clear and remote browsers refuse the microphone. Set [http] tls = true (with tls_cert and tls_key, or a generated self-signed certificate), or [http] insecure = true to accept the risk")]
    PlainHttpExposed(SocketAddr),
}

#[cfg(test)]
mod tests;
