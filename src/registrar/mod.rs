//! Registrar (RFC 3261 section 10) with digest authentication. Sans-IO: it is handed a
//! REGISTER, the flow it came on and the time, and returns the response plus what changed
//! for the agent (logged in / out).

pub mod digest;

use crate::sip::build::{response, Ids};
use crate::sip::message::{Message, NameAddr};
use crate::sip::Flow;
use crate::util::throttle::{AuthThrottle, Scope};
use digest::{ct_eq, expected_response, Algorithm, Credentials, NonceKey};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub type AgentIdx = u32;

#[derive(Debug, Clone)]
pub struct Binding {
    /// The Contact URI as registered (the target of INVITEs to the agent).
    pub uri: String,
    /// Where requests to the agent go: over TCP the registering connection; over UDP the
    /// Contact's address when it is an IP literal, else the REGISTER's source (never DNS).
    pub flow: Flow,
    pub expires_at: Instant,
    pub call_id: String,
    pub cseq: u32,
    pub registered_at: Instant,
}

struct Cred {
    ha1_md5: String,
    ha1_sha256: String,
}

/// What a REGISTER changed for the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Bindings refreshed or queried; login state unchanged.
    None,
    /// The agent has bindings now and had none before, or registered from a new phone
    /// session (new Call-ID): treat as a fresh login.
    LoggedIn,
    /// The agent has no bindings any more.
    LoggedOut,
}

pub struct Registrar {
    realm: String,
    key: NonceKey,
    users: HashMap<String, AgentIdx>,
    creds: Vec<Cred>,
    bindings: Vec<Vec<Binding>>,
    min_expires: u32,
    max_expires: u32,
    algorithms: Vec<Algorithm>,
    dummy: Cred,
    /// Response tags and the nonce key come from here, never from a generator of our own.
    ids: Ids,
    /// The highest `nc` accepted per nonce (RFC 7616 3.4.5), for nonces that have
    /// authenticated someone: a replayed or reordered one is refused. Only a correct
    /// password creates an entry, so strangers cannot fill it; it is pruned as nonces age.
    nonce_counts: HashMap<String, NonceUse>,
    throttle: AuthThrottle,
    max_bindings: usize,
    events: Vec<AuthEvent>,
}

#[derive(Debug, Clone, Copy)]
struct NonceUse {
    /// `None` for a response without qop (RFC 2069 style): such a nonce serves once.
    last_nc: Option<u32>,
    expires_unix: u64,
}

/// Nonce-count entries kept at most (each is one recently authenticated request).
const MAX_NONCE_COUNTS: usize = 100_000;

/// What authentication saw, for the engine's log and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthEvent {
    /// Wrong credentials (or an unknown account) from `source`.
    Failed { source: IpAddr, account: String },
    /// This failure started a block of `source` (scope Source) or `account` (Account).
    Blocked {
        scope: Scope,
        source: IpAddr,
        account: String,
        until: Instant,
    },
    /// Credentials arrived while their source or account is blocked: not checked.
    Refused { source: IpAddr },
    /// A nonce used again with a count not above the last one (a replay).
    Replayed { source: IpAddr, account: String },
}

/// The outcome of checking a request's digest credentials.
enum Verdict {
    Agent(AgentIdx),
    /// Answer with a fresh challenge (`stale=true` when the credentials were right).
    Challenge {
        stale: bool,
    },
    Forbidden,
}

/// An agent's digest secrets (HA1 = H(id:realm:password)); a missing one never matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ha1 {
    pub md5: Option<String>,
    pub sha256: Option<String>,
}

impl Registrar {
    /// `agents` are (id, password) in agent-index order.
    pub fn new(
        realm: &str,
        agents: &[(String, String)],
        min_expires: u32,
        max_expires: u32,
        ids: Ids,
    ) -> Self {
        let creds: Vec<(String, Ha1)> = agents
            .iter()
            .map(|(u, p)| {
                let ha1 = Ha1 {
                    md5: Some(Algorithm::Md5.hash(&format!("{u}:{realm}:{p}"))),
                    sha256: Some(Algorithm::Sha256.hash(&format!("{u}:{realm}:{p}"))),
                };
                (u.clone(), ha1)
            })
            .collect();
        Registrar::with_ha1(realm, &creds, min_expires, max_expires, ids)
    }

