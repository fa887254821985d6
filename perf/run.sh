#!/usr/bin/env bash
# perf/run.sh: end-to-end comparison of wslb (inspect and tunnel modes) with
# HAProxy and nginx, plus "direct" (no proxy) and "floor" (`wslb floor`, a
# bytes-only io_uring forwarder: the cost of moving the bytes), and of wslb's
# message hub with Pushpin (fan-out), in one run.
# The proxy under test gets one worker pinned to core 0; the echo backend and
# the load generator share core 1. Scenarios: proxy (1-5), lowrate (6: 5,000
# WebSockets at 1 msg/s each), tls (7: handshakes, resumption, kept-alive
# HTTPS, idle wss; perf/scenarios.sh), scaling (8: wslb 1 vs 2 workers),
# fanout (perf/fanout.sh). wslb runs with its access log off, like the peers.
# Writes perf/results/latest.{md,svg} and dated copies. Proxies run in ROUNDS rounds (default 3, --quick 1), the
# order rotated each round; the table shows each figure's median and spread,
# and each proxy starts from a quiet machine (TIME_WAIT drained, fresh port).
# Usage: perf/run.sh [--quick] [--rounds N] [--duration S] [--hold N]
#   [--proxies "direct wslb-inspect ..."] [--scenarios "proxy lowrate tls scaling fanout"]
#   [--fanout-n "1000 5000"] [--fanout-proxies "wslb-inspect pushpin"] [--open-rate R]
#   [--in-flight K] [--lowrate-n N] [--tls-hold N]
# Ports (env): PERF_ECHO_PORT (18900), PERF_PROXY_PORT (19100; TLS listeners
# at +PERF_TLS_OFFSET, 400), PERF_FANOUT_PORT (18950).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${WSLB_BIN:-$ROOT/target/release/wslb}"
OUT="$ROOT/perf/results"
DUR=10
HOLD_N=8000
RATE=5000
QUICK=0
ROUNDS=""
ROUND=1
PROXIES="direct floor wslb-inspect wslb-tunnel haproxy nginx"
# proxy: scenarios 1-5 for $PROXIES; lowrate, tls: 6 and 7 for $PROXIES
# (perf/scenarios.sh); scaling: wslb-inspect with 1 and 2 workers;
# fanout: wslb's hub and Pushpin (perf/fanout.sh).
SCENARIOS="proxy lowrate tls scaling fanout"
# Scenario 6: sessions, each sending one 64 B message a second.
LOWRATE_N=5000
# Scenario 7: idle wss sessions held for memory per session.
TLS_HOLD_N=2000
FANOUT_N="1000 5000"
FANOUT_PROXIES="wslb-inspect pushpin"
# Sessions opened per second in the fan-out scenario (Pushpin answers 502 to
# part of a faster burst: its origin is reached through zurl, one request per open).
OPEN_RATE=200
# Saturation window: most publishes whose deliveries may be outstanding.
IN_FLIGHT=4
PROXY_CORE=0
LOAD_CORE=1

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; DUR=3 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DUR="$2"; shift ;;
        --hold) HOLD_N="$2"; shift ;;
        --rate) RATE="$2"; shift ;;
        --proxies) PROXIES="$2"; shift ;;
        --scenarios) SCENARIOS="$2"; shift ;;
        --fanout-only) SCENARIOS="fanout" ;;
        --fanout-n) FANOUT_N="$2"; shift ;;
        --fanout-proxies) FANOUT_PROXIES="$2"; shift ;;
        --open-rate) OPEN_RATE="$2"; shift ;;
        --in-flight) IN_FLIGHT="$2"; shift ;;
        --lowrate-n) LOWRATE_N="$2"; shift ;;
        --tls-hold) TLS_HOLD_N="$2"; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

if [ -z "$ROUNDS" ]; then if [ "$QUICK" = 1 ]; then ROUNDS=1; else ROUNDS=3; fi; fi
case "$ROUNDS" in ''|*[!0-9]*|0) echo "run.sh: --rounds takes a positive count" >&2; exit 2 ;; esac

WORK="$(mktemp -d /tmp/wslb-perf.XXXXXX)"
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
# Ports below the ephemeral range (32768+), so TIME_WAIT sockets of earlier
# traffic can never block the bind.
ECHO_PORT="${PERF_ECHO_PORT:-18900}"
PROXY_PORT="${PERF_PROXY_PORT:-19100}"
# A proxy on port P also listens for TLS on P + TLS_OFFSET (scenario 7).
TLS_OFFSET="${PERF_TLS_OFFSET:-400}"
BG_PIDS=()
T_START=$(date +%s)

