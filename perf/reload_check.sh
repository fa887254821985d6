#!/usr/bin/env bash
# Reload under load: wrk (kept-alive and new connections) and `wslb bench ws`
# (echo sessions) run through `wslb serve --config FILE` while the file is
# rewritten and reloaded RELOADS times through POST /api/reload, once a
# second: backends added and removed, weights and the algorithm changed.
# Prints what failed: wrk socket errors and non-2xx answers, WebSocket
# errors. The goal is 0 everywhere.
#
#   perf/reload_check.sh [WSLB_BIN=target/release/wslb] [RELOADS=10]
set -euo pipefail
BIN=${1:-target/release/wslb}
RELOADS=${2:-10}
LB=127.0.0.1:18280 ADMIN=127.0.0.1:19290
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 2; }
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT

for p in 19281 19282 19283; do
    "$BIN" echo --listen "127.0.0.1:$p" --name "echo-$p" >/dev/null 2>&1 &
    pids+=($!)
done

config() { # variant
    if (( $1 % 2 )); then
        backends='["http://127.0.0.1:19281,weight=1", "http://127.0.0.1:19282,weight=2", "http://127.0.0.1:19283,weight=3"]'
        algorithm=p2c
    else
        backends='["http://127.0.0.1:19281", "http://127.0.0.1:19282"]'
        algorithm=round-robin
    fi
    cat >"$dir/wslb.toml.new" <<TOML
listen = ["$LB"]
admin-listen = "$ADMIN"
workers = 2
no-pin = true
max-connections-per-ip = 0
access-log = "off"
backend = $backends
algorithm = "$algorithm"
TOML
    mv "$dir/wslb.toml.new" "$dir/wslb.toml"
}

config 0
"$BIN" serve --config "$dir/wslb.toml" >"$dir/serve.out" 2>"$dir/serve.err" &
pids+=($!)
for _ in $(seq 100); do grep -q '^ready' "$dir/serve.out" && break; sleep 0.05; done
grep -q '^ready' "$dir/serve.out" || { cat "$dir/serve.err" >&2; exit 1; }

dur=$((RELOADS + 4))
wrk -t1 -c40 -d"${dur}s" "http://$LB/" >"$dir/wrk-keepalive.txt" 2>&1 &
w1=$!
wrk -t1 -c10 -d"${dur}s" -H "Connection: close" "http://$LB/" >"$dir/wrk-close.txt" 2>&1 &
w2=$!
"$BIN" bench ws --url "ws://$LB/" -c 50 -d "$dur" --json >"$dir/ws.json" 2>"$dir/ws.err" &
w3=$!
sleep 2
ok=0
for i in $(seq "$RELOADS"); do
    config "$i"
    code=$(curl -s -o "$dir/reload-$i.json" -w '%{http_code}' -X POST "http://$ADMIN/api/reload")
    if [[ $code == 200 ]]; then ok=$((ok + 1)); else echo "reload $i answered $code: $(cat "$dir/reload-$i.json")"; fi
    sleep 1
done
wait "$w1" "$w2" "$w3"

echo "reloads accepted: $ok of $RELOADS"
for f in wrk-keepalive wrk-close; do
    reqs=$(awk '/requests in/ {print $1}' "$dir/$f.txt")
    errs=$(awk '/Socket errors/ {print}' "$dir/$f.txt")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$dir/$f.txt")
    echo "$f: requests=$reqs non2xx=${non2xx:-0} ${errs:-socket errors: none}"
done
python3 - "$dir/ws.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"websocket: round trips={j['ops']} errors={j.get('errors_total')}")
PY
echo "log lines saying 'configuration reloaded': $(grep -c 'configuration reloaded' "$dir/serve.err" || true)"
