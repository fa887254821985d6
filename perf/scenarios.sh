# perf/scenarios.sh: scenarios 6-8 of perf/run.sh (sourced by it; uses its
# helpers: start_bg, stop_pid, start_proxy, pids, proc_tree, cpu_ticks,
# cpu_per_op, rss_kib, bench, jget, record, healthy, log, wait_quiet).
#
# 6. lowrate: $LOWRATE_N WebSocket sessions opened at $LOWRATE_OPEN/s, each
#    then sending one 64 B message a second (open loop, latency from the
#    intended send time); proxy CPU per message (read by the bench at the
#    edges of the steady window) and p99 round trip over $DUR s.
# 7. tls: the proxy's TLS listener (one ECDSA P-256 certificate for all,
#    made by make_cert) in front of the same plain echo backend: full and
#    resumed TLS 1.3 handshakes per second (`wslb bench http --handshakes`,
#    each a new connection, one GET, close) with proxy CPU per handshake;
#    kept-alive HTTPS (wrk) with CPU per request; memory per idle wss
#    session ($TLS_HOLD_N held by perf/wss_hold.py). Not for floor or direct.
# 8. scaling: wslb-inspect with 1 worker on core 0, then 2 workers on cores
#    0 and 1 (the echo backend and the load generator stay on core 1):
#    HTTP requests/s (wrk) and WebSocket 64 B echo messages/s.

# Sessions opened per second in scenario 6 (all up before the window).
LOWRATE_OPEN=1000
# Concurrent connections of the handshake and kept-alive HTTPS phases.
TLS_CONNS=20

# make_cert: one self-signed ECDSA P-256 certificate for localhost and
# 127.0.0.1 in $TLS_DIR (cert.pem, key.pem; haproxy.pem is both). It says
# CA:FALSE: rustls (the bench's client) refuses a CA certificate as a
# server's own, and `req -x509` makes one by default.
make_cert() {
    TLS_DIR="$WORK/tls"
    mkdir -p "$TLS_DIR"
    if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -addext basicConstraints=critical,CA:FALSE \
        -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" >"$TLS_DIR/openssl.log" 2>&1; then
        echo "run.sh: cannot make the TLS certificate:" >&2
        cat "$TLS_DIR/openssl.log" >&2
        exit 1
    fi
    cat "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" >"$TLS_DIR/haproxy.pem"
}

# scenario_applies SCENARIO PROXY: false where the pair makes no sense.
scenario_applies() {
    case "$1:$2" in
        tls:floor|tls:direct) return 1 ;;
        *) return 0 ;;
    esac
}

# lowrate_scenario NAME PORT: scenario 6 against a fresh NAME.
lowrate_scenario() {
    local name="$1" port="$2" json watch="" errs warm
    log "=== $name: $LOWRATE_N sessions at 1 msg/s"
    start_proxy "$name" "$port" || return 0
    json="$WORK/$name-lowrate-r$ROUND.json"
    [ -n "$PROXY_PID" ] && watch="--watch-pid $(proc_tree "$PROXY_PID" | paste -sd, -)"
    # The window opens 2 s after the last session is up; if some never come
    # up, at the latest after three times the planned opening time + 5 s.
    warm=$(( 3 * LOWRATE_N / LOWRATE_OPEN + 5 ))
    # shellcheck disable=SC2086
    bench ws --url "ws://127.0.0.1:$TARGET_PORT/" -c "$LOWRATE_N" --rate "$LOWRATE_N" --size 64 \
        --open-rate "$LOWRATE_OPEN" --warmup "$warm" -d "$DUR" --timeout 10 $watch --json \
        >"$json" 2>"$json.err"
    errs=$(jget "$json" errors_total)
    record "$name" lowrate_mps "$(jget "$json" ops_per_sec)" "$errs"
    record "$name" lowrate_p99_us "$(jget "$json" latency_us.p99)" "$errs"
    [ -n "$PROXY_PID" ] && record "$name" lowrate_cpu_us "$(jget "$json" proxy_cpu_us_per_op)" "$errs"
    local up; up=$(jget "$json" open_at_window)
    if [ "$up" != "$LOWRATE_N" ]; then
        echo "$name lowrate (round $ROUND): only $up of $LOWRATE_N sessions were up when the window opened" >>"$WORK/notes.txt"
    fi
    log "$name lowrate: $(jget "$json" ops_per_sec) msg/s, p99 $(jget "$json" latency_us.p99) us, CPU $(jget "$json" proxy_cpu_us_per_op) us/msg, $up sessions up, errors $errs"
    healthy "$name lowrate"
}