log() { echo "[perf $(date +%H:%M:%S)] $*" >&2; }

cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    sleep 0.3
    for p in "${BG_PIDS[@]}"; do
        kill -9 "$p" 2>/dev/null
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Start a command in the background with its output in $WORK/NAME.log.
start_bg() {
    local name="$1"; shift
    "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    BG_PIDS+=("$LAST_PID")
}

stop_pid() {
    local pid="$1" i
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

wait_port() {
    local port="$1" pid="$2" i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# All processes of a proxy: the started pid and its direct children (nginx workers).
proc_tree() {
    local pid="$1"
    echo "$pid"
    pgrep -P "$pid" 2>/dev/null
}

# utime+stime in clock ticks, summed over the given pids.
cpu_ticks() {
    local total=0 p rest
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        rest="$(sed 's/^.*) //' "/proc/$p/stat")"
        set -- $rest
        # After "pid (comm) ", field 3 (state) is $1, so utime=$12, stime=$13.
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

rss_kib() {
    local total=0 p v
    for p in "$@"; do
        v="$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)"
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

HZ="$(getconf CLK_TCK)"

# record PROXY METRIC VALUE [ERRORS]: into this attempt's file, kept if the attempt is.
record() {
    printf '{"proxy":"%s","metric":"%s","value":%s,"errors":%s,"round":%s}\n' "$1" "$2" "${3:-null}" "${4:-0}" "$ROUND" >>"$RESULTS.cur"
}

# A quiet start for the next proxy: the sockets of the previous one's held
# connections gone from TIME_WAIT (at most 60 s; the ports change anyway).
wait_quiet() {
    local n i
    for i in $(seq 120); do
        n=$(ss -Htan state time-wait 2>/dev/null | wc -l)
        [ "$n" -lt 200 ] && return 0
        [ "$i" = 1 ] && log "waiting for $n TIME_WAIT sockets to drain"
        sleep 0.5
    done
    log "still $n TIME_WAIT sockets after 60 s; going on (ports differ)"
}

# Did the echo backend and the proxy survive the last scenario? Something
# outside this script killing them (a shared machine) spoils the attempt.
healthy() {
    local what=""
    kill -0 "$ECHO_PID" 2>/dev/null || what="echo backend"
    if [ -n "$PROXY_PID" ] && ! kill -0 "$PROXY_PID" 2>/dev/null; then what="${what:+$what and }proxy"; fi
    if [ -n "$what" ]; then
        log "$1: the $what died during this scenario"
        ATTEMPT_OK=0
        return 1
    fi
}

# cpu_us_per_op TICKS_BEFORE TICKS_AFTER OPS -> microseconds of proxy CPU per op
cpu_per_op() {
    python3 -c "import sys; b,a,n=map(float,sys.argv[1:]); print('null' if n<=0 or a<b else round((a-b)/$HZ*1e6/n,2))" "$1" "$2" "$3"
}

bench() { taskset -c "$LOAD_CORE" "$BIN" bench "$@"; }
# jget FILE KEY.PATH: a value from a bench JSON summary; latency is null when nothing completed.
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); v=d
for k in sys.argv[2].split('.'): v=v[k]
print('null' if sys.argv[2].startswith('latency') and d['ops']==0 else v)" "$1" "$2" 2>/dev/null || echo null; }

# start_proxy NAME PORT [WORKERS CORES]: the proxy on PORT (plain) and
# PORT + TLS_OFFSET (TLS, where it does TLS); WORKERS and CORES for wslb only
# (scenario 8), by default 1 worker on $PROXY_CORE.
start_proxy() {
    local name="$1" port="$2" workers="${3:-1}" cores="${4:-$PROXY_CORE}"
    TLS_PORT=$((port + TLS_OFFSET))
    case "$name" in
        direct) PROXY_PID=""; TARGET_PORT=$ECHO_PORT; return 0 ;;
        # All the load comes from one address (8,000 held connections): no per-IP cap.
        # The access log is off, as in the peers' configurations.
        wslb-inspect|wslb-tunnel)
            start_bg "$name" taskset -c "$cores" "$BIN" serve --workers "$workers" \
                --listen "127.0.0.1:$port" --backend "http://127.0.0.1:$ECHO_PORT" \
                --tls-listen "127.0.0.1:$TLS_PORT" --tls-cert "$TLS_DIR/cert.pem" --tls-key "$TLS_DIR/key.pem" \
                --ws-mode "${name#wslb-}" --admin-listen 127.0.0.1:0 --log-level warn \
                --max-connections-per-ip 0 --access-log off ;;
        # The measurement floor: one io_uring thread, bytes in, bytes out.
        floor)
            start_bg floor taskset -c "$PROXY_CORE" "$BIN" floor \
                --listen "127.0.0.1:$port" --backend "127.0.0.1:$ECHO_PORT" --log-level warn ;;
        haproxy)
            sed -e "s|@PORT@|$port|g; s|@TLSPORT@|$TLS_PORT|g; s|@ECHO@|$ECHO_PORT|g; s|@DIR@|$WORK|g" \
                "$ROOT/perf/haproxy.cfg.tmpl" >"$WORK/haproxy.cfg"
            start_bg haproxy taskset -c "$PROXY_CORE" haproxy -db -f "$WORK/haproxy.cfg" ;;
        nginx)
            mkdir -p "$WORK"/nginx-{body,proxy,fastcgi,uwsgi,scgi}
            sed -e "s|@PORT@|$port|g; s|@TLSPORT@|$TLS_PORT|g; s|@ECHO@|$ECHO_PORT|g; s|@DIR@|$WORK|g" \
                "$ROOT/perf/nginx.conf.tmpl" >"$WORK/nginx.conf"
            start_bg nginx taskset -c "$PROXY_CORE" nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" ;;
    esac
    PROXY_PID=$LAST_PID
    TARGET_PORT=$port
    if ! wait_port "$port" "$PROXY_PID"; then
        log "FAILED: $name did not start listening on $port; its column shows n/a"
        tail -n 5 "$WORK/$name.log" >&2
        stop_pid "$PROXY_PID"
        return 1
    fi
    sleep 0.3
}

