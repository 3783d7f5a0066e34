#!/usr/bin/env bash
# Browser-agent load on this machine's loopback: N simulated browsers (src/bin/webload.rs:
# the desktop's WebSocket protocol and a real WebRTC stack, ICE + DTLS-SRTP + Opus) log in,
# go ready and answer N SIPp trunk calls that stream G.711; the engine transcodes every call
# G.711 <-> Opus and relays it over DTLS-SRTP. Prints the engine's CPU over a steady 20 s
# window with all N calls up, the calls per core that implies, the answer-to-first-audio
# times, and the audio each simulated browser heard: packets lost from the sequence and
# arrival gaps over 60 ms (the engine sends every 20 ms), which is what shows whether the
# engine keeps up, as its CPU alone cannot once it is pinned to a core it fills.
#
#   sipp-scenarios/load-web.sh [CALLS] [BASE_PORT]
#
# DASAN_PIN=1 runs the engine on CPU 0 and the load on CPU 1 (then CPU 1's busy share, also
# printed, says whether the load side kept up); DASAN_CAPTURE=1 also tells the engine's late
# packets from its senders' (see below); DASAN_PERF=1 profiles; DASAN_BIN=path runs another
# build of the engine.
#
# Ports: SIP, HTTP and SIPp from BASE_PORT (default 31000), the engine's RTP 20000-29999,
# its WebRTC sockets 10000-13999: all below the kernel's ephemeral ports (32768+), where the
# simulated browsers' sockets land.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
calls=${1:-100} base=${2:-31000}
(( calls > 0 && calls <= 2000 )) || { echo "CALLS must be 1..2000" >&2; exit 2; }
sip=$base http=$((base + 1)) caller_port=$((base + 2))
source "$root/scripts/deps.sh"
need_cargo
clear_of_ephemeral "SIP, HTTP and SIPp ports" "$base" $((base + 110))
clear_of_ephemeral "the engine's RTP ports" 20000 29999
clear_of_ephemeral "the engine's WebRTC ports" 10000 13999
need_pkgs pkg-config gcc libopus-dev sip-tester curl
(cd "$root" && cargo build --release --locked -q --bins)
work=$(mktemp -d /tmp/dasan-webload.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
last=$((1000 + calls))
# DASAN_PIN=1: the engine on CPU 0, the simulated browsers and SIPp on CPU 1.
pin_engine="" pin_load=""
if [ -n "${DASAN_PIN:-}" ]; then pin_engine="taskset -c 0" pin_load="taskset -c 1"; fi
cat > "$work/web.toml" <<TOML
[[trunk]]
name = "loopback"
sources = ["127.0.0.0/8"]
[[route]]
number = "120"
queue = "general"
[queue.general]
skill = "ko"
ring_timeout_s = 30
[[agents]]
ids = "1001-$last"
password = "load-pw"
skills = ["ko"]
# Below the kernel's ephemeral ports (32768+), which the WebRTC sockets take.
[media]
rtp_port_min = 20000
rtp_port_max = 29999
# Two per browser session; away from the SIP/HTTP/SIPp ports above.
webrtc_port_min = 10000
webrtc_port_max = 13999
TOML
DASAN_LOG=warn $pin_engine "${DASAN_BIN:-$root/target/release/dasan}" run --config "$work/web.toml" --sip-listen "127.0.0.1:$sip" \
    --http-listen "127.0.0.1:$http" --data-dir "$work/data" > "$work/engine.log" 2>&1 &
engine=$!; pids+=("$engine")
for _ in $(seq 100); do curl -sf "127.0.0.1:$http/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
hold=$(( 70 + calls / 10 ))
$pin_load "$root/target/release/webload" "127.0.0.1:$http" 1001 "$calls" load-pw "$hold" > "$work/webload.out" 2>&1 &
pids+=("$!")
deadline=$((SECONDS + 60))
until [ "$(grep -c '"ready"' "$work/webload.out" || true)" -ge "$calls" ]; do
    [ $SECONDS -lt $deadline ] || { echo "only $(grep -c '"ready"' "$work/webload.out") of $calls browsers ready" >&2; tail "$work/webload.out" >&2; exit 1; }
    sleep 0.5
done
# The sessions alone (logged in, ready, WebRTC up, no call): what the calls add is the rest.
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$engine/stat"; }
i1=$(cpu); sleep 10; i2=$(cpu)
idle=$(echo "scale=3; ($i2 - $i1) / $ticks / 10" | bc)
# The callers: G.711 u-law 440 Hz, streamed from SIPp's working directory.
python3 - "$work/caller.ul" <<'PY'
import math, sys
def ulaw(s):
    s = max(-32635, min(32635, s)); sign = 0x80 if s < 0 else 0; s = abs(s) + 132
    exp = 7
    while exp > 0 and not (s & (0x4000 >> (7 - exp))): exp -= 1
    return ~(sign | (exp << 4) | ((s >> (exp + 3)) & 0x0f)) & 0xff
open(sys.argv[1], "wb").write(bytes(ulaw(int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(8000 * 10)))
PY
(cd "$work" && $pin_load sipp "127.0.0.1:$sip" -sf "$here/caller-stream.xml" -s 120 -i 127.0.0.1 -p "$caller_port" \
    -mp $((base + 100)) -cp $((base + 3)) -m "$calls" -r 20 -l "$calls" -nostdin -timeout "$((hold + 60))s" \
    -trace_err > "$work/sipp.out" 2>&1) &
sipp_pid=$!; pids+=("$sipp_pid")
deadline=$((SECONDS + 60))
tok=$(cat "$work/data/api-token")
while :; do
    up=$(curl -sf -H "Authorization: Bearer $tok" "127.0.0.1:$http/api/calls" | grep -o '"state":"answered"\|"state":"talking"\|"state":"on-call"' | wc -l || true)
    [ "$up" -ge "$calls" ] && break
    [ $SECONDS -lt $deadline ] || { echo "only $up of $calls calls connected" >&2; break; }
    sleep 0.5
done
sleep 3
# DASAN_PERF=1: also profile the engine over the window (perf's own cost is counted). For
# call graphs, build with frame pointers and run that binary with DASAN_BIN=path:
#   RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR=/tmp/fp cargo build --release --bin dasan
if [ -n "${DASAN_PERF:-}" ]; then
    perf record -F 999 -g -p "$engine" -o "$work/perf.data" -- sleep 20 >/dev/null 2>&1 &
fi
# Every CPU's busy share over the same window: with DASAN_PIN=1, CPU 1's is the load side's
# (SIPp and the simulated browsers), which must not be full for the browsers' gaps to be
# the engine's.
busy() { awk '/^cpu[0-9]/ {printf "%s %d %d\n", $1, $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }
b1=$(busy)
c1=$(cpu); t1=$(date +%s.%N); sleep 20; c2=$(cpu); t2=$(date +%s.%N)
b2=$(busy)
cpus=$(paste -d' ' <(echo "$b1") <(echo "$b2") | awk '{printf "%s %.2f  ", $1, ($5 - $2) / ($6 - $3)}')
# DASAN_CAPTURE=1: then capture 5 s of the calls' RTP on loopback (after the window, as the
# capture's copies cost the senders) and count late packets per direction: a gap on the way
# out of the engine with none on the way in is the engine's (sipp-scenarios/rtp-gaps.py).
if [ -n "${DASAN_CAPTURE:-}" ]; then
    need_pkgs wireshark-common
    $pin_load dumpcap -q -i lo -s 64 -a duration:5 -w "$work/rtp.pcapng" \
        -f "udp and (portrange 10000-13999 or portrange 20000-29999)" > /dev/null 2>&1 || true
fi
up_end=$(curl -sf -H "Authorization: Bearer $tok" "127.0.0.1:$http/api/calls" | grep -o '"call_id"' | wc -l || true)
wait "${pids[1]}" || true
wait "$sipp_pid" || true
# What the engine's receivers counted missing (from SIPp and from the browsers).
engine_lost=$(curl -sf "127.0.0.1:$http/metrics" | awk '/^dasan_rtp_packets_lost_total/ {s += $2} END {print s + 0}')
summary=$(grep '"done"' "$work/webload.out" || echo '{}')
echo "machine        $(uname -m), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "calls          $calls browser-agent calls up ($up_end still up at the end of the window)"
echo "engine CPU     $(echo "scale=3; ($c2 - $c1) / $ticks / ($t2 - $t1)" | bc) cores over $(echo "$t2 - $t1" | bc | cut -c1-5) s"
echo "per core       $(echo "scale=3; $up / (($c2 - $c1) / $ticks / ($t2 - $t1))" | bc | cut -d. -f1) calls (the $up up when the window began; G.711 <-> Opus transcoding + DTLS-SRTP)"
echo "CPUs busy      $cpus(the whole machine over the window)"
echo "idle sessions  $idle cores with the $calls browsers logged in and no call (included above)"
echo "browsers       $summary"
echo "engine lost    $engine_lost packets missing from what SIPp and the browsers sent it"
echo "sipp           $(grep -E 'Successful call|Failed call' "$work/sipp.out" | tr -s ' ' | tr '\n' ' ')"
if [ -s "$work/rtp.pcapng" ]; then
    echo "late packets   in 5 s captured after the window:"
    python3 "$here/rtp-gaps.py" "$work/rtp.pcapng" | sed 's/^/               /'
fi
echo "logs in $work${DASAN_PERF:+ (perf report -i $work/perf.data)}"
