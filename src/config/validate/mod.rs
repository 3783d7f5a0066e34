//! Validation, section by section. Each check that passes hands back the typed value it
//! checked (a queue index for a queue name, minutes for "09:00-22:00", an `IpNet` for a
//! trunk source), and [`validate`] assembles them into the [`EngineSettings`]. The order of
//! the sections is the order errors are reported in: the first problem wins.

mod queue;

use super::dialplan::is_prompt_name;
use super::*;
use crate::acd::QueueIdx;
use crate::media::ports::PortPool;
use crate::sip::transaction::TimerConfig;
use ipnet::IpNet;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;
use toml::Spanned;

/// A problem and where it is; [`Config::parse`] turns `Where` into a line.
type Problem = (Where, String);
type Check<T> = Result<T, Problem>;

/// Checks `f` and builds what the engine runs on, with the warnings worth printing.
pub(super) fn validate(f: &ConfigFile) -> Check<(EngineSettings, Vec<Problem>)> {
    runtime(&f.runtime)?;
    webrtc(&f.webrtc)?;
    let anchor = media(&f.media)?;
    let (trusted, cert_trunks) = trunks(f)?;
    let trunk_srtp = trunk_srtp(f)?;
    let index: HashMap<&str, QueueIdx> = f
        .queues
        .keys()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let routes = routes(f, &index)?;
    let mut queues = Vec::with_capacity(f.queues.len());
    for (name, q) in &f.queues {
        queues.push(queue::queue(f, &index, name, q)?);
    }
    for ((name, q), settings) in f.queues.iter().zip(&mut queues) {
        settings.digits = queue::waiting_digits(f, name, q)?;
    }
    let menus = menus(f, &index)?;
    tokens(&f.http)?;
    let utc_offset_s = clock(&f.clock)?;
    data(&f.data)?;
    text(&f.text)?;
    let agents = agents(&f.agents, &f.sip, f.media.anchor)?;
    let timers = sip(&f.sip)?;
    let routes = menu_routes(routes, &menus)?;
    let video_routes = video_routes(f, &index, &queues)?;
    let settings = EngineSettings {
        video_routes,
        agents,
        queues,
        routes,
        trusted,
        cert_trunks,
        trunk_srtp,
        menus,
        timers,
        utc_offset_s,
        outbound: f.outbound.trunk.map(|t| {
            let caller_id = f.outbound.caller_id.clone();
            (t, caller_id.unwrap_or_else(|| "120".into()))
        }),
        outbound_rules: outbound_rules(&f.outbound)?,
        max_transfers_per_minute: f.outbound.max_transfers_per_minute,
        anchor,
        free_agent_order: f.routing.free_agent_order,
    };
    let warnings = staffing(f, &settings)?;
    Ok((settings, warnings))
}

/// `video_queue` of each route: a known queue that takes video.
fn video_routes(
    f: &ConfigFile,
    index: &HashMap<&str, QueueIdx>,
    queues: &[QueueSettings],
) -> Check<HashMap<String, QueueIdx>> {
    let mut out = HashMap::new();
    for r in &f.routes {
        let Some(v) = &r.video_queue else { continue };
        let number = r.number.get_ref();
        let q = *index.get(v.get_ref().as_str()).ok_or_else(|| {
            (
                v.span().into(),
                format!(
                    "route '{number}' names unknown video_queue '{}'",
                    v.get_ref()
                ),
            )
        })?;
        if !queues[q].timing.video {
            return Err((
                v.span().into(),
                format!(
                    "route '{number}': video_queue '{}' does not take video (channels = [\"video\"])",
                    v.get_ref()
                ),
            ));
        }
        out.insert(number.clone(), q);
    }
    Ok(out)
}

fn outbound_rules(o: &OutboundConfig) -> Check<super::pattern::OutboundRules> {
    let parse = |key: &str, list: &[String]| {
        list.iter()
            .map(|p| {
                super::pattern::NumberPattern::parse(p)
                    .map_err(|e| (Where::Key(key.into()), format!("outbound.{key}: {e}")))
            })
            .collect::<Check<Vec<_>>>()
    };
    Ok(super::pattern::OutboundRules {
        allow: parse("allow", &o.allow)?,
        deny: parse("deny", &o.deny)?,
    })
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(s as u64)
}

