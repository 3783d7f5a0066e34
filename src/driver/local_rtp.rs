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

use dashmap::DashMap;
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

/// The in-process endpoints, by the address they own. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct LocalRtp(Arc<DashMap<SocketAddr, (u64, mpsc::Sender<LocalPacket>)>>);

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
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(INBOX);
        self.0.insert(addr, (id, tx));
        (
            Registration {
                map: self.clone(),
                addr,
                id,
            },
            rx,
        )
    }

    /// Delivers `data` to `to` when it is an in-process endpoint (dropping it if the inbox
    /// is full); otherwise gives it back for the caller to send by UDP.
    pub fn deliver(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    ) -> Result<bool, Vec<u8>> {
        let Some(entry) = self.0.get(&to) else {
            return Err(data);
        };
        Ok(entry.1.try_send(LocalPacket { from, data }).is_ok())
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
}