# All processes of the proxy under test (none for direct).
pids() { [ -n "$PROXY_PID" ] && proc_tree "$PROXY_PID"; }

# run_proxy NAME PORT: scenarios 1-5 against a fresh NAME on PORT.
run_proxy() {
    local name="$1" port="$2" b a ops j
    log "=== $name"
    start_proxy "$name" "$port" || return 0
    local url="127.0.0.1:$TARGET_PORT/"

    # 1. HTTP small responses, closed loop, wrk.
    b=$(cpu_ticks $(pids))
    taskset -c "$LOAD_CORE" wrk -c 50 -t 1 -d "${DUR}s" --latency "http://$url" >"$WORK/$name-wrk.txt" 2>&1
    a=$(cpu_ticks $(pids))
    j="$(python3 "$ROOT/perf/report.py" wrk "$WORK/$name-wrk.txt")"
    read -r rps p99 reqs errs <<<"$j"
    record "$name" http_rps "$rps" "$errs"; record "$name" http_p99_us "$p99" "$errs"
    [ -n "$PROXY_PID" ] && record "$name" http_cpu_us "$(cpu_per_op "$b" "$a" "$reqs")" "$errs"
    log "$name http: $rps req/s, p99 ${p99}us, errors $errs"
    healthy "$name http" || return 0

    # 2. HTTP at a fixed rate.
    bench http --url "http://$url" -c 50 --rate "$RATE" -d "$DUR" --json >"$WORK/$name-rate.json" 2>"$WORK/$name-rate.err"
    for q in p50 p99 p999; do
        record "$name" "rate_${q}_us" "$(jget "$WORK/$name-rate.json" latency_us.$q)" "$(jget "$WORK/$name-rate.json" errors_total)"
    done
    healthy "$name rate" || return 0

    # 3. WebSocket echo, 64 B and 16 KiB.
    for size in 64 16384; do
        local tag=ws64; [ "$size" = 16384 ] && tag=ws16k
        b=$(cpu_ticks $(pids))
        bench ws --url "ws://$url" -c 50 --size "$size" -d "$DUR" --json >"$WORK/$name-$tag.json" 2>"$WORK/$name-$tag.err"
        a=$(cpu_ticks $(pids))
        ops=$(jget "$WORK/$name-$tag.json" ops); errs=$(jget "$WORK/$name-$tag.json" errors_total)
        record "$name" "${tag}_mps" "$(jget "$WORK/$name-$tag.json" ops_per_sec)" "$errs"
        record "$name" "${tag}_p99_us" "$(jget "$WORK/$name-$tag.json" latency_us.p99)" "$errs"
        [ -n "$PROXY_PID" ] && record "$name" "${tag}_cpu_us" "$(cpu_per_op "$b" "$a" "$ops")" "$errs"
        log "$name $tag: $(jget "$WORK/$name-$tag.json" ops_per_sec) msg/s, errors $errs"
        healthy "$name $tag" || return 0
    done

    # 4. WebSocket session setup rate.
    b=$(cpu_ticks $(pids))
    bench ws --connect-rate --url "ws://$url" -c 20 -d "$DUR" --json >"$WORK/$name-sess.json" 2>"$WORK/$name-sess.err"
    a=$(cpu_ticks $(pids))
    ops=$(jget "$WORK/$name-sess.json" ops); errs=$(jget "$WORK/$name-sess.json" errors_total)
    record "$name" sess_rate "$(jget "$WORK/$name-sess.json" ops_per_sec)" "$errs"
    record "$name" sess_p99_us "$(jget "$WORK/$name-sess.json" latency_us.p99)" "$errs"
    [ -n "$PROXY_PID" ] && record "$name" sess_cpu_us "$(cpu_per_op "$b" "$a" "$ops")" "$errs"
    log "$name sessions: $(jget "$WORK/$name-sess.json" ops_per_sec)/s, errors $errs"
    healthy "$name sessions" || return 0

    # 5. Idle WebSockets held through the proxy: memory per connection.
    if [ -n "$PROXY_PID" ]; then hold_scenario "$name"; fi

    [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"
    # Let TIME_WAIT sockets and the backend settle between proxies.
    sleep 1
}

hold_scenario() {
    local name="$1" before after hp i up=""
    sleep 1
    before=$(rss_kib $(proc_tree "$PROXY_PID"))
    start_bg "$name-hold" taskset -c "$LOAD_CORE" "$BIN" bench ws --hold "$HOLD_N" --url "ws://127.0.0.1:$TARGET_PORT/" --json
    hp=$LAST_PID
    for i in $(seq 1 1200); do
        up="$(grep -m1 '^holding' "$WORK/$name-hold.log" 2>/dev/null)"
        [ -n "$up" ] && break
        kill -0 "$hp" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$up" ]; then
        log "FAILED: $name did not reach $HOLD_N held connections"
        record "$name" hold_bytes_per_conn null 1
        stop_pid "$hp"
        return
    fi
    sleep 2
    after=$(rss_kib $(proc_tree "$PROXY_PID"))
    local held; held="$(echo "$up" | awk '{print $2}')"
    if [ "${held:-0}" -gt 0 ]; then
        record "$name" hold_bytes_per_conn "$(python3 -c "print(round(($after-$before)*1024/$held))")" "$((HOLD_N - held))"
    else
        record "$name" hold_bytes_per_conn null "$HOLD_N"
    fi
    log "$name hold: $up, RSS ${before} -> ${after} KiB"
    healthy "$name hold"
    kill -INT "$hp" 2>/dev/null
    stop_pid "$hp"
}

# shellcheck source=perf/fanout.sh
. "$ROOT/perf/fanout.sh"
# shellcheck source=perf/scenarios.sh
. "$ROOT/perf/scenarios.sh"

has_scenario() { case " $SCENARIOS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# --- main -------------------------------------------------------------------
for sc in $SCENARIOS; do
    case "$sc" in proxy|lowrate|tls|scaling|fanout) ;;
        *) echo "run.sh: unknown scenario $sc (proxy, lowrate, tls, scaling, fanout)" >&2; exit 2 ;;
    esac
