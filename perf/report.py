#!/usr/bin/env python3
"""perf/report.py: helpers for perf/run.sh.

  report.py wrk FILE                      -> "rps p99_us requests errors" from wrk --latency output
  report.py fanout FILE                   -> "dps cpu_us p50_us p99_us bytes errors publish_error bench_busy"
                                             from a `wslb bench ws --subscribe --json` summary
  report.py report RESULTS META MD SVG    -> markdown tables and SVG chart from results.jsonl
"""
import json
import os
import re
import sys

from report_goals import goals_section, num

PROXIES = ["wslb-inspect", "wslb-tunnel", "haproxy", "nginx", "floor", "direct"]
PEERS = ["haproxy", "nginx"]

# metric key -> (label, unit, higher_is_better)
METRICS = [
    ("http_rps", "1. HTTP small response: requests/s (wrk -c 50)", "/s", True),
    ("http_p99_us", "1. HTTP small response: p99 latency (wrk)", "µs", False),
    ("http_cpu_us", "1. HTTP small response: proxy CPU per request", "µs", False),
    ("rate_p50_us", "2. HTTP at fixed rate: p50 latency", "µs", False),
    ("rate_p99_us", "2. HTTP at fixed rate: p99 latency", "µs", False),
    ("rate_p999_us", "2. HTTP at fixed rate: p99.9 latency", "µs", False),
    ("ws64_mps", "3. WS echo 64 B: messages/s (-c 50)", "/s", True),
    ("ws64_p99_us", "3. WS echo 64 B: p99 round trip", "µs", False),
    ("ws64_cpu_us", "3. WS echo 64 B: proxy CPU per message", "µs", False),
    ("ws16k_mps", "3. WS echo 16 KiB: messages/s (-c 50)", "/s", True),
    ("ws16k_p99_us", "3. WS echo 16 KiB: p99 round trip", "µs", False),
    ("ws16k_cpu_us", "3. WS echo 16 KiB: proxy CPU per message", "µs", False),
    ("sess_rate", "4. WS session setup: sessions/s (-c 20)", "/s", True),
    ("sess_p99_us", "4. WS session setup: p99 handshake", "µs", False),
    ("sess_cpu_us", "4. WS session setup: proxy CPU per session", "µs", False),
    ("hold_bytes_per_conn", "5. Idle WS held: proxy memory per connection", "B", False),
    ("lowrate_mps", "6. Many WS at 1 msg/s: messages/s delivered", "/s", True),
    ("lowrate_p99_us", "6. Many WS at 1 msg/s: p99 round trip", "µs", False),
    ("lowrate_cpu_us", "6. Many WS at 1 msg/s: proxy CPU per message", "µs", False),
    ("tls_full_rate", "7. TLS full handshakes/s measured (-c 20)", "/s", True),
    ("tls_full_cpu_us", "7. TLS full handshake: proxy CPU per handshake", "µs", False),
    ("tls_full_per_core", "7. TLS full handshakes per proxy core (1 s ÷ CPU)", "/s", True),
    ("tls_res_rate", "7. TLS resumed handshakes/s measured (-c 20)", "/s", True),
    ("tls_res_cpu_us", "7. TLS resumed handshake: proxy CPU per handshake", "µs", False),
    ("tls_res_per_core", "7. TLS resumed handshakes per proxy core (1 s ÷ CPU)", "/s", True),
    ("tls_res_resumed_pct", "7. TLS resumed phase: handshakes resumed", "%", True),
    ("tls_http_rps", "7. HTTPS kept alive: requests/s (wrk -c 20)", "/s", True),
    ("tls_http_cpu_us", "7. HTTPS kept alive: proxy CPU per request", "µs", False),
    ("tls_hold_bytes_per_conn", "7. Idle wss held: proxy memory per session", "B", False),
]

