//! The audio relay threads: each owns an `epoll` set holding the RTP and RTCP sockets of
//! many calls, and serves them all from one loop — one wait for every socket that is
//! ready, one read on each, the call's sans-IO [`MediaSession`](crate::media::session)
//! under its lock, then the sends. A task per call cost a wake-up, a channel poll and a
//! read that found nothing for every packet; here a packet costs its read and its send.
//!
//! The engine's commands and the browser bridges' kicks arrive over a channel with an
//! `eventfd` in the same set. Deadlines (prompt frames, RTCP, the media timeout) sit in a
//! heap; a deadline that moves later (each packet moves the media timeout) is not pushed
//! again, it is found moved when its entry comes up.

use super::kfwd::{Counts, Kfwd, Rule};
use super::media::{open_recording, record, CallCore, CallIo, Ctl};
use super::udp::{Epoll, EventFd, RecvBatch};
use crate::media::bridge::{LegId, MediaEvent};
use crate::media::session::{Forwarded, Output};
use crate::runtime::Registration;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TrySendError;

const WAKE: u64 = u64::MAX;
/// Packet buffers kept for reuse.
const POOL: usize = 4096;

pub(super) struct Started {
    pub call: u64,
    pub core: Arc<Mutex<CallCore>>,
    pub io: Arc<CallIo>,
    pub registration: Registration,
}

pub(super) enum Msg {
    Start(Box<Started>),
    Ctl(u64, Ctl),
    Stop(u64),
    /// A browser bridge's packet, handled in the bridge's task, left work for the loop
    /// (events to send, a failure, an earlier deadline).
    Kick(u64),
}

impl Msg {
    fn call(&self) -> u64 {
        match self {
            Msg::Start(s) => s.call,
            Msg::Ctl(call, _) | Msg::Stop(call) | Msg::Kick(call) => *call,
        }
    }
}

/// One relay thread, as the media plane holds it.
pub(super) struct Worker {
    tx: mpsc::Sender<Msg>,
    wake: Arc<EventFd>,
    closed: Arc<AtomicBool>,
    /// Calls it serves, to spread new ones.
    pub load: Arc<AtomicUsize>,
}

/// What a call's sink uses to hand work back to its relay thread.
#[derive(Clone)]
pub(super) struct Kicker {
    tx: mpsc::Sender<Msg>,
    wake: Arc<EventFd>,
    call: u64,
}

impl Kicker {
    pub fn kick(&self) {
        if self.tx.send(Msg::Kick(self.call)).is_ok() {
            self.wake.notify();
        }
    }
}

impl Worker {
    pub fn spawn(
        index: usize,
        events: tokio::sync::mpsc::Sender<MediaEvent>,
        kfwd: Option<Arc<Kfwd>>,
    ) -> std::io::Result<Worker> {
        let (tx, rx) = mpsc::channel();
        let wake = Arc::new(EventFd::new()?);
        let closed = Arc::new(AtomicBool::new(false));
        let load = Arc::new(AtomicUsize::new(0));
        let epoll = Epoll::new(1024)?;
        epoll.add(wake.raw(), WAKE)?;
        let mut lp = Loop {
            epoll,
            rx,
            wake: wake.clone(),
            closed: closed.clone(),
            load: load.clone(),
            slots: Vec::new(),
            free: Vec::new(),
            by_call: HashMap::new(),
            timers: BinaryHeap::new(),
            batch: RecvBatch::new(1, 2048),
            ready: Vec::with_capacity(1024),
            pool: Vec::new(),
            pending: Vec::with_capacity(16),
            events,
            backlog: VecDeque::new(),
            kfwd,
        };
        std::thread::Builder::new()
            .name(format!("dasan-relay-{index}"))
            .spawn(move || lp.run())?;
        Ok(Worker {
            tx,
            wake,
            closed,
            load,
        })
    }

    /// Hands the thread a new call (counted at once, so that calls started together are
    /// spread). False when the thread is gone.
    pub fn start(&self, s: Started) -> bool {
        self.load.fetch_add(1, Ordering::Relaxed);
        self.send(Msg::Start(Box::new(s)))
    }

    /// False when the thread is gone.
    pub fn send(&self, m: Msg) -> bool {
        let ok = self.tx.send(m).is_ok();
        self.wake.notify();
        ok
    }

