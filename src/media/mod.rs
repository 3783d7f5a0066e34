//! Media: G.711 and Opus codecs, RTP/RTCP sessions, DTMF (RFC 4733, SIP INFO, in-band),
//! and SDP offer/answer. Like `sip`, all of it is sans-IO: the relay driver that owns the
//! RTP sockets passes packets and time in.
//!
//! Status (issue 3): these building blocks are implemented and tested; anchoring calls'
//! media in the engine (port range, 183 early media, the 120+9 menu, recording) is next.

pub mod bridge;
pub mod dtmf;
pub mod g711;
pub mod opus;
pub mod ports;
pub mod prompt;
pub mod rtp;
pub mod sdp;