# tls_handshakes NAME TAG [--resume]: one handshake phase of scenario 7.
tls_handshakes() {
    local name="$1" tag="$2" json b a ops errs
    shift 2
    json="$WORK/$name-$tag-r$ROUND.json"
    b=$(cpu_ticks $(pids))
    bench http --handshakes "$@" --url "https://localhost:$TLS_PORT/" --ca "$TLS_DIR/cert.pem" \
        -c "$TLS_CONNS" -d "$DUR" --json >"$json" 2>"$json.err"
    a=$(cpu_ticks $(pids))
    ops=$(jget "$json" ops); errs=$(jget "$json" errors_total)
    local cpu; cpu="$(cpu_per_op "$b" "$a" "$ops")"
    record "$name" "${tag}_rate" "$(jget "$json" ops_per_sec)" "$errs"
    record "$name" "${tag}_cpu_us" "$cpu" "$errs"
    # What one proxy core could do at that cost: the load generator, doing the
    # client half of each handshake on one core, may set the measured rate.
    record "$name" "${tag}_per_core" "$(python3 -c "import sys; c=sys.argv[1]; print('null' if c=='null' or float(c)<=0 else round(1e6/float(c)))" "$cpu")" "$errs"
    record "$name" "${tag}_resumed_pct" "$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(round(100*d.get('resumed',0)/d['ops']) if d['ops'] else 'null')" "$json" 2>/dev/null || echo null)" "$errs"
    log "$name $tag: $(jget "$json" ops_per_sec)/s, CPU ${cpu} us each, resumed $(jget "$json" resumed) of $ops, errors $errs"
}

# tls_scenario NAME PORT: scenario 7 against a fresh NAME.
tls_scenario() {
    local name="$1" port="$2" b a j rps p99 reqs errs
    log "=== $name: TLS"
    start_proxy "$name" "$port" || return 0
    if ! wait_port "$TLS_PORT" "$PROXY_PID"; then
        log "FAILED: $name is not listening for TLS on $TLS_PORT"
        return 0
    fi
    tls_handshakes "$name" tls_full; healthy "$name tls full" || return 0
    tls_handshakes "$name" tls_res --resume; healthy "$name tls resumed" || return 0

    b=$(cpu_ticks $(pids))
    taskset -c "$LOAD_CORE" wrk -c "$TLS_CONNS" -t 1 -d "${DUR}s" --latency "https://localhost:$TLS_PORT/" \
        >"$WORK/$name-tls-wrk-r$ROUND.txt" 2>&1
    a=$(cpu_ticks $(pids))
    j="$(python3 "$ROOT/perf/report.py" wrk "$WORK/$name-tls-wrk-r$ROUND.txt")"
    read -r rps p99 reqs errs <<<"$j"
    record "$name" tls_http_rps "$rps" "$errs"
    record "$name" tls_http_cpu_us "$(cpu_per_op "$b" "$a" "$reqs")" "$errs"
    log "$name tls http: $rps req/s, errors $errs"
    healthy "$name tls http" || return 0

    tls_hold "$name"
}

