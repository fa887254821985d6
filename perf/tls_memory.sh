#!/usr/bin/env bash
# TLS A/B of two wslb binaries, interleaved (BEFORE then AFTER, each round):
# each runs as `serve --workers 1 --access-log off` with a TLS listener
# (ECDSA P-256 certificate made here) pinned to core 0, in front of
# `wslb echo`; the clients run on core 1. Per binary and round:
#   idle   N idle wss sessions held (perf/tls_hold.py): VmRSS growth / N
#   keep   wrk over https, kept-alive connections: proxy CPU us per request
#   close  wrk over https with `Connection: close`: proxy CPU us per
#          request, each a new TLS handshake (its inverse: handshakes/s/core)
# CPU is utime+stime from /proc/PID/stat; memory VmRSS from /proc/PID/status.
#
#   perf/tls_memory.sh BEFORE_BIN AFTER_BIN [N=2000] [ROUNDS=3] [SECONDS=5]
#
# Ports: LB_PORT (TLS listener, default 18443), ECHO_PORT (default 19001).
set -euo pipefail
BEFORE=$1 AFTER=$2 N=${3:-2000} ROUNDS=${4:-3} DUR=${5:-5}
LB_PORT=${LB_PORT:-18443} ECHO_PORT=${ECHO_PORT:-19001}
HERE=$(cd "$(dirname "$0")" && pwd)
TCK=$(getconf CLK_TCK)
DIR=$(mktemp -d)
OUT=$DIR/results
EPID= SPID= HPID=
cleanup() {
    for p in $HPID $SPID $EPID; do kill "$p" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$DIR/key.pem" -out "$DIR/cert.pem" >/dev/null 2>&1

taskset -c 1 "$AFTER" echo --listen "127.0.0.1:$ECHO_PORT" >/dev/null 2>&1 &
EPID=$!
sleep 0.5
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

hold() { # n: start holding n sessions, wait until they are up
    taskset -c 1 python3 "$HERE/tls_hold.py" 127.0.0.1 "$LB_PORT" "$1" 2>"$DIR/hold.err" &
    HPID=$!
    for _ in $(seq 600); do
        grep -q holding "$DIR/hold.err" && break
        kill -0 "$HPID" 2>/dev/null || break
        sleep 0.1
    done
    grep holding "$DIR/hold.err" >&2 || {
        echo "hold client did not finish ($(date -u +%T)):" >&2
        cat "$DIR/hold.err" "$DIR/serve.log" >&2
        exit 1
    }
}
unhold() { kill "$HPID"; wait "$HPID" 2>/dev/null || true; HPID=; }

wrk_cpu() { # name kind wrk-args...
    local name=$1 kind=$2; shift 2
    local b a reqs
    b=$(ticks "$SPID")
    reqs=$(taskset -c 1 wrk -t 1 -c 50 -d "${DUR}s" "$@" "https://127.0.0.1:$LB_PORT/" \
        | awk '/requests in/ {print $1}')
    a=$(ticks "$SPID")
    python3 -c "import sys; b,a,t,r=map(int,sys.argv[1:]); \
print(f'$name $kind {(a-b)/t*1e6/max(r,1):.2f} us/req ({r} requests)')" \
        "$b" "$a" "$TCK" "$reqs" | tee -a "$OUT"
}

run() { # name bin
    local name=$1 bin=$2
    taskset -c 0 "$bin" serve --workers 1 --access-log off --admin-listen off \
        --max-connections-per-ip 0 \
        --tls-listen "127.0.0.1:$LB_PORT" --tls-cert "$DIR/cert.pem" --tls-key "$DIR/key.pem" \
        --backend "http://127.0.0.1:$ECHO_PORT" >"$DIR/serve.log" 2>&1 &
    SPID=$!
    sleep 0.7
    # Warm-up: the worker's own one-time allocations are not per session.
    hold 50; unhold; sleep 0.3
    local base after held
    base=$(rss_kib "$SPID")
    hold "$N"
    sleep 1
    after=$(rss_kib "$SPID")
    held=$(awk '/holding/ {print $2}' "$DIR/hold.err")
    unhold
    python3 -c "import sys; b,a,n=map(int,sys.argv[1:]); \
print(f'$name idle {(a-b)/max(n,1):.2f} KiB/session (VmRSS {b} -> {a} KiB, {n} sessions)')" \
        "$base" "$after" "$held" | tee -a "$OUT"
    sleep 0.5
    wrk_cpu "$name" keep
    wrk_cpu "$name" close -H "Connection: close"
    kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=
    sleep 0.5
}

for _ in $(seq "$ROUNDS"); do
    run before "$BEFORE"
    run after "$AFTER"
done
python3 - "$OUT" <<'PY'
import statistics as st, sys
d = {}
for line in open(sys.argv[1]):
    name, kind, value = line.split()[:3]
    d.setdefault((name, kind), []).append(float(value))
units = {"idle": "KiB/session", "keep": "us/req", "close": "us/req"}
for kind in ("idle", "keep", "close"):
    b, a = d[("before", kind)], d[("after", kind)]
    spread = lambda v: f"{min(v):.2f}..{max(v):.2f}"
    print(f"{kind}: before {st.median(b):.2f} ({spread(b)}), after {st.median(a):.2f} "
          f"({spread(a)}) {units[kind]}, ratio of medians {st.median(a) / st.median(b):.3f}")
PY
