#!/usr/bin/env bash
# Memory per idle proxied WebSocket session: starts `wslb echo` and
# `wslb serve --workers 1 --access-log off` (inspect mode, then tunnel mode),
# holds N idle sessions through it with `wslb bench ws --hold N`, and prints
# the proxy's VmRSS before and after and the KiB per session. With a second
# binary, each mode runs for both, one after the other (BIN_A then BIN_B),
# for a side-by-side comparison.
#
#   perf/idle_memory.sh BIN_A [BIN_B] [N=8000]
#
# Ports from LB_PORT (18080) and ECHO_PORT (19001). The proxy needs about
# 2N descriptors (client and backend side); the script raises its own soft
# limit as far as the hard limit allows.
set -euo pipefail
A=$1 B=${2:-} N=${3:-8000}
LB_PORT=${LB_PORT:-18080} ECHO_PORT=${ECHO_PORT:-19001}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PIDS=()
LOG=$(mktemp -d)
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$LOG"
}
trap cleanup EXIT

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

taskset -c 1 "$A" echo --listen "127.0.0.1:$ECHO_PORT" >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5

one() { # label bin mode
    local label=$1 bin=$2 mode=$3 pid hp before after up="" i
    taskset -c 0 "$bin" serve --workers 1 --listen "127.0.0.1:$LB_PORT" --admin-listen off \
        --access-log off --max-connections-per-ip 0 --ws-mode "$mode" --backend "http://127.0.0.1:$ECHO_PORT" \
        >"$LOG/serve.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    sleep 1
    before=$(rss "$pid")
    taskset -c 1 "$A" bench ws --hold "$N" --url "ws://127.0.0.1:$LB_PORT/" >"$LOG/hold.log" 2>&1 &
    hp=$!
    PIDS+=("$hp")
    for i in $(seq 1 1200); do
        up=$(grep -m1 '^holding' "$LOG/hold.log" 2>/dev/null || true)
        [ -n "$up" ] && break
        kill -0 "$hp" 2>/dev/null || break
        sleep 0.1
    done
    sleep 2
    after=$(rss "$pid")
    local held
    held=$(echo "$up" | grep -o '[0-9]\+' | head -1)
    held=${held:-0}
    if [ "$held" -gt 0 ]; then
        python3 -c "print(f'$label $mode: $up; RSS $before -> $after KiB, {($after-$before)/$held:.2f} KiB per session')"
    else
        echo "$label $mode: FAILED, no sessions held ($(tail -1 "$LOG/hold.log"))"
    fi
    kill -INT "$hp" 2>/dev/null || true
    wait "$hp" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    sleep 1
}

for mode in inspect tunnel; do
    one A "$A" "$mode"
    [ -n "$B" ] && one B "$B" "$mode"
done