/// The character of a one-digit DTMF string: `"5"`, `"*"`, `"#"`, `"A"`…
fn dtmf(s: &str) -> Option<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if "0123456789*#ABCD".contains(c) => Some(c),
        _ => None,
    }
}

fn runtime(r: &RuntimeConfig) -> Check<()> {
    if let Some(n) = r.worker_threads {
        if !(1..=1024).contains(&n) {
            return Err((
                Where::Key("worker_threads".into()),
                format!("runtime.worker_threads must be 1..=1024, not {n}"),
            ));
        }
    }
    Ok(())
}

/// The port ranges, and with `anchor = true` the RTP port pool itself: a range that holds
/// no port pair would otherwise leave the engine unable to anchor anything.
fn media(m: &MediaConfig) -> Check<Option<Anchoring>> {
    let at = || Where::Key("[media".into());
    if m.advertise
        .is_some_and(|a| a.is_unspecified() || a.is_multicast())
    {
        return Err((
            at(),
            "media.advertise must be the public unicast address peers send media to".into(),
        ));
    }
    if m.rtp_port_min > m.rtp_port_max || m.rtp_port_min < 1024 {
        return Err((
            at(),
            "media.rtp_port_min must be 1024..=rtp_port_max".into(),
        ));
    }
    if m.webrtc_port_min > m.webrtc_port_max || m.webrtc_port_min < 1024 {
        return Err((
            at(),
            "media.webrtc_port_min must be 1024..=webrtc_port_max".into(),
        ));
    }
    if m.webrtc_port_min <= m.rtp_port_max && m.rtp_port_min <= m.webrtc_port_max {
        return Err((
            at(),
            format!(
                "media: the WebRTC ports {}-{} overlap the RTP ports {}-{}",
                m.webrtc_port_min, m.webrtc_port_max, m.rtp_port_min, m.rtp_port_max
            ),
        ));
    }
    if !m.anchor {
        return Ok(None);
    }
    let pool = PortPool::new(m.rtp_port_min, m.rtp_port_max).map_err(|e| {
        (
            at(),
            format!("media: {e}: anchoring needs an even port and the odd one above it"),
        )
    })?;
    Ok(Some(Anchoring {
        pool,
        timeout: secs(m.media_timeout_s),
    }))
}

/// `AB:CD:…` or plain hex → the 32 bytes of a SHA-256 fingerprint.
fn fingerprint(v: &str) -> Option<[u8; 32]> {
    let hex: String = v.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

type Trunks = (Vec<(IpNet, bool, Arc<str>)>, Vec<CertTrunk>);

fn webrtc(w: &WebRtcConfig) -> Check<()> {
    let at = || Where::Key("ice_servers".into());
    for s in &w.ice_servers {
        if s.urls.is_empty() {
            return Err((at(), "webrtc.ice_servers: an entry needs urls".into()));
        }
        for u in &s.urls {
            let scheme = u.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
            let host = u.split_once(':').map_or("", |(_, h)| h);
            let turn = match scheme.as_deref() {
                Some("stun" | "stuns") => false,
                Some("turn" | "turns") => true,
                _ => {
                    return Err((
                        at(),
                        format!(
                            "webrtc.ice_servers: '{u}' is not a stun:, stuns:, turn: or turns: URL"
                        ),
                    ))
                }
            };
            if host.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err((at(), format!("webrtc.ice_servers: '{u}' names no server")));
            }
            if turn && (s.username.is_none() || s.credential.is_none()) {
                return Err((
                    at(),
                    format!("webrtc.ice_servers: '{u}' is TURN and needs username and credential"),
                ));
            }
        }
    }
    Ok(())
}