# tls_hold NAME: $TLS_HOLD_N idle wss sessions; RSS growth per session.
tls_hold() {
    local name="$1" before after hp i up="" held log
    stop_pid "$PROXY_PID"
    # A fresh proxy: the phases above must not have grown its pools.
    PROXY_PORT=$((PROXY_PORT + 1))
    start_proxy "$name" "$PROXY_PORT" || return 0
    wait_port "$TLS_PORT" "$PROXY_PID" || return 0
    sleep 1
    before=$(rss_kib $(proc_tree "$PROXY_PID"))
    log="$WORK/$name-tls-hold-r$ROUND"
    start_bg "$name-tls-hold-r$ROUND" taskset -c "$LOAD_CORE" python3 "$ROOT/perf/wss_hold.py" \
        --url "wss://localhost:$TLS_PORT/" --ca "$TLS_DIR/cert.pem" -n "$TLS_HOLD_N"
    hp=$LAST_PID
    for i in $(seq 1 1200); do
        up="$(grep -m1 '^holding' "$log.log" 2>/dev/null)"
        [ -n "$up" ] && break
        kill -0 "$hp" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$up" ]; then
        log "FAILED: $name did not reach $TLS_HOLD_N held wss sessions"
        record "$name" tls_hold_bytes_per_conn null 1
        stop_pid "$hp"
        return
    fi
    sleep 2
    after=$(rss_kib $(proc_tree "$PROXY_PID"))
    held="$(echo "$up" | awk '{print $2}')"
    if [ "${held:-0}" -gt 0 ]; then
        record "$name" tls_hold_bytes_per_conn "$(python3 -c "print(round(($after-$before)*1024/$held))")" "$((TLS_HOLD_N - held))"
    else
        record "$name" tls_hold_bytes_per_conn null "$TLS_HOLD_N"
    fi
    log "$name tls hold: $up, RSS ${before} -> ${after} KiB"
    healthy "$name tls hold"
    stop_pid "$hp"
}

# scaling_one WORKERS CORES: HTTP and WS 64 B echo through wslb-inspect.
scaling_one() {
    local workers="$1" cores="$2" j rps p99 reqs errs json
    PROXY_PORT=$((PROXY_PORT + 1))
    start_proxy wslb-inspect "$PROXY_PORT" "$workers" "$cores" || return 0
    taskset -c "$LOAD_CORE" wrk -c 50 -t 1 -d "${DUR}s" --latency "http://127.0.0.1:$TARGET_PORT/" \
        >"$WORK/scale-w$workers-r$ROUND.txt" 2>&1
    j="$(python3 "$ROOT/perf/report.py" wrk "$WORK/scale-w$workers-r$ROUND.txt")"
    read -r rps p99 reqs errs <<<"$j"
    record wslb-inspect "scale_http_rps_w$workers" "$rps" "$errs"
    json="$WORK/scale-ws-w$workers-r$ROUND.json"
    bench ws --url "ws://127.0.0.1:$TARGET_PORT/" -c 50 --size 64 -d "$DUR" --json >"$json" 2>"$json.err"
    record wslb-inspect "scale_ws64_mps_w$workers" "$(jget "$json" ops_per_sec)" "$(jget "$json" errors_total)"
    log "wslb $workers worker(s) on cores $cores: $rps req/s, $(jget "$json" ops_per_sec) msg/s"
    healthy "scaling $workers"
    stop_pid "$PROXY_PID"
    PROXY_PID=""
}

# scaling_round: scenario 8, one round: 1 worker then 2 in odd rounds, 2
# then 1 in even ones (on a shared machine, a neighbour's burst then does not
# always land on the same one).
scaling_round() {
    local order="1 2" w
    [ $((ROUND % 2)) = 0 ] && order="2 1"
    log "=== scaling: wslb-inspect with $order workers"
    for w in $order; do
        wait_quiet
        if [ "$w" = 1 ]; then scaling_one 1 "$PROXY_CORE"; else scaling_one 2 "$PROXY_CORE,$LOAD_CORE"; fi
    done
}