done
if [ ! -x "$BIN" ]; then
    echo "run.sh: $BIN not found; run scripts/perf-setup.sh first" >&2
    exit 1
fi
tools="taskset python3"
# openssl makes the certificate every proxy's TLS listener serves.
tools="$tools openssl"
if has_scenario proxy || has_scenario tls || has_scenario scaling; then tools="$tools wrk"; fi
for tool in $tools; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool missing; run scripts/perf-setup.sh" >&2; exit 1; }
done

ECHO_PID=""
ensure_echo() {
    if [ -n "$ECHO_PID" ] && kill -0 "$ECHO_PID" 2>/dev/null; then return 0; fi
    if [ -n "$ECHO_PID" ]; then
        log "WARNING: the echo backend (pid $ECHO_PID) died; restarting it. Figures before this line may be affected."
    fi
    start_bg "echo-$1" taskset -c "$LOAD_CORE" "$BIN" echo --listen "127.0.0.1:$ECHO_PORT"
    ECHO_PID=$LAST_PID
    if ! wait_port "$ECHO_PORT" "$ECHO_PID"; then
        echo "run.sh: echo backend failed to start:" >&2
        tail -n 20 "$WORK/echo-$1.log" >&2
        exit 1
    fi
    log "echo backend up on $ECHO_PORT (work dir $WORK)"
}

