//! Non-INVITE client transaction, RFC 3261 17.1.2.

use super::{due, earliest, Retrans, Timer, TimerAction, TimerConfig};
use bytes::Bytes;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

pub struct ClientNonInvite {
    state: ClientNonInviteState,
    cfg: TimerConfig,
    reliable: bool,
    request: Bytes,
    timer_e: Option<Retrans>,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
}

impl ClientNonInvite {
    /// Starts in Trying; the owner sends `request` once now.
    pub fn new(now: Instant, request: Bytes, cfg: TimerConfig, reliable: bool) -> Self {
        ClientNonInvite {
            state: ClientNonInviteState::Trying,
            cfg,
            reliable,
            request,
            timer_e: (!reliable).then_some(Retrans {
                at: now + cfg.t1,
                interval: cfg.t1,
            }),
            timer_f: Some(now + cfg.t1x64()),
            timer_k: None,
        }
    }

    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// Returns true when the response should go to the TU (the first of each class).
    pub fn on_response(&mut self, now: Instant, status: u16) -> bool {
        use ClientNonInviteState::*;
        match (self.state, status) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                true
            }
            (Trying | Proceeding, _) => {
                self.state = Completed;
                self.timer_e = None;
                self.timer_f = None;
                self.timer_k = Some(if self.reliable {
                    now
                } else {
                    now + self.cfg.t4
                });
                self.request = Bytes::new();
                true
            }
            _ => false,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_e.map(|r| r.at), self.timer_f, self.timer_k])
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        if due(self.timer_f, now) {
            self.timer_f = None;
            self.timer_e = None;
            self.state = ClientNonInviteState::Terminated;
            return Some(TimerAction::Timeout(Timer::F));
        }
        if let Some(e) = self.timer_e.filter(|e| e.at <= now) {
            // Trying: double up to T2. Proceeding: every T2 (17.1.2.2).
            let interval = match self.state {
                ClientNonInviteState::Proceeding => self.cfg.t2,
                _ => (e.interval * 2).min(self.cfg.t2),
            };
            self.timer_e = Some(Retrans {
                at: now + interval,
                interval,
            });
            return Some(TimerAction::Retransmit(self.request.clone()));
        }
        if due(self.timer_k, now) {
            self.timer_k = None;
            self.state = ClientNonInviteState::Terminated;
            return Some(TimerAction::Terminated(Timer::K));
        }
        None
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{ms, run};
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn timer_e_capped_at_t2_then_timer_f() {
        let t0 = Instant::now();
        let mut t = ClientNonInvite::new(
            t0,
            Bytes::from_static(b"BYE"),
            TimerConfig::default(),
            false,
        );
        let c = RefCell::new(&mut t);
        let out = run(
            t0,
            ms(40_000),
            || c.borrow().poll_timeout(),
            |n| c.borrow_mut().handle_timeout(n),
        );
        let times: Vec<u64> = out.iter().map(|(t, _)| *t).collect();
        // 0.5, 1.5, 3.5, 7.5 then every 4 s (T2) until F at 32 s.
        assert_eq!(
            times,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, 32000]
        );
        assert_eq!(out.last().unwrap().1, TimerAction::Timeout(Timer::F));
        assert!(t.is_terminated());
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let t0 = Instant::now();
        let mut t = ClientNonInvite::new(
            t0,
            Bytes::from_static(b"BYE"),
            TimerConfig::default(),
            false,
        );
        assert!(t.on_response(t0 + ms(100), 100));
        assert_eq!(
            t.handle_timeout(t0 + ms(500)),
            Some(TimerAction::Retransmit(Bytes::from_static(b"BYE")))
        );
        assert_eq!(t.poll_timeout(), Some(t0 + ms(4500)));
    }

    #[test]
    fn final_response_then_timer_k_reclaims() {
        let t0 = Instant::now();
        let mut t = ClientNonInvite::new(
            t0,
            Bytes::from_static(b"BYE"),
            TimerConfig::default(),
            false,
        );
        assert!(t.on_response(t0 + ms(10), 200));
        assert!(
            !t.on_response(t0 + ms(20), 200),
            "retransmitted final is absorbed"
        );
        assert_eq!(t.poll_timeout(), Some(t0 + ms(5010)));
        assert_eq!(
            t.handle_timeout(t0 + ms(5010)),
            Some(TimerAction::Terminated(Timer::K))
        );
        assert!(t.is_terminated());
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn reliable_no_e_and_k_zero() {
        let t0 = Instant::now();
        let mut t =
            ClientNonInvite::new(t0, Bytes::from_static(b"BYE"), TimerConfig::default(), true);
        assert_eq!(t.poll_timeout(), Some(t0 + ms(32_000)));
        t.on_response(t0, 200);
        assert_eq!(
            t.handle_timeout(t0),
            Some(TimerAction::Terminated(Timer::K))
        );
    }
}
