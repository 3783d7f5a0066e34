//! SIP: message model and framing, URIs, and the RFC 3261 transaction layer.

pub mod build;
pub mod framing;
pub mod message;
pub mod transaction;
pub mod uri;

pub use message::{Message, Method, ParseError, StartLine, Via};

use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS over TCP (RFC 3261 §26.2): framed like TCP, on its own listener.
    Tls,
}

impl Transport {
    /// Stream transports: no retransmissions (Timers A, E, G), messages sent on the
    /// connection they belong to.
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// The addresses the engine writes into Via and Contact: one for UDP and TCP, one for the
/// TLS listener if there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locals {
    pub plain: SocketAddr,
    pub tls: Option<SocketAddr>,
}

impl Locals {
    pub fn plain(addr: SocketAddr) -> Locals {
        Locals {
            plain: addr,
            tls: None,
        }
    }

    /// Where a peer on `transport` reaches us.
    pub fn for_transport(self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Tls => self.tls.unwrap_or(self.plain),
            Transport::Udp | Transport::Tcp => self.plain,
        }
    }
}

/// Where a message came from or goes to: the transport, the peer address, and for TCP and
/// TLS the connection (so responses and in-dialog requests reuse it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    pub remote: SocketAddr,
    /// Connection id for TCP and TLS; 0 for UDP.
    pub conn: u64,
}

impl Flow {
    pub fn udp(remote: SocketAddr) -> Flow {
        Flow {
            transport: Transport::Udp,
            remote,
            conn: 0,
        }
    }
}
