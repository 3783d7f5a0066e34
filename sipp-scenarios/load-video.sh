#!/usr/bin/env bash
# Video relay load: N video calls relayed by the engine's media plane in one process pinned
# to one core, fed by simulated video phones in another process on the other core (30 fps,
# 600 kbit/s each way by default, frames split into packets of at most 1,100 bytes).
# Prints loss, delay percentiles (send -> receive through the relay, an upper bound on what
# the relay adds), and the relay process's CPU: calls per core. Signalling is not involved;
# see src/bin/videoload.rs.
#
#   sipp-scenarios/load-video.sh [CALLS] [SECONDS] [--kbps K] [--fps F]
#   (defaults 200 10; bounded 2000 calls, 120 s)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/deps.sh"
need_cargo
need_pkgs pkg-config gcc libopus-dev
calls=${1:-200} seconds=${2:-10}
(cd "$root" && cargo build --release --locked -q --bin videoload)
printf 'machine        %s, %s cores, %s\n' "$(uname -m)" "$(nproc)" "$(date -u +%Y-%m-%dT%H:%MZ)"
exec "$root/target/release/videoload" "$calls" "$seconds" "${@:3}"
