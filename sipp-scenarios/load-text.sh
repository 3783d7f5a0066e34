#!/usr/bin/env bash
# Text counselling under load: an SMS gateway writes to 120 from N senders (one
# conversation each) at a fixed rate of MESSAGEs a second while A agents (max_chats each)
# take the conversations; src/bin/sipload.rs (--text) is both the gateway and the agents'
# phones, on loopback. Every message must be acknowledged (202, once durable in SQLite) and
# delivered to its conversation's agent; prints messages per second, lost, and the delivery
# time from the gateway's send to the agent's receipt (p50/p99/max), and the engine's CPU.
#
#   sipp-scenarios/load-text.sh [-s SENDERS] [-a AGENTS] [-c MAX_CHATS] [-r MSG_PER_S] [-t SECONDS] [-p BASE_PORT]
#
# Defaults: 1,000 conversations over 300 agents (max_chats 4), 5,000 messages/s for 20 s.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
senders=1000 agents=300 chats=4 rate=5000 seconds=20 base=36500
while getopts "s:a:c:r:t:p:" o; do
    case $o in
        s) senders=$OPTARG ;; a) agents=$OPTARG ;; c) chats=$OPTARG ;; r) rate=$OPTARG ;;
        t) seconds=$OPTARG ;; p) base=$OPTARG ;;
        *) echo "usage: $0 [-s SENDERS] [-a AGENTS] [-c MAX_CHATS] [-r MSG_PER_S] [-t SECONDS] [-p BASE_PORT]" >&2; exit 2 ;;
    esac
done
(( seconds > 0 && seconds <= 600 )) || { echo "-t must be 1..600 seconds" >&2; exit 2; }
(( agents * chats >= senders )) || echo "note: $senders conversations > $agents agents × $chats chats: some wait" >&2

source "$root/scripts/deps.sh"
need_cargo
clear_of_ephemeral "SIP, HTTP and load ports" "$base" $((base + 50))
need_pkgs pkg-config gcc libopus-dev curl
(cd "$root" && cargo build --release --locked -q --bin dasan --bin sipload)
bin=$root/target/release
sysctl -qw net.core.rmem_max=33554432 net.core.wmem_max=33554432 2>/dev/null || true

work=$(mktemp -d /tmp/dasan-load-text.XXXXXX)
engine=""
cleanup() { [ -n "$engine" ] && kill "$engine" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
sip=$base http=$((base + 1))
last=$((10000 + agents - 1))
# Each sender writes rate/senders messages a second: the per-sender flood limit is raised
# to let the load through (its default, 30 a minute, is for real senders).
cat > "$work/load.toml" <<TOML
[sip]
max_calls = 200000
udp_buffer_bytes = 33554432
[[trunk]]
name = "loopback"
sources = ["127.0.0.0/8"]
[[route]]
number = "120"
queue = "general"
[queue.general]
skill = "ko"
channels = ["voice", "text"]
max_length = 200000
max_wait_s = 600
[text]
max_messages_per_minute = 1000000
waiting_message = ""
[[agents]]
ids = "10000-$last"
password = "load-pw"
skills = ["ko"]
max_chats = $chats
[media]
anchor = false
TOML

DASAN_API_TOKEN=load-token-0123456789abcdef DASAN_LOG=warn "$bin/dasan" run --config "$work/load.toml" \
    --sip-listen "127.0.0.1:$sip" --http-listen "127.0.0.1:$http" --data-dir "$work/data" \
    > "$work/engine.log" 2>&1 &
engine=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$http/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
status=0
timeout $((seconds + 120)) "$bin/sipload" --engine "127.0.0.1:$sip" --agents "$agents" \
    --text "$senders" --rate "$rate" --seconds "$seconds" --engine-pid "$engine" || status=$?
stats=$(curl -sf -H "Authorization: Bearer load-token-0123456789abcdef" "127.0.0.1:$http/api/stats" \
    | grep -o '"text_delivery_us":{[^}]*}' || true)
echo "measured by the engine (sender's MESSAGE in → agent's MESSAGE out): $stats"
open=$(curl -sf -H "Authorization: Bearer load-token-0123456789abcdef" "127.0.0.1:$http/api/queues" \
    | grep -o '"open":[0-9]*' | head -1 || true)
stored=$(curl -sf -H "Authorization: Bearer load-token-0123456789abcdef" \
    "127.0.0.1:$http/metrics" | grep '^dasan_text_messages_total{direction="in"' || true)
echo "conversations with an agent: ${open#\"open\":}; $stored"
echo "machine: $(nproc) cores, $(date -u +%F)"
exit $status