# The certificate every TLS listener serves (scenario 7), made once per run.
make_cert
# Scenarios run per proxy, each against a fresh proxy after a quiet wait.
PER_PROXY=""
for sc in proxy lowrate tls; do has_scenario "$sc" && PER_PROXY="$PER_PROXY $sc"; done
[ -n "$PER_PROXY" ] || PROXIES=""
read -r -a PROXY_LIST <<<"$PROXIES"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  # Round r starts r-1 places further down the list, so no proxy always
  # follows the same one (or always comes first).
  n=${#PROXY_LIST[@]}
  order=()
  for ((k = 0; k < n; k++)); do order+=("${PROXY_LIST[$(( (k + ROUND - 1) % n ))]}"); done
  [ "$n" -gt 0 ] && log "round $ROUND of $ROUNDS: ${order[*]}"
  for p in "${order[@]}"; do
   for sc in $PER_PROXY; do
    scenario_applies "$sc" "$p" || continue
    wait_quiet
    for attempt in 1 2; do
        PROXY_PORT=$((PROXY_PORT + 1))
        ensure_echo "$p"
        ATTEMPT_OK=1
        PROXY_PID=""
        : >"$RESULTS.cur"
        case "$sc" in
            proxy) run_proxy "$p" "$PROXY_PORT" ;;
            lowrate) lowrate_scenario "$p" "$PROXY_PORT" ;;
            tls) tls_scenario "$p" "$PROXY_PORT" ;;
        esac
        [ -n "${PROXY_PID:-}" ] && stop_pid "$PROXY_PID"
        if [ "$ATTEMPT_OK" = 1 ] || [ "$attempt" = 2 ]; then
            cat "$RESULTS.cur" >>"$RESULTS"
            [ "$ATTEMPT_OK" = 1 ] || echo "$p ($sc): a process died during the run twice; its figures may be incomplete" >>"$WORK/notes.txt"
            break
        fi
        log "retrying $p ($sc) once"
        echo "$p ($sc) was re-run after a process died during its first attempt" >>"$WORK/notes.txt"
    done
   done
  done
  if has_scenario scaling; then
    wait_quiet
    ensure_echo scaling
    : >"$RESULTS.cur"
    scaling_round
    cat "$RESULTS.cur" >>"$RESULTS"
  fi
done
ROUND=1

has_scenario fanout && fanout_all

ELAPSED=$(( $(date +%s) - T_START ))
cat >"$WORK/meta.json" <<JSON
{"date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
 "nproc": "$(nproc)",
 "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')",
 "kernel": "$(uname -r)",
 "wslb": "$("$BIN" --version 2>/dev/null | head -n1)",
 "haproxy": "$(haproxy -v 2>/dev/null | head -n1 | awk '{print $3}')",
 "nginx": "$(command -v nginx >/dev/null && nginx -v 2>&1 | sed 's|.*/||')",
 "wrk": "$(wrk -v 2>&1 | head -n1 | awk '{print $2}')",
 "pushpin": "$(pushpin --version 2>/dev/null | awk '{print $2}')",
 "duration_s": $DUR, "rate": $RATE, "hold": $HOLD_N, "quick": $QUICK, "rounds": $ROUNDS,
 "lowrate_n": $LOWRATE_N, "tls_hold": $TLS_HOLD_N, "openssl": "$(openssl version 2>/dev/null | awk '{print $2}')",
 "elapsed_s": $ELAPSED, "proxies": "$PROXIES", "scenarios": "$SCENARIOS",
 "fanout_n": "$FANOUT_N", "fanout_proxies": "$FANOUT_PROXIES", "open_rate": $OPEN_RATE,
 "in_flight": $IN_FLIGHT}
JSON
mkdir -p "$OUT"
STAMP="$(date '+%Y-%m-%d-%H%M')"
# A fan-out-only run leaves latest.md (the whole comparison) alone.
LATEST=latest
[ "$SCENARIOS" = fanout ] && { LATEST=latest-fanout; STAMP="$STAMP-fanout"; }
python3 "$ROOT/perf/report.py" report "$RESULTS" "$WORK/meta.json" "$OUT/$STAMP.md" "$OUT/$STAMP.svg" || exit 1
cp "$OUT/$STAMP.md" "$OUT/$LATEST.md"
if [ "$LATEST" = latest ]; then cp "$OUT/$STAMP.svg" "$OUT/latest.svg"; else rm -f "$OUT/$STAMP.svg"; fi
cp "$RESULTS" "$OUT/$STAMP.jsonl"
log "done in ${ELAPSED}s: $OUT/$LATEST.md (raw logs in $WORK)"
cat "$OUT/$LATEST.md"
