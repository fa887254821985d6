#!/usr/bin/env bash
# Interleaved A/B of two wslb binaries on the same machine and backend: for
# each round, BEFORE then AFTER, each as `serve --workers 1` pinned to core 0,
# with `wslb echo` and the load generator (`wslb bench` of AFTER) on core 1.
# Prints proxy CPU per operation (utime+stime from /proc/PID/stat) for small
# HTTP responses and 64-byte WebSocket echo, then the mean ratio AFTER/BEFORE.
#
#   perf/ab.sh BEFORE_BIN AFTER_BIN [ROUNDS=4] [SECONDS=5]
#
# Extra `serve` flags for a binary go in BEFORE_FLAGS / AFTER_FLAGS (AFTER
# defaults to `--max-connections-per-ip 0`, which older binaries lack).
# WS_SIZES lists the WebSocket echo message sizes (default `64`; e.g.
# `WS_SIZES="64 16384"`), each reported as ws<SIZE>; KINDS="ws" skips HTTP.
set -euo pipefail
BEFORE=$1 AFTER=$2 ROUNDS=${3:-4} DUR=${4:-5}
BEFORE_FLAGS=${BEFORE_FLAGS:-}
AFTER_FLAGS=${AFTER_FLAGS:---max-connections-per-ip 0}
LB_PORT=${LB_PORT:-18080} ECHO_PORT=${ECHO_PORT:-19001}
WS_SIZES=${WS_SIZES:-64} KINDS=${KINDS:-http ws}
TCK=$(getconf CLK_TCK)
OUT=$(mktemp)
trap 'kill "$EPID" 2>/dev/null || true; rm -f "$OUT" /tmp/wslb-ab.$$.json' EXIT

taskset -c 1 "$AFTER" echo --listen "127.0.0.1:$ECHO_PORT" >/dev/null 2>&1 &
EPID=$!
sleep 0.5
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

measure() { # name pid kind bench-args...
    local name=$1 pid=$2 kind=$3; shift 3
    local b a
    b=$(ticks "$pid")
    taskset -c 1 "$AFTER" bench "$@" -c 50 -d "$DUR" --json >/tmp/wslb-ab.$$.json 2>/dev/null
    a=$(ticks "$pid")
    python3 - "$name" "$kind" "$b" "$a" "$TCK" /tmp/wslb-ab.$$.json <<'PY' | tee -a "$OUT"
import json, sys
name, kind, b, a, tck, f = sys.argv[1:]
j = json.load(open(f))
ops = max(j["ops"], 1)
cpu = (int(a) - int(b)) / int(tck) * 1e6 / ops
print(f"{name} {kind} ops/s={j['ops_per_sec']:.0f} cpu_us_per_op={cpu:.2f} errors={j.get('errors_total')}")
PY
}

run() { # name bin flags
    local name=$1 bin=$2 flags=$3
    # shellcheck disable=SC2086
    taskset -c 0 "$bin" serve --workers 1 --listen "127.0.0.1:$LB_PORT" --admin-listen off \
        --backend "http://127.0.0.1:$ECHO_PORT" $flags >/dev/null 2>&1 &
    local pid=$!
    sleep 0.7
    case " $KINDS " in *" http "*)
        measure "$name" "$pid" http http --url "http://127.0.0.1:$LB_PORT/" ;;
    esac
    case " $KINDS " in *" ws "*)
        for size in $WS_SIZES; do
            measure "$name" "$pid" "ws$size" ws --url "ws://127.0.0.1:$LB_PORT/" --size "$size"
        done ;;
    esac
    kill "$pid"; wait "$pid" 2>/dev/null || true
    sleep 0.5
}

for _ in $(seq "$ROUNDS"); do
    run before "$BEFORE" "$BEFORE_FLAGS"
    run after "$AFTER" "$AFTER_FLAGS"
done
python3 - "$OUT" <<'PY'
import statistics as st, sys
d = {}
for line in open(sys.argv[1]):
    name, kind, _, cpu, _ = line.split()
    d.setdefault((name, kind), []).append(float(cpu.split("=")[1]))
for kind in dict.fromkeys(k for _, k in d):
    bs, as_ = d[("before", kind)], d[("after", kind)]
    b, a = st.mean(bs), st.mean(as_)
    ratios = [x / y for x, y in zip(as_, bs)]
    print(f"{kind}: before {b:.2f} us/op, after {a:.2f} us/op, ratio {a / b:.3f}"
          f" (per round {min(ratios):.3f}..{max(ratios):.3f})")
PY
