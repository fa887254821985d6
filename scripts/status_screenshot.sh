#!/usr/bin/env bash
# Regenerates docs/status-page.png: starts `wslb demo` on free ports, sends
# a little WebSocket and HTTP traffic through it (wslb bench at a fixed
# rate), puts the sessions in a few channels, drains one backend, and takes
# a 1280x800 screenshot of the admin status page in headless Chromium over
# the DevTools protocol (the ignored test `regenerate_screenshot` in
# tests/status_page.rs). Needs `chromium` (apt-get install chromium).
#
#   scripts/status_screenshot.sh [OUTPUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$PWD/docs/status-page.png}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [[ -n "${WSLB_CHROMIUM:-}" ]] || {
    echo "chromium is not installed: apt-get install chromium" >&2
    exit 1
}
WSLB_SCREENSHOT="$out" cargo test --test status_page -- --ignored --exact regenerate_screenshot --nocapture
echo "screenshot: $out"
