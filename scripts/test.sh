#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and end-to-end tests that start the
# real engine and drive it with SIPp and baresip on loopback. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
need_cargo
need_pkgs pkg-config gcc libopus-dev sip-tester baresip baresip-core baresip-ffmpeg wireshark-common openssl curl prometheus chromium
need_sipvicious
# The web front end (TypeScript build, and playwright-core for the browser tests).
scripts/web-build.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# Every configuration we ship must validate.
cargo build --locked
for f in dialplans/*.toml; do target/debug/dasan check-config "$f"; done
# As root the in-kernel RTP forwarding (eBPF, src/driver/kfwd.rs) can load: its tests
# then must run rather than skip.
if [ "$(id -u)" = 0 ]; then export DASAN_REQUIRE_KFWD=1; fi
# End-to-end tests each start their own engine and SIPp processes; two at a time keeps
# them within a 2-core machine's means.
cargo test --lib --bins --tests --locked -- --test-threads=2
# The record store's test suite and the reports against a real PostgreSQL (installed and
# started here).
source scripts/pg-test.sh
cargo test --lib --locked -- --ignored
cargo test --test e2e_web --locked -- --ignored
# Benchmarks run once each as a smoke test (criterion's harness takes no thread flag).
cargo test --benches --locked
# Every fuzz target for 20 s from its seed corpus: no crash, hang or OOM (tests/fuzz).
scripts/fuzz.sh 20