/// SDES keys travel in SDP: SRTP anywhere needs the TLS listener, or keys would be sent
/// in clear (or every call refused).
fn srtp_policy(
    p: &Option<Spanned<SrtpPolicy>>,
    sip: &SipConfig,
    anchor: bool,
    who: &str,
) -> Check<SrtpPolicy> {
    let Some(p) = p else {
        return Ok(SrtpPolicy::Off);
    };
    if *p.get_ref() != SrtpPolicy::Off && sip.tls_listen.is_none() {
        return Err((
            p.span().into(),
            format!(
                "{who}: srtp needs sip.tls_listen: SDES keys travel in SDP and are sent only over TLS"
            ),
        ));
    }
    if *p.get_ref() != SrtpPolicy::Off && !anchor {
        return Err((
            p.span().into(),
            format!("{who}: srtp needs media.anchor = true: the engine keys and protects each leg's RTP"),
        ));
    }
    Ok(*p.get_ref())
}

fn trunk_srtp(f: &ConfigFile) -> Check<HashMap<Arc<str>, SrtpPolicy>> {
    let mut out = HashMap::new();
    for t in &f.trunks {
        let p = srtp_policy(
            &t.srtp,
            &f.sip,
            f.media.anchor,
            &format!("trunk '{}'", t.name),
        )?;
        out.insert(Arc::from(t.name.as_str()), p);
    }
    Ok(out)
}

fn trunks(f: &ConfigFile) -> Check<Trunks> {
    let mut out = Vec::new();
    let mut cert_trunks = Vec::new();
    for t in &f.trunks {
        let name: Arc<str> = Arc::from(t.name.as_str());
        let mut fingerprints = Vec::new();
        for c in &t.tls_client_certs {
            let fp = fingerprint(c.get_ref()).ok_or_else(|| {
                (
                    c.span().into(),
                    format!(
                        "trunk '{}': '{}' is not a SHA-256 fingerprint (64 hex digits, colons allowed)",
                        t.name,
                        c.get_ref()
                    ),
                )
            })?;
            fingerprints.push(fp);
        }
        let mut subjects = Vec::new();
        for s in &t.tls_client_subjects {
            let v = s.get_ref().trim().to_ascii_lowercase();
            if v.is_empty() || v.contains(['*', ' ', '/', '=']) {
                return Err((
                    s.span().into(),
                    format!(
                        "trunk '{}': '{}' is not a host name (the certificate's CN or DNS name, no wildcards)",
                        t.name,
                        s.get_ref()
                    ),
                ));
            }
            if f.sip.tls_client_ca.is_none() {
                return Err((
                    s.span().into(),
                    format!(
                        "trunk '{}': tls_client_subjects need sip.tls_client_ca (only a CA-issued certificate's name proves anything)",
                        t.name
                    ),
                ));
            }
            subjects.push(v);
        }
        if t.sources.is_empty() && fingerprints.is_empty() && subjects.is_empty() {
            return Err((
                Where::Key("[[trunk".into()),
                format!(
                    "trunk '{}': give sources, tls_client_certs, tls_client_subjects or a mix",
                    t.name
                ),
            ));
        }
        if !subjects.is_empty() && f.sip.tls_listen.is_none() {
            return Err((
                t.tls_client_subjects[0].span().into(),
                format!(
                    "trunk '{}': tls_client_subjects need sip.tls_listen (client certificates come over TLS)",
                    t.name
                ),
            ));
        }
        if !fingerprints.is_empty() && f.sip.tls_listen.is_none() {
            return Err((
                t.tls_client_certs[0].span().into(),
                format!(
                    "trunk '{}': tls_client_certs need sip.tls_listen (client certificates come over TLS)",
                    t.name
                ),
            ));
        }
        let mut nets = Vec::new();
        for s in &t.sources {
            let v = s.get_ref();
            let net = v
                .parse::<IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    (
                        s.span().into(),
                        format!("trunk '{}': '{v}' is not an address or network", t.name),
                    )
                })?;
            nets.push(net);
        }
        if fingerprints.is_empty() && subjects.is_empty() {
            out.extend(nets.into_iter().map(|n| (n, t.early_media, name.clone())));
        } else {
            cert_trunks.push(CertTrunk {
                name,
                fingerprints,
                subjects,
                sources: nets,
                early_media: t.early_media,
            });
        }
    }
    Ok((out, cert_trunks))
}