CHART = [
    ("http_cpu_us", "CPU µs / HTTP request"),
    ("ws64_cpu_us", "CPU µs / WS msg 64 B"),
    ("ws16k_cpu_us", "CPU µs / WS msg 16 KiB"),
    ("sess_cpu_us", "CPU µs / WS session"),
    ("hold_bytes_per_conn", "KiB / idle WS conn"),
]
# Fan-out (perf/fanout.sh): metric prefix -> (label, unit, higher_is_better).
# Keys in results.jsonl are PREFIX_N, e.g. fanout_dps_5000.
FANOUT_PROXIES = ["wslb-inspect", "pushpin"]
FANOUT_METRICS = [
    ("fanout_dps", "Deliveries/s at saturation", "/s", True),
    ("fanout_cpu_us", "Proxy CPU per delivered 64 B message", "µs", False),
    ("fanout_p50_us", "Publish-to-receive p50 at 2 publishes/s", "µs", False),
    ("fanout_p99_us", "Publish-to-receive p99 at 2 publishes/s", "µs", False),
    ("fanout_mem_b", "Proxy memory per subscribed idle session", "B", False),
    ("fanout_bench_busy", "Load generator busy at saturation (cores)", "cores", False),
]


def fanout_goal(prefix, n, wslb, pushpin):
    """(goal text, met: True/False/None) for one fan-out row, from the issue's goals."""
    ratio = wslb / pushpin if isinstance(wslb, (int, float)) and isinstance(pushpin, (int, float)) and pushpin > 0 else None
    if prefix == "fanout_dps":
        return "≥ 150,000/s", (wslb >= 150_000 if isinstance(wslb, (int, float)) else None)
    if prefix == "fanout_cpu_us":
        return "≤ 0.05x Pushpin", (ratio <= 0.05 if ratio is not None else None)
    if prefix == "fanout_p99_us" and n == 5000:
        return "< 20 ms", (wslb < 20_000 if isinstance(wslb, (int, float)) else None)
    if prefix == "fanout_mem_b":
        return "≤ 0.1x Pushpin", (ratio <= 0.1 if ratio is not None else None)
    return "", None


COLORS = {"wslb-inspect": "#1f77b4", "wslb-tunnel": "#17becf", "haproxy": "#d62728", "nginx": "#2ca02c", "floor": "#7f7f7f"}


def parse_wrk(path):
    text = open(path, encoding="utf-8", errors="replace").read()

    def num(pattern, default=None):
        m = re.search(pattern, text)
        return m.group(1) if m else default

    rps = num(r"Requests/sec:\s+([\d.]+)", "null")
    reqs = num(r"(\d+) requests in", "0")
    p99 = "null"
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if m:
        scale = {"us": 1, "ms": 1000, "s": 1_000_000}[m.group(2)]
        p99 = str(round(float(m.group(1)) * scale))
    errs = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errs += sum(int(x) for x in m.groups())
    errs += int(num(r"Non-2xx or 3xx responses: (\d+)", "0"))
    print(rps, p99, reqs, errs)


def parse_fanout(path):
    """One line for perf/fanout.sh: the figures of a fan-out summary, "null" where missing."""
    d = json.load(open(path, encoding="utf-8"))
    sat, rate = d.get("saturation") or {}, d.get("rate") or {}

    def val(v):
        return "null" if v is None else str(v)

    lost = (sat.get("lost") or 0) + (rate.get("lost") or 0)
    lat = rate.get("latency_us") or {}
    has_rate = bool(rate.get("deliveries"))
    print(
        val(sat.get("deliveries_per_sec")),
        val(sat.get("proxy_cpu_us_per_delivery")),
        val(lat.get("p50") if has_rate else None),
        val(lat.get("p99") if has_rate else None),
        val(d.get("proxy_bytes_per_session")),
        (d.get("errors_total") or 0) + lost + (d["connections"] - (d.get("subscribed") or 0)),
        "-" if d.get("publish_error") is None else "error",
        val(sat.get("bench_cores_busy")),
    )


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "/s":
        return f"{v:,.0f}/s"
    if unit == "%":
        return f"{v:.0f}%"
    if unit == "B":
        return f"{v / 1024:,.1f} KiB" if abs(v) >= 1024 else f"{v:,.0f} B"
    return f"{v:,.1f} µs" if v < 100 else f"{v:,.0f} µs"


def fmt_fanout(v, unit):
    """As fmt, with latencies of 10 ms and more in ms (Pushpin's reach seconds)."""
    if unit == "cores":
        return f"{v:.2f}"
    if unit == "µs" and v >= 10_000:
        return f"{v / 1000:,.1f} ms"
    return fmt(v, unit)


