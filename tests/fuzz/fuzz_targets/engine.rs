//! The whole engine's message entry: `Engine::handle_message` (UDP) and the TCP framer in
//! front of it, on a small dialplan with two registered agents, time advancing between
//! messages and the output drained. Parser, transactions, dialogs, the registrar, routing
//! and the anchored media's SDP handling are all reached. The input format (records,
//! placeholders for the engine's tags) is in `dasan_fuzz::script`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dasan_fuzz::script::run(data);
});
