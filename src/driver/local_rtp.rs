//! RTP between two endpoints of this process, handed over by channel.
//!
//! A browser agent's call has two media endpoints inside the engine: the media plane's agent
//! leg (which transcodes to the trunk's G.711) and the WebRTC bridge of the agent's session.
//! They still talk RTP to each other, addressed by the socket addresses in the agent leg's
//! SDP, so every other part of the call is unchanged; but a packet whose destination is
//! registered here goes straight into the owner's inbox instead of through the kernel's
//! loopback (a send and a receive system call per packet, each way). The addresses stay bound
//! by real sockets, so nothing else can take them, and a packet to an address not registered
//! here is sent by UDP as before.
//!
//! A full inbox drops the packet, as a full socket buffer would: RTP never waits.
//!
//! An endpoint whose work per packet is short and never waits can register a sink instead of
//! an inbox: the sender runs it in place, which spares a task wake-up per packet. Both ends
//! of a browser call are sinks: the browser leg (SRTP and a non-blocking send) and the
//! call's agent leg (transcoding and a non-blocking send to the trunk). A sink must not
//! deliver to another sink ([`LocalRtp::deliver_to_inbox`]), and a task calls a sink only
//! with its own endpoint's lock released, so no lock is ever taken under another.

use dashmap::DashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One RTP (or RTCP) packet and the address it comes from.
#[derive(Debug)]
pub struct LocalPacket {
    pub from: SocketAddr,
    pub data: Vec<u8>,
}

/// Runs a packet (from, data) through its endpoint in the sender's task; false if dropped.
pub type Sink = Arc<dyn Fn(SocketAddr, Vec<u8>) -> bool + Send + Sync>;

enum Endpoint {
    Inbox(mpsc::Sender<LocalPacket>),
    Sink(Sink),
}

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

type Map = DashMap<SocketAddr, (u64, Endpoint), BuildHasherDefault<AddrHasher>>;

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

/// 1.3 s of 20 ms packets: more than any hiccup of a healthy task, little enough memory.
const INBOX: usize = 64;

impl LocalRtp {
    /// Takes in-process delivery to `addr` (an address the caller has bound). A second
    /// registration of the same address replaces the first.
    pub fn register(&self, addr: SocketAddr) -> (Registration, mpsc::Receiver<LocalPacket>) {
        let (tx, rx) = mpsc::channel(INBOX);
        (self.insert(addr, Endpoint::Inbox(tx)), rx)
    }

    /// Takes in-process delivery to `addr` by running `sink` in the sender's task.
    pub fn register_sink(&self, addr: SocketAddr, sink: Sink) -> Registration {
        self.insert(addr, Endpoint::Sink(sink))
    }

    fn insert(&self, addr: SocketAddr, endpoint: Endpoint) -> Registration {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        self.0.insert(addr, (id, endpoint));
        Registration {
            map: self.clone(),
            addr,
            id,
        }
    }

    /// Delivers `data` to `to` when it is an in-process endpoint (dropping it if the inbox
    /// is full); otherwise gives it back for the caller to send by UDP.
    pub fn deliver(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    ) -> Result<bool, Vec<u8>> {
        let sink = match self.0.get(&to) {
            None => return Err(data),
            Some(entry) => match &entry.1 {
                Endpoint::Inbox(tx) => return Ok(tx.try_send(LocalPacket { from, data }).is_ok()),
                Endpoint::Sink(sink) => sink.clone(),
            },
        };
        // Run outside the map's lock: a sink takes its endpoint's own lock.
        Ok(sink(from, data))
    }

    /// As [`deliver`](Self::deliver), but only to an inbox; a sink's address gets the packet
    /// back (to send by UDP). For use inside a sink.
    pub fn deliver_to_inbox(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    ) -> Result<bool, Vec<u8>> {
        match self.0.get(&to).as_deref() {
            Some((_, Endpoint::Inbox(tx))) => Ok(tx.try_send(LocalPacket { from, data }).is_ok()),
            _ => Err(data),
        }
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

    #[tokio::test]
    async fn registered_addresses_get_packets_in_process_until_dropped() {
        let local = LocalRtp::default();
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(local.deliver(a, b, vec![1]), Err(vec![1]), "not local: UDP");
        let (reg, mut inbox) = local.register(b);
        assert_eq!(local.deliver(a, b, vec![2, 3]), Ok(true));
        let p = inbox.recv().await.unwrap();
        assert_eq!((p.from, p.data), (a, vec![2, 3]));
        // A stalled owner loses packets; the sender never waits.
        for _ in 0..INBOX {
            assert_eq!(local.deliver(a, b, vec![0]), Ok(true));
        }
        assert_eq!(
            local.deliver(a, b, vec![0]),
            Ok(false),
            "inbox full: dropped"
        );
        let (again, _inbox2) = local.register(b);
        drop(reg);
        assert_eq!(local.len(), 1, "the newer registration stays");
        drop(again);
        assert!(local.is_empty());
        assert_eq!(local.deliver(a, b, vec![4]), Err(vec![4]));
    }

    #[test]
    fn a_sink_runs_in_the_senders_task_and_never_takes_from_another_sink() {
        let local = LocalRtp::default();
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:4000".parse().unwrap(),
            "[::1]:5000".parse().unwrap(),
        );
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let g = got.clone();
        let reg = local.register_sink(
            b,
            Arc::new(move |from, data| {
                g.lock().unwrap().push((from, data));
                true
            }),
        );
        assert_eq!(local.deliver(a, b, vec![7]), Ok(true));
        assert_eq!(*got.lock().unwrap(), vec![(a, vec![7])]);
        assert_eq!(
            local.deliver_to_inbox(a, b, vec![8]),
            Err(vec![8]),
            "sink to sink goes by UDP"
        );
        let (_inbox_reg, mut inbox) = local.register(a);
        assert_eq!(local.deliver_to_inbox(b, a, vec![9]), Ok(true));
        assert_eq!(inbox.try_recv().unwrap().data, vec![9]);
        drop(reg);
        assert_eq!(local.deliver(a, b, vec![1]), Err(vec![1]));
    }
}
