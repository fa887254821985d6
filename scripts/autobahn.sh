#!/usr/bin/env bash
# Autobahn conformance run for wslb, via the PyPI package `kosoku` (a native
# Autobahn fuzzingclient). Runs every case except compression (12.*, 13.*)
# against three targets: the `wslb echo` backend directly, and through
# `wslb serve` in --ws-mode inspect and --ws-mode tunnel. Reports land in
# target/autobahn/<target>/ (index.json + per-case JSON/HTML); the summary is
# printed by scripts/autobahn_summary.py, which exits non-zero if any case
# FAILED or a balancer target does worse than direct.
#
# Usage: scripts/autobahn.sh [--quick] [--write-docs] [--targets "direct inspect tunnel"]
#   --quick       only cases 1.*, 2.*, 3.*, 5.*, 7.* (for CI)
#   --write-docs  also write docs/autobahn-summary.md
# Env: WSLB_BIN=path (skip `cargo build --release`), PYTHON=python3,
#      KOSOKU_PARALLELISM=N (cases in parallel, default 1),
#      AUTOBAHN_VENV=dir (default .venv-autobahn).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

QUICK=0
WRITE_DOCS=()
TARGETS="direct inspect tunnel"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --write-docs) WRITE_DOCS=(--write-docs docs/autobahn-summary.md) ;;
        --targets) TARGETS="${2:?--targets needs a value}"; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "autobahn.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

PYTHON="${PYTHON:-python3}"
VENV="${AUTOBAHN_VENV:-$ROOT/.venv-autobahn}"
OUT="$ROOT/target/autobahn"
LOGS="$OUT/logs"
PARALLELISM="${KOSOKU_PARALLELISM:-1}"

log() { printf '[autobahn] %s\n' "$*" >&2; }

# --- kosoku in a venv --------------------------------------------------------
if [[ ! -x "$VENV/bin/kosoku" ]]; then
    log "creating venv $VENV and installing kosoku"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check kosoku
fi
KOSOKU="$VENV/bin/kosoku"

# --- the binary ----------------------------------------------------------------
if [[ -n "${WSLB_BIN:-}" ]]; then
    BIN="$WSLB_BIN"
else
    log "cargo build --release"
    cargo build --release --quiet
    BIN="$ROOT/target/release/wslb"
fi
[[ -x "$BIN" ]] || { echo "autobahn.sh: $BIN is not an executable" >&2; exit 2; }

# --- processes -------------------------------------------------------------------
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

# A free loopback port (bound then released: a small race, fine on a dev box).
free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until 127.0.0.1:$1 accepts connections (10 s), or fails naming $2.
wait_port() {
    local port="$1" name="$2" pid="$3" i
    for i in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "autobahn.sh: $name exited early; its log:" >&2
            cat "$LOGS/$name.log" >&2 || true
            exit 1
        fi
        if "$PYTHON" -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.2).close()' "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "autobahn.sh: $name did not listen on 127.0.0.1:$port within 10 s" >&2
    exit 1
}

start() { # name port command...
    local name="$1" port="$2"; shift 2
    "$@" >"$LOGS/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$name" "$pid"
    log "$name up on 127.0.0.1:$port (pid $pid)"
}

rm -rf "$OUT"
mkdir -p "$LOGS"

ECHO_PORT="$(free_port)"
start echo "$ECHO_PORT" "$BIN" echo --listen "127.0.0.1:$ECHO_PORT"

declare -A PORT=([direct]="$ECHO_PORT")
for mode in inspect tunnel; do
    [[ " $TARGETS " == *" $mode "* ]] || continue
    PORT[$mode]="$(free_port)"
    start "serve-$mode" "${PORT[$mode]}" "$BIN" serve \
        --listen "127.0.0.1:${PORT[$mode]}" \
        --backend "http://127.0.0.1:$ECHO_PORT" \
        --ws-mode "$mode" --workers 1 \
        --admin-listen 127.0.0.1:0 --max-message-size 64m
done

# --- cases ------------------------------------------------------------------------
CASES=()
if [[ "$QUICK" == 1 ]]; then
    for c in '1.*' '2.*' '3.*' '5.*' '7.*'; do CASES+=(-i "$c"); done
fi
CASES+=(-x '12.*' -x '13.*')

DIRS=()
for target in $TARGETS; do
    [[ -n "${PORT[$target]:-}" ]] || { echo "autobahn.sh: unknown target $target" >&2; exit 2; }
    log "kosoku -> $target (ws://127.0.0.1:${PORT[$target]}) ${CASES[*]}"
    start_s=$SECONDS
    # kosoku exits 1 when any case fails; the summary decides the verdict.
    "$KOSOKU" -m fuzzingclient "ws://127.0.0.1:${PORT[$target]}" "${CASES[@]}" \
        -p "$PARALLELISM" -o "$OUT/$target" >"$LOGS/kosoku-$target.log" 2>&1 || true
    tail -n 2 "$LOGS/kosoku-$target.log" >&2 || true
    log "$target took $((SECONDS - start_s)) s"
    DIRS+=("$OUT/$target")
done

cleanup
trap - EXIT INT TERM

"$PYTHON" "$ROOT/scripts/autobahn_summary.py" --direct direct "${WRITE_DOCS[@]}" "${DIRS[@]}"
