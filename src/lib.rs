//! dasan: a zero-ARS IVR and ACD engine. A carrier's call to 120 reaches a human agent
//! straight away: no menu, no machine voice.
//!
//! The sans-IO rule: protocol logic (`sip`, `media`, `acd`, `registrar`, `dialplan`,
//! `b2bua`) never reads the clock, touches a socket or draws its own randomness. Time is
//! always passed in; output is polled. tokio runs in `driver` (SIP sockets and the media
//! plane), `runtime` (helpers shared by the drivers), `records` (the writer's wake-ups),
//! `http` and `web`. That makes every timer path testable with virtual time. The layers
//! and the rule that enforces them are in ARCHITECTURE.md and `architecture.rs`.

pub mod acd;
#[cfg(test)]
mod architecture;
pub mod b2bua;
pub mod config;
pub mod dialplan;
pub mod driver;
pub mod http;
pub mod kb;
pub mod media;
pub mod metrics;
pub mod records;
pub mod registrar;
pub mod runtime;
pub mod sim;
pub mod sip;
pub mod util;
pub mod web;