    /// As [`Registrar::new`], from the agents' HA1 hashes (the password need not be known).
    pub fn with_ha1(
        realm: &str,
        agents: &[(String, Ha1)],
        min_expires: u32,
        max_expires: u32,
        mut ids: Ids,
    ) -> Self {
        let mk = |user: &str, pass: &str| Cred {
            ha1_md5: Algorithm::Md5.hash(&format!("{user}:{realm}:{pass}")),
            ha1_sha256: Algorithm::Sha256.hash(&format!("{user}:{realm}:{pass}")),
        };
        // A hash that was not given: a random one that no response matches.
        let unknown = Algorithm::Sha256.hash(&ids.token(32));
        let cred = |h: &Ha1| Cred {
            ha1_md5: h.md5.clone().unwrap_or_else(|| unknown.clone()),
            ha1_sha256: h.sha256.clone().unwrap_or_else(|| unknown.clone()),
        };
        Registrar {
            realm: realm.to_string(),
            key: NonceKey::new(ids.token(32)),
            users: agents
                .iter()
                .enumerate()
                .map(|(i, (u, _))| (u.clone(), i as AgentIdx))
                .collect(),
            creds: agents.iter().map(|(_, h)| cred(h)).collect(),
            bindings: vec![Vec::new(); agents.len()],
            min_expires,
            max_expires,
            algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
            dummy: mk("-", &ids.token(16)),
            ids,
            nonce_counts: HashMap::new(),
            throttle: AuthThrottle::new(10, Duration::from_secs(60), Duration::from_secs(300)),
            max_bindings: 5,
            events: Vec::new(),
        }
    }

    /// Failed-authentication throttling (per source address and per account).
    pub fn with_throttle(mut self, throttle: AuthThrottle) -> Self {
        self.throttle = throttle;
        self
    }

    /// Contacts one agent may have registered at once; a new one beyond it replaces the
    /// oldest.
    pub fn with_max_bindings(mut self, max: usize) -> Self {
        self.max_bindings = max.max(1);
        self
    }

    /// What authentication saw since the last call (for logs and metrics).
    pub fn take_events(&mut self) -> Vec<AuthEvent> {
        std::mem::take(&mut self.events)
    }

    /// Which algorithms to challenge with, in order; others are refused.
    pub fn with_algorithms(mut self, algorithms: Vec<Algorithm>) -> Self {
        if !algorithms.is_empty() {
            self.algorithms = algorithms;
        }
        self
    }

    pub fn agent_index(&self, id: &str) -> Option<AgentIdx> {
        self.users.get(id).copied()
    }

