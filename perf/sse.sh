#!/usr/bin/env bash
# perf/sse.sh: what the SSE fallback (issue 13) costs next to plain WebSocket
# echo, on the same balancer, backend and load. Starts `wslb echo` and one
# `wslb serve --fallback sse --access-log off --workers 1` in front of it
# (proxy on core 0, echo and load generator on core 1, as perf/ab.sh does),
# then runs ROUNDS rounds of `wslb bench ws` and `wslb bench sse` with the
# same -c, --size and --duration (the order alternates round by round),
# reading the proxy's utime+stime from /proc/PID/stat around each run.
# Prints a markdown table: messages/s, p50/p99 latency (WS: send -> echo;
# SSE: POST sent -> echo event received), proxy CPU µs per message, and the
# SSE/WS ratios, each the median over the rounds; then each round's figures.
# Loopback only; kills only the two processes it started.
#
#   perf/sse.sh [--rounds N (3)] [-c CONNECTIONS (50)] [--size BYTES (64)]
#               [--duration SECONDS (10)]
#
# Env: WSLB_BIN (default target/release/wslb); SSE_ECHO_PORT and
# SSE_PROXY_PORT (default: free ports the kernel picks); PROXY_CORE (0) and
# LOAD_CORE (1); SSE_OUT=DIR keeps every run's bench JSON and stderr there.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${WSLB_BIN:-$ROOT/target/release/wslb}"
ROUNDS=3 CONNS=50 SIZE=64 DUR=10
PROXY_CORE=${PROXY_CORE:-0} LOAD_CORE=${LOAD_CORE:-1}

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift ;;
        -c|--connections) CONNS="$2"; shift ;;
        --size) SIZE="$2"; shift ;;
        --duration) DUR="$2"; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "sse.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
for v in "$ROUNDS" "$CONNS" "$DUR"; do
    case "$v" in ''|*[!0-9]*|0) echo "sse.sh: --rounds, -c and --duration take positive whole numbers" >&2; exit 2 ;; esac
done
case "$SIZE" in ''|*[!0-9]*) echo "sse.sh: --size takes a whole number" >&2; exit 2 ;; esac
[ -x "$BIN" ] || { echo "sse.sh: no binary at $BIN (cargo build --release, or set WSLB_BIN)" >&2; exit 2; }

