//! RTP between two endpoints of this process, run in the sender's task.
//!
//! A browser agent's call has two media endpoints inside the engine: the media plane's agent
//! leg (which transcodes to the trunk's G.711) and the WebRTC bridge of the agent's session.
//! They still talk RTP to each other, addressed by the socket addresses in the agent leg's
//! SDP, so every other part of the call is unchanged; but a packet whose destination is
//! registered here is handed to the owner's sink, which the sender runs in place, instead of
//! going through the kernel's loopback (a send and a receive system call per packet) and
//! waking the owner's task. The addresses stay bound by real sockets, so nothing else can
//! take them, and a packet to an address not registered here is sent by UDP as before.
//!
//! A sink's work per packet is short and never waits: the browser leg's is SRTP and a
//! non-blocking send, the agent leg's is transcoding and a non-blocking send to the trunk.
//! Each runs under its own endpoint's lock, so a sink never delivers here (what it has for
//! another endpoint goes by UDP) and a task calls [`LocalRtp::deliver`] only with its own
//! endpoint's lock released: no lock is ever taken under another.

use dashmap::DashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Runs a packet (from, data) through its endpoint in the sender's task; false if dropped.
pub type Sink = Arc<dyn Fn(SocketAddr, Vec<u8>) -> bool + Send + Sync>;

/// Every packet of a call looks its destination up here, so the hash is FNV-1a over the
/// address's few bytes rather than SipHash: the keys are our own bound addresses, not
/// chosen by the network, so there is no flooding to defend against.
#[derive(Default)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Map = DashMap<SocketAddr, (u64, Sink), BuildHasherDefault<AddrHasher>>;

/// The in-process endpoints, by the address they own. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct LocalRtp(Arc<Map>);

/// An address registered for in-process delivery, until dropped.
pub struct Registration {
    map: LocalRtp,
    addr: SocketAddr,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Only our own entry: a later registration of the address stays.
        self.map
            .0
            .remove_if(&self.addr, |_, (id, _)| *id == self.id);
    }
}

impl LocalRtp {
    /// Takes in-process delivery to `addr` (an address the caller has bound) by running
    /// `sink` in the sender's task. A second registration of the same address replaces the
    /// first.
    pub fn register_sink(&self, addr: SocketAddr, sink: Sink) -> Registration {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        self.0.insert(addr, (id, sink));
        Registration {
            map: self.clone(),
            addr,
            id,
        }
    }

    /// Runs `data` through the sink of `to` when it is an in-process endpoint (`Ok(false)`:
    /// the sink dropped it); otherwise gives it back for the caller to send by UDP. Never
    /// from inside a sink.
    pub fn deliver(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    ) -> Result<bool, Vec<u8>> {
        // Run outside the map's lock: a sink takes its endpoint's own lock.
        let sink = match self.0.get(&to) {
            None => return Err(data),
            Some(entry) => entry.1.clone(),
        };
        Ok(sink(from, data))
    }

    /// `to` is an in-process endpoint (packets for it never leave by UDP).
    pub fn contains(&self, to: SocketAddr) -> bool {
        self.0.contains_key(&to)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Got = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

    fn collecting(keep: bool) -> (Sink, Got) {
        let got: Got = Arc::default();
        let g = got.clone();
        let sink: Sink = Arc::new(move |from, data| {
            g.lock().unwrap().push((from, data));
            keep
        });
        (sink, got)
    }

    #[test]
    fn a_registered_address_runs_its_sink_in_the_senders_task_until_dropped() {
        let local = LocalRtp::default();
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:4000".parse().unwrap(),
            "[::1]:5000".parse().unwrap(),
        );
        assert_eq!(local.deliver(a, b, vec![1]), Err(vec![1]), "not local: UDP");
        let (sink, got) = collecting(true);
        let reg = local.register_sink(b, sink);
        assert_eq!(local.deliver(a, b, vec![2, 3]), Ok(true));
        // Run before `deliver` returned.
        assert_eq!(*got.lock().unwrap(), vec![(a, vec![2, 3])]);
        // A newer registration replaces the older; dropping the older leaves it.
        let (dropping, dropped) = collecting(false);
        let again = local.register_sink(b, dropping);
        drop(reg);
        assert_eq!(local.len(), 1, "the newer registration stays");
        assert_eq!(
            local.deliver(a, b, vec![4]),
            Ok(false),
            "the sink dropped it"
        );
        assert_eq!(dropped.lock().unwrap().len(), 1);
        assert_eq!(
            got.lock().unwrap().len(),
            1,
            "the replaced sink gets nothing"
        );
        drop(again);
        assert!(local.is_empty());
        assert_eq!(local.deliver(a, b, vec![5]), Err(vec![5]));
    }
}
