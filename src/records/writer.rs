//! The path from the engine to the store. [`RecordSink`] lives in the driver and never
//! waits: events go into a bounded queue, or, when it is full, into an in-memory overflow
//! list that is retried first (counted in `dasan_record_queue_full_total`, logged once per
//! episode). The writer thread owns the store and commits whatever is queued as one
//! transaction, as soon as the previous commit is done: under load batches grow, at rest
//! each change is on disk within one fsync.

use super::{RecordEvent, Store};
use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest batch per transaction.
const MAX_BATCH: usize = 8192;

pub struct RecordSink {
    tx: SyncSender<RecordEvent>,
    overflow: VecDeque<RecordEvent>,
    metrics: Arc<Metrics>,
    committed: Arc<AtomicU64>,
    notify: Arc<tokio::sync::Notify>,
}

impl RecordSink {
    pub fn push(&mut self, ev: RecordEvent) {
        self.metrics.record_backlog.inc();
        if self.overflow.is_empty() {
            match self.tx.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) => {
                    tracing::warn!("record writer behind: changes wait in memory");
                    self.metrics.record_overflow.inc();
                    self.overflow.push_back(ev);
                }
                Err(TrySendError::Disconnected(ev)) => {
                    tracing::error!(call = ev.id(), "record writer gone: change kept in memory");
                    self.overflow.push_back(ev);
                }
            }
        } else {
            self.metrics.record_overflow.inc();
            self.overflow.push_back(ev);
            self.pump();
        }
    }

    /// Moves overflowed events into the queue as space frees up. The driver calls this
    /// every loop iteration.
    pub fn pump(&mut self) {
        while let Some(ev) = self.overflow.pop_front() {
            match self.tx.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) | Err(TrySendError::Disconnected(ev)) => {
                    self.overflow.push_front(ev);
                    return;
                }
            }
        }
    }

    pub fn overflowed(&self) -> usize {
        self.overflow.len()
    }

    /// How many events (in push order) are durable.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Notified after each commit.
    pub fn commits(&self) -> Arc<tokio::sync::Notify> {
        self.notify.clone()
    }
}

/// Starts the writer thread on `store` with a queue of `capacity` events. The thread ends
/// when the sink is dropped and everything queued is written.
pub fn start(
    store: Box<dyn Store>,
    capacity: usize,
    flush_interval: Duration,
    metrics: Arc<Metrics>,
) -> (RecordSink, std::thread::JoinHandle<()>) {
    let (tx, rx) = sync_channel(capacity);
    let m = metrics.clone();
    let committed = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(tokio::sync::Notify::new());
    let (c, n) = (committed.clone(), notify.clone());
    let handle = std::thread::Builder::new()
        .name("record-writer".into())
        .spawn(move || run(store, rx, flush_interval, m, c, n))
        .expect("spawn the record writer thread");
    (
        RecordSink {
            tx,
            overflow: VecDeque::new(),
            metrics,
            committed,
            notify,
        },
        handle,
    )
}

fn run(
    mut store: Box<dyn Store>,
    rx: Receiver<RecordEvent>,
    flush_interval: Duration,
    metrics: Arc<Metrics>,
    committed: Arc<AtomicU64>,
    notify: Arc<tokio::sync::Notify>,
) {
    // The engine's loop comes first when both want a core: a commit a little later only
    // delays acknowledgements, a late engine delays every call and message. Linux takes a
    // nice value per thread; nothing is lost if it is refused.
    // SAFETY: setpriority and gettid read and set this thread's own scheduling value.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 5);
    }
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            let t = Instant::now();
            match store.apply(&batch) {
                Ok(()) => {
                    let took = t.elapsed();
                    metrics.record_commit.observe(took.as_secs_f64());
                    if took > flush_interval {
                        tracing::warn!(
                            ms = took.as_millis() as u64,
                            "record commit slower than flush_interval_ms"
                        );
                    }
                    break;
                }
                // Never drop a record: keep the batch and retry (disk full, locked file).
                Err(e) => {
                    tracing::error!("records not written, retrying: {e}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        metrics.records_written.inc_by(batch.len() as u64);
        metrics.record_backlog.sub(batch.len() as i64);
        committed.fetch_add(batch.len() as u64, Ordering::Release);
        notify.notify_one();
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::sqlite::SqliteStore;
    use crate::records::{Outcome, RecordQuery};

    #[test]
    fn a_full_queue_never_blocks_or_loses_events() {
        let dir = std::env::temp_dir().join(format!("dasan-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.db");
        let _ = std::fs::remove_file(&path);
        let metrics = Arc::new(Metrics::new().unwrap());
        let store = SqliteStore::open(&path).unwrap();
        // A queue of 4: most of these 3,000 events overflow into memory.
        let (mut sink, handle) = start(
            Box::new(store),
            4,
            Duration::from_millis(100),
            metrics.clone(),
        );
        let t = Instant::now();
        for i in 0..1000 {
            let id = format!("c{i:04}");
            sink.push(RecordEvent::Arrived {
                id: id.clone(),
                sip_call_id: id.clone(),
                trunk: "t".into(),
                caller: "010".into(),
                dialled: "120".into(),
                channel: "voice",
                queue: "general".into(),
                language: "ko".into(),
                at_ms: i,
            });
            sink.push(RecordEvent::Digit {
                id: id.clone(),
                digit: '9',
            });
            sink.push(RecordEvent::Ended {
                id,
                outcome: Outcome::Abandoned,
                side: "caller",
                sip_cause: 487,
                at_ms: i + 5,
            });
        }
        assert!(t.elapsed() < Duration::from_secs(1), "push never waits");
        assert!(metrics.record_overflow.get() > 0, "the queue did fill");
        while sink.overflowed() > 0 {
            sink.pump();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(sink.committed() <= 3000);
        drop(sink);
        handle.join().unwrap();
        assert_eq!(metrics.records_written.get(), 3000);
        assert_eq!(metrics.record_backlog.get(), 0);
        let mut store = SqliteStore::open(&path).unwrap();
        let all = store
            .query(&RecordQuery {
                limit: 5000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 1000);
        assert!(all
            .iter()
            .all(|r| r.outcome.as_deref() == Some("abandoned") && r.dtmf == "9"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
