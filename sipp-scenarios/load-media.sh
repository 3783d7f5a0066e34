#!/usr/bin/env bash
# Media-plane load: N anchored calls, each a real relay task with its two RTP sockets, fed
# by simulated phones on loopback (G.711, 20 ms, both directions, phones not synchronised).
# Prints loss, relay delay percentiles and the delay spread the relay adds. Signalling is
# not involved (SIPp tops out near 1,000 RTP streams); see src/bin/rtpload.rs.
#
#   sipp-scenarios/load-media.sh [CALLS] [SECONDS] [--srtp]   (defaults 500 10; bounded 5000/120;
#   --srtp keys both legs of every call)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/deps.sh"
need_cargo
need_pkgs pkg-config gcc libopus-dev
calls=${1:-500} seconds=${2:-10}
(cd "$root" && cargo build --release --locked -q --bin rtpload)
printf 'machine        %s, %s cores, %s\n' "$(uname -m)" "$(nproc)" "$(date -u +%Y-%m-%dT%H:%MZ)"
exec "$root/target/release/rtpload" "$calls" "$seconds" "${@:3}"
