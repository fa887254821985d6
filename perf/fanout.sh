# perf/fanout.sh: the fan-out scenario of perf/run.sh (sourced by it; uses its
# helpers: start_bg, stop_pid, wait_port, proc_tree, record, log, ensure_echo).
#
# For each proxy in $FANOUT_PROXIES ("wslb-inspect pushpin") and each N in
# $FANOUT_N, a fresh proxy pinned to core 0 and one `wslb bench ws --subscribe`
# on core 1: N sessions subscribe to channel "bench" at $OPEN_RATE/s, then the
# bench's publisher measures deliveries/s at saturation ($DUR s) and
# publish-to-receive at 2 publishes/s ($DUR s); CPU and RSS are read from
# /proc for all of the proxy's processes (--watch-pid).
#
# wslb: `serve --ws-mode inspect --workers 1`, admin API on loopback, the echo
# backend names the channel in its 101 (X-Wslb-Channels). Pushpin 1.36: its
# runner with condure, its own zurl, pushpin-proxy and pushpin-handler from
# perf/pushpin.conf.tmpl (message_rate=-1, message_hwm=-1), routed over
# WebSocket-over-HTTP to perf/pushpin_origin.py, which subscribes each
# connection to the channels in its ?subscribe= query.

FANOUT_PORT="${PERF_FANOUT_PORT:-18950}"
FANOUT_CHANNEL=bench
FANOUT_METRICS="dps cpu_us p50_us p99_us mem_b bench_busy"

# fanout_start NAME: start the proxy; sets FO_PID, FO_PORT, FO_PUBLISH, FO_FORMAT.
fanout_start() {
    local name="$1"
    FANOUT_PORT=$((FANOUT_PORT + 4))
    FO_PORT=$FANOUT_PORT
    FO_PID=""
    case "$name" in
        wslb-inspect)
            local admin=$((FO_PORT + 1))
            start_bg "fanout-$name-$N" taskset -c "$PROXY_CORE" "$BIN" serve --workers 1 \
                --listen "127.0.0.1:$FO_PORT" --backend "http://127.0.0.1:$ECHO_PORT" \
                --ws-mode inspect --admin-listen "127.0.0.1:$admin" --log-level warn \
                --max-connections-per-ip 0
            FO_PID=$LAST_PID
            FO_PUBLISH="http://127.0.0.1:$admin/api/publish"
            FO_FORMAT=wslb
            wait_port "$FO_PORT" "$FO_PID" && wait_port "$admin" "$FO_PID" || return 1
            ;;
        pushpin)
            command -v pushpin >/dev/null || { log "pushpin is not installed (scripts/perf-setup.sh)"; return 1; }
            local pub=$((FO_PORT + 1)) origin=$((FO_PORT + 2)) dir="$WORK/pushpin-$N"
            mkdir -p "$dir/run" "$dir/log"
            sed -e "s|@DIR@|$dir|g; s|@PORT@|$FO_PORT|g; s|@PUBPORT@|$pub|g" \
                "$ROOT/perf/pushpin.conf.tmpl" >"$dir/pushpin.conf"
            echo "* localhost:$origin,over_http" >"$dir/routes"
            start_bg "fanout-origin-$N" taskset -c "$LOAD_CORE" python3 "$ROOT/perf/pushpin_origin.py" \
                --port "$origin" --channel "$FANOUT_CHANNEL"
            FO_ORIGIN_PID=$LAST_PID
            wait_port "$origin" "$FO_ORIGIN_PID" || return 1
            # taskset on the runner: condure, zurl, pushpin-proxy and
            # pushpin-handler inherit core 0.
            start_bg "fanout-$name-$N" taskset -c "$PROXY_CORE" pushpin --config "$dir/pushpin.conf" --merge-output
            FO_PID=$LAST_PID
            FO_PUBLISH="http://127.0.0.1:$pub/publish/"
            FO_FORMAT=pushpin
            wait_port "$FO_PORT" "$FO_PID" && wait_port "$pub" "$FO_PID" || return 1
            ;;
        *) log "fanout: unknown proxy $name"; return 1 ;;
    esac
    sleep 1
}