/// A route before its menu's fallback queue is known (menus are checked later).
enum Routed<'a> {
    Queue(QueueIdx),
    Menu(&'a Spanned<String>),
}

fn routes<'a>(
    f: &'a ConfigFile,
    index: &HashMap<&str, QueueIdx>,
) -> Check<Vec<(String, Routed<'a>)>> {
    let mut out = Vec::new();
    let mut numbers = HashSet::new();
    for r in &f.routes {
        let number = r.number.get_ref();
        let to = match (&r.queue, &r.menu) {
            (Some(q), None) => {
                Routed::Queue(*index.get(q.get_ref().as_str()).ok_or_else(|| {
                    (
                        q.span().into(),
                        format!("route '{number}' names unknown queue '{}'", q.get_ref()),
                    )
                })?)
            }
            (None, Some(m)) if !f.menus.contains_key(m.get_ref()) => {
                return Err((
                    m.span().into(),
                    format!("route '{number}' names unknown menu '{}'", m.get_ref()),
                ));
            }
            (None, Some(m)) => Routed::Menu(m),
            _ => {
                return Err((
                    r.number.span().into(),
                    format!("route '{number}' needs exactly one of queue or menu"),
                ));
            }
        };
        if let (Some(m), false) = (&r.menu, f.media.anchor) {
            return Err((
                m.span().into(),
                format!("route '{number}' goes to a menu, which needs [media] anchor = true"),
            ));
        }
        if !numbers.insert(number.clone()) {
            return Err((
                r.number.span().into(),
                format!("number '{number}' is routed twice"),
            ));
        }
        out.push((number.clone(), to));
    }
    Ok(out)
}

/// The routes with each menu's fallback queue filled in.
fn menu_routes(
    routes: Vec<(String, Routed)>,
    menus: &BTreeMap<String, MenuSettings>,
) -> Check<HashMap<String, RouteTarget>> {
    let mut out = HashMap::new();
    for (number, to) in routes {
        let target = match to {
            Routed::Queue(q) => RouteTarget::Queue(q),
            // `routes` has checked that the menu exists; this keeps the lookup total.
            Routed::Menu(m) => match menus.get(m.get_ref()) {
                Some(menu) => RouteTarget::Menu(m.get_ref().clone(), menu.fallback),
                None => {
                    return Err((
                        m.span().into(),
                        format!("route '{number}' names unknown menu '{}'", m.get_ref()),
                    ))
                }
            },
        };
        out.insert(number, target);
    }
    Ok(out)
}

fn menus(f: &ConfigFile, index: &HashMap<&str, QueueIdx>) -> Check<BTreeMap<String, MenuSettings>> {
    let mut out = BTreeMap::new();
    for (name, m) in &f.menus {
        out.insert(name.clone(), menu(index, name, m)?);
    }
    Ok(out)
}

fn menu(index: &HashMap<&str, QueueIdx>, name: &str, m: &MenuConfig) -> Check<MenuSettings> {
    let fallback = match &m.fallback {
        Some(v) => Some(*index.get(v.get_ref().as_str()).ok_or_else(|| {
            (
                v.span().into(),
                format!("menu '{name}': unknown fallback queue '{}'", v.get_ref()),
            )
        })?),
        None => None,
    };
    let mut options = Vec::new();
    for o in &m.options {
        let digit = dtmf(o.digit.get_ref())
            .filter(|d| options.iter().all(|c: &MenuChoice| c.digit != *d))
            .ok_or_else(|| {
                (
                    o.digit.span().into(),
                    format!(
                        "menu '{name}': digit '{}' is not a DTMF digit or is used twice",
                        o.digit.get_ref()
                    ),
                )
            })?;
        let queue = *index.get(o.queue.get_ref().as_str()).ok_or_else(|| {
            (
                o.queue.span().into(),
                format!("menu '{name}': unknown queue '{}'", o.queue.get_ref()),
            )
        })?;
        let prompt = o.prompt.get_ref();
        if !is_prompt_name(prompt) {
            return Err((
                o.prompt.span().into(),
                format!("menu '{name}': prompt '{prompt}' must be a file name without extension"),
            ));
        }
        options.push(MenuChoice {
            digit,
            prompt: prompt.clone(),
            queue,
        });
    }
    let Some(first) = options.first() else {
        return Err((
            Where::Key(format!("[menu.{name}")),
            format!("menu '{name}' has no options"),
        ));
    };
    let fallback = fallback.unwrap_or(first.queue);
    Ok(MenuSettings {
        timeout: secs(m.timeout_s),
        retries: m.retries,
        options,
        fallback,
    })
}

