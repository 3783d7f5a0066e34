//! dasan: a zero-ARS IVR and ACD engine. A carrier's call to 120 reaches a human agent
//! straight away: no menu, no machine voice.
//!
//! The sans-IO rule: protocol logic (`sip`, `registrar`, `acd`, `b2bua`) never reads the
//! clock or touches a socket. Time is always passed in; output is polled. Only `driver`
//! and `http` run on tokio. That makes every timer path testable with virtual time.

pub mod acd;
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
pub mod sim;
pub mod sip;
pub mod util;
pub mod web;
