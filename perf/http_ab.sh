#!/usr/bin/env bash
# Interleaved CPU per HTTP request of any number of proxies on the same echo
# backend, measured the way perf/run.sh does: each proxy pinned to core 0,
# `wslb echo` and wrk (-c 50 -t 1, small responses, kept-alive) on core 1,
# proxy CPU from /proc (utime+stime of its process). Each round runs every
# proxy once, in the order given; with RATE set, each run also sends a fixed
# rate (`wslb bench http --rate RATE -c 50`) and reports its p99 (latency from
# the intended send time). Prints every run, then each proxy's mean, spread
# (min..max) and ratio to the first proxy's mean.
#
#   perf/http_ab.sh ROUNDS SECONDS NAME 'COMMAND' [NAME 'COMMAND' ...]
#
# COMMAND is run through the shell with @PORT@ (where to listen) and @ECHO@
# (the backend's port) replaced, e.g.
#   floor '/tmp/wslb floor --listen 127.0.0.1:@PORT@ --backend 127.0.0.1:@ECHO@'
#   wslb  'target/release/wslb serve --workers 1 --listen 127.0.0.1:@PORT@
#          --backend http://127.0.0.1:@ECHO@ --admin-listen off --access-log off
#          --max-connections-per-ip 0'
# Env: LB_PORT (18080), ECHO_PORT (19001), BENCH_BIN (target/release/wslb:
# echo backend and fixed-rate load), RATE (empty: no fixed-rate run).
set -euo pipefail
ROUNDS=$1 DUR=$2
shift 2
NAMES=() CMDS=()
while [ $# -ge 2 ]; do
    NAMES+=("$1") CMDS+=("$2")
    shift 2
done
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/wslb}
LB_PORT=${LB_PORT:-18080} ECHO_PORT=${ECHO_PORT:-19001}
RATE=${RATE:-}
TCK=$(getconf CLK_TCK)
OUT=$(mktemp)
trap 'kill "$EPID" 2>/dev/null || true; rm -f "$OUT" /tmp/wslb-hab.$$.*' EXIT

taskset -c 1 "$BENCH_BIN" echo --listen "127.0.0.1:$ECHO_PORT" >/dev/null 2>&1 &
EPID=$!
sleep 0.5
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

one() { # name command
    local name=$1 cmd=${2//@PORT@/$LB_PORT}
    cmd=${cmd//@ECHO@/$ECHO_PORT}
    # exec: the pid is the proxy's own, not a shell's.
    taskset -c 0 bash -c "exec $cmd" >/dev/null 2>&1 &
    local pid=$! b a p99=-
    sleep 0.7
    b=$(ticks "$pid")
    taskset -c 1 wrk -c 50 -t 1 -d "${DUR}s" "http://127.0.0.1:$LB_PORT/" >/tmp/wslb-hab.$$.wrk 2>&1
    a=$(ticks "$pid")
    if [ -n "$RATE" ]; then
        taskset -c 1 "$BENCH_BIN" bench http --url "http://127.0.0.1:$LB_PORT/" -c 50 \
            --rate "$RATE" -d "$DUR" --json >/tmp/wslb-hab.$$.json 2>/dev/null
        p99=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["latency_us"]["p99"])' /tmp/wslb-hab.$$.json)
    fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    python3 - "$name" "$b" "$a" "$TCK" /tmp/wslb-hab.$$.wrk "$p99" "$DUR" <<'PY' | tee -a "$OUT"
import re, sys
name, b, a, tck, f, p99, dur = sys.argv[1:]
text = open(f).read()
m = re.search(r"(\d+) requests in", text)
reqs = int(m.group(1)) if m else 0
errs = "errors" if "Socket errors" in text or "Non-2xx" in text else "ok"
cpu = (int(a) - int(b)) / int(tck) * 1e6 / max(reqs, 1)
print(f"{name} req/s={reqs / float(dur):.0f} cpu_us_per_req={cpu:.2f} p99_us={p99} {errs}")
PY
    sleep 0.5
}

for _ in $(seq "$ROUNDS"); do
    for i in "${!NAMES[@]}"; do
        one "${NAMES[$i]}" "${CMDS[$i]}"
    done
done
python3 - "$OUT" "${NAMES[@]}" <<'PY'
import statistics as st, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    runs.setdefault(f[0], []).append((float(f[2].split("=")[1]), f[3].split("=")[1]))
base = None
for name in sys.argv[2:]:
    cpu = [c for c, _ in runs[name]]
    mean = st.mean(cpu)
    base = base or mean
    p99 = " ".join(p for _, p in runs[name])
    print(f"{name}: {mean:.2f} us/req (min {min(cpu):.2f}, max {max(cpu):.2f}), "
          f"ratio to {sys.argv[2]} {mean / base:.3f}; p99 us per round: {p99}")
PY