    pub fn bindings(&self, agent: AgentIdx) -> &[Binding] {
        self.bindings
            .get(agent as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The binding to ring: the most recently registered one.
    pub fn best_binding(&self, agent: AgentIdx) -> Option<&Binding> {
        self.bindings(agent).iter().max_by_key(|b| b.registered_at)
    }

    pub fn next_expiry(&self, agent: AgentIdx) -> Option<Instant> {
        self.bindings(agent).iter().map(|b| b.expires_at).min()
    }

    /// A TCP connection closed: its bindings are unreachable now (RFC 5626 spirit). Returns
    /// the agents that have no binding left.
    pub fn connection_closed(&mut self, conn: u64) -> Vec<AgentIdx> {
        let mut out = Vec::new();
        for (i, list) in self.bindings.iter_mut().enumerate() {
            let had = !list.is_empty();
            list.retain(|b| !(b.flow.transport.is_reliable() && b.flow.conn == conn));
            if had && list.is_empty() {
                out.push(i as AgentIdx);
            }
        }
        out
    }

    /// Drops expired bindings; returns true if that logged the agent out.
    pub fn expire(&mut self, agent: AgentIdx, now: Instant) -> bool {
        let Some(list) = self.bindings.get_mut(agent as usize) else {
            return false;
        };
        let had = !list.is_empty();
        list.retain(|b| b.expires_at > now);
        had && list.is_empty()
    }

    fn challenge_with(
        &mut self,
        req: &Message,
        source: IpAddr,
        unix_now: u64,
        stale: bool,
        code: u16,
        header: &str,
    ) -> Message {
        let mut r = response(req, code, None, Some(&self.ids.token(10)));
        let salt = self.ids.token(8);
        let nonce = self.key.issue(unix_now, &salt, source, &self.realm);
        // RFC 8760 allows one challenge per algorithm, in order of preference; the order is
        // configured because SIPp answers only the first and baresip 1.0 fails on SHA-256.
        for &alg in &self.algorithms {
            let mut v = format!(
                "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
                self.realm,
                alg.name()
            );
            if stale {
                v.push_str(", stale=true");
            }
            r.headers.push(crate::sip::message::Header {
                name: header.into(),
                value: v,
            });
        }
        r
    }

    /// Checks the digest credentials in `header` of `req` from `source`: the nonce must be
    /// ours, issued to this address, fresh, and its count must grow; failures are
    /// throttled per address and per account; an unknown account costs the same as a
    /// wrong password and gets the same answer.
    fn verify(
        &mut self,
        req: &Message,
        header: &str,
        source: IpAddr,
        now: Instant,
        unix_now: u64,
    ) -> Verdict {
        let Some(auth) = req.header(header).and_then(Credentials::parse) else {
            return Verdict::Challenge { stale: false };
        };
        let (Some(alg), Some(username), Some(given), Some(nonce)) = (
            auth.algorithm().filter(|a| self.algorithms.contains(a)),
            auth.get("username"),
            auth.get("response"),
            auth.get("nonce"),
        ) else {
            return Verdict::Forbidden;
        };
        let nonce_state = self.key.check(nonce, unix_now, source, &self.realm);
        if auth.get("realm") != Some(self.realm.as_str()) || nonce_state.is_none() {
            // Not ours, or issued to another address: not a password attempt, a new
            // challenge (a captured REGISTER replayed from elsewhere ends here).
            return Verdict::Challenge { stale: false };
        }
        let agent = self.users.get(username).copied();
        let own_phone = agent.is_some_and(|a| {
            self.bindings(a)
                .iter()
                .any(|b| b.flow.remote.ip() == source)
        });
        match self.throttle.check(now, source, username) {
            // An agent's phone, registered from this address, is not locked out by
            // strangers failing its account elsewhere.
            Err(b) if !(own_phone && b.scope == Scope::Account) => {
                self.events.push(AuthEvent::Refused { source });
                return Verdict::Forbidden;
            }
            _ => {}
        }
        // Unknown users are checked against a dummy credential so that they cost the same
        // time and get the same answer as a wrong password (no user enumeration).
        let cred = agent
            .map(|a| &self.creds[a as usize])
            .unwrap_or(&self.dummy);
        let ha1 = match alg {
            Algorithm::Md5 => &cred.ha1_md5,
            Algorithm::Sha256 => &cred.ha1_sha256,
        };
        let method = req.method().map(|m| m.as_str()).unwrap_or("");
        let ok = expected_response(alg, ha1, method, &auth)
            .map(|e| ct_eq(&e, &given.to_ascii_lowercase()))
            .unwrap_or(false);
        let (Some(agent), true) = (agent, ok) else {
            self.events.push(AuthEvent::Failed {
                source,
                account: username.to_string(),
            });
            if let Some(b) = self.throttle.failed(now, source, username) {
                self.events.push(AuthEvent::Blocked {
                    scope: b.scope,
                    source,
                    account: username.to_string(),
                    until: b.until,
                });
            }
            return Verdict::Forbidden;
        };
        if nonce_state == Some(false) {
            return Verdict::Challenge { stale: true };
        }
        if !self.count_nonce(nonce, &auth, unix_now) {
            self.events.push(AuthEvent::Replayed {
                source,
                account: username.to_string(),
            });
            return Verdict::Challenge { stale: true };
        }
        self.throttle.succeeded(source, username);
        Verdict::Agent(agent)
    }

    /// Accepts a nonce's use when its count is above every count seen with it (a nonce
    /// answered without qop serves once). False for a replay.
    fn count_nonce(&mut self, nonce: &str, auth: &Credentials, unix_now: u64) -> bool {
        let nc = match auth.get("qop") {
            Some(_) => match auth.get("nc").and_then(|n| u32::from_str_radix(n, 16).ok()) {
                Some(n) => Some(n),
                None => return false,
            },
            None => None,
        };
        if let Some(used) = self.nonce_counts.get(nonce) {
            match (used.last_nc, nc) {
                (Some(last), Some(n)) if n > last => {}
                _ => return false,
            }
        }
        if self.nonce_counts.len() >= MAX_NONCE_COUNTS && !self.nonce_counts.contains_key(nonce) {
            self.nonce_counts.retain(|_, u| u.expires_unix > unix_now);
            if self.nonce_counts.len() >= MAX_NONCE_COUNTS {
                // Every entry is live: forget one (its nonce then serves at most once
                // more before its own expiry), never grow.
                if let Some(k) = self.nonce_counts.keys().next().cloned() {
                    self.nonce_counts.remove(&k);
                }
            }
        }
        self.nonce_counts.insert(
            nonce.to_string(),
            NonceUse {
                last_nc: nc,
                expires_unix: digest::NonceKey::expiry(nonce).unwrap_or(unix_now),
            },
        );
        true
    }

    /// Authenticates a request other than REGISTER from an agent's phone (a feature-code
    /// INVITE) with proxy digest (RFC 3261 22.3): the agent, or the 407 / 403 to answer.
    pub fn authenticate(
        &mut self,
        req: &Message,
        flow: Flow,
        now: Instant,
        unix_now: u64,
    ) -> Result<AgentIdx, Message> {
        let source = flow.remote.ip();
        match self.verify(req, "Proxy-Authorization", source, now, unix_now) {
            Verdict::Agent(a) => Ok(a),
            Verdict::Challenge { stale } => {
                Err(self.challenge_with(req, source, unix_now, stale, 407, "Proxy-Authenticate"))
            }
            Verdict::Forbidden => Err(response(req, 403, None, Some(&self.ids.token(10)))),
        }
    }

    /// Handles a REGISTER. Returns the response and, for an authenticated agent, its index
    /// and what changed.
    pub fn handle(
        &mut self,
        req: &Message,
        flow: Flow,
        now: Instant,
        unix_now: u64,
    ) -> (Message, Option<(AgentIdx, Change)>) {
        let source = flow.remote.ip();
        let agent = match self.verify(req, "Authorization", source, now, unix_now) {
            Verdict::Agent(a) => a,
            Verdict::Challenge { stale } => {
                let r = self.challenge_with(req, source, unix_now, stale, 401, "WWW-Authenticate");
                return (r, None);
            }
            Verdict::Forbidden => {
                return (response(req, 403, None, Some(&self.ids.token(10))), None);
            }
        };
        let aor_user = req
            .header("To")
            .map(NameAddr::parse)
            .and_then(|na| crate::sip::uri::parse_sip_uri(na.uri))
            .and_then(|u| u.user);
        // An agent registers only its own address of record.
        let own = self.users.get(aor_user.as_deref().unwrap_or("")) == Some(&agent);
        if !own {
            return (response(req, 403, None, Some(&self.ids.token(10))), None);
        }
        self.update_bindings(req, flow, now, agent)
    }

    fn update_bindings(
        &mut self,
        req: &Message,
        flow: Flow,
        now: Instant,
        agent: AgentIdx,
    ) -> (Message, Option<(AgentIdx, Change)>) {
        let call_id = req.call_id().to_string();
        let cseq = req.cseq().map(|(n, _)| n).unwrap_or(0);
        let default_expires: Option<u32> = match req.header("Expires") {
            Some(v) => match v.trim().parse() {
                Ok(n) => Some(n),
                Err(_) => return self.bad(req, "Invalid Expires"),
            },
            None => None,
        };
        let contacts: Vec<&str> = req.header_values("Contact").collect();
        let (min_expires, max_expires) = (self.min_expires, self.max_expires);
        let max_bindings = self.max_bindings;
        let list = &mut self.bindings[agent as usize];
        let had_any = !list.is_empty();
        let mut fresh_session = false;

        if contacts.len() == 1 && contacts[0] == "*" {
            if default_expires != Some(0) {
                return self.bad(req, "Wildcard Contact Needs Expires 0");
            }
            list.clear();
        } else {
            for c in &contacts {
                if *c == "*" {
                    return self.bad(req, "Invalid Wildcard Contact");
                }
                let na = NameAddr::parse(c);
                let expires = match na.param("expires").map(|e| e.parse::<u32>()) {
                    Some(Ok(e)) => e,
                    Some(Err(_)) => return self.bad(req, "Invalid Contact Expires"),
                    None => default_expires.unwrap_or(3600),
                };
                if expires != 0 && expires < min_expires {
                    let mut r = response(req, 423, None, Some(&self.ids.token(10)));
                    r.set_header("Min-Expires", min_expires.to_string());
                    return (r, None);
                }
                let expires = expires.min(max_expires);
                let uri = na.uri.to_string();
                if !crate::sip::uri::is_request_uri(&uri)
                    || crate::sip::uri::parse_sip_uri(&uri).is_none()
                {
                    return self.bad(req, "Invalid Contact URI");
                }
                let existing = list.iter().position(|b| b.uri == uri);
                if let Some(i) = existing {
                    // RFC 3261 10.3 step 7: an older request from the same session is ignored.
                    if list[i].call_id == call_id && list[i].cseq >= cseq {
                        continue;
                    }
                }
                if expires == 0 {
                    if let Some(i) = existing {
                        list.remove(i);
                    }
                    continue;
                }
                let binding = Binding {
                    flow: target_flow(&uri, flow),
                    uri,
                    expires_at: now + Duration::from_secs(expires as u64),
                    call_id: call_id.clone(),
                    cseq,
                    registered_at: now,
                };
                match existing {
                    Some(i) => {
                        if list[i].call_id != call_id {
                            fresh_session = true;
                        }
                        list[i] = binding;
                    }
                    None => {
                        fresh_session = true;
                        if list.len() >= max_bindings {
                            // Bounded per agent: the newest phone replaces the oldest.
                            if let Some(oldest) = list
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, b)| b.registered_at)
                                .map(|(i, _)| i)
                            {
                                list.remove(oldest);
                            }
                        }
                        list.push(binding);
                    }
                }
            }
        }

        let mut r = response(req, 200, None, Some(&self.ids.token(10)));
        for b in list.iter() {
            let left = b.expires_at.saturating_duration_since(now).as_secs();
            r.headers.push(crate::sip::message::Header {
                name: "Contact".into(),
                value: format!("<{}>;expires={left}", b.uri),
            });
        }
        let change = match (had_any, list.is_empty()) {
            (true, true) => Change::LoggedOut,
            (_, false) if fresh_session => Change::LoggedIn,
            _ => Change::None,
        };
        (r, Some((agent, change)))
    }

