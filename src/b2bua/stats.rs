//! Per-queue service figures over a rolling window, for the metrics and the API: offered,
//! answered, abandoned (short abandons under 5 s counted apart), service level (answered
//! within the queue's threshold / answered), SL2 as Asterisk defines it (answered within
//! plus abandoned within, over answered plus abandoned), average speed of answer, average
//! talk. The window is 60 buckets of 15 s (15 minutes), so memory stays constant at any
//! call rate.

use std::time::{Duration, Instant};

const BUCKETS: usize = 60;
const BUCKET: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Which 15 s slot since `start` this bucket holds (stale buckets are skipped).
    slot: u64,
    offered: u64,
    answered: u64,
    within: u64,
    wait_ms: u64,
    abandoned: u64,
    abandoned_within: u64,
    short_abandoned: u64,
    talked: u64,
    talk_ms: u64,
    wrapped: u64,
    wrap_ms: u64,
}

/// Abandons this short are counted apart (a caller who dialled by mistake).
const SHORT_ABANDON: Duration = Duration::from_secs(5);

pub(crate) struct QueueWindow {
    start: Instant,
    threshold: Duration,
    buckets: [Bucket; BUCKETS],
}

/// What the window says now.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Figures {
    pub offered: u64,
    pub answered: u64,
    /// Abandoned after SHORT_ABANDON or more.
    pub abandoned: u64,
    pub short_abandoned: u64,
    pub service_level: f64,
    pub service_level_2: f64,
    pub asa_s: f64,
    pub average_talk_s: f64,
    /// Measured: from the call's end until the agent left wrap-up (0 for queues without).
    pub average_wrap_up_s: f64,
    pub abandon: f64,
}

impl QueueWindow {
    pub fn new(start: Instant, threshold: Duration) -> QueueWindow {
        QueueWindow {
            start,
            threshold,
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    fn bucket(&mut self, now: Instant) -> &mut Bucket {
        let slot = (now.saturating_duration_since(self.start).as_secs() / BUCKET.as_secs()) + 1;
        let b = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if b.slot != slot {
            *b = Bucket {
                slot,
                ..Bucket::default()
            };
        }
        b
    }

    pub fn answered(&mut self, now: Instant, wait: Duration) {
        let within = wait <= self.threshold;
        let b = self.bucket(now);
        b.answered += 1;
        b.within += within as u64;
        b.wait_ms += wait.as_millis() as u64;
    }

    pub fn offered(&mut self, now: Instant) {
        self.bucket(now).offered += 1;
    }

    pub fn abandoned(&mut self, now: Instant, waited: Duration) {
        let within = waited <= self.threshold;
        let b = self.bucket(now);
        if waited < SHORT_ABANDON {
            b.short_abandoned += 1;
        } else {
            b.abandoned += 1;
            b.abandoned_within += within as u64;
        }
    }

    pub fn talked(&mut self, now: Instant, talk: Duration) {
        let b = self.bucket(now);
        b.talked += 1;
        b.talk_ms += talk.as_millis() as u64;
    }

    pub fn wrapped_up(&mut self, now: Instant, wrap: Duration) {
        let b = self.bucket(now);
        b.wrapped += 1;
        b.wrap_ms += wrap.as_millis() as u64;
    }

    pub fn figures(&self, now: Instant) -> Figures {
        let slot = (now.saturating_duration_since(self.start).as_secs() / BUCKET.as_secs()) + 1;
        let live = self
            .buckets
            .iter()
            .filter(|b| b.slot != 0 && b.slot + (BUCKETS as u64) > slot && b.slot <= slot);
        let mut t = Bucket::default();
        for b in live {
            t.offered += b.offered;
            t.answered += b.answered;
            t.within += b.within;
            t.wait_ms += b.wait_ms;
            t.abandoned += b.abandoned;
            t.abandoned_within += b.abandoned_within;
            t.short_abandoned += b.short_abandoned;
            t.talked += b.talked;
            t.talk_ms += b.talk_ms;
            t.wrapped += b.wrapped;
            t.wrap_ms += b.wrap_ms;
        }
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Figures {
            offered: t.offered,
            answered: t.answered,
            abandoned: t.abandoned,
            short_abandoned: t.short_abandoned,
            service_level: if t.answered == 0 {
                1.0
            } else {
                ratio(t.within, t.answered)
            },
            service_level_2: if t.answered + t.abandoned == 0 {
                1.0
            } else {
                ratio(t.within + t.abandoned_within, t.answered + t.abandoned)
            },
            asa_s: ratio(t.wait_ms, t.answered) / 1000.0,
            average_talk_s: ratio(t.talk_ms, t.talked) / 1000.0,
            average_wrap_up_s: ratio(t.wrap_ms, t.wrapped) / 1000.0,
            abandon: ratio(t.abandoned, t.answered + t.abandoned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_level_asa_and_abandonment_over_fifteen_minutes() {
        let t0 = Instant::now();
        let mut w = QueueWindow::new(t0, Duration::from_secs(20));
        assert_eq!(w.figures(t0).service_level, 1.0, "no calls: nothing missed");
        w.answered(t0, Duration::from_secs(10));
        w.answered(t0 + Duration::from_secs(60), Duration::from_secs(30));
        w.abandoned(t0 + Duration::from_secs(90), Duration::from_secs(15));
        w.abandoned(t0 + Duration::from_secs(95), Duration::from_secs(2));
        w.answered(t0 + Duration::from_secs(100), Duration::from_secs(5));
        w.talked(t0 + Duration::from_secs(110), Duration::from_secs(100));
        w.talked(t0 + Duration::from_secs(111), Duration::from_secs(200));
        let f = w.figures(t0 + Duration::from_secs(120));
        assert!((f.service_level - 2.0 / 3.0).abs() < 1e-9);
        assert!(
            (f.service_level_2 - 3.0 / 4.0).abs() < 1e-9,
            "the 15 s abandon was within 20 s"
        );
        assert!((f.asa_s - 15.0).abs() < 1e-9);
        assert!((f.abandon - 0.25).abs() < 1e-9, "the 2 s abandon is short");
        assert_eq!((f.abandoned, f.short_abandoned), (1, 1));
        assert!((f.average_talk_s - 150.0).abs() < 1e-9);
        assert_eq!(f.average_wrap_up_s, 0.0, "no wrap-up yet");
        w.wrapped_up(t0 + Duration::from_secs(112), Duration::from_secs(10));
        w.wrapped_up(t0 + Duration::from_secs(113), Duration::from_secs(4));
        let f = w.figures(t0 + Duration::from_secs(120));
        assert!((f.average_wrap_up_s - 7.0).abs() < 1e-9);
        // Sixteen minutes later the first two have left the window.
        let later = t0 + Duration::from_secs(16 * 60 + 50);
        w.answered(later, Duration::from_secs(1));
        let f = w.figures(later);
        assert_eq!(f.service_level, 1.0, "{f:?}");
        assert_eq!(f.abandon, 0.0);
        // An hour of silence empties it.
        let f = w.figures(t0 + Duration::from_secs(3 * 3600));
        assert_eq!((f.asa_s, f.abandon), (0.0, 0.0));
    }
}
