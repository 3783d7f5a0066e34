#!/usr/bin/env bash
# Load check for the full call path (signalling only), everything on this machine's loopback:
# registers N agents (one SIPp answers for all of them), runs SIPp callers to 120 at a given
# rate for a bounded time, then prints successful/failed calls, achieved cps, the engine's
# CPU seconds per 1,000 calls, its peak RSS, and post-dial delay measured by the engine.
#
#   sipp-scenarios/load.sh [-a AGENTS] [-r CPS] [-t SECONDS] [-d CALL_MS] [-p BASE_PORT] [-m]
#
# -m anchors media as the default configuration does (183, our SDP on both legs, four RTP
# and RTCP sockets and a media task per call; SIPp sends no RTP): it measures what anchoring
# costs the call path. Without -m, SDP is relayed end to end (signalling only).
#
# Examples: -r 3200 -t 30 (throughput), -r 2000 -t 20 -d 10000 -a 22000 (20,000 held calls).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
agents=2000 rate=1000 seconds=30 call_ms=0 base=35000 anchor=false
while getopts "a:r:t:d:p:m" o; do
    case $o in
        a) agents=$OPTARG ;; r) rate=$OPTARG ;; t) seconds=$OPTARG ;;
        d) call_ms=$OPTARG ;; p) base=$OPTARG ;; m) anchor=true ;;
        *) echo "usage: $0 [-a AGENTS] [-r CPS] [-t SECONDS] [-d CALL_MS] [-p BASE_PORT] [-m]" >&2; exit 2 ;;
    esac
done
(( seconds > 0 && seconds <= 600 )) || { echo "-t must be 1..600 seconds" >&2; exit 2; }
calls=$(( rate * seconds ))
sip=$base http=$((base + 1)) agent_port=$((base + 2)) reg_port=$((base + 3)) caller_port=$((base + 4))

source "$root/scripts/deps.sh"
need_cargo
clear_of_ephemeral "SIP and SIPp ports" "$base" $((base + 50))
clear_of_ephemeral "the engine's RTP ports" 20000 29999
need_pkgs pkg-config gcc libopus-dev sip-tester bc curl
bin=${DASAN_BIN:-$root/target/release/dasan}
if [ -z "${DASAN_BIN:-}" ]; then (cd "$root" && cargo build --release --locked -q); fi
# Bigger socket buffers let bursts through; harmless if the sandbox refuses.
sysctl -qw net.core.rmem_max=33554432 net.core.wmem_max=33554432 2>/dev/null || true

