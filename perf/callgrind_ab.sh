#!/usr/bin/env bash
# Instructions per operation of two wslb builds, counted by valgrind's
# callgrind: repeatable whatever else the machine is doing (perf/ab.sh
# measures CPU time, which a shared machine blurs by several percent).
# Each build serves with one worker on the legacy (epoll) driver, which
# valgrind follows; `wslb bench` (of AFTER) sends a fixed open-loop rate for
# a short and a long run, and the difference of the two totals over the
# difference of operations gives instructions per operation without the
# start-up and shutdown cost.
#
#   perf/callgrind_ab.sh BEFORE_BIN AFTER_BIN [RATE=400] [SECONDS=4]
set -euo pipefail
BEFORE=$1 AFTER=$2 RATE=${3:-400} DUR=${4:-4}
LB_PORT=${LB_PORT:-18180} ECHO_PORT=${ECHO_PORT:-19101}
WORK=$(mktemp -d /tmp/wslb-cg.XXXXXX)
trap 'kill "$EPID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$AFTER" echo --listen "127.0.0.1:$ECHO_PORT" >/dev/null 2>&1 &
EPID=$!
sleep 0.5

# total instructions of one run: name kind seconds bench-args...
one() {
    local bin=$1 kind=$2 secs=$3; shift 3
    local out="$WORK/cg.out" log="$WORK/serve.log"
    rm -f "$out"
    WSLB_DRIVER=legacy valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$bin" serve --workers 1 --no-pin --listen "127.0.0.1:$LB_PORT" --admin-listen off \
        --drain-timeout 1s --max-connections-per-ip 0 \
        --backend "http://127.0.0.1:$ECHO_PORT" >"$log" 2>&1 &
    local pid=$!
    for _ in $(seq 300); do
        grep -q '^ready' "$log" 2>/dev/null && break
        sleep 0.1
    done
    "$AFTER" bench "$@" -c 10 --rate "$RATE" -d "$secs" --json >"$WORK/bench.json" 2>/dev/null
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    local ir ops
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out")
    ops=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ops"])' "$WORK/bench.json")
    echo "$ir $ops"
}

per_op() { # bin kind bench-args...
    local bin=$1 kind=$2; shift 2
    local short long
    short=$(one "$bin" "$kind" 1 "$@")
    long=$(one "$bin" "$kind" "$DUR" "$@")
    python3 - "$short" "$long" <<'PY'
import sys
(i1, o1), (i2, o2) = (map(int, a.split()) for a in sys.argv[1:])
print(f"{(i2 - i1) / max(o2 - o1, 1):.0f}")
PY
}

printf '%-6s %14s %14s %7s\n' kind before after ratio
for kind in http ws64; do
    case $kind in
        http) args=(http --url "http://127.0.0.1:$LB_PORT/") ;;
        ws64) args=(ws --url "ws://127.0.0.1:$LB_PORT/" --size 64) ;;
    esac
    b=$(per_op "$BEFORE" "$kind" "${args[@]}")
    a=$(per_op "$AFTER" "$kind" "${args[@]}")
    printf '%-6s %14s %14s %7.3f\n' "$kind" "$b" "$a" "$(python3 -c "print($a / $b)")"
done
echo "(instructions per operation in the proxy process, all threads)"