    pub fn kicker(&self, call: u64) -> Kicker {
        Kicker {
            tx: self.tx.clone(),
            wake: self.wake.clone(),
            call,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The calls' sinks hold senders too, so the channel alone would not close.
        self.closed.store(true, Ordering::Release);
        self.wake.notify();
    }
}

struct Entry {
    call: u64,
    core: Arc<Mutex<CallCore>>,
    io: Arc<CallIo>,
    registration: Option<Registration>,
    /// The session's next deadline, as last seen.
    deadline: Instant,
    /// The earliest time this call has in the heap.
    pushed: Option<Instant>,
    /// Per leg the packets come from: the rule forwarding them in the kernel, and its
    /// counters as far as the session has them.
    fwd: [Option<(Rule, Counts)>; 2],
}

struct Loop {
    epoll: Epoll,
    rx: mpsc::Receiver<Msg>,
    wake: Arc<EventFd>,
    closed: Arc<AtomicBool>,
    load: Arc<AtomicUsize>,
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    by_call: HashMap<u64, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    batch: RecvBatch,
    ready: Vec<u64>,
    pool: Vec<Vec<u8>>,
    pending: Vec<Output>,
    events: tokio::sync::mpsc::Sender<MediaEvent>,
    /// Events the engine must get that did not fit its channel yet.
    backlog: VecDeque<MediaEvent>,
    /// In-kernel forwarding of bridged directions, when loaded.
    kfwd: Option<Arc<Kfwd>>,
}

/// How a call's step ended.
enum After {
    Goes,
    Ends,
}

impl Loop {
    fn run(&mut self) {
        while !self.closed.load(Ordering::Acquire) {
            let timeout = self.timeout_ms();
            self.ready.clear();
            self.ready.extend(self.epoll.wait(timeout));
            for i in 0..self.ready.len() {
                match self.ready[i] {
                    WAKE => {
                        self.wake.clear();
                        while let Ok(m) = self.rx.try_recv() {
                            let call = m.call();
                            let hit =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    self.message(m)
                                }));
                            if let (Err(_), Some(&slot)) = (hit, self.by_call.get(&call)) {
                                self.failed(slot, "media relay panicked on a command");
                            }
                        }
                    }
                    t => {
                        let (slot, sock) = ((t >> 2) as usize, (t & 3) as usize);
                        // A bug reached by one call's packet must not end every call this
                        // thread serves: that call fails, the others go on.
                        let hit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            self.readable(slot, sock)
                        }));
                        if hit.is_err() {
                            self.failed(slot, "media relay panicked on a packet");
                        }
                    }
                }
            }
            self.fire_timers();
            self.flush_backlog();
        }
        for slot in 0..self.slots.len() {
            self.end(slot);
        }
    }

    fn timeout_ms(&self) -> i32 {
        let mut ms = match self.timers.peek() {
            None => -1,
            Some(Reverse((t, ..))) => {
                let left = t.saturating_duration_since(Instant::now());
                // Rounded up: waking a little late is fine, spinning until the deadline is not.
                left.as_micros().div_ceil(1000).min(60_000) as i32
            }
        };
        if !self.backlog.is_empty() && !(0..=5).contains(&ms) {
            ms = 5;
        }
        ms
    }

    fn message(&mut self, m: Msg) {
        match m {
            Msg::Start(s) => self.start(*s),
            Msg::Ctl(call, ctl) => {
                let Some(&slot) = self.by_call.get(&call) else {
                    return;
                };
                match ctl {
                    Ctl::Record(path) => {
                        if let Some(e) = self.slots[slot].as_ref() {
                            crate::runtime::lock(&e.core).recorder = open_recording(call, &path);
                        }
                    }
                    Ctl::Cmd(cmd) => self.step(slot, |c, now| {
                        if let Err(e) = c.session.handle_command(now, cmd, &mut c.out) {
                            c.failed.get_or_insert_with(|| e.to_string());
                        }
                    }),
                }
            }
            Msg::Stop(call) => {
                if let Some(&slot) = self.by_call.get(&call) {
                    self.end(slot);
                }
            }
            Msg::Kick(call) => {
                if let Some(&slot) = self.by_call.get(&call) {
                    self.step(slot, |_, _| {});
                }
            }
        }
    }

    fn start(&mut self, s: Started) {
        if let Some(old) = self.by_call.get(&s.call).copied() {
            self.end(old);
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        for (i, sock) in s.io.socks.iter().enumerate() {
            if let Err(e) = self
                .epoll
                .add(sock.as_raw_fd(), (slot as u64) << 2 | i as u64)
            {
                tracing::warn!(call = s.call, "media sockets not watched: {e}");
            }
        }
        let deadline = crate::runtime::lock(&s.core).armed;
        self.slots[slot] = Some(Entry {
            call: s.call,
            core: s.core,
            io: s.io,
            registration: Some(s.registration),
            deadline,
            pushed: None,
            fwd: [None, None],
        });
        self.by_call.insert(s.call, slot);
        self.schedule(slot);
    }

    /// Datagrams on socket `sock` of the call in `slot`.
    fn readable(&mut self, slot: usize, sock: usize) {
        let Some(fd) = self
            .slots
            .get(slot)
            .and_then(|e| e.as_ref())
            .map(|e| e.io.socks[sock].as_raw_fd())
        else {
            return;
        };
        let leg = match sock {
            0 => LegId::Caller,
            2 => LegId::Agent,
            // RTCP from the peers is read and dropped: each leg gets our own reports.
            _ => {
                let _ = self.batch.recv(fd);
                return;
            }
        };
        // One datagram per readiness: a leg's socket rarely holds two (one packet per 20 ms),
        // and asking for more costs a second, empty read in the kernel; one still queued is
        // reported again by the next wait (level-triggered).
        let Ok(1) = self.batch.recv(fd) else {
            return;
        };
        let Some(d) = self.batch.get(0) else {
            return;
        };
        let mut packet = self.pool.pop().unwrap_or_else(|| Vec::with_capacity(2048));
        packet.clear();
        packet.extend_from_slice(d.data);
        let src = d.src;
        self.step(slot, |c, now| {
            if let Err(e) = c.session.handle_packet(now, leg, src, packet, &mut c.out) {
                c.failed.get_or_insert_with(|| e.to_string());
            }
        });
    }

    /// Runs `f` on the call's session under its lock, then sends what came out (after the
    /// lock: a packet for a browser runs the bridge's sink, which takes this call's lock).
    fn step(&mut self, slot: usize, f: impl FnOnce(&mut CallCore, Instant)) {
        let Some(e) = self.slots.get_mut(slot).and_then(|e| e.as_mut()) else {
            return;
        };
        let call = e.call;
        let kfwd = self.kfwd.as_deref();
        let failed = {
            let mut guard = crate::runtime::lock(&e.core);
            let c = &mut *guard;
            let now = Instant::now();
            if let Some(k) = kfwd {
                absorb(k, &mut e.fwd, &e.io, c, now);
            }
            f(c, now);
            if let Some(k) = kfwd {
                offload(k, &mut e.fwd, &e.io, c, now);
            }
            for o in c.out.drain(..) {
                match o {
                    Output::Audio { leg, pcm } => record(call, &mut c.recorder, leg, &pcm),
                    o => self.pending.push(o),
                }
            }
            self.pending.append(&mut c.deferred);
            c.armed = c.session.poll_timeout();
            e.deadline = c.armed;
            c.failed.take()
        };
        let io = e.io.clone();
        if let Some(reason) = failed {
            self.pending.clear();
            self.emit(MediaEvent::Failed { call, reason });
            self.end(slot);
            return;
        }
        let mut after = After::Goes;
        for o in std::mem::take(&mut self.pending).drain(..) {
            match o {
                Output::Send { leg, to, packet } => {
                    if let Some(mut buf) = io.send(leg, to, packet, false) {
                        if self.pool.len() < POOL {
                            buf.clear();
                            self.pool.push(buf);
                        }
                    }
                }
                o => match io.settle(o, false) {
                    Some(Output::PromptsDone) => self.emit(MediaEvent::PromptsDone { call }),
                    Some(Output::Timeout) => {
                        self.emit(MediaEvent::Timeout { call });
                        after = After::Ends;
                    }
                    _ => {}
                },
            }
        }
        match after {
            After::Ends => self.end(slot),
            After::Goes => self.schedule(slot),
        }
    }

    fn schedule(&mut self, slot: usize) {
        if let Some(e) = self.slots.get_mut(slot).and_then(|e| e.as_mut()) {
            if e.pushed.is_none_or(|p| e.deadline < p) {
                self.timers.push(Reverse((e.deadline, slot, e.call)));
                e.pushed = Some(e.deadline);
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((t, slot, call))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(e) = self.slots.get_mut(slot).and_then(|e| e.as_mut()) else {
                continue;
            };
            if e.call != call {
                continue;
            }
            if e.pushed == Some(t) {
                e.pushed = None;
            }
            if e.deadline <= now {
                self.step(slot, |c, now| c.session.handle_timeout(now, &mut c.out));
            } else {
                self.schedule(slot);
            }
        }
    }

    /// An event the engine must not miss: waits in the backlog when its channel is full.
    fn emit(&mut self, ev: MediaEvent) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(ev);
            return;
        }
        if let Err(TrySendError::Full(ev)) = self.events.try_send(ev) {
            self.backlog.push_back(ev);
        }
    }

    fn flush_backlog(&mut self) {
        while let Some(ev) = self.backlog.pop_front() {
            match self.events.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) => {
                    self.backlog.push_front(ev);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    /// The call in `slot` cannot go on: the engine hears so and its media ends.
    fn failed(&mut self, slot: usize, reason: &str) {
        let Some(call) = self
            .slots
            .get(slot)
            .and_then(|e| e.as_ref())
            .map(|e| e.call)
        else {
            return;
        };
        tracing::error!(call, "{reason}");
        self.pending.clear();
        self.emit(MediaEvent::Failed {
            call,
            reason: reason.into(),
        });
        self.end(slot);
    }

    /// The call's media ends: its sockets leave the set, its sink the switch, and what it
    /// counted and recorded is settled.
    fn end(&mut self, slot: usize) {
        let Some(mut e) = self.slots.get_mut(slot).and_then(|e| e.take()) else {
            return;
        };
        for sock in e.io.socks.iter() {
            self.epoll.remove(sock.as_raw_fd());
        }
        if let Some(k) = self.kfwd.as_deref() {
            let mut c = crate::runtime::lock(&e.core);
            absorb(k, &mut e.fwd, &e.io, &mut c, Instant::now());
            for (rule, _) in e.fwd.iter().flatten() {
                k.remove(rule.port);
            }
        }
        self.by_call.remove(&e.call);
        self.free.push(slot);
        self.load.fetch_sub(1, Ordering::Relaxed);
        // No more packets through the sink once it is gone.
        drop(e.registration.take());
        let mut c = crate::runtime::lock(&e.core);
        e.io.counters.lost.inc_by(c.session.lost());
        if let Some(r) = c.recorder.take() {
            if let Err(err) = r.finish() {
                tracing::warn!(call = e.call, "recording not finished: {err}");
            }
        }
    }
}

const LEGS: [LegId; 2] = [LegId::Caller, LegId::Agent];

/// What the kernel forwarded for the call since the session last heard reaches it (its
/// statistics, media timeout and stream continuity) and the relay's counters.
fn absorb(
    k: &Kfwd,
    fwd: &mut [Option<(Rule, Counts)>; 2],
    io: &CallIo,
    c: &mut CallCore,
    now: Instant,
) {
    for (i, slot) in fwd.iter_mut().enumerate() {
        let Some((rule, seen)) = slot else {
            continue;
        };
        let Some(n) = k.counts(rule.port) else {
            continue;
        };
        if n.packets <= seen.packets {
            continue;
        }
        let (packets, octets) = (
            n.packets - seen.packets,
            n.octets.saturating_sub(seen.octets),
        );
        let age = super::kfwd::monotonic_ns().saturating_sub(n.last_ns);
        let at = now.checked_sub(Duration::from_nanos(age)).unwrap_or(now);
        c.session.absorb(
            LEGS[i],
            &Forwarded {
                packets,
                octets,
                at,
                last_seq_in: n.last_seq_in,
                last_seq_out: n.last_seq_out,
                last_ts_out: n.last_ts_out,
            },
        );
        io.count_forwarded(packets, octets);
        *seen = n;
    }
}

/// Brings the call's kernel rules in line with what its session would forward by a header
/// rewrite alone: new ones installed, changed ones replaced, gone ones removed.
fn offload(
    k: &Kfwd,
    fwd: &mut [Option<(Rule, Counts)>; 2],
    io: &CallIo,
    c: &mut CallCore,
    now: Instant,
) {
    let wanted = c.session.offloads();
    let mut settled = false;
    for i in 0..2 {
        let prev = fwd[i].as_ref().map(|(r, _)| r);
        let rule = wanted[i]
            .as_ref()
            .and_then(|o| io.kernel_rule(LEGS[i], o, prev));
        if fwd[i].as_ref().map(|(r, _)| r) == rule.as_ref() {
            continue;
        }
        // What the old rule carried since the step began belongs to the session first.
        if fwd[i].is_some() && !settled {
            absorb(k, fwd, io, c, now);
            settled = true;
        }
        if let Some((old, _)) = fwd[i].take() {
            if rule.is_none_or(|r| r.port != old.port) {
                k.remove(old.port);
            }
        }
        if let Some(r) = rule {
            match k.install(&r) {
                Ok(()) => fwd[i] = Some((r, Counts::default())),
                Err(e) => tracing::debug!("kernel forwarding rule not installed: {e}"),
            }
        }
    }
}
