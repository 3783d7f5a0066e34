//! INVITE client transaction, RFC 3261 17.1.1 with the RFC 6026 Accepted state.

use super::{due, earliest, Retrans, Timer, TimerAction, TimerConfig};
use bytes::Bytes;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

/// What to do with a response the transaction received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseAction {
    /// Hand it to the transaction user.
    PassToTu,
    /// Hand it to the TU and send this ACK (first non-2xx final response).
    PassToTuAndAck(Bytes),
    /// A retransmitted non-2xx final response: resend the ACK, do not tell the TU.
    ResendAck(Bytes),
    /// Nothing to do (late provisional, or anything after termination).
    Absorb,
}

pub struct ClientInvite {
    state: ClientInviteState,
    cfg: TimerConfig,
    reliable: bool,
    request: Bytes,
    ack: Option<Bytes>,
    timer_a: Option<Retrans>,
    timer_b: Option<Instant>,
    timer_d: Option<Instant>,
    timer_m: Option<Instant>,
    /// RFC 3261 9.1: after a CANCEL, a final response is awaited 64*T1 at most.
    cancel_deadline: Option<Instant>,
}

impl ClientInvite {
    /// Starts in Calling. The owner sends `request` once now; Timer A (unreliable transports
    /// only) and Timer B start.
    pub fn new(now: Instant, request: Bytes, cfg: TimerConfig, reliable: bool) -> Self {
        ClientInvite {
            state: ClientInviteState::Calling,
            cfg,
            reliable,
            request,
            ack: None,
            timer_a: (!reliable).then_some(Retrans {
                at: now + cfg.t1,
                interval: cfg.t1,
            }),
            timer_b: Some(now + cfg.t1x64()),
            timer_d: None,
            timer_m: None,
            cancel_deadline: None,
        }
    }

    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    pub fn request(&self) -> &Bytes {
        &self.request
    }