# (proxy, metric) -> (min, max, rounds) of the figures behind a median.
SPREAD = {}
# (proxy, metric) -> {round: value}, for the goals judged round by round.
ROUNDS = {}


def load(results_path):
    """Each (proxy, metric) figure: the median over the rounds that gave a
    number (the spread is kept in SPREAD); errors are summed."""
    samples, errors = {}, {}
    for line in open(results_path, encoding="utf-8"):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        key = (r["proxy"], r["metric"])
        samples.setdefault(key, []).append(r["value"])
        ROUNDS.setdefault(key, {})[r.get("round", 1)] = r["value"]
        errors[key] = errors.get(key, 0) + (r.get("errors") or 0)
    values = {}
    for key, vs in samples.items():
        nums = sorted(v for v in vs if isinstance(v, (int, float)))
        if not nums:
            values[key] = vs[-1]
            continue
        mid = len(nums) // 2
        values[key] = nums[mid] if len(nums) % 2 else (nums[mid - 1] + nums[mid]) / 2
        SPREAD[key] = (nums[0], nums[-1], len(nums))
    return values, errors


def spread_note(key):
    """' ±N%' (half the range over the rounds, relative to the median) when
    a figure has more than one round; empty otherwise."""
    lo, hi, n = SPREAD.get(key, (0, 0, 1))
    if n < 2:
        return ""
    mid = (lo + hi) / 2 or 1
    return f" ±{(hi - lo) / 2 / abs(mid) * 100:.0f}%"


def best_peer(values, metric, higher):
    peers = [values.get((p, metric)) for p in PEERS]
    peers = [v for v in peers if isinstance(v, (int, float)) and v > 0]
    if not peers:
        return None
    return max(peers) if higher else min(peers)


