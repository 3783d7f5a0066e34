#!/usr/bin/env bash
# Compares two builds of the engine on browser-agent load, alternating them run by run
# (A, B, A, B, ...): this VM's speed swings more between runs than most changes move the
# figures, so one run of each says little; alternating spreads the swing over both.
#
#   sipp-scenarios/ab-web.sh A_BIN B_BIN [CALLS] [ROUNDS]
#
# Each run is `DASAN_PIN=1 load-web.sh CALLS` with DASAN_BIN set to the build (defaults:
# 300 calls, 3 rounds, ~2 min a run). Prints one line per run: the engine's CPU, the load
# side's CPU (CPU 1), and the simulated browsers' late packets, then each build's mean CPU.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { sed -n 2,10p "$0" >&2; exit 2; }
a=$1 b=$2 calls=${3:-300} rounds=${4:-3}
for bin in "$a" "$b"; do [ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }; done
(( rounds > 0 && rounds <= 20 )) || { echo "ROUNDS must be 1..20" >&2; exit 2; }
out=$(mktemp -d /tmp/dasan-ab.XXXXXX)
printf '%-5s %-5s %-10s %-6s %s\n' build round engine cpu1 "browsers (gaps > 60 ms, max gap)"
for r in $(seq "$rounds"); do
    for side in A B; do
        bin=$a; [ "$side" = B ] && bin=$b
        log="$out/$side.$r.txt"
        DASAN_PIN=1 DASAN_BIN="$bin" "$here/load-web.sh" "$calls" > "$log" 2>&1 || true
        cpu=$(awk '/^engine CPU/ {print $3}' "$log")
        cpu1=$(grep -o 'cpu1 [0-9.]*' "$log" | awk '{print $2}')
        gaps=$(grep -o '"gaps_over_60ms":[0-9]*\|"max_gap_ms":[0-9.]*' "$log" | cut -d: -f2 | paste -sd' ')
        printf '%-5s %-5s %-10s %-6s %s\n' "$side" "$r" "${cpu:-failed}" "${cpu1:--}" "${gaps:--}"
        echo "$side ${cpu:-}" >> "$out/cpu"
    done
done
awk '$2 != "" {s[$1] += $2; n[$1]++} END {for (k in s) printf "mean %s  %.3f cores over %d runs\n", k, s[k] / n[k], n[k]}' "$out/cpu" | sort
echo "logs in $out"
