#!/usr/bin/env bash
# Media-plane load: N anchored calls in the engine's media plane (a relay process pinned to
# CPU 0), fed by simulated phones in a generator process pinned to CPU 1 (G.711, 20 ms,
# both directions, phones not synchronised; sendmmsg/recvmmsg, kernel arrival stamps).
# Prints loss (relay's sockets / generator's sockets / elsewhere), delay and added jitter
# per direction, the generator's own lateness, the relay's CPU per packet (kernel work
# included) and memory per call. Signalling is not involved; see src/bin/rtpload.rs.
#
#   sipp-scenarios/load-media.sh [CALLS] [SECONDS] [--srtp] [--kernel] [--relay-cpu C] [--gen-cpu C] [--part K/N]
#   (defaults 500 10; bounded 5000/120; --srtp keys both legs of every call; --kernel forwards
#   bridged RTP in the kernel, as [media] kernel_forward does (root); --part runs a share of the
#   relay ports so that two runs can go at once, one generator per core)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/deps.sh"
need_cargo
need_pkgs pkg-config gcc libopus-dev
calls=${1:-500} seconds=${2:-10}
(cd "$root" && cargo build --release --locked -q --bin rtpload)
printf 'machine        %s, %s cores, %s\n' "$(uname -m)" "$(nproc)" "$(date -u +%Y-%m-%dT%H:%MZ)"
exec "$root/target/release/rtpload" "$calls" "$seconds" "${@:3}"
