//! A virtual network for the engine (after quinn's in-memory `Pair` and str0m's netem):
//! the sans-IO engine, simulated phones (trunk callers, agents) and a wire with seeded
//! loss, delay, jitter (reordering) and duplication, all in virtual time. No sockets, no
//! threads, no sleeps: a run is a function of its seed.
//!
//! `world` drives it, `net` is the wire, `stack` the phones' transaction layer, `caller` and
//! `agent` the phones, `check` the end-of-run invariants.

// Each test binary uses part of the harness.
#![allow(dead_code)]

pub mod agent;
pub mod caller;
pub mod check;
pub mod net;
pub mod stack;
pub mod world;

/// The parts of a config every run shares: the engine's address, the trunk, media
/// anchoring with room for many calls. `rest` adds routes, queues, menus and agents.
/// `120` routed to one Korean queue `general` (with `queue_extra` lines in its section)
/// and agents `ids` who speak Korean, password `pw`.
pub fn korean_queue(ids: &str, queue_extra: &str) -> String {
    format!(
        "[[route]]\nnumber = \"120\"\nqueue = \"general\"\n\n[queue.general]\nskill = \"ko\"\n{queue_extra}\n[[agents]]\nids = \"{ids}\"\npassword = \"pw\"\nskills = [\"ko\"]\n"
    )
}

pub fn config(rest: &str) -> String {
    config_with(rest, true)
}

/// `config`, choosing whether the engine anchors media (without it, SDP and re-INVITEs
/// are relayed end to end, and there are no menus, RTP digits or transfers).
pub fn config_with(rest: &str, anchor: bool) -> String {
    format!(
        r#"
[sip]
listen = "{}"

[[trunk]]
name = "carrier"
sources = ["10.0.0.0/8"]

{rest}

[media]
anchor = {anchor}
rtp_port_min = 20000
rtp_port_max = 20399
"#,
        world::ENGINE
    )
}
