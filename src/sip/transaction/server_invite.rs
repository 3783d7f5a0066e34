//! INVITE server transaction, RFC 3261 17.2.1 with the RFC 6026 Accepted state.

use super::{due, earliest, Retrans, Timer, TimerAction, TimerConfig};
use bytes::Bytes;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckAction {
    /// ACK for our non-2xx final response: absorbed here (Completed → Confirmed).
    Absorb,
    /// RFC 6026: an ACK matching the transaction in Accepted goes to the TU.
    PassToTu,
}

pub struct ServerInvite {
    state: ServerInviteState,
    cfg: TimerConfig,
    reliable: bool,
    last_response: Option<Bytes>,
    timer_g: Option<Retrans>,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
    timer_l: Option<Instant>,
}

impl ServerInvite {
    pub fn new(cfg: TimerConfig, reliable: bool) -> Self {
        ServerInvite {
            state: ServerInviteState::Proceeding,
            cfg,
            reliable,
            last_response: None,
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
        }
    }

    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// The TU sends a response; the owner transmits `bytes` once now. Returns false (and
    /// the owner must not send) when the state does not allow a response any more.
    pub fn send_response(&mut self, now: Instant, status: u16, bytes: Bytes) -> bool {
        if self.state != ServerInviteState::Proceeding {
            return false;
        }
        match status {
            100..=199 => self.last_response = Some(bytes),
            200..=299 => {
                // RFC 6026 8.5: 2xx retransmission is the TU's job; the transaction only
                // lingers for Timer L to absorb INVITE retransmissions.
                self.state = ServerInviteState::Accepted;
                self.last_response = None;
                self.timer_l = Some(now + self.cfg.t1x64());
            }
            _ => {
                self.state = ServerInviteState::Completed;
                self.last_response = Some(bytes);
                if !self.reliable {
                    self.timer_g = Some(Retrans {
                        at: now + self.cfg.t1,
                        interval: self.cfg.t1,
                    });
                }
                self.timer_h = Some(now + self.cfg.t1x64());
            }
        }
        true
    }

    /// A retransmission of the INVITE arrived: returns the response to resend, if any.
    pub fn on_request_retransmission(&self) -> Option<Bytes> {
        match self.state {
            ServerInviteState::Proceeding | ServerInviteState::Completed => {
                self.last_response.clone()
            }
            _ => None,
        }
    }

    pub fn on_ack(&mut self, now: Instant) -> AckAction {
        match self.state {
            ServerInviteState::Completed => {
                self.state = ServerInviteState::Confirmed;
                self.timer_g = None;
                self.timer_h = None;
                self.last_response = None;
                self.timer_i = Some(if self.reliable {
                    now
                } else {
                    now + self.cfg.t4
                });
                AckAction::Absorb
            }
            ServerInviteState::Accepted => AckAction::PassToTu,
            _ => AckAction::Absorb,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[
            self.timer_g.map(|r| r.at),
            self.timer_h,
            self.timer_i,
            self.timer_l,
        ])
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        if due(self.timer_h, now) {
            self.timer_h = None;
            self.timer_g = None;
            self.state = ServerInviteState::Terminated;
            return Some(TimerAction::Timeout(Timer::H));
        }
        if let Some(g) = self.timer_g.filter(|g| g.at <= now) {
            let interval = (g.interval * 2).min(self.cfg.t2);
            self.timer_g = Some(Retrans {
                at: now + interval,
                interval,
            });
            return self.last_response.clone().map(TimerAction::Retransmit);
        }
        if due(self.timer_i, now) {
            self.timer_i = None;
            self.state = ServerInviteState::Terminated;
            return Some(TimerAction::Terminated(Timer::I));
        }
        if due(self.timer_l, now) {
            self.timer_l = None;
            self.state = ServerInviteState::Terminated;
            return Some(TimerAction::Terminated(Timer::L));
        }
        None
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{ms, run};
    use super::*;
    use std::cell::RefCell;

    const R486: Bytes = Bytes::from_static(b"486");

    #[test]
    fn provisional_is_resent_on_retransmitted_invite() {
        let t0 = Instant::now();
        let mut t = ServerInvite::new(TimerConfig::default(), false);
        assert_eq!(t.on_request_retransmission(), None);
        assert!(t.send_response(t0, 180, Bytes::from_static(b"180")));
        assert_eq!(
            t.on_request_retransmission(),
            Some(Bytes::from_static(b"180"))
        );
        assert_eq!(t.poll_timeout(), None, "no timers while Proceeding");
    }

    #[test]
    fn timer_g_capped_at_t2_until_timer_h() {
        let t0 = Instant::now();
        let mut t = ServerInvite::new(TimerConfig::default(), false);
        t.send_response(t0, 486, R486);
        let c = RefCell::new(&mut t);
        let out = run(
            t0,
            ms(40_000),
            || c.borrow().poll_timeout(),
            |n| c.borrow_mut().handle_timeout(n),
        );
        let times: Vec<u64> = out.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            times,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, 32000]
        );
        assert_eq!(out.last().unwrap().1, TimerAction::Timeout(Timer::H));
        assert!(t.is_terminated());
    }

    #[test]
    fn ack_confirms_then_timer_i() {
        let t0 = Instant::now();
        let mut t = ServerInvite::new(TimerConfig::default(), false);
        t.send_response(t0, 486, R486);
        assert_eq!(t.on_request_retransmission(), Some(R486));
        assert_eq!(t.on_ack(t0 + ms(100)), AckAction::Absorb);
        assert_eq!(t.state(), ServerInviteState::Confirmed);
        assert_eq!(t.on_request_retransmission(), None);
        assert_eq!(
            t.on_ack(t0 + ms(200)),
            AckAction::Absorb,
            "ACK retransmission absorbed"
        );
        assert_eq!(t.poll_timeout(), Some(t0 + ms(5100)));
        assert_eq!(
            t.handle_timeout(t0 + ms(5100)),
            Some(TimerAction::Terminated(Timer::I))
        );
    }

    #[test]
    fn accepted_absorbs_invite_passes_ack_then_timer_l() {
        let t0 = Instant::now();
        let mut t = ServerInvite::new(TimerConfig::default(), false);
        t.send_response(t0, 200, Bytes::from_static(b"200"));
        assert_eq!(t.state(), ServerInviteState::Accepted);
        assert_eq!(t.on_request_retransmission(), None);
        assert_eq!(t.on_ack(t0), AckAction::PassToTu);
        assert!(!t.send_response(t0, 486, R486), "no response after a 2xx");
        assert_eq!(
            t.handle_timeout(t0 + ms(32_000)),
            Some(TimerAction::Terminated(Timer::L))
        );
        assert!(t.is_terminated());
    }

    #[test]
    fn reliable_has_no_timer_g_and_i_zero() {
        let t0 = Instant::now();
        let mut t = ServerInvite::new(TimerConfig::default(), true);
        t.send_response(t0, 486, R486);
        assert_eq!(t.poll_timeout(), Some(t0 + ms(32_000)));
        t.on_ack(t0 + ms(1));
        assert_eq!(
            t.handle_timeout(t0 + ms(1)),
            Some(TimerAction::Terminated(Timer::I))
        );
    }
}
