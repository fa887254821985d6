#!/usr/bin/env bash
#! Install the peers and tools the perf harness compares against (HAProxy,
#! nginx, Pushpin with its zurl and condure, wrk, h2load), stop their packaged
#! services, and build wslb release.
#! Idempotent: packages already installed are skipped.
set -euo pipefail

cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
for pkg in haproxy nginx pushpin wrk nghttp2-client; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        need+=("$pkg")
    fi
done

if [ "${#need[@]}" -gt 0 ]; then
    echo "perf-setup: installing ${need[*]}"
    # Keep the Debian packages from starting their services on install.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${need[@]}"
else
    echo "perf-setup: haproxy nginx pushpin wrk nghttp2-client already installed"
fi

# We run our own instances on our own ports; the packaged services must not
# hold ports or CPU during a measurement.
for svc in haproxy nginx pushpin zurl; do
    if command -v systemctl >/dev/null 2>&1 && systemctl list-unit-files "$svc.service" >/dev/null 2>&1; then
        $SUDO systemctl stop "$svc" 2>/dev/null || true
        $SUDO systemctl disable "$svc" 2>/dev/null || true
    fi
    if command -v service >/dev/null 2>&1; then
        $SUDO service "$svc" stop 2>/dev/null || true
    fi
done
# Without an init system the packaged daemons may still run from a pid file.
for pidfile in /run/nginx.pid /run/haproxy.pid /run/pushpin.pid /run/zurl.pid; do
    if [ -s "$pidfile" ]; then
        pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then $SUDO kill "$pid" || true; fi
    fi
done

haproxy -v | head -n 1
nginx -v 2>&1
pushpin --version 2>/dev/null | head -n 1 || true
wrk -v 2>&1 | head -n 1 || true

cargo build --release
echo "perf-setup: done"