work=$(mktemp -d /tmp/dasan-load.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

last=$(printf "%05d" $((10000 + agents - 1)))
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
max_length = 200000
max_wait_s = 30
# Skills with proficiency and routing steps on, as a real centre runs them.
step = [{ after_s = 0, min_proficiency = 3 }, { after_s = 20, min_proficiency = 1 }]
[queue.en]
skill = "en"
[[agents]]
ids = "10000-$last"
password = "load-pw"
skills = ["ko:4", "en:2"]
# -m: anchored as by default (media load itself is load-media.sh); else signalling only.
[media]
anchor = $anchor
rtp_port_min = 20000
rtp_port_max = 29999
TOML
{ echo SEQUENTIAL; for ((i = 0; i < agents; i++)); do id=$((10000 + i)); echo "$id;[authentication username=$id password=load-pw]"; done; } > "$work/agents.csv"

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
DASAN_API_TOKEN=$token DASAN_LOG=warn "$bin" run --config "$work/load.toml" --sip-listen "127.0.0.1:$sip" \
    --http-listen "127.0.0.1:$http" --data-dir "$work/data" > "$work/engine.log" 2>&1 &
engine=$!; pids+=("$engine")
for _ in $(seq 100); do curl -sf "127.0.0.1:$http/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

common=(-i 127.0.0.1 -nostdin -buff_size 4194304)
sipp -sf "$here/agent.xml" -p "$agent_port" -mp $((base + 10)) -cp $((base + 20)) "${common[@]}" \
    -m "$calls" -timeout $((seconds + 90))s > "$work/agent.out" 2>&1 &
pids+=("$!")
sleep 0.3
sipp "127.0.0.1:$sip" -sf "$here/register.xml" -inf "$work/agents.csv" -key agent_port "$agent_port" \
    -p "$reg_port" -mp $((base + 30)) -cp $((base + 21)) "${common[@]}" -r 2000 -m "$agents" -timeout 60s \
    > "$work/register.out" 2>&1 || { echo "agent registration failed: see $work/register.out" >&2; exit 1; }

cpu() { awk '{print $14 + $15}' "/proc/$engine/stat"; }
tck=$(getconf CLK_TCK)
cpu0=$(cpu)
t0=$(date +%s.%N)
set +e
sipp "127.0.0.1:$sip" -sf "$here/caller.xml" -s 120 -p "$caller_port" -mp $((base + 40)) -cp $((base + 22)) \
    "${common[@]}" -r "$rate" -m "$calls" -d "$call_ms" -l 1000000 -timeout $((seconds + 60))s \
    > "$work/caller.out" 2>&1
set -e
t1=$(date +%s.%N)
cpu1=$(cpu)
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$engine/status")
stats=$(curl -sf -H "Authorization: Bearer $token" "127.0.0.1:$http/api/stats" || echo '{}')
metric() { curl -sf "127.0.0.1:$http/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
written=$(metric dasan_record_events_written_total) backlog=$(metric dasan_record_backlog)
full=$(metric dasan_record_queue_full_total)

ok=$(awk -F'|' '/Successful call/ {gsub(/ /, "", $3); print $3}' "$work/caller.out" | tail -1)
failed=$(awk -F'|' '/Failed call/ {gsub(/ /, "", $3); print $3}' "$work/caller.out" | tail -1)
ok=${ok:-0} failed=${failed:-0}
wall=$(echo "$t1 - $t0" | bc -l)
cps=$(echo "$ok / ($wall - $call_ms / 1000)" | bc -l)
cpu_s=$(echo "($cpu1 - $cpu0) / $tck" | bc -l)
per_k=$(echo "if ($ok > 0) $cpu_s * 1000 / $ok else 0" | bc -l)
# The post-dial object's own quantiles (the text-delivery object has keys of the same name).
pdd=$(echo "$stats" | sed -n 's/.*"post_dial_delay_us":{\([^}]*\)}.*/\1/p')
p50=$(echo "$pdd" | sed -n 's/.*"p50":\([0-9]*\).*/\1/p')
p99=$(echo "$pdd" | sed -n 's/.*"p99":\([0-9]*\).*/\1/p')
held=$(echo "$rate * $call_ms / 1000" | bc)

printf 'machine        %s, %s cores, %s\n' "$(uname -m)" "$(nproc)" "$(date -u +%Y-%m-%dT%H:%MZ)"
printf 'offered        %d calls at %d cps for %d s, call length %d ms (~%d held), %d agents\n' "$calls" "$rate" "$seconds" "$call_ms" "$held" "$agents"
printf 'successful     %d\nfailed         %d\n' "$ok" "$failed"
printf 'achieved cps   %.0f (wall %.1f s)\n' "$cps" "$wall"
printf 'engine CPU     %.2f s total, %.3f s per 1,000 calls\n' "$cpu_s" "$per_k"
printf 'engine RSS     %d MiB peak (%.1f KiB per held call)\n' $((rss_kb / 1024)) "$(echo "if ($held > 0) $rss_kb / $held else 0" | bc -l)"
printf 'post-dial      p50 %s us, p99 %s us (trunk INVITE in -> agent INVITE out)\n' "${p50:-?}" "${p99:-?}"
printf 'records        %s changes committed, backlog at the end %s, queue-full episodes %s\n' "${written:-?}" "${backlog:-?}" "${full:-?}"
echo "logs in $work"
[ "$failed" = 0 ] && [ "$ok" = "$calls" ]
