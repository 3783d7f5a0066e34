#!/usr/bin/env bash
# Calls per second and the engine's CPU per call through the full path over UDP, TCP and
# TLS, with the same Rust load client for all three (SIPp on this machine has no TLS):
# src/bin/sipload.rs registers the agents on one connection and dials 120 on another; a
# fresh engine per transport; media not anchored (signalling only), as load.sh without -m.
#
#   sipp-scenarios/load-tls.sh [-a AGENTS] [-r CPS] [-t SECONDS] [-d HOLD_MS] [-p BASE_PORT] [TRANSPORT...]
#
# Prints one line per transport (ok/failed calls, cps, engine CPU seconds per 1,000 calls)
# and the TLS/UDP and TLS/TCP ratios. Example: -r 1000 -t 20 udp tcp tls.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
agents=500 rate=500 seconds=20 hold=0 base=36000
while getopts "a:r:t:d:p:" o; do
    case $o in
        a) agents=$OPTARG ;; r) rate=$OPTARG ;; t) seconds=$OPTARG ;; d) hold=$OPTARG ;; p) base=$OPTARG ;;
        *) echo "usage: $0 [-a AGENTS] [-r CPS] [-t SECONDS] [-d HOLD_MS] [-p BASE_PORT] [udp|tcp|tls ...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
transports=("$@")
[ ${#transports[@]} -gt 0 ] || transports=(udp tcp tls)
(( seconds > 0 && seconds <= 600 )) || { echo "-t must be 1..600 seconds" >&2; exit 2; }

source "$root/scripts/deps.sh"
need_cargo
clear_of_ephemeral "SIP, HTTP and load ports" "$base" $((base + 50))
need_pkgs pkg-config gcc libopus-dev curl
(cd "$root" && cargo build --release --locked -q --bin dasan --bin sipload)
bin=$root/target/release
sysctl -qw net.core.rmem_max=33554432 net.core.wmem_max=33554432 2>/dev/null || true

work=$(mktemp -d /tmp/dasan-load-tls.XXXXXX)
engine=""
cleanup() { [ -n "$engine" ] && kill "$engine" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
sip=$base http=$((base + 1)) tls=$((base + 2))
last=$((10000 + agents - 1))
cat > "$work/load.toml" <<TOML
[sip]
max_calls = 200000
udp_buffer_bytes = 33554432
tls_listen = "127.0.0.1:$tls"
max_connections_per_source = 10000
[[trunk]]
name = "loopback"
sources = ["127.0.0.0/8"]
[[route]]
number = "120"
queue = "general"
[queue.general]
skill = "ko"
max_length = 200000
max_wait_s = 30
[[agents]]
ids = "10000-$last"
password = "load-pw"
skills = ["ko"]
[media]
anchor = false
TOML

declare -A per
for t in "${transports[@]}"; do
    rm -rf "$work/data"
    DASAN_API_TOKEN=load-token-0123456789abcdef DASAN_LOG=warn "$bin/dasan" run --config "$work/load.toml" \
        --sip-listen "127.0.0.1:$sip" --http-listen "127.0.0.1:$http" --data-dir "$work/data" \
        > "$work/engine-$t.log" 2>&1 &
    engine=$!
    for _ in $(seq 100); do curl -sf "127.0.0.1:$http/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    port=$sip
    [ "$t" = tls ] && port=$tls
    line=$(timeout $((seconds + 120)) "$bin/sipload" --transport "$t" --engine "127.0.0.1:$port" \
        --agents "$agents" --rate "$rate" --seconds "$seconds" --hold-ms "$hold" --engine-pid "$engine") || true
    echo "$line"
    per[$t]=$(sed -n 's/.*cpu_s_per_1000_calls=\([0-9.]*\).*/\1/p' <<< "$line")
    kill "$engine" 2>/dev/null; wait "$engine" 2>/dev/null || true
    engine=""
done
for base_t in udp tcp; do
    if [ -n "${per[tls]:-}" ] && [ -n "${per[$base_t]:-}" ]; then
        echo "TLS / ${base_t^^} CPU per call: $(echo "scale=2; ${per[tls]} / ${per[$base_t]}" | bc)"
    fi
done
echo "machine: $(nproc) cores, $(date -u +%F)"
