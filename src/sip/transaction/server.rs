//! Non-INVITE server transaction, RFC 3261 17.2.2.

use super::{due, Timer, TimerAction, TimerConfig};
use bytes::Bytes;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

pub struct ServerNonInvite {
    state: ServerNonInviteState,
    cfg: TimerConfig,
    reliable: bool,
    last_response: Option<Bytes>,
    timer_j: Option<Instant>,
}

impl ServerNonInvite {
    pub fn new(cfg: TimerConfig, reliable: bool) -> Self {
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            cfg,
            reliable,
            last_response: None,
            timer_j: None,
        }
    }

    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// Returns false when a final response was already sent (the owner must not send).
    pub fn send_response(&mut self, now: Instant, status: u16, bytes: Bytes) -> bool {
        match self.state {
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding => {
                self.last_response = Some(bytes);
                if status < 200 {
                    self.state = ServerNonInviteState::Proceeding;
                } else {
                    self.state = ServerNonInviteState::Completed;
                    self.timer_j = Some(if self.reliable {
                        now
                    } else {
                        now + self.cfg.t1x64()
                    });
                }
                true
            }
            _ => false,
        }
    }

    /// A retransmitted request: in Trying it is absorbed, later the last response is resent.
    pub fn on_request_retransmission(&self) -> Option<Bytes> {
        match self.state {
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed => {
                self.last_response.clone()
            }
            _ => None,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_j
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        if due(self.timer_j, now) {
            self.timer_j = None;
            self.last_response = None;
            self.state = ServerNonInviteState::Terminated;
            return Some(TimerAction::Terminated(Timer::J));
        }
        None
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::ms;
    use super::*;

    #[test]
    fn trying_absorbs_then_completed_resends_until_timer_j() {
        let t0 = Instant::now();
        let mut t = ServerNonInvite::new(TimerConfig::default(), false);
        assert_eq!(t.on_request_retransmission(), None);
        assert!(t.send_response(t0, 100, Bytes::from_static(b"100")));
        assert_eq!(
            t.on_request_retransmission(),
            Some(Bytes::from_static(b"100"))
        );
        assert!(t.send_response(t0, 200, Bytes::from_static(b"200")));
        assert!(!t.send_response(t0, 500, Bytes::from_static(b"500")));
        assert_eq!(
            t.on_request_retransmission(),
            Some(Bytes::from_static(b"200"))
        );
        assert_eq!(t.poll_timeout(), Some(t0 + ms(32_000)));
        assert_eq!(t.handle_timeout(t0 + ms(31_999)), None);
        assert_eq!(
            t.handle_timeout(t0 + ms(32_000)),
            Some(TimerAction::Terminated(Timer::J))
        );
        assert!(t.is_terminated());
        assert_eq!(t.on_request_retransmission(), None);
    }

    #[test]
    fn reliable_timer_j_is_zero() {
        let t0 = Instant::now();
        let mut t = ServerNonInvite::new(TimerConfig::default(), true);
        t.send_response(t0, 200, Bytes::from_static(b"200"));
        assert_eq!(
            t.handle_timeout(t0),
            Some(TimerAction::Terminated(Timer::J))
        );
    }

    #[test]
    fn custom_t1_scales_timer_j() {
        let cfg = TimerConfig {
            t1: ms(100),
            ..TimerConfig::default()
        };
        let t0 = Instant::now();
        let mut t = ServerNonInvite::new(cfg, false);
        t.send_response(t0, 200, Bytes::from_static(b"200"));
        assert_eq!(t.poll_timeout(), Some(t0 + ms(6_400)));
    }
}
