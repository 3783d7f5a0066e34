//! Throttling of failed authentication, per source address and per account, sans-IO: the
//! caller passes `now` and decides what a refusal looks like (the browser login, the SIP
//! registrar).
//!
//! After `max_failures` failures within `window` from one source, or against one account
//! from any sources, that source or account is refused for `block` without its
//! credentials being checked. Unknown accounts are counted exactly like known ones, so a
//! block says nothing about which accounts exist. Memory is bounded: at most `capacity`
//! keys (sources and accounts together) are tracked; when full, expired keys go first,
//! then the oldest.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Refused without checking the credentials until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub until: Instant,
    pub scope: Scope,
}

/// What a block applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every attempt from the source address (an IPv6 source: its /64).
    Source,
    /// Every attempt on the account, from any source.
    Account,
}

/// Tracked keys at most, unless [`AuthThrottle::with_capacity`] says otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Account names are kept to this many bytes (longer ones are cut at a char boundary).
const ACCOUNT_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Source(IpAddr),
    Account(Box<str>),
}

struct Entry {
    /// Failures within the window, oldest first; never more than `max_failures`.
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
    /// Which slot of `order` is this entry's (older slots for the same key are stale).
    seq: u64,
}

impl Entry {
    fn blocked_at(&self, now: Instant) -> Option<Instant> {
        self.blocked_until.filter(|u| *u > now)
    }

    /// Neither blocked nor holding a failure inside the window: forgetting it changes
    /// nothing.
    fn expired(&self, now: Instant, window: Duration) -> bool {
        self.blocked_at(now).is_none()
            && self
                .failures
                .back()
                .is_none_or(|t| now.saturating_duration_since(*t) >= window)
    }
}

pub struct AuthThrottle {
    max_failures: usize,
    window: Duration,
    block: Duration,
    capacity: usize,
    entries: HashMap<Key, Entry>,
    /// Keys in the order they were first tracked, for eviction (with their `seq`).
    order: VecDeque<(u64, Key)>,
    next_seq: u64,
}

impl AuthThrottle {
    /// `max_failures` within `window` start a block of `block`; at most
    /// [`DEFAULT_CAPACITY`] keys are tracked.
    pub fn new(max_failures: u32, window: Duration, block: Duration) -> AuthThrottle {
        AuthThrottle::with_capacity(max_failures, window, block, DEFAULT_CAPACITY)
    }

    pub fn with_capacity(
        max_failures: u32,
        window: Duration,
        block: Duration,
        capacity: usize,
    ) -> AuthThrottle {
        AuthThrottle {
            max_failures: max_failures.max(1) as usize,
            window,
            block,
            capacity: capacity.max(2),
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// Before checking credentials: Err if the source or the account is blocked (then do
    /// not check them, and answer the same whether the account exists or not).
    pub fn check(&self, now: Instant, source: IpAddr, account: &str) -> Result<(), Blocked> {
        for (key, scope) in keys(source, account) {
            if let Some(until) = self.entries.get(&key).and_then(|e| e.blocked_at(now)) {
                return Err(Blocked { until, scope });
            }
        }
        Ok(())
    }

    /// The credentials were wrong (or the account does not exist). Some when this failure
    /// starts a block (the source's if both start at once): the moment to log it.
    pub fn failed(&mut self, now: Instant, source: IpAddr, account: &str) -> Option<Blocked> {
        let mut started = None;
        for (key, scope) in keys(source, account) {
            let (max, window, block) = (self.max_failures, self.window, self.block);
            let e = self.entry(now, key);
            if e.blocked_at(now).is_some() {
                continue;
            }
            while e
                .failures
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= window)
            {
                e.failures.pop_front();
            }
            e.failures.push_back(now);
            if e.failures.len() >= max {
                e.failures.clear();
                let until = now + block;
                e.blocked_until = Some(until);
                started.get_or_insert(Blocked { until, scope });
            }
        }
        started
    }

    /// The credentials were right: the account's and the source's failures are forgotten
    /// (a typo or two before each login never adds up to a block for agents behind one
    /// address). A block cannot be cleared this way: [`Self::check`] refuses first.
    pub fn succeeded(&mut self, source: IpAddr, account: &str) {
        for (key, _) in keys(source, account) {
            if let Some(e) = self.entries.get_mut(&key) {
                e.failures.clear();
            }
        }
    }

    /// Keys tracked now (sources and accounts).
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    fn entry(&mut self, now: Instant, key: Key) -> &mut Entry {
        if !self.entries.contains_key(&key) {
            self.make_room(now);
            let seq = self.next_seq;
            self.next_seq += 1;
            self.order.push_back((seq, key.clone()));
            self.entries.insert(
                key.clone(),
                Entry {
                    failures: VecDeque::new(),
                    blocked_until: None,
                    seq,
                },
            );
        }
        self.entries.get_mut(&key).expect("inserted above")
    }

    /// Room for one more key: the oldest keys go while they are expired (cheap, every
    /// time). When the map is full, every expired key goes; if that is not enough, the
    /// oldest keys that are not blocked, then the oldest blocked ones, down to 7/8 of the
    /// capacity so that the next full sweep is far off.
    fn make_room(&mut self, now: Instant) {
        while let Some((seq, key)) = self.order.front() {
            match self.entries.get(key) {
                Some(e) if e.seq == *seq && !e.expired(now, self.window) => break,
                Some(e) if e.seq == *seq => {
                    self.entries.remove(key);
                }
                _ => {}
            }
            self.order.pop_front();
        }
        if self.entries.len() < self.capacity {
            return;
        }
        let window = self.window;
        self.entries.retain(|_, e| !e.expired(now, window));
        let low = self.capacity - self.capacity / 8 - 1;
        let mut excess = self.entries.len().saturating_sub(low);
        let entries = &mut self.entries;
        self.order.retain(|(seq, key)| match entries.get(key) {
            Some(e) if e.seq == *seq => {
                if excess > 0 && e.blocked_at(now).is_none() {
                    entries.remove(key);
                    excess -= 1;
                    return false;
                }
                true
            }
            _ => false,
        });
        while self.entries.len() > low {
            let Some((_, key)) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&key);
        }
    }
}