# fanout_stop: the proxy and everything it started, then Pushpin's origin.
fanout_stop() {
    local kids p
    if [ -n "$FO_PID" ]; then
        kids="$(pgrep -P "$FO_PID" 2>/dev/null)"
        stop_pid "$FO_PID"
        # The runner stops its children; any left over are stopped by pid.
        for p in $kids; do stop_pid "$p"; done
    fi
    if [ -n "${FO_ORIGIN_PID:-}" ]; then stop_pid "$FO_ORIGIN_PID"; FO_ORIGIN_PID=""; fi
}

# fanout_record NAME N JSON: the rows from one bench summary.
fanout_record() {
    local name="$1" n="$2" json="$3" line
    line="$(python3 "$ROOT/perf/report.py" fanout "$json" 2>/dev/null)" || line=""
    if [ -z "$line" ]; then
        log "FAILED: $name fan-out N=$n produced no summary (see $json and its .err)"
        echo "$name fan-out N=$n: the bench produced no summary" >>"$WORK/notes.txt"
        for m in $FANOUT_METRICS; do record "$name" "fanout_${m}_$n" null 1; done
        return
    fi
    local dps cpu p50 p99 mem errs perr busy
    read -r dps cpu p50 p99 mem errs perr busy <<<"$line"
    if [ "$perr" != "-" ]; then
        log "$name fan-out N=$n: publishing failed: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["publish_error"])' "$json")"
        echo "$name fan-out N=$n: n/a, publishing failed: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["publish_error"])' "$json")" >>"$WORK/notes.txt"
        for m in $FANOUT_METRICS; do record "$name" "fanout_${m}_$n" null "$errs"; done
        return
    fi
    record "$name" "fanout_dps_$n" "$dps" "$errs"
    record "$name" "fanout_cpu_us_$n" "$cpu" "$errs"
    record "$name" "fanout_p50_us_$n" "$p50" "$errs"
    record "$name" "fanout_p99_us_$n" "$p99" "$errs"
    record "$name" "fanout_mem_b_$n" "$mem" "$errs"
    record "$name" "fanout_bench_busy_$n" "$busy" 0
    log "$name fan-out N=$n: $dps deliveries/s, ${cpu} µs CPU/delivery, p50 ${p50} µs p99 ${p99} µs at 2/s, $mem B/session, errors $errs, bench busy $busy cores"
}

fanout_one() {
    local name="$1" pids json
    json="$WORK/fanout-$name-$N.json"
    : >"$RESULTS.cur"
    if ! fanout_start "$name"; then
        log "FAILED: $name did not start for the fan-out scenario; its figures show n/a"
        tail -n 5 "$WORK/fanout-$name-$N.log" >&2 2>/dev/null
        echo "$name fan-out N=$N: the proxy did not start" >>"$WORK/notes.txt"
        fanout_stop
        for m in $FANOUT_METRICS; do record "$name" "fanout_${m}_$N" null 1; done
        cat "$RESULTS.cur" >>"$RESULTS"
        return
    fi
    pids="$(proc_tree "$FO_PID" | paste -sd, -)"
    # An interrupted run stops Pushpin's children too (run.sh's cleanup).
    BG_PIDS+=($(pgrep -P "$FO_PID" 2>/dev/null))
    log "$name fan-out N=$N: watching pids $pids"
    taskset -c "$LOAD_CORE" "$BIN" bench ws --url "ws://127.0.0.1:$FO_PORT/" -c "$N" \
        --subscribe "$FANOUT_CHANNEL" --publish-url "$FO_PUBLISH" --publish-format "$FO_FORMAT" \
        --open-rate "$OPEN_RATE" --in-flight "$IN_FLIGHT" --timeout 10 -d "$DUR" --rate-duration "$DUR" --publish-rate 2 \
        --watch-pid "$pids" --json >"$json" 2>"$json.err"
    if ! kill -0 "$FO_PID" 2>/dev/null; then
        echo "$name fan-out N=$N: the proxy died during the run" >>"$WORK/notes.txt"
    fi
    fanout_record "$name" "$N" "$json"
    fanout_stop
    cat "$RESULTS.cur" >>"$RESULTS"
    sleep 1
}

fanout_all() {
    local name
    for name in $FANOUT_PROXIES; do
        [ "$name" = wslb-inspect ] && ensure_echo fanout
        for N in $FANOUT_N; do
            log "=== fan-out: $name, $N sessions"
            fanout_one "$name"
        done
    done
}
