//! The record writer's store path: one transaction applying the state changes of many
//! calls, on a real file (WAL, synchronous = FULL, so each commit includes an fsync).
//!
//! Machine: x86_64, 2 cores (the project's standard machine), 2026-11-25.
//! Target: the engine's full call rate, 3,200 calls/s with five changes each (arrived,
//! offered, answered, digit, ended), without a growing backlog.
//! Results (`cargo bench --bench records`, ext4 on the VM's virtio disk):
//!   commit 1 call x 5 changes      175 µs  (the idle case: one fsync per commit) → 5,700 calls/s
//!   commit 32 calls x 5 changes    688 µs  → 46,500 calls/s
//!   commit 320 calls x 5 changes   4.06 ms → 79,000 calls/s
//! The writer commits whatever queued during the previous commit, so under load batches
//! grow until it keeps up: 3,200 calls/s needs batches of ~1 call at these costs.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dasan::records::sqlite::SqliteStore;
use dasan::records::{Outcome, RecordEvent, Store};

fn call_events(n: u64, base: u64) -> Vec<RecordEvent> {
    let mut v = Vec::with_capacity(n as usize * 5);
    for i in base..base + n {
        let id = format!("{i:016x}");
        let at = i as i64 * 10;
        v.push(RecordEvent::Arrived {
            id: id.clone(),
            sip_call_id: format!("{i}@carrier"),
            trunk: "carrier".into(),
            caller: "0212345678".into(),
            dialled: "120".into(),
            channel: "voice",
            queue: "general".into(),
            language: "ko".into(),
            at_ms: at,
        });
        v.push(RecordEvent::Offered {
            id: id.clone(),
            agent: "1001".into(),
            at_ms: at + 1,
        });
        v.push(RecordEvent::Answered {
            id: id.clone(),
            agent: "1001".into(),
            at_ms: at + 2,
        });
        v.push(RecordEvent::Digit {
            id: id.clone(),
            digit: '1',
        });
        v.push(RecordEvent::Ended {
            id,
            outcome: Outcome::Answered,
            side: "caller",
            sip_cause: 200,
            at_ms: at + 3,
        });
    }
    v
}

fn benches(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("dasan-bench-records-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut store = SqliteStore::open(&dir.join("records.db")).expect("open");
    let mut g = c.benchmark_group("record writer");
    // A batch is what accumulates during one commit: at 3,200 calls/s and a few ms per
    // commit, some tens of calls; 1 call is the idle case (one fsync per change set).
    for calls in [1u64, 32, 320] {
        g.throughput(Throughput::Elements(calls));
        let mut base = 0;
        g.bench_function(format!("commit {calls} calls x 5 changes"), |b| {
            b.iter(|| {
                let evs = call_events(calls, base);
                base += calls;
                store.apply(&evs).expect("apply");
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(group, benches);
criterion_main!(group);
