#!/usr/bin/env bash
# Builds the agent desktop and the supervisor wallboard: web/src/*.ts → web/dist/*.js with
# the TypeScript compiler (the only build dependency; playwright-core comes along for the
# browser tests). The engine embeds web/*.html, web/*.css and web/dist/*.js when it is
# compiled, so run this before `cargo build`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
need_node
cd web
npm ci --no-audit --no-fund --loglevel=error
npx tsc -p tsconfig.json
echo "web front end built: $(ls dist | tr '\n' ' ')"