/// The source's key (IPv4-mapped addresses as IPv4, IPv6 by its /64, as one host usually
/// holds a whole /64) and the account's.
fn keys(source: IpAddr, account: &str) -> [(Key, Scope); 2] {
    let source = match source.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    };
    let mut end = account.len().min(ACCOUNT_BYTES);
    while !account.is_char_boundary(end) {
        end -= 1;
    }
    [
        (Key::Source(source), Scope::Source),
        (Key::Account(account[..end].into()), Scope::Account),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const FIVE_MIN: Duration = Duration::from_secs(300);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn ten_failures_in_a_minute_block_the_source_and_the_account_for_five_minutes() {
        let mut t = AuthThrottle::new(10, MIN, FIVE_MIN);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..9 {
            assert_eq!(t.check(at(t0, i), a, "1001"), Ok(()));
            assert_eq!(t.failed(at(t0, i), a, "1001"), None, "failure {i}");
        }
        let b = t
            .failed(at(t0, 9), a, "1001")
            .expect("the tenth starts a block");
        assert_eq!(b.until, at(t0, 9 + 300));
        assert_eq!(b.scope, Scope::Source);
        // Refused until the block ends, whatever the account, from this source.
        assert_eq!(
            t.check(at(t0, 10), a, "1002").unwrap_err().scope,
            Scope::Source
        );
        // The account is blocked from any source.
        let other = ip("198.51.100.7");
        assert_eq!(
            t.check(at(t0, 10), other, "1001").unwrap_err().scope,
            Scope::Account
        );
        // Another source and account are not.
        assert_eq!(t.check(at(t0, 10), other, "1002"), Ok(()));
        // A failure reported while blocked does not extend the block.
        assert_eq!(t.failed(at(t0, 100), a, "1001"), None);
        assert!(t.check(at(t0, 308), a, "1001").is_err());
        assert_eq!(t.check(at(t0, 309), a, "1001"), Ok(()));
        // Counting starts afresh after a block.
        assert_eq!(t.failed(at(t0, 309), a, "1001"), None);
        assert_eq!(t.check(at(t0, 310), a, "1001"), Ok(()));
    }

    #[test]
    fn failures_spread_over_more_than_the_window_never_block() {
        let mut t = AuthThrottle::new(10, MIN, FIVE_MIN);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        // One every 7 s: at most 9 inside any 60 s.
        for i in 0..100 {
            assert_eq!(t.check(at(t0, i * 7), a, "1001"), Ok(()), "attempt {i}");
            assert_eq!(t.failed(at(t0, i * 7), a, "1001"), None, "attempt {i}");
        }
        // Faster, and the tenth within 60 s blocks.
        let mut t = AuthThrottle::new(10, MIN, FIVE_MIN);
        let blocked = (0..10).filter_map(|i| t.failed(at(t0, i * 6), a, "1001"));
        assert_eq!(blocked.count(), 1);
    }

    #[test]
    fn one_source_spraying_accounts_is_blocked_and_unknown_accounts_count_alike() {
        let mut t = AuthThrottle::new(10, MIN, FIVE_MIN);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..9 {
            assert_eq!(t.failed(t0, a, &format!("no-such-{i}")), None);
        }
        let b = t.failed(t0, a, "1001").expect("the source's tenth");
        assert_eq!(b.scope, Scope::Source);
        assert!(t.check(t0, a, "1005").is_err());
        assert_eq!(t.check(t0, ip("192.0.2.2"), "1005"), Ok(()));
        // Many sources, one account (known or not): the account is blocked.
        for unknown in ["1001", "nobody"] {
            let mut t = AuthThrottle::new(10, MIN, FIVE_MIN);
            for i in 0..9u8 {
                assert_eq!(t.failed(t0, IpAddr::from([10, 0, 0, i]), unknown), None);
            }
            let b = t.failed(t0, ip("10.0.0.99"), unknown).expect("blocked");
            assert_eq!(b.scope, Scope::Account, "{unknown}");
            assert!(t.check(t0, ip("10.9.9.9"), unknown).is_err());
        }
    }

    #[test]
    fn a_success_forgets_the_failures_but_not_a_block() {
        let mut t = AuthThrottle::new(10, MIN, FIVE_MIN);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..9 {
            t.failed(t0, a, "1001");
        }
        t.succeeded(a, "1001");
        for _ in 0..9 {
            assert_eq!(t.failed(t0, a, "1001"), None);
        }
        assert!(t.failed(t0, a, "1001").is_some());
        t.succeeded(a, "1001");
        assert!(t.check(t0, a, "1001").is_err(), "still blocked");
    }

    #[test]
    fn ipv6_sources_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let mut t = AuthThrottle::new(3, MIN, FIVE_MIN);
        let t0 = Instant::now();
        t.failed(t0, ip("2001:db8::1"), "a");
        t.failed(t0, ip("2001:db8::2:3"), "b");
        let b = t.failed(t0, ip("2001:db8::ffff:1"), "c").expect("one /64");
        assert_eq!(b.scope, Scope::Source);
        assert!(t.check(t0, ip("2001:db8::99"), "d").is_err());
        assert_eq!(t.check(t0, ip("2001:db8:0:1::1"), "d"), Ok(()));
        t.failed(t0, ip("::ffff:192.0.2.9"), "x");
        t.failed(t0, ip("192.0.2.9"), "y");
        t.failed(t0, ip("::ffff:192.0.2.9"), "z");
        assert!(t.check(t0, ip("192.0.2.9"), "w").is_err());
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_new_names_and_sources() {
        let mut t = AuthThrottle::with_capacity(10, MIN, FIVE_MIN, 1000);
        let t0 = Instant::now();
        // A block that is older than the flood and still running.
        let a = ip("192.0.2.1");
        for _ in 0..10 {
            t.failed(t0, a, "1001");
        }
        let flood = |t: &mut AuthThrottle, from: Instant, n: u32| {
            for i in 0..n {
                let src = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
                t.failed(
                    from + Duration::from_millis(i as u64),
                    src,
                    &format!("x{i}"),
                );
                assert!(t.tracked() <= 1000, "{} keys", t.tracked());
            }
        };
        flood(&mut t, t0, 20_000);
        assert!(
            t.check(t0 + MIN, a, "1001").is_err(),
            "the block outlives the flood"
        );
        assert!(t.check(t0 + MIN, ip("198.51.100.1"), "1001").is_err());
        // Long names are cut, so every key's size is bounded too.
        t.failed(t0 + MIN, a, &"가".repeat(10_000));
        assert!(t.tracked() <= 1000);
        // Later floods push out the earlier ones' keys, not the block.
        flood(&mut t, t0 + Duration::from_secs(200), 20_000);
        assert!(t.check(t0 + Duration::from_secs(250), a, "1001").is_err());
        assert_eq!(t.check(t0 + Duration::from_secs(301), a, "1001"), Ok(()));
    }
}
