//! Media: G.711 and Opus codecs, RTP/RTCP sessions, DTMF (RFC 4733, SIP INFO, in-band),
//! and SDP offer/answer. Like `sip`, all of it is sans-IO: the relay driver that owns the
//! RTP sockets passes packets and time in.
//!
//! [`session::MediaSession`] is one call's media from arrival (early media, prompts, digits)
//! to the bridge with the agent; [`record`] writes stereo call recordings.

pub mod bridge;
pub mod clip;
pub mod dtmf;
pub mod g711;
pub mod opus;
pub mod ports;
pub mod prompt;
pub mod record;
pub mod rtp;
pub mod sdp;
pub mod session;
pub mod srtp;
pub mod video;
