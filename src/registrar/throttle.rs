//! Throttling of failed authentication, per source address and per account: after
//! `max_failures` failures within `window`, that source (or account) is refused without
//! its credentials being checked until `block` has passed. Sans-IO: time is an argument.
//!
//! Accounts are tracked by the name the client sent, whether or not such an agent exists,
//! so that a blocked unknown name and a blocked real one look the same to the attacker.
//! Memory is bounded: at most `MAX_TRACKED` sources and as many accounts; when full, the
//! entries whose window or block is over go first, then the oldest.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Entries kept per kind (sources, accounts) at most.
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_failures: u32,
    pub window: Duration,
    pub block: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_failures: 10,
            window: Duration::from_secs(60),
            block: Duration::from_secs(300),
        }
    }
}

/// Who is blocked, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    Source { source: IpAddr, until: Instant },
    Account { account: String, until: Instant },
}

impl Blocked {
    pub fn until(&self) -> Instant {
        match self {
            Blocked::Source { until, .. } | Blocked::Account { until, .. } => *until,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

impl Entry {
    fn blocked(&self, now: Instant) -> Option<Instant> {
        self.blocked_until.filter(|&u| u > now)
    }

    fn idle(&self, now: Instant, limits: &Limits) -> bool {
        self.blocked(now).is_none()
            && now.saturating_duration_since(self.window_start) >= limits.window
    }
}

struct Table<K> {
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new() -> Self {
        Table {
            entries: HashMap::new(),
        }
    }

    fn blocked(&self, k: &K, now: Instant) -> Option<Instant> {
        self.entries.get(k).and_then(|e| e.blocked(now))
    }

    /// Counts a failure; Some(until) when it starts a block.
    fn fail(&mut self, k: &K, now: Instant, limits: &Limits) -> Option<Instant> {
        if !self.entries.contains_key(k) && self.entries.len() >= MAX_TRACKED {
            self.make_room(now, limits);
        }
        let e = self.entries.entry(k.clone()).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if e.blocked(now).is_some() {
            return None;
        }
        if now.saturating_duration_since(e.window_start) >= limits.window {
            e.window_start = now;
            e.failures = 0;
            e.blocked_until = None;
        }
        e.failures += 1;
        if e.failures >= limits.max_failures {
            let until = now + limits.block;
            e.blocked_until = Some(until);
            e.failures = 0;
            return Some(until);
        }
        None
    }

    fn clear(&mut self, k: &K) {
        self.entries.remove(k);
    }

    fn make_room(&mut self, now: Instant, limits: &Limits) {
        self.entries.retain(|_, e| !e.idle(now, limits));
        if self.entries.len() >= MAX_TRACKED {
            // Still full of live entries: forget the oldest tenth rather than grow.
            let mut starts: Vec<Instant> = self.entries.values().map(|e| e.window_start).collect();
            starts.sort_unstable();
            let cut = starts[starts.len() / 10];
            self.entries.retain(|_, e| e.window_start > cut);
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

pub struct AuthThrottle {
    limits: Limits,
    sources: Table<IpAddr>,
    accounts: Table<String>,
}

impl AuthThrottle {
    pub fn new(limits: Limits) -> Self {
        AuthThrottle {
            limits,
            sources: Table::new(),
            accounts: Table::new(),
        }
    }

    /// Whether credentials from `source` for `account` may be checked now. `trusted_source`
    /// exempts the account block (not the source block) for a source the account is known
    /// to use, so that an attacker failing an agent's name elsewhere does not lock the
    /// agent's own phone out.
    pub fn check(
        &self,
        now: Instant,
        source: IpAddr,
        account: &str,
        trusted_source: bool,
    ) -> Result<(), Blocked> {
        if let Some(until) = self.sources.blocked(&source, now) {
            return Err(Blocked::Source { source, until });
        }
        if trusted_source {
            return Ok(());
        }
        match self.accounts.blocked(&account.to_string(), now) {
            Some(until) => Err(Blocked::Account {
                account: account.to_string(),
                until,
            }),
            None => Ok(()),
        }
    }

    /// A failed attempt; returns the block it starts, if any (to be logged once).
    pub fn failed(&mut self, now: Instant, source: IpAddr, account: &str) -> Option<Blocked> {
        let by_source = self.sources.fail(&source, now, &self.limits);
        let by_account = self.accounts.fail(&account.to_string(), now, &self.limits);
        match (by_source, by_account) {
            (Some(until), _) => Some(Blocked::Source { source, until }),
            (None, Some(until)) => Some(Blocked::Account {
                account: account.to_string(),
                until,
            }),
            (None, None) => None,
        }
    }

    /// A success clears the source's and the account's failures.
    pub fn succeeded(&mut self, source: IpAddr, account: &str) {
        self.sources.clear(&source);
        self.accounts.clear(&account.to_string());
    }

    /// Entries tracked (sources, accounts).
    pub fn tracked(&self) -> (usize, usize) {
        (self.sources.len(), self.accounts.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ten_failures_in_a_minute_block_the_source_for_five_minutes() {
        let mut t = AuthThrottle::new(Limits::default());
        let t0 = Instant::now();
        let src = ip("192.0.2.1");
        for i in 0..9 {
            assert_eq!(t.failed(t0 + Duration::from_secs(i), src, "1001"), None);
            assert!(t.check(t0, src, "1001", false).is_ok());
        }
        let b = t.failed(t0 + Duration::from_secs(9), src, "1001");
        assert!(matches!(b, Some(Blocked::Source { .. })), "{b:?}");
        let at = |s| t0 + Duration::from_secs(s);
        assert!(t.check(at(10), src, "1001", false).is_err());
        assert!(
            t.check(at(10), src, "other", false).is_err(),
            "every account"
        );
        assert!(t.check(at(308), src, "1001", false).is_err());
        assert!(t.check(at(310), src, "1001", false).is_ok(), "block over");
        // Another source is not blocked by the source block, but the account is.
        assert!(matches!(
            t.check(at(10), ip("192.0.2.2"), "1001", false),
            Err(Blocked::Account { .. })
        ));
        assert!(
            t.check(at(10), ip("192.0.2.2"), "1001", true).is_ok(),
            "the agent's own phone is exempt from the account block"
        );
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_block() {
        let mut t = AuthThrottle::new(Limits::default());
        let t0 = Instant::now();
        for i in 0..100 {
            let now = t0 + Duration::from_secs(i * 7);
            assert_eq!(t.failed(now, ip("192.0.2.1"), "1001"), None, "at {i}");
        }
    }

    #[test]
    fn one_account_tried_from_many_sources_is_blocked() {
        let mut t = AuthThrottle::new(Limits::default());
        let t0 = Instant::now();
        let mut blocked = None;
        for i in 0..10u8 {
            blocked = t.failed(t0, IpAddr::from([198, 51, 100, i]), "1001");
        }
        assert!(matches!(blocked, Some(Blocked::Account { .. })));
        assert!(t.check(t0, ip("198.51.100.200"), "1001", false).is_err());
        assert!(t.check(t0, ip("198.51.100.200"), "1002", false).is_ok());
    }

    #[test]
    fn memory_stays_bounded_under_a_spray_of_names_and_sources() {
        let mut t = AuthThrottle::new(Limits::default());
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 5_000) {
            let src = IpAddr::from(i.to_be_bytes());
            t.failed(t0, src, &format!("user{i}"));
        }
        let (s, a) = t.tracked();
        assert!(s <= MAX_TRACKED && a <= MAX_TRACKED, "{s} {a}");
    }

    #[test]
    fn success_clears_the_count() {
        let mut t = AuthThrottle::new(Limits::default());
        let t0 = Instant::now();
        let src = ip("192.0.2.1");
        for _ in 0..9 {
            t.failed(t0, src, "1001");
        }
        t.succeeded(src, "1001");
        assert_eq!(t.failed(t0, src, "1001"), None);
    }
}
