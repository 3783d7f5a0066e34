//! RFC 3261 section 17 transactions as sans-IO state machines.
//!
//! Each machine is fed events with the current time (`now`) and returns what to do; none
//! reads the clock or owns a socket. The owner calls `poll_timeout()` after every call and
//! `handle_timeout(now)` once that instant has passed; `handle_timeout` handles at most one
//! timer per call, so the owner loops until `poll_timeout()` is in the future.
//!
//! Timer names follow RFC 3261 Table 4 and RFC 6026 (Timers L and M for the Accepted state).

mod client;
mod client_invite;
mod server;
mod server_invite;
mod table;

pub use client::{ClientNonInvite, ClientNonInviteState};
pub use client_invite::{ClientInvite, ClientInviteState, ResponseAction};
pub use server::{ServerNonInvite, ServerNonInviteState};
pub use server_invite::{AckAction, ServerInvite, ServerInviteState};
pub use table::{
    server_key, ClientKind, ClientTimeout, ClientTx, ResponseRoute, ServerKind, ServerTx,
    TransactionTable, TxId, TxRef,
};

use bytes::Bytes;
use std::time::{Duration, Instant};

/// T1, T2 and T4 (RFC 3261 17.1.1.1, Table 4); every other timer derives from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum time a message remains in the network, default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J, L, M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// The named timers, so a firing timer says which it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    A,
    B,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
    /// Not a lettered timer: RFC 3261 9.1's 64*T1 wait for a final response after a CANCEL.
    Cancelled,
}

/// What a timer asks the owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerAction {
    /// Send these bytes again (Timers A, E, G).
    Retransmit(Bytes),
    /// The transaction timed out (Timers B, F, H): tell the transaction user.
    Timeout(Timer),
    /// The transaction is over (Timers D, I, J, K, L, M): reclaim it.
    Terminated(Timer),
}

/// A running retransmission timer: when it fires next and the interval it used.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retrans {
    pub at: Instant,
    pub interval: Duration,
}

pub(crate) fn earliest(times: &[Option<Instant>]) -> Option<Instant> {
    times.iter().flatten().min().copied()
}

pub(crate) fn due(t: Option<Instant>, now: Instant) -> bool {
    matches!(t, Some(t) if t <= now)
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    pub fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drives a machine through time, collecting (elapsed ms, action) until `until`.
    pub fn run<F, P>(
        start: Instant,
        until: Duration,
        mut poll: P,
        mut handle: F,
    ) -> Vec<(u64, TimerAction)>
    where
        P: FnMut() -> Option<Instant>,
        F: FnMut(Instant) -> Option<TimerAction>,
    {
        let mut out = Vec::new();
        while let Some(t) = poll() {
            if t > start + until {
                break;
            }
            if let Some(a) = handle(t) {
                out.push(((t - start).as_millis() as u64, a));
            }
        }
        out
    }
}
