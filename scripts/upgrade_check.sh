#!/usr/bin/env bash
# Measures a binary upgrade under load (tests/upgrade/measure.rs): WebSocket
# sessions open on the old process (WSLB_UPGRADE_SESSIONS, default 2000), a
# backend registered over the control channel, connect loops running all
# along; prints refused/reset connects, failed requests, sessions closed
# with 1001 and reconnected, and the registered backend's absence from the
# new pool. Any failure fails the run.
#   scripts/upgrade_check.sh            # debug build
#   PROFILE=release scripts/upgrade_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 20000 2>/dev/null || true
profile=()
if [[ "${PROFILE:-debug}" == release ]]; then profile=(--release); fi
exec cargo test "${profile[@]}" --test upgrade measure_an_upgrade_under_load -- \
    --ignored --nocapture --test-threads 1
