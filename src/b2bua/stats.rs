//! Per-queue service figures over a rolling window, for the metrics: service level (answered
//! within the queue's threshold / answered), average speed of answer, abandonment. The
//! window is 60 buckets of 15 s (15 minutes), so memory stays constant at any call rate.

use std::time::{Duration, Instant};

const BUCKETS: usize = 60;
const BUCKET: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Which 15 s slot since `start` this bucket holds (stale buckets are skipped).
    slot: u64,
    answered: u64,
    within: u64,
    wait_ms: u64,
    abandoned: u64,
}

pub(crate) struct QueueWindow {
    start: Instant,
    threshold: Duration,
    buckets: [Bucket; BUCKETS],
}

/// What the window says now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Figures {
    pub service_level: f64,
    pub asa_s: f64,
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

    pub fn abandoned(&mut self, now: Instant) {
        self.bucket(now).abandoned += 1;
    }

    pub fn figures(&self, now: Instant) -> Figures {
        let slot = (now.saturating_duration_since(self.start).as_secs() / BUCKET.as_secs()) + 1;
        let live = self
            .buckets
            .iter()
            .filter(|b| b.slot != 0 && b.slot + (BUCKETS as u64) > slot && b.slot <= slot);
        let (mut answered, mut within, mut wait, mut abandoned) = (0, 0, 0, 0);
        for b in live {
            answered += b.answered;
            within += b.within;
            wait += b.wait_ms;
            abandoned += b.abandoned;
        }
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Figures {
            service_level: if answered == 0 {
                1.0
            } else {
                ratio(within, answered)
            },
            asa_s: ratio(wait, answered) / 1000.0,
            abandon: ratio(abandoned, answered + abandoned),
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
        w.abandoned(t0 + Duration::from_secs(90));
        w.answered(t0 + Duration::from_secs(100), Duration::from_secs(5));
        let f = w.figures(t0 + Duration::from_secs(120));
        assert!((f.service_level - 2.0 / 3.0).abs() < 1e-9);
        assert!((f.asa_s - 15.0).abs() < 1e-9);
        assert!((f.abandon - 0.25).abs() < 1e-9);
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
