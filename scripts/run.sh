#!/usr/bin/env bash
# Runs the engine with its embedded default configuration (dialplans/dasan120.toml),
# installing what it needs first. Extra arguments go to `dasan run`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
need_cargo
need_pkgs pkg-config gcc libopus-dev
# The agent desktop and wallboard (/agent, /supervisor) are compiled into the binary.
scripts/web-build.sh
cargo build --release --locked
exec target/release/dasan run "$@"