fn tokens(h: &HttpConfig) -> Check<()> {
    match (&h.tls_cert, &h.tls_key) {
        (Some(_), None) => {
            return Err((
                Where::Key("tls_cert".into()),
                "http.tls_cert is set without http.tls_key: give both, or neither (with tls = true) for a generated self-signed certificate".into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                Where::Key("tls_key".into()),
                "http.tls_key is set without http.tls_cert: give both, or neither (with tls = true) for a generated self-signed certificate".into(),
            ))
        }
        _ => {}
    }
    for t in &h.tokens {
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
    if let Some(t) = &h.metrics_token {
        if t.get_ref().trim().len() < 16 || t.get_ref().trim() != t.get_ref() {
            return Err((
                t.span().into(),
                "http.metrics_token must be at least 16 characters, without spaces around".into(),
            ));
        }
    }
    for (key, v, max) in [
        ("login_max_failures", h.login_max_failures, 1000),
        ("login_window_s", h.login_window_s, 86_400),
        ("login_block_s", h.login_block_s, 86_400),
    ] {
        if !(1..=max).contains(&v) {
            return Err((
                Where::Key(key.into()),
                format!("http.{key} must be 1 to {max}"),
            ));
        }
    }
    Ok(())
}

fn clock(c: &ClockConfig) -> Check<i64> {
    c.offset_s().ok_or_else(|| {
        (
            Where::Key("utc_offset".into()),
            "clock.utc_offset must look like \"+09:00\"".into(),
        )
    })
}

fn text(t: &super::TextConfig) -> Check<()> {
    let code = |key: &str, v: &str| -> Check<()> {
        let ok = !v.is_empty() && v.len() <= 16 && !v.chars().any(char::is_whitespace);
        if ok {
            Ok(())
        } else {
            Err((
                Where::Key(key.into()),
                format!("text.{key} must be 1-16 characters without spaces, e.g. \"*23\""),
            ))
        }
    };
    code("close_code", &t.close_code)?;
    code("transfer_code", &t.transfer_code)?;
    if t.close_code == t.transfer_code
        || t.transfer_code.starts_with(&t.close_code)
        || t.close_code.starts_with(&t.transfer_code)
    {
        return Err((
            Where::Key("transfer_code".into()),
            "text.transfer_code and text.close_code must differ (neither a prefix of the other)"
                .into(),
        ));
    }
    for (script, lang) in &t.scripts {
        if !super::settings::TEXT_SCRIPTS.contains(&script.as_str()) {
            return Err((
                Where::Key(script.clone()),
                format!(
                    "text.scripts: '{script}' is not one of {}",
                    super::settings::TEXT_SCRIPTS.join(", ")
                ),
            ));
        }
        if lang.trim().is_empty() {
            return Err((
                Where::Key(script.clone()),
                format!("text.scripts.{script} names no language"),
            ));
        }
    }
    Ok(())
}

fn data(d: &DataConfig) -> Check<()> {
    if let Some(url) = &d.database {
        if !url.starts_with("postgresql://") && !url.starts_with("postgres://") {
            return Err((
                Where::Key("database".into()),
                "data.database must be a postgresql:// URL (leave it out for SQLite)".into(),
            ));
        }
    }
    if d.flush_interval_ms == 0 || d.record_queue == 0 {
        return Err((
            Where::Key("[data".into()),
            "data.flush_interval_ms and data.record_queue must be > 0".into(),
        ));
    }
    Ok(())
}

/// A group's password, or its digest hashes: one form, hashes only for a single agent
/// (they include the id), hex of the right length, and a SHA-256 hash whenever the
/// registrar challenges with SHA-256.
fn credential(g: &AgentGroup, ids: &[String], sip: &SipConfig) -> Check<Credential> {
    let hex = |h: &Option<Spanned<String>>, len: usize, key: &str| -> Check<Option<String>> {
        let Some(h) = h else { return Ok(None) };
        let v = h.get_ref().trim().to_ascii_lowercase();
        if v.len() != len || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((
                h.span().into(),
                format!("{key} must be {len} hex digits (`dasan passwd AGENT` prints it)"),
            ));
        }
        Ok(Some(v))
    };
    let md5 = hex(&g.password_ha1_md5, 32, "password_ha1_md5")?;
    let sha256 = hex(&g.password_ha1_sha256, 64, "password_ha1_sha256")?;
    if md5.is_none() && sha256.is_none() {
        if g.password.is_empty() {
            return Err((
                g.ids.span().into(),
                "agent password must not be empty (or give password_ha1_md5 / password_ha1_sha256)"
                    .into(),
            ));
        }
        return Ok(Credential::Password(g.password.clone()));
    }
    if !g.password.is_empty() {
        return Err((
            g.ids.span().into(),
            "give either password or password_ha1_* for these agents, not both".into(),
        ));
    }
    if ids.len() != 1 {
        return Err((
            g.ids.span().into(),
            "password_ha1_* is for one agent: the hash includes the agent id, so give each agent its own [[agents]] entry".into(),
        ));
    }
    let challenged = |a: DigestAlgorithm| sip.digest_algorithms.contains(&a);
    if challenged(DigestAlgorithm::Md5) && md5.is_none() {
        return Err((
            g.ids.span().into(),
            "sip.digest_algorithms includes MD5 but this agent has no password_ha1_md5".into(),
        ));
    }
    if challenged(DigestAlgorithm::Sha256) && sha256.is_none() {
        return Err((
            g.ids.span().into(),
            "sip.digest_algorithms includes SHA-256 but this agent has no password_ha1_sha256"
                .into(),
        ));
    }
    Ok(Credential::Ha1 { md5, sha256 })
}