def report(results_path, meta_path, md_path, svg_path):
    values, errors = load(results_path)
    meta = json.load(open(meta_path, encoding="utf-8"))
    present = [p for p in PROXIES if p in meta["proxies"].split()]
    lines = [
        "# wslb vs HAProxy vs nginx" + (" (and Pushpin, fan-out)" if "fanout" in meta.get("scenarios", "") else ""),
        "",
        f"Run {meta['date']}{' (--quick)' if meta['quick'] else ''}: "
        f"{meta['duration_s']} s per measurement, {meta.get('rounds', 1)} round(s)"
        + (f", fixed rate {meta['rate']} req/s, {meta['hold']} held connections" if present else "")
        + f"; whole run {meta['elapsed_s']} s.",
        "",
        f"Machine: {meta['nproc']} CPUs, {meta['cpu']}, Linux {meta['kernel']}. Versions: "
        + ", ".join(
            f"{name}{meta[key]}"
            for name, key in [("", "wslb"), ("HAProxy ", "haproxy"), ("nginx ", "nginx"), ("wrk ", "wrk"), ("Pushpin ", "pushpin")]
            if meta.get(key)
        )
        + ".",
        "",
    ]
    if present:
        lines += proxy_table(values, errors, present)
    if any(k[1].startswith("scale_") for k in values):
        lines += scaling_table(values, errors)
    if "fanout" in meta.get("scenarios", ""):
        lines += fanout_table(values, errors, meta)
    notes = os.path.join(os.path.dirname(results_path), "notes.txt")
    if os.path.exists(notes):
        lines += ["", "Notes from the run:", ""] + [f"- {n.strip()}" for n in open(notes, encoding="utf-8") if n.strip()]
    if present:
        lines += ["", "Chart: CPU per operation and memory per idle connection, `latest.svg` (lower is better).", ""]
        units = {k: unit for k, _label, unit, _higher in METRICS}
        lines += goals_section(values, present, ROUNDS, PEERS, fmt, units)
    with open(md_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    with open(svg_path, "w", encoding="utf-8") as f:
        f.write(svg(values, [p for p in present if p != "direct"], meta))


def proxy_table(values, errors, present):
    lines = [
        "Each proxy runs one worker/thread pinned to core 0; the `wslb echo` backend and the load "
        "generator share core 1. CPU is utime+stime of all the proxy's processes over the measurement "
        "divided by the operations completed; memory is the growth of their VmRSS with the idle "
        "connections held, divided by their number. wslb figures carry their ratio to the best of "
        "HAProxy and nginx (value ÷ best peer: above 1 is better for rates, below 1 is better for "
        "latency, CPU and memory); on CPU rows they also carry their ratio to `floor` (value ÷ floor, `x floor`). "
        "`floor` is `wslb floor`: one io_uring thread copying bytes between each client and a pooled backend "
        "connection with no parsing, the cost of moving the bytes through the kernel. "
        "`direct` is the load generator talking to the backend with no proxy. "
        "With several rounds (the proxies' order rotated each round) every figure is the median "
        "of the rounds, and ±N% is half its range over them, relative to its middle.",
        "",
        "| Scenario / metric | " + " | ".join(present) + " |",
        "|---|" + "---|" * len(present),
    ]
    for key, label, unit, higher in METRICS:
        if not any(num(values.get((p, key))) for p in present) and not any(errors.get((p, key)) for p in present):
            continue  # a scenario this run did not include
        best = best_peer(values, key, higher)
        fl = values.get(("floor", key)) if key.endswith("_cpu_us") else None
        cells = []
        for p in present:
            v = values.get((p, key))
            if p == "direct" and key.endswith("_cpu_us") or p == "direct" and key.startswith("hold"):
                cells.append("—")
                continue
            cell = fmt(v, unit) if isinstance(v, (int, float)) else "n/a"
            cell += spread_note((p, key))
            if p.startswith("wslb") and isinstance(v, (int, float)) and v > 0 and best and unit != "%":
                cell += f" ({v / best:.2f}x)"
            if p.startswith("wslb") and isinstance(v, (int, float)) and isinstance(fl, (int, float)) and fl > 0:
                cell += f" ({v / fl:.2f}x floor)"
            e = errors.get((p, key), 0)
            if e:
                cell += f" [{e} err]"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def scaling_table(values, errors):
    """Scenario 8: wslb-inspect with 1 and 2 workers, and the ratio."""
    lines = [
        "",
        "## Scaling: wslb with 1 and 2 workers",
        "",
        "wslb-inspect with `--workers 1` on core 0, then `--workers 2` on cores 0 and 1. The echo backend "
        "and the load generator (wrk -c 50, `wslb bench ws -c 50`) stay on core 1, so with 2 workers the "
        "second worker shares its core with them: the ratio is what a second core adds on this 2-core "
        "machine, not what a free core would.",
        "",
        "| Metric | 1 worker | 2 workers | 2 ÷ 1 |",
        "|---|---|---|---|",
    ]
    for key, label in (("scale_http_rps", "HTTP small response: requests/s"), ("scale_ws64_mps", "WS echo 64 B: messages/s")):
        cells = []
        for w in (1, 2):
            k = ("wslb-inspect", f"{key}_w{w}")
            v = values.get(k)
            cell = fmt(v, "/s") if isinstance(v, (int, float)) else "n/a"
            cell += spread_note(k)
            if errors.get(k):
                cell += f" [{errors[k]} err]"
            cells.append(cell)
        a, b = values.get(("wslb-inspect", f"{key}_w1")), values.get(("wslb-inspect", f"{key}_w2"))
        ratio = f"{b / a:.2f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 else "n/a"
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {ratio} |")
    return lines


def fanout_table(values, errors, meta):
    ns = [int(n) for n in str(meta.get("fanout_n", "1000 5000")).split()]
    lines = [
        "",
        "## Fan-out: wslb's message hub vs Pushpin",
        "",
        f"N sessions subscribed to one channel (opened at {meta.get('open_rate', '?')}/s), one publisher in the "
        "load generator (`wslb bench ws --subscribe`), 64-byte text messages carrying their send time. "
        f"Saturation: publish whenever fewer than {meta.get('in_flight', 8)} publishes' deliveries are outstanding, "
        f"{meta['duration_s']} s; "
        f"latency: 2 publishes/s for {meta['duration_s']} s, every delivery counted. wslb: `serve --ws-mode inspect "
        "--workers 1`, admin API `POST /api/publish`, the echo backend naming the channel in its 101. Pushpin: "
        "runner, condure, its own zurl, pushpin-proxy and pushpin-handler all on core 0, `message_rate=-1`, "
        "`message_hwm=-1`, WebSocket-over-HTTP to a GRIP origin that subscribes each connection "
        "(`perf/pushpin_origin.py`). CPU and memory are summed over all of the proxy's processes; memory is "
        "RSS growth with the sessions subscribed and idle, over N. Ratio is wslb ÷ Pushpin.",
        "",
        "| Metric | N | wslb | Pushpin | wslb/Pushpin | Goal | Met |",
        "|---|---|---|---|---|---|---|",
    ]
    for prefix, label, unit, _higher in FANOUT_METRICS:
        for n in ns:
            key = f"{prefix}_{n}"
            w, p = values.get(("wslb-inspect", key)), values.get(("pushpin", key))
            cells = []
            for proxy, v in (("wslb-inspect", w), ("pushpin", p)):
                cell = fmt_fanout(v, unit) if isinstance(v, (int, float)) else "n/a"
                e = errors.get((proxy, key), 0)
                if e:
                    cell += f" [{e} err]"
                cells.append(cell)
            ok = isinstance(w, (int, float)) and isinstance(p, (int, float)) and p > 0
            ratio = f"{w / p:.3f}x" if ok and unit != "cores" else ("" if unit == "cores" else "n/a")
            goal, met = fanout_goal(prefix, n, w, p)
            met_s = "" if not goal else ("n/a" if met is None else ("yes" if met else "**no**"))
            lines.append(f"| {label} | {n:,} | {cells[0]} | {cells[1]} | {ratio} | {goal} | {met_s} |")
    lines += [
        "",
        "`[k err]`: failed or retried session opens, errors and deliveries never received (lost) in that run. "
        "Load generator busy: CPU of the bench process over the saturation window, in cores; near 1.0 "
        "(its one core) the client, not the proxy, set the pace, and deliveries/s is a lower bound.",
    ]
    return lines


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg(values, proxies, meta):
    """Grouped bars, one group per chart metric, each group scaled to its own maximum."""
    gw, bw, pad, top, h = 170, 30, 60, 70, 260
    width = pad * 2 + gw * len(CHART)
    height = top + h + 90
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
        "Proxy cost per operation and per idle connection (lower is better)</text>",
        f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#555">'
        f"{esc(meta['date'])}, {esc(meta['cpu'])}, 1 proxy core</text>",
        f'<line x1="{pad}" y1="{top + h}" x2="{width - pad}" y2="{top + h}" stroke="#333"/>',
    ]
    for gi, (key, label) in enumerate(CHART):
        vals = []
        for p in proxies:
            v = values.get((p, key))
            if isinstance(v, (int, float)) and key == "hold_bytes_per_conn":
                v = v / 1024
            vals.append(v if isinstance(v, (int, float)) else None)
        vmax = max([v for v in vals if v is not None and v > 0] or [1])
        x0 = pad + gi * gw + (gw - bw * len(proxies)) / 2
        for i, (p, v) in enumerate(zip(proxies, vals)):
            x = x0 + i * bw
            if v is None:
                out.append(f'<text x="{x + bw / 2 - 1}" y="{top + h - 4}" text-anchor="middle" fill="#999">n/a</text>')
                continue
            bh = max(1.0, h * max(v, 0) / vmax)
            out.append(
                f'<rect x="{x + 2}" y="{top + h - bh:.1f}" width="{bw - 4}" height="{bh:.1f}" '
                f'fill="{COLORS.get(p, "#888")}"><title>{esc(p)}: {v:.2f}</title></rect>'
            )
            out.append(
                f'<text x="{x + bw / 2}" y="{top + h - bh - 4:.1f}" text-anchor="middle" font-size="9">'
                f"{v:.1f}</text>"
            )
        out.append(
            f'<text x="{pad + gi * gw + gw / 2}" y="{top + h + 18}" text-anchor="middle">{esc(label)}</text>'
        )
    lx = pad
    for p in proxies:
        out.append(f'<rect x="{lx}" y="{top + h + 40}" width="12" height="12" fill="{COLORS.get(p, "#888")}"/>')
        out.append(f'<text x="{lx + 16}" y="{top + h + 50}">{esc(p)}</text>')
        lx += 120
    out.append("</svg>\n")
    return "\n".join(out)


def main(argv):
    if len(argv) == 3 and argv[1] == "wrk":
        parse_wrk(argv[2])
    elif len(argv) == 3 and argv[1] == "fanout":
        parse_fanout(argv[2])
    elif len(argv) == 6 and argv[1] == "report":
        report(*argv[2:])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
