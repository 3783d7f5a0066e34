//! Building the engine from a loaded [`Config`]. Validation has already resolved and
//! parsed everything ([`crate::config::EngineSettings`]), so this only hands each part its
//! share: no string is parsed here and nothing can fail.

use super::{anchor, stats, Engine, QueueTiming, RouteTarget};
use crate::acd::Acd;
use crate::config::{Config, EngineSettings, FeatureCodes};
use crate::metrics::Metrics;
use crate::registrar::Registrar;
use crate::sip::build::Ids;
use crate::sip::transaction::{TimerConfig, TransactionTable};
use ipnet::IpNet;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the call flow reads from the configuration while it runs.
pub(crate) struct EngineConfig {
    pub timers: TimerConfig,
    pub local: crate::sip::Locals,
    /// Trunk source networks, each with its trunk's early-media setting and name.
    pub trusted: Vec<(IpNet, bool, Arc<str>)>,
    /// Trunks identified by their TLS client certificate.
    pub cert_trunks: Vec<crate::config::CertTrunk>,
    pub routes: HashMap<String, RouteTarget>,
    pub video_routes: HashMap<String, crate::acd::QueueIdx>,
    pub queues: Vec<QueueTiming>,
    pub max_calls: usize,
    /// Server transactions alive from one untrusted source address at most.
    pub max_transactions_per_source: usize,
    pub retry_after_s: u32,
    pub features: FeatureCodes,
    /// The centre's offset from UTC, seconds.
    pub utc_offset_s: i64,
    /// Outbound trunk for callbacks and the number they present.
    pub outbound: Option<(SocketAddr, String)>,
    pub outbound_rules: crate::config::pattern::OutboundRules,
    pub max_transfers_per_minute: u32,
    /// SRTP policy per trunk name (absent: off).
    pub trunk_srtp: HashMap<Arc<str>, crate::config::SrtpPolicy>,
    /// SRTP policy per agent, by [`crate::acd::AgentIdx`].
    pub agent_srtp: Vec<crate::config::SrtpPolicy>,
}

impl EngineConfig {
    /// `config`'s addresses are read here, not at load, because CLI overrides change them.
    fn new(config: &Config, s: &EngineSettings) -> EngineConfig {
        EngineConfig {
            timers: s.timers,
            local: config.sip_locals(),
            trusted: s.trusted.clone(),
            cert_trunks: s.cert_trunks.clone(),
            routes: s.routes.clone(),
            video_routes: s.video_routes.clone(),
            queues: s.queues.iter().map(|q| q.timing.clone()).collect(),
            max_calls: config.sip.max_calls,
            max_transactions_per_source: config.sip.max_transactions_per_source.max(1),
            retry_after_s: config.sip.retry_after_s,
            features: config.features.clone(),
            utc_offset_s: s.utc_offset_s,
            outbound: s.outbound.clone(),
            outbound_rules: s.outbound_rules.clone(),
            max_transfers_per_minute: s.max_transfers_per_minute,
            trunk_srtp: s.trunk_srtp.clone(),
            agent_srtp: s.agents.iter().map(|a| a.srtp).collect(),
        }
    }
}

fn registrar(config: &Config, s: &EngineSettings, ids: Ids) -> Registrar {
    let realm = &config.sip.realm;
    let creds: Vec<(String, crate::registrar::Ha1)> = s
        .agents
        .iter()
        .map(|a| {
            let ha1 = crate::registrar::Ha1 {
                md5: a.credential.ha1(false, &a.id, realm),
                sha256: a.credential.ha1(true, &a.id, realm),
            };
            (a.id.clone(), ha1)
        })
        .collect();
    Registrar::with_ha1(
        realm,
        &creds,
        config.sip.min_expires_s,
        config.sip.max_expires_s,
        ids,
    )
    .with_algorithms(config.sip.digest_algorithms.clone())
    .with_max_bindings(config.sip.max_bindings)
    .with_throttle(crate::util::throttle::AuthThrottle::new(
        config.sip.auth_max_failures,
        std::time::Duration::from_secs(config.sip.auth_window_s.into()),
        std::time::Duration::from_secs(config.sip.auth_block_s.into()),
    ))
}

fn acd(s: &EngineSettings, now: Instant) -> Acd {
    let agents: Vec<(String, Vec<(String, u8)>)> = s
        .agents
        .iter()
        .map(|a| (a.id.clone(), a.skills.clone()))
        .collect();
    Acd::new(
        now,
        &agents,
        s.queues.iter().map(|q| q.acd.clone()).collect(),
    )
    .with_order(s.free_agent_order)
}

impl Engine {
    /// Builds the engine from a loaded (so validated) config. `unix_now` anchors wall-clock
    /// time (for digest nonces) to `now`; `ids` is every random value it will use (seed it
    /// from the operating system in production, from a number in tests).
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        now: Instant,
        unix_now: u64,
        mut ids: Ids,
    ) -> Engine {
        let s = config.engine();
        let acd = acd(s, now);
        for q in &s.queues {
            metrics
                .queue_waiting
                .with_label_values(&[&q.acd.name])
                .set(0);
        }
        let media_ip = config.media.ip.unwrap_or(config.advertised_sip().ip());
        let anchor = s.anchor.as_ref().map(|a| anchor::Anchor {
            pool: a.pool.clone(),
            ip: media_ip,
            sdp_ip: config.media.advertise.unwrap_or(media_ip),
            timeout: a.timeout,
            video_max_kbps: config.video.max_kbps.max(64),
        });
        Engine {
            agent_armed: vec![Default::default(); acd.agent_count()],
            agent_seen: vec![("logged-out", now, None); acd.agent_count()],
            agent_names: s.agents.iter().map(|a| a.name.clone()).collect(),
            cfg: EngineConfig::new(config, s),
            registrar: registrar(config, s, ids.fork()),
            cert_conns: HashMap::new(),
            acd,
            metrics,
            tx: TransactionTable::new(s.timers),
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            start: now,
            unix_at_start: unix_now,
            unix_ms_at_start: unix_now as i64 * 1000,
            records_out: VecDeque::new(),
            records_emitted: 0,
            durable_gate: None,
            overloaded: false,
            draining: false,
            menu_seats: Vec::new(),
            transfers: HashMap::new(),
            anchor,
            media_out: VecDeque::new(),
            dialplan: crate::dialplan::Dialplan::from_config(config),
            not_ready_reasons: HashMap::new(),
            wrap_records: HashMap::new(),
            callbacks: HashMap::new(),
            text: super::text::TextState::new(
                super::text::TextSettings::from_config(&config.text, config.outbound.text_trunk),
                now,
                &s.queues.iter().map(|q| q.sl_threshold).collect::<Vec<_>>(),
                s.agents
                    .iter()
                    .map(|a| {
                        (
                            a.max_chats,
                            a.cross_channel == crate::config::CrossChannel::Exclusive,
                        )
                    })
                    .collect(),
            ),
            // Until a queue has finished calls of its own: three minutes, a common figure
            // for public information lines.
            talk_avg: vec![Duration::from_secs(180); s.queues.len()],
            windows: s
                .queues
                .iter()
                .map(|q| stats::QueueWindow::new(now, q.sl_threshold))
                .collect(),
            received: now,
            ids,
        }
    }
}