    /// A 400 with the reason phrase saying what was wrong.
    fn bad(&mut self, req: &Message, reason: &str) -> (Message, Option<(AgentIdx, Change)>) {
        (
            response(req, 400, Some(reason), Some(&self.ids.token(10))),
            None,
        )
    }
}

fn target_flow(uri: &str, flow: Flow) -> Flow {
    if flow.transport.is_reliable() {
        return flow;
    }
    crate::sip::uri::parse_sip_uri(uri)
        .and_then(|u| {
            let ip: std::net::IpAddr = u.host.parse().ok()?;
            Some(Flow::udp(std::net::SocketAddr::new(
                ip,
                u.port.unwrap_or(5060),
            )))
        })
        .unwrap_or(flow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(extra: &str) -> Message {
        let raw = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:1001@127.0.0.1>;tag=a\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: reg1\r\nCSeq: 2 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes()).unwrap()
    }

    fn authorize(
        r: &mut Registrar,
        user: &str,
        pass: &str,
        alg: Algorithm,
        extra: &str,
        unix: u64,
    ) -> Message {
        let challenge = format!(
            "Digest realm=\"dasan\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
            r.key
                .issue(unix, &r.ids.token(8), flow().remote.ip(), "dasan"),
            alg.name()
        );
        let auth = digest::authorization(&challenge, user, pass, "REGISTER", "sip:127.0.0.1", "c1")
            .unwrap();
        reg(&format!("Authorization: {auth}\r\n{extra}"))
    }

    fn registrar() -> Registrar {
        Registrar::new(
            "dasan",
            &[("1001".into(), "pw".into())],
            30,
            3600,
            Ids::seeded(1),
        )
    }

    fn flow() -> Flow {
        Flow::udp("127.0.0.1:5070".parse().unwrap())
    }

    /// Found by fuzzing (the engine target): a Contact URI with a space in it was bound,
    /// and the engine's INVITE to that agent had an unparsable request line.
    #[test]
    fn a_contact_uri_with_whitespace_is_refused() {
        let mut r = registrar();
        let contact = "Contact: <sip:1001@192.0. <sip:1202.2:5070;transport=tcp>\r\n";
        let req = authorize(&mut r, "1001", "pw", Algorithm::Md5, contact, 1000);
        let (resp, who) = r.handle(&req, flow(), Instant::now(), 1000);
        assert_eq!(resp.status(), Some(400));
        assert!(who.is_none());
        assert!(r.bindings(0).is_empty());
    }

    #[test]
    fn challenge_lists_md5_first() {
        let mut r = registrar();
        let (resp, who) = r.handle(&reg(""), flow(), Instant::now(), 1000);
        assert_eq!(resp.status(), Some(401));
        assert!(who.is_none());
        let ch: Vec<_> = resp.header_values("WWW-Authenticate").collect();
        assert!(ch.len() >= 2);
        let all = resp
            .headers
            .iter()
            .filter(|h| h.name == "WWW-Authenticate")
            .map(|h| h.value.clone())
            .collect::<Vec<_>>();
        assert!(all[0].contains("algorithm=MD5") && all[1].contains("algorithm=SHA-256"));
    }

    #[test]
    fn md5_and_sha256_register_then_unregister() {
        let now = Instant::now();
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let mut r = registrar();
            let m = authorize(
                &mut r,
                "1001",
                "pw",
                alg,
                "Contact: <sip:1001@127.0.0.1:5070>\r\nExpires: 60\r\n",
                1000,
            );
            let (resp, who) = r.handle(&m, flow(), now, 1000);
            assert_eq!(resp.status(), Some(200), "{alg:?}");
            assert_eq!(who, Some((0, Change::LoggedIn)));
            assert_eq!(
                resp.header("Contact"),
                Some("<sip:1001@127.0.0.1:5070>;expires=60")
            );
            assert_eq!(r.next_expiry(0), Some(now + Duration::from_secs(60)));
            let mut m = authorize(
                &mut r,
                "1001",
                "pw",
                alg,
                "Contact: *\r\nExpires: 0\r\n",
                1001,
            );
            m.set_header("CSeq", "3 REGISTER");
            let (resp, who) = r.handle(&m, flow(), now, 1001);
            assert_eq!(resp.status(), Some(200));
            assert_eq!(who, Some((0, Change::LoggedOut)));
        }
    }

    #[test]
    fn wrong_password_and_unknown_user_look_the_same() {
        let mut r = registrar();
        let a = authorize(
            &mut r,
            "1001",
            "bad",
            Algorithm::Md5,
            "Contact: <sip:x@127.0.0.1>\r\n",
            1000,
        );
        let b = authorize(
            &mut r,
            "9999",
            "pw",
            Algorithm::Md5,
            "Contact: <sip:x@127.0.0.1>\r\n",
            1000,
        );
        let (ra, _) = r.handle(&a, flow(), Instant::now(), 1000);
        let (rb, _) = r.handle(&b, flow(), Instant::now(), 1000);
        assert_eq!(ra.status(), Some(403));
        assert_eq!(ra.start, rb.start);
    }

    #[test]
    fn several_contacts_expiry_and_interval_too_brief() {
        let now = Instant::now();
        let mut r = registrar();
        let m = authorize(
            &mut r,
            "1001",
            "pw",
            Algorithm::Md5,
            "Contact: <sip:a@127.0.0.1:1>;expires=40, <sip:b@127.0.0.1:2>;expires=100\r\n",
            1000,
        );
        let (resp, _) = r.handle(&m, flow(), now, 1000);
        assert_eq!(resp.status(), Some(200));
        assert_eq!(r.bindings(0).len(), 2);
        assert!(!r.expire(0, now + Duration::from_secs(50)));
        assert_eq!(r.bindings(0).len(), 1);
        assert!(r.expire(0, now + Duration::from_secs(100)));
        let m = authorize(
            &mut r,
            "1001",
            "pw",
            Algorithm::Md5,
            "Contact: <sip:a@127.0.0.1:1>;expires=5\r\n",
            1001,
        );
        let (resp, _) = r.handle(&m, flow(), now, 1001);
        assert_eq!(resp.status(), Some(423));
        assert_eq!(resp.header("Min-Expires"), Some("30"));
    }

    #[test]
    fn stale_nonce_gets_fresh_challenge() {
        let mut r = registrar();
        let m = authorize(
            &mut r,
            "1001",
            "pw",
            Algorithm::Md5,
            "Contact: <sip:a@127.0.0.1:1>\r\n",
            1000,
        );
        let (resp, _) = r.handle(&m, flow(), Instant::now(), 1000 + 10_000);
        assert_eq!(resp.status(), Some(401));
        assert!(resp
            .header("WWW-Authenticate")
            .unwrap()
            .contains("stale=true"));
    }

    #[test]
    fn registering_someone_elses_aor_is_forbidden() {
        let mut r = Registrar::new(
            "dasan",
            &[("1001".into(), "pw".into()), ("1002".into(), "pw".into())],
            30,
            3600,
            Ids::seeded(2),
        );
        // authorize() puts 1001 in To; authenticate as 1002.
        let m = authorize(
            &mut r,
            "1002",
            "pw",
            Algorithm::Md5,
            "Contact: <sip:a@127.0.0.1:1>\r\n",
            1000,
        );
        let (resp, _) = r.handle(&m, flow(), Instant::now(), 1000);
        assert_eq!(resp.status(), Some(403));
    }

    /// A REGISTER for 1001 from `src` answering `challenge` with count `nc`.
    fn register_from(challenge: &str, pass: &str, nc: u32, user: &str) -> Message {
        let auth =
            digest::authorization_nc(challenge, user, pass, "REGISTER", "sip:127.0.0.1", "c", nc)
                .unwrap();
        reg(&format!(
            "Authorization: {auth}\r\nContact: <sip:1001@127.0.0.1:5070>\r\n"
        ))
    }

    fn challenge_for(r: &mut Registrar, f: Flow, unix: u64) -> String {
        let (resp, _) = r.handle(&reg(""), f, Instant::now(), unix);
        resp.header("WWW-Authenticate").unwrap().to_string()
    }

    #[test]
    fn a_replayed_register_is_refused_from_anywhere_and_counts_must_grow() {
        let now = Instant::now();
        let mut r = registrar();
        let ch = challenge_for(&mut r, flow(), 1000);
        let m = register_from(&ch, "pw", 1, "1001");
        assert_eq!(r.handle(&m, flow(), now, 1000).0.status(), Some(200));
        // The same bytes again (a capture replayed from the same address): stale.
        let (resp, who) = r.handle(&m, flow(), now, 1001);
        assert_eq!(resp.status(), Some(401));
        assert!(resp
            .header("WWW-Authenticate")
            .unwrap()
            .contains("stale=true"));
        assert!(who.is_none());
        // From another address, with a new Contact: the nonce is not valid there at all.
        let attacker = Flow::udp("127.0.0.66:5060".parse().unwrap());
        let m2 = register_from(&ch, "pw", 2, "1001");
        let (resp, who) = r.handle(&m2, attacker, now, 1001);
        assert_eq!(resp.status(), Some(401));
        assert!(!resp.header("WWW-Authenticate").unwrap().contains("stale"));
        assert!(who.is_none());
        assert_eq!(r.bindings(0)[0].flow, flow(), "the binding is the agent's");
        // The phone's own next count works.
        assert_eq!(r.handle(&m2, flow(), now, 1002).0.status(), Some(200));
        assert!(r
            .take_events()
            .iter()
            .any(|e| matches!(e, AuthEvent::Replayed { .. })));
    }

    #[test]
    fn a_nonce_answered_without_qop_serves_once() {
        let now = Instant::now();
        let mut r = registrar();
        let ch = challenge_for(&mut r, flow(), 1000);
        let c = Credentials::parse(&ch).unwrap();
        let nonce = c.get("nonce").unwrap();
        let ha1 = Algorithm::Md5.hash("1001:dasan:pw");
        let ha2 = Algorithm::Md5.hash("REGISTER:sip:127.0.0.1");
        let resp = Algorithm::Md5.hash(&format!("{ha1}:{nonce}:{ha2}"));
        let m = reg(&format!("Authorization: Digest username=\"1001\", realm=\"dasan\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", response=\"{resp}\"\r\nContact: <sip:1001@127.0.0.1:5070>\r\n"));
        assert_eq!(r.handle(&m, flow(), now, 1000).0.status(), Some(200));
        assert_eq!(r.handle(&m, flow(), now, 1000).0.status(), Some(401));
    }

    #[test]
    fn password_guessing_is_blocked_and_the_answer_never_tells() {
        let t0 = Instant::now();
        let mut r = registrar();
        let attacker = Flow::udp("127.0.0.66:5060".parse().unwrap());
        let ch = challenge_for(&mut r, attacker, 1000);
        for i in 0..10 {
            let m = register_from(&ch, &format!("guess{i}"), 1, "1001");
            assert_eq!(r.handle(&m, attacker, t0, 1000).0.status(), Some(403));
        }
        let events = r.take_events();
        assert!(events.iter().any(|e| matches!(
            e,
            AuthEvent::Blocked {
                scope: Scope::Source,
                ..
            }
        )));
        // The right password from the blocked address: refused, unchecked, same answer.
        let right = register_from(&ch, "pw", 1, "1001");
        assert_eq!(r.handle(&right, attacker, t0, 1000).0.status(), Some(403));
        assert!(r.bindings(0).is_empty());
        // The same for an account that does not exist.
        let ghost = register_from(&ch, "pw", 2, "7777");
        assert_eq!(r.handle(&ghost, attacker, t0, 1000).0.status(), Some(403));
        // After the block (5 min), the right password works again.
        let later = t0 + Duration::from_secs(301);
        let ch = challenge_for(&mut r, attacker, 1290);
        let right = register_from(&ch, "pw", 1, "1001");
        assert_eq!(
            r.handle(&right, attacker, later, 1290).0.status(),
            Some(200)
        );
    }

    #[test]
    fn guessing_one_account_from_many_addresses_blocks_the_account_not_its_phone() {
        let t0 = Instant::now();
        let mut r = registrar();
        // The agent's phone is registered first.
        let ch = challenge_for(&mut r, flow(), 1000);
        let m = register_from(&ch, "pw", 1, "1001");
        assert_eq!(r.handle(&m, flow(), t0, 1000).0.status(), Some(200));
        for i in 0..10u8 {
            let f = Flow::udp(std::net::SocketAddr::from(([127, 0, 1, i], 5060)));
            let ch = challenge_for(&mut r, f, 1000);
            let m = register_from(&ch, "nope", 1, "1001");
            assert_eq!(r.handle(&m, f, t0, 1000).0.status(), Some(403));
        }
        let f = Flow::udp("127.0.2.1:5060".parse().unwrap());
        let ch = challenge_for(&mut r, f, 1000);
        let m = register_from(&ch, "pw", 1, "1001");
        assert_eq!(
            r.handle(&m, f, t0, 1000).0.status(),
            Some(403),
            "account blocked"
        );
        // The phone already registered from its own address refreshes as usual.
        let ch = challenge_for(&mut r, flow(), 1001);
        let m = register_from(&ch, "pw", 1, "1001");
        assert_eq!(r.handle(&m, flow(), t0, 1001).0.status(), Some(200));
    }

    #[test]
    fn an_agent_has_at_most_max_bindings_contacts() {
        let t0 = Instant::now();
        let mut r = registrar().with_max_bindings(2);
        for i in 0..4u32 {
            let ch = challenge_for(&mut r, flow(), 1000 + i as u64);
            let m = register_from(&ch, "pw", 1, "1001");
            let m = {
                let mut m = m;
                m.set_header("Contact", format!("<sip:1001@127.0.0.1:{}>", 6000 + i));
                m.set_header("Call-ID", format!("phone-{i}"));
                m
            };
            let at = t0 + Duration::from_secs(i as u64);
            assert_eq!(
                r.handle(&m, flow(), at, 1000 + i as u64).0.status(),
                Some(200)
            );
        }
        let uris: Vec<&str> = r.bindings(0).iter().map(|b| b.uri.as_str()).collect();
        assert_eq!(
            uris,
            vec!["sip:1001@127.0.0.1:6002", "sip:1001@127.0.0.1:6003"]
        );
    }
}
