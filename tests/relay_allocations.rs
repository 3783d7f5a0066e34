//! A packet relayed between two bridged legs of the same codec allocates nothing: the
//! buffer it arrived in is rewritten in place and sent on, and the session's own scratch
//! space is reused. Counted with a global allocator that tallies this thread's allocations.

use dasan::media::bridge::LegId;
use dasan::media::rtp::build_rtp;
use dasan::media::sdp::{Codec, Negotiated};
use dasan::media::session::{Command, MediaSession, Music, Output};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_relayed_packet_allocates_nothing() {
    let caller: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let agent: SocketAddr = "127.0.0.1:40002".parse().unwrap();
    let t0 = Instant::now();
    let mut s = MediaSession::new(
        t0,
        SystemTime::now(),
        &Negotiated::simple(Codec::Pcmu, 0, caller),
        caller.ip(),
        7,
        Duration::from_secs(30),
        Music::Silence,
    );
    let mut out = Vec::with_capacity(16);
    s.handle_command(
        t0,
        Command::Attach {
            agent: Negotiated::simple(Codec::Pcmu, 0, agent),
            signalling: agent.ip(),
            ssrc: 9,
            record: false,
        },
        &mut out,
    )
    .unwrap();
    out.clear();
    // Buffers made before counting, as the relay thread's pool holds them.
    let mut pool: Vec<Vec<u8>> = (0..4).map(|_| Vec::with_capacity(2048)).collect();
    let mut relay = |i: u16, count: bool| {
        let before = ALLOCATIONS.with(|c| c.get());
        let (from, src) = if i.is_multiple_of(2) {
            (LegId::Caller, caller)
        } else {
            (LegId::Agent, agent)
        };
        let mut p = pool.pop().expect("a pooled buffer");
        p.clear();
        p.extend_from_slice(&build_packet(i));
        // Built outside the count: the phone's packet is not the relay's allocation.
        let start = ALLOCATIONS.with(|c| c.get());
        let now = t0 + Duration::from_millis(u64::from(i) * 10);
        s.handle_packet(now, from, src, p, &mut out).unwrap();
        let mut sent = 0;
        for o in out.drain(..) {
            if let Output::Send { packet, .. } = o {
                sent += 1;
                pool.push(packet);
            }
        }
        let during = ALLOCATIONS.with(|c| c.get()) - start;
        assert_eq!(sent, 1, "packet {i} relayed");
        if count {
            assert_eq!(
                during, 0,
                "packet {i}: {during} allocations (before: {before})"
            );
        }
    };
    // The first packets of each leg latch its source and may size the session's tables.
    for i in 0..10 {
        relay(i, false);
    }
    for i in 10..1010 {
        relay(i, true);
    }
}

fn build_packet(i: u16) -> Vec<u8> {
    build_rtp(
        0,
        false,
        i / 2,
        u32::from(i / 2) * 160,
        0xA0 + u32::from(i % 2),
        &[0x55; 160],
    )
}