    /// Feeds a response. `make_ack` builds the ACK for a non-2xx final response (RFC 3261
    /// 17.1.1.3); it is only called when needed.
    pub fn on_response(
        &mut self,
        now: Instant,
        status: u16,
        make_ack: impl FnOnce() -> Bytes,
    ) -> ResponseAction {
        use ClientInviteState::*;
        match (self.state, status) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.timer_a = None;
                // Timer B guards Calling only (17.1.1.2): a phone that rings may ring as long
                // as the TU lets it, and the TU ends that with a CANCEL (see `cancelled`).
                self.timer_b = None;
                ResponseAction::PassToTu
            }
            (Calling | Proceeding, 200..=299) => {
                self.enter_accepted(now);
                ResponseAction::PassToTu
            }
            (Calling | Proceeding, _) => {
                let ack = make_ack();
                self.ack = Some(ack.clone());
                self.state = Completed;
                self.timer_a = None;
                self.timer_b = None;
                self.cancel_deadline = None;
                self.timer_d = Some(if self.reliable {
                    now
                } else {
                    now + std::time::Duration::from_secs(32).max(self.cfg.t1x64())
                });
                ResponseAction::PassToTuAndAck(ack)
            }
            // RFC 6026 7.2: further 2xx are passed up so the TU can ACK each.
            (Accepted, 200..=299) => ResponseAction::PassToTu,
            (Completed, 300..=699) => match &self.ack {
                Some(ack) => ResponseAction::ResendAck(ack.clone()),
                None => ResponseAction::Absorb,
            },
            _ => ResponseAction::Absorb,
        }
    }

    fn enter_accepted(&mut self, now: Instant) {
        self.state = ClientInviteState::Accepted;
        self.timer_a = None;
        self.timer_b = None;
        self.cancel_deadline = None;
        self.timer_m = Some(now + self.cfg.t1x64());
        // The request is not needed any more; drop it to keep idle transactions small.
        self.request = Bytes::new();
    }

    /// The TU sent a CANCEL for this INVITE (RFC 3261 9.1): if no final response arrives
    /// within 64*T1, the transaction times out as though it had been answered with one.
    pub fn cancelled(&mut self, now: Instant) {
        if matches!(
            self.state,
            ClientInviteState::Calling | ClientInviteState::Proceeding
        ) {
            self.cancel_deadline = Some(now + self.cfg.t1x64());
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[
            self.timer_a.map(|r| r.at),
            self.timer_b,
            self.timer_d,
            self.timer_m,
            self.cancel_deadline,
        ])
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        if due(self.cancel_deadline, now) {
            self.cancel_deadline = None;
            self.timer_a = None;
            self.timer_b = None;
            self.state = ClientInviteState::Terminated;
            return Some(TimerAction::Timeout(Timer::Cancelled));
        }
        if due(self.timer_b, now) {
            self.timer_b = None;
            self.timer_a = None;
            self.state = ClientInviteState::Terminated;
            return Some(TimerAction::Timeout(Timer::B));
        }
        if let Some(a) = self.timer_a.filter(|a| a.at <= now) {
            // Timer A doubles each time; RFC 3261 does not cap it at T2 (only E and G are).
            let interval = a.interval * 2;
            self.timer_a = Some(Retrans {
                at: now + interval,
                interval,
            });
            return Some(TimerAction::Retransmit(self.request.clone()));
        }
        if due(self.timer_d, now) {
            self.timer_d = None;
            self.state = ClientInviteState::Terminated;
            return Some(TimerAction::Terminated(Timer::D));
        }
        if due(self.timer_m, now) {
            self.timer_m = None;
            self.state = ClientInviteState::Terminated;
            return Some(TimerAction::Terminated(Timer::M));
        }
        None
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{ms, run};
    use super::*;

    fn tx(now: Instant, reliable: bool) -> ClientInvite {
        ClientInvite::new(
            now,
            Bytes::from_static(b"INVITE"),
            TimerConfig::default(),
            reliable,
        )
    }

    #[test]
    fn timer_a_doubles_until_timer_b() {
        let t0 = Instant::now();
        let mut t = tx(t0, false);
        let tx = std::cell::RefCell::new(&mut t);
        let out = run(
            t0,
            ms(40_000),
            || tx.borrow().poll_timeout(),
            |n| tx.borrow_mut().handle_timeout(n),
        );
        let times: Vec<u64> = out.iter().map(|(t, _)| *t).collect();
        // 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s, then Timer B at 32 s.
        assert_eq!(times, vec![500, 1500, 3500, 7500, 15500, 31500, 32000]);
        assert_eq!(out.last().unwrap().1, TimerAction::Timeout(Timer::B));
        assert!(t.is_terminated());
    }

    #[test]
    fn reliable_has_no_timer_a() {
        let t0 = Instant::now();
        let mut t = tx(t0, true);
        assert_eq!(t.poll_timeout(), Some(t0 + ms(32_000)));
        assert_eq!(
            t.handle_timeout(t0 + ms(32_000)),
            Some(TimerAction::Timeout(Timer::B))
        );
    }

    #[test]
    fn a_cancelled_invite_without_a_final_response_times_out_after_64_t1() {
        let t0 = Instant::now();
        let mut t = tx(t0, false);
        t.on_response(t0 + ms(100), 180, || unreachable!());
        t.cancelled(t0 + ms(40_000));
        assert_eq!(t.poll_timeout(), Some(t0 + ms(72_000)));
        assert_eq!(
            t.handle_timeout(t0 + ms(72_000)),
            Some(TimerAction::Timeout(Timer::Cancelled))
        );
        assert!(t.is_terminated());
        // The 487 in time ends it the ordinary way instead.
        let mut t = tx(t0, false);
        t.on_response(t0 + ms(100), 180, || unreachable!());
        t.cancelled(t0 + ms(1_000));
        let acked = t.on_response(t0 + ms(1_100), 487, || Bytes::from_static(b"ACK"));
        assert_eq!(
            acked,
            ResponseAction::PassToTuAndAck(Bytes::from_static(b"ACK"))
        );
        assert_eq!(t.state(), ClientInviteState::Completed);
    }

    #[test]
    fn provisional_stops_a_and_b_and_2xx_enters_accepted_then_m() {
        let t0 = Instant::now();
        let mut t = tx(t0, false);
        assert_eq!(
            t.on_response(t0 + ms(100), 180, || unreachable!()),
            ResponseAction::PassToTu
        );
        assert_eq!(t.state(), ClientInviteState::Proceeding);
        // Timer B guards Calling only: a ringing phone may ring past 64*T1.
        assert_eq!(t.poll_timeout(), None, "no timer while it rings");
        assert_eq!(
            t.on_response(t0 + ms(200), 200, || unreachable!()),
            ResponseAction::PassToTu
        );
        assert_eq!(t.state(), ClientInviteState::Accepted);
        // A retransmitted 2xx still goes to the TU (it must ACK again).
        assert_eq!(
            t.on_response(t0 + ms(700), 200, || unreachable!()),
            ResponseAction::PassToTu
        );
        assert_eq!(t.poll_timeout(), Some(t0 + ms(200 + 32_000)));
        assert_eq!(
            t.handle_timeout(t0 + ms(32_200)),
            Some(TimerAction::Terminated(Timer::M))
        );
        assert!(t.is_terminated());
    }

    #[test]
    fn non_2xx_acks_absorbs_retransmissions_then_timer_d() {
        let t0 = Instant::now();
        let mut t = tx(t0, false);
        let a = t.on_response(t0 + ms(10), 486, || Bytes::from_static(b"ACK"));
        assert_eq!(
            a,
            ResponseAction::PassToTuAndAck(Bytes::from_static(b"ACK"))
        );
        assert_eq!(
            t.on_response(t0 + ms(20), 486, || unreachable!()),
            ResponseAction::ResendAck(Bytes::from_static(b"ACK"))
        );
        assert_eq!(
            t.on_response(t0 + ms(20), 180, || unreachable!()),
            ResponseAction::Absorb
        );
        assert_eq!(t.poll_timeout(), Some(t0 + ms(32_010)));
        assert_eq!(
            t.handle_timeout(t0 + ms(32_010)),
            Some(TimerAction::Terminated(Timer::D))
        );
    }

    #[test]
    fn reliable_non_2xx_terminates_at_once() {
        let t0 = Instant::now();
        let mut t = tx(t0, true);
        t.on_response(t0, 603, || Bytes::from_static(b"ACK"));
        assert_eq!(
            t.handle_timeout(t0),
            Some(TimerAction::Terminated(Timer::D))
        );
    }
}