WORK="$(mktemp -d /tmp/wslb-sse.XXXXXX)"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    if [ -n "${SSE_OUT:-}" ]; then mkdir -p "$SSE_OUT" && cp "$WORK"/* "$SSE_OUT"/ 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[sse $(date +%H:%M:%S)] $*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # port pid
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

ticks() { # utime+stime after "pid (comm) ": fields 12 and 13 from the state on
    sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

ECHO_PORT="${SSE_ECHO_PORT:-$(free_port)}"
PROXY_PORT="${SSE_PROXY_PORT:-$(free_port)}"

taskset -c "$LOAD_CORE" "$BIN" echo --listen "127.0.0.1:$ECHO_PORT" >"$WORK/echo.log" 2>&1 &
EPID=$!
PIDS+=("$EPID")
wait_port "$ECHO_PORT" "$EPID" || { echo "sse.sh: wslb echo did not start:" >&2; cat "$WORK/echo.log" >&2; exit 1; }

taskset -c "$PROXY_CORE" "$BIN" serve --workers 1 --listen "127.0.0.1:$PROXY_PORT" \
    --admin-listen off --access-log off --max-connections-per-ip 0 \
    --fallback sse --backend "http://127.0.0.1:$ECHO_PORT" >"$WORK/serve.log" 2>&1 &
SPID=$!
PIDS+=("$SPID")
wait_port "$PROXY_PORT" "$SPID" || { echo "sse.sh: wslb serve did not start:" >&2; cat "$WORK/serve.log" >&2; exit 1; }
log "echo pid $EPID on :$ECHO_PORT, serve pid $SPID on :$PROXY_PORT; $ROUNDS rounds of ${DUR}s, -c $CONNS, ${SIZE} B"

RESULTS="$WORK/results"
: >"$RESULTS"

measure() { # kind round url
    local kind=$1 round=$2 url=$3 b a
    b=$(ticks "$SPID")
    if ! timeout $((DUR + 60)) taskset -c "$LOAD_CORE" "$BIN" bench "$kind" --url "$url" \
        -c "$CONNS" --size "$SIZE" -d "$DUR" --json \
        >"$WORK/$kind.$round.json" 2>"$WORK/$kind.$round.err"; then
        log "bench $kind (round $round) failed:"
        tail -5 "$WORK/$kind.$round.err" >&2
        return 1
    fi
    a=$(ticks "$SPID")
    python3 - "$kind" "$round" "$b" "$a" "$(getconf CLK_TCK)" "$WORK/$kind.$round.json" >>"$RESULTS" <<'PY'
import json, sys
kind, rnd, b, a, tck, f = sys.argv[1:]
j = json.load(open(f))
ops = j["ops"]
cpu = (int(a) - int(b)) / int(tck) * 1e6 / ops if ops else float("nan")
l = j["latency_us"]
print(kind, rnd, j["ops_per_sec"], l["p50"], l["p99"], l["max"], round(cpu, 2), j["errors_total"],
      json.dumps(j["errors"], separators=(",", ":")))
PY
    tail -1 "$RESULTS" | awk '{printf "[sse] %s round %s: %s msg/s, p50 %s us, p99 %s us, max %s us, %s us CPU/msg, errors %s\n", $1, $2, $3, $4, $5, $6, $7, $8}' >&2
    grep '^bench sse:' "$WORK/$kind.$round.err" | head -5 >&2 || true
    kill -0 "$SPID" 2>/dev/null || { log "the proxy died during bench $kind"; return 1; }
}

for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="ws sse"; else order="sse ws"; fi
    for kind in $order; do
        case $kind in
            ws) measure ws "$r" "ws://127.0.0.1:$PROXY_PORT/" ;;
            sse) measure sse "$r" "http://127.0.0.1:$PROXY_PORT/" ;;
        esac
        sleep 1
    done
done

python3 - "$RESULTS" "$CONNS" "$SIZE" "$DUR" <<'PY'
import json, statistics as st, sys
path, conns, size, dur = sys.argv[1:]
rows = {}
for line in open(path):
    kind, rnd, ops, p50, p99, mx, cpu, errs, emap = line.split(maxsplit=8)
    rows[(kind, int(rnd))] = dict(ops=float(ops), p50=float(p50), p99=float(p99), max=float(mx),
                                  cpu=float(cpu), errs=int(errs), emap=json.loads(emap))
rounds = sorted({r for _, r in rows})
def med(kind, key):
    return st.median(rows[(kind, r)][key] for r in rounds)
def ratio(key):
    return st.median(rows[("sse", r)][key] / rows[("ws", r)][key] for r in rounds if rows[("ws", r)][key])
print(f"SSE fallback vs WebSocket echo: -c {conns}, {size} B messages, {dur} s runs, "
      f"median of {len(rounds)} rounds (ratio: median of the per-round ratios)\n")
print("| | WebSocket | SSE fallback | SSE/WS |")
print("|---|---:|---:|---:|")
for name, key, fmt in [("messages/s", "ops", "{:,.0f}"), ("p50 latency µs", "p50", "{:,.0f}"),
                       ("p99 latency µs", "p99", "{:,.0f}"), ("proxy CPU µs/message", "cpu", "{:.2f}")]:
    print(f"| {name} | {fmt.format(med('ws', key))} | {fmt.format(med('sse', key))} | {ratio(key):.2f} |")
errs = {k: sum(rows[(k, r)]["errs"] for r in rounds) for k in ("ws", "sse")}
print(f"| errors (all rounds) | {errs['ws']} | {errs['sse']} | |")
print("\nPer round:\n")
print("| round | kind | messages/s | p50 µs | p99 µs | max µs | CPU µs/msg | errors |")
print("|---:|---|---:|---:|---:|---:|---:|---|")
for r in rounds:
    for k in ("ws", "sse"):
        x = rows[(k, r)]
        e = ", ".join(f"{n} {v}" for n, v in x["emap"].items()) or "0"
        print(f"| {r} | {k} | {x['ops']:,.0f} | {x['p50']:.0f} | {x['p99']:.0f} | {x['max']:.0f} | {x['cpu']:.2f} | {e} |")
PY
