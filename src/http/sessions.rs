//! Browser agents' logins and their bearer tokens (role agent). The desktop's WebSocket
//! session opens and closes them; every API request may present one.

use super::auth::Role;
use axum::http::HeaderMap;
use std::time::{Duration, Instant};

/// Browser agents' logins: one per agent at a time, each with a bearer token for the API
/// (role agent) that expires after the configured time. Read by every API request and
/// written by the WebSocket sessions, from any runtime thread: two concurrent maps
/// (dashmap) rather than one lock, and the one-login rule is a single entry operation on the
/// agent's key, so two browsers racing to log in as the same agent cannot both win.
pub struct Sessions {
    ttl: Duration,
    by_agent: dashmap::DashMap<String, (String, Instant)>,
    by_token: dashmap::DashMap<String, String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LoginRefused {
    AlreadyLoggedIn,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            by_agent: dashmap::DashMap::new(),
            by_token: dashmap::DashMap::new(),
        }
    }

    /// A new login for `agent`: its token and when it expires.
    pub fn open(&self, agent: &str, now: Instant) -> Result<(String, Instant), LoginRefused> {
        use dashmap::mapref::entry::Entry;
        let token = crate::util::random_token(32);
        let expires = now + self.ttl;
        match self.by_agent.entry(agent.to_string()) {
            Entry::Occupied(_) => return Err(LoginRefused::AlreadyLoggedIn),
            Entry::Vacant(v) => {
                v.insert((token.clone(), expires));
            }
        }
        self.by_token.insert(token.clone(), agent.to_string());
        Ok((token, expires))
    }

    pub fn close(&self, token: &str) {
        if let Some((_, agent)) = self.by_token.remove(token) {
            self.by_agent.remove_if(&agent, |_, (t, _)| t == token);
        }
    }

    /// The role of a session token in `Authorization`; Err if it has expired; None if
    /// it is not a session token at all.
    pub fn role(&self, headers: &HeaderMap) -> Option<Result<Role, &'static str>> {
        let token = headers
            .get("authorization")?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        let agent = self.by_token.get(token)?.value().clone();
        let expires = self.by_agent.get(&agent)?.value().1;
        if expires <= Instant::now() {
            return Some(Err("session expired: log in again"));
        }
        Some(Ok(Role::Agent(agent)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_login_per_agent_and_tokens_expire() {
        let s = Sessions::new(Duration::from_millis(50));
        let now = Instant::now();
        let (token, _) = s.open("1001", now).unwrap();
        assert_eq!(s.open("1001", now), Err(LoginRefused::AlreadyLoggedIn));
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert_eq!(s.role(&h), Some(Ok(Role::Agent("1001".into()))));
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(s.role(&h), Some(Err(_))));
        s.close(&token);
        assert_eq!(s.role(&h), None, "closed: not a session token any more");
        assert!(s.open("1001", now).is_ok(), "free to log in again");
    }
}