fn agents(groups: &[AgentGroup], sip: &SipConfig, anchor: bool) -> Check<Vec<AgentSpec>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for g in groups {
        let ids = expand_ids(g.ids.get_ref()).map_err(|m| (g.ids.span().into(), m))?;
        let skills = g
            .skills
            .iter()
            .map(|sk| parse_skill(sk.get_ref()).map_err(|m| (sk.span().into(), m.to_string())))
            .collect::<Check<Vec<_>>>()?;
        let credential = credential(g, &ids, sip)?;
        let srtp = srtp_policy(
            &g.srtp,
            sip,
            anchor,
            &format!("agents '{}'", g.ids.get_ref()),
        )?;
        let max_chats = match &g.max_chats {
            None => 3,
            Some(m) if (1..=10).contains(m.get_ref()) => *m.get_ref(),
            Some(m) => {
                return Err((
                    m.span().into(),
                    format!("agents '{}': max_chats must be 1-10", g.ids.get_ref()),
                ))
            }
        };
        let names = match &g.names {
            None => vec![None; ids.len()],
            Some(n) if n.get_ref().len() == ids.len() => n
                .get_ref()
                .iter()
                .map(|x| Some(x.trim().to_string()))
                .collect(),
            Some(n) => {
                return Err((
                    n.span().into(),
                    format!(
                        "agents '{}': {} names for {} ids (one name per id, in order)",
                        g.ids.get_ref(),
                        n.get_ref().len(),
                        ids.len()
                    ),
                ))
            }
        };
        for (id, name) in ids.into_iter().zip(names) {
            if !seen.insert(id.clone()) {
                return Err((
                    g.ids.span().into(),
                    format!("agent '{id}' is defined twice"),
                ));
            }
            out.push(AgentSpec {
                id,
                credential: credential.clone(),
                skills: skills.clone(),
                srtp,
                max_chats,
                cross_channel: g.cross_channel,
                name,
            });
        }
    }
    Ok(out)
}

