#!/usr/bin/env bash
# Coverage-guided fuzzing of every target in tests/fuzz (libFuzzer through cargo-fuzz):
# builds them, runs each for N seconds (default 30) from its committed seed corpus, and
# fails on any crash, hang (one input over 5 s) or memory blow-up (over 2 GiB).
#   scripts/fuzz.sh [seconds_per_target] [target ...]
# Works on the stable toolchain: `-s none` builds without a sanitizer, so no -Z flag is
# passed; the coverage instrumentation (-Cpasses=sancov-module, -Cllvm-args) and libFuzzer
# (built from C++ by libfuzzer-sys) need no nightly. tests/fuzz/README.md has the details.
# New inputs go to tests/fuzz/target/corpus/<target>, crashes to
# tests/fuzz/target/artifacts/<target>/ (both ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
need_cargo
need_pkgs gcc g++ pkg-config libopus-dev
secs="${1:-30}"
shift || true
dir=tests/fuzz
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz@0.13.2
# The fuzz crate's own Cargo.lock, as committed.
cargo fetch --locked --manifest-path "$dir/Cargo.toml"
nice -n 19 cargo fuzz build --fuzz-dir "$dir" -s none
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list --fuzz-dir "$dir")
bin="$dir/target/$(rustc -vV | sed -n 's/^host: //p')/release"

# Longest input per target: a datagram or a TCP burst for SIP; for RTP a stream of some 30
# packets (each relayed one may be Opus-encoded: longer streams only slow the run down).
max_len() {
    case "$1" in
        sip_message | sip_framing | engine) echo 65536 ;;
        register | agent_ws | config) echo 16384 ;;
        sdp) echo 4096 ;;
        *) echo 1024 ;;
    esac
}

failed=()
for t in "${targets[@]}"; do
    mkdir -p "$dir/target/corpus/$t" "$dir/target/artifacts/$t"
    echo "== fuzz $t: ${secs}s" >&2
    # The first directory receives new inputs; the committed seeds are only read.
    if ! nice -n 19 "$bin/$t" "$dir/target/corpus/$t" "$dir/corpus/$t" \
        -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
        -artifact_prefix="$dir/target/artifacts/$t/" -print_final_stats=1 \
        2> "$dir/target/$t.log"; then
        tail -n 40 "$dir/target/$t.log" >&2
        failed+=("$t")
        continue
    fi
    grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" \
        "$dir/target/$t.log" | sed "s/^/  $t /" >&2
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]} (inputs under $dir/target/artifacts/)" >&2
    exit 1
fi
echo "fuzzing: ${#targets[@]} targets, ${secs}s each, no crash, hang or OOM" >&2
