//! Opening hours: a queue with `hours` takes calls only between them (local time at the
//! centre's UTC offset); outside them its calls go to its closed fallback, if that is open.

use super::Engine;
use crate::acd::QueueIdx;
use std::time::{Duration, Instant};

impl Engine {
    /// Whether queue `q` is within its opening hours at `now` (local time).
    pub(crate) fn queue_open(&self, q: QueueIdx, now: Instant) -> bool {
        let Some((start, end)) = self.cfg.queues[q].hours else {
            return true;
        };
        let local_s = (self.unix_ms(now) / 1000 + self.cfg.utc_offset_s).rem_euclid(86_400);
        let minute = (local_s / 60) as u32;
        if start < end {
            (start..end).contains(&minute)
        } else {
            minute >= start || minute < end
        }
    }

    /// The queue a call for `q` goes to now: `q` itself when open, else its closed
    /// fallback (with the prompt to play first); None when neither is open.
    pub(crate) fn open_queue(
        &self,
        q: QueueIdx,
        now: Instant,
    ) -> Option<(QueueIdx, Option<String>)> {
        if self.queue_open(q, now) {
            return Some((q, None));
        }
        let t = &self.cfg.queues[q];
        let f = t.closed_fallback.filter(|f| self.queue_open(*f, now))?;
        Some((f, t.closed_prompt.clone()))
    }

    /// The next time queue `q` opens (None: it has no hours).
    pub(crate) fn next_opening(&self, q: QueueIdx, now: Instant) -> Option<Instant> {
        let (start, _) = self.cfg.queues[q].hours?;
        let local_s = (self.unix_ms(now) / 1000 + self.cfg.utc_offset_s).rem_euclid(86_400);
        let wait = (start as i64 * 60 - local_s).rem_euclid(86_400);
        Some(now + Duration::from_secs(wait as u64))
    }
}