fn sip(s: &SipConfig) -> Check<TimerConfig> {
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
    if s.digest_algorithms.is_empty() {
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
    match (&s.tls_cert, &s.tls_key) {
        (Some(_), None) => {
            return Err((
                Where::Key("tls_cert".into()),
                "sip.tls_cert is set without sip.tls_key: give both, or neither for a generated self-signed certificate".into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                Where::Key("tls_key".into()),
                "sip.tls_key is set without sip.tls_cert: give both, or neither for a generated self-signed certificate".into(),
            ))
        }
        _ => {}
    }
    if s.tls_cert.is_some() && s.tls_listen.is_none() {
        return Err((
            Where::Key("tls_cert".into()),
            "sip.tls_cert is set but sip.tls_listen is not: no TLS listener would use it".into(),
        ));
    }
    if let Some(t) = s.tls_listen {
        if t == s.listen
            || (t.port() == s.listen.port()
                && (t.ip().is_unspecified()
                    || s.listen.ip().is_unspecified()
                    || t.ip() == s.listen.ip()))
        {
            return Err((
                Where::Key("tls_listen".into()),
                format!("sip.tls_listen {t} is the TCP port of sip.listen {}: TLS needs a port of its own (5061 by convention)", s.listen),
            ));
        }
    }
    if s.tls_handshake_timeout_s == 0 || s.tls_handshake_timeout_s > 120 {
        return Err((
            Where::Key("tls_handshake_timeout_s".into()),
            "sip.tls_handshake_timeout_s must be 1..=120".into(),
        ));
    }
    Ok(TimerConfig {
        t1: Duration::from_millis(s.t1_ms),
        t2: Duration::from_millis(s.t2_ms),
        t4: Duration::from_millis(s.t4_ms),
    })
}

/// A queue whose skill no agent has can never answer a call: an error, unless only other
/// queues' overflow leads there (a holding queue whose calls end by its own limits), which
/// is worth a warning.
fn staffing(f: &ConfigFile, s: &EngineSettings) -> Check<Vec<Problem>> {
    let skills: HashSet<&str> = s
        .agents
        .iter()
        .flat_map(|a| a.skills.iter().map(|(k, _)| k.as_str()))
        .collect();
    let mut reached = BTreeSet::new();
    let mut overflowed = BTreeSet::new();
    for r in s.routes.values() {
        reached.insert(match r {
            RouteTarget::Queue(q) | RouteTarget::Menu(_, q) => *q,
        });
    }
    for m in s.menus.values() {
        reached.insert(m.fallback);
        reached.extend(m.options.iter().map(|o| o.queue));
    }
    for q in &s.queues {
        let t = &q.timing;
        reached.extend(t.closed_fallback);
        for l in [&t.when_max_wait, &t.when_full] {
            if let Limit::Queue(i) = l {
                reached.insert(*i);
            }
        }
        overflowed.extend(t.overflow.map(|(_, i)| i));
    }
    let mut warnings = Vec::new();
    for (i, (name, q)) in f.queues.iter().enumerate() {
        let skill = q.skill.get_ref();
        if skills.contains(skill.as_str()) {
            continue;
        }
        let at = Where::from(q.skill.span());
        if overflowed.contains(&i) && !reached.contains(&i) {
            warnings.push((
                at,
                format!("queue '{name}': no agent has skill '{skill}', so calls that overflow here wait for no one"),
            ));
        } else {
            return Err((at, format!("queue '{name}': no agent has skill '{skill}'")));
        }
    }
    Ok(warnings)
}
