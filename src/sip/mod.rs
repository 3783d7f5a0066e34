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
}

impl Transport {
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// Where a message came from or goes to: the transport, the peer address, and for TCP the
/// connection (so responses and in-dialog requests reuse it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    pub remote: SocketAddr,
    /// Connection id for TCP; 0 for UDP.
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
