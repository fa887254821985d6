"""perf/report_goals.py: the goals section of perf/results/latest.md (used by
report.py): each of the issue's goals with wslb's figure from the run and
whether it is met, the p99 goals judged round by round."""


def num(v):
    return isinstance(v, (int, float))


def met_cell(met):
    return "n/a" if met is None else ("met" if met else "**not met**")


def best_peer(values, peers, metric, higher):
    vs = [values.get((p, metric)) for p in peers]
    vs = [v for v in vs if num(v) and v > 0]
    if not vs:
        return None
    return max(vs) if higher else min(vs)


def goals_section(values, present, rounds, peers, fmt, units):
    """The issue's goals, each with its figure from this run and met / not met.
    values: (proxy, metric) -> median; rounds: (proxy, metric) -> {round: value};
    fmt(value, unit) formats a figure; units: metric -> unit."""
    wslbs = [p for p in present if p.startswith("wslb")]
    lines = [
        "",
        "## Goals",
        "",
        "Each goal with wslb's figure from this run (medians; the peers' as in the table above). "
        "\"Better peer\" is the better of HAProxy and nginx. p99 goals are judged round by round.",
        "",
        "| Goal | wslb | Figure | Met |",
        "|---|---|---|---|",
    ]

    def ratio_goal(label, key, limit, higher=False, use_floor=None):
        best = best_peer(values, peers, key, higher)
        for w in wslbs:
            v = values.get((w, key))
            if not num(v) or not best:
                lines.append(f"| {label} | {w} | n/a | n/a |")
                continue
            r = v / best
            met = r >= limit if higher else r <= limit
            fig = f"{fmt(v, units.get(key, ''))} = {r:.2f}x better peer"
            if use_floor is not None:
                fl = values.get(("floor", key))
                if num(fl) and fl > 0:
                    fig += f", {v / fl:.2f}x floor"
                    met = met and v / fl <= use_floor
                else:
                    fig += ", floor n/a"
            lines.append(f"| {label} | {w} | {fig} | {met_cell(met)} |")

    for key, what in (
        ("http_cpu_us", "HTTP request"),
        ("ws64_cpu_us", "WS message 64 B"),
        ("ws16k_cpu_us", "WS message 16 KiB"),
        ("lowrate_cpu_us", "WS message at 1 msg/s per session"),
    ):
        ratio_goal(f"CPU per {what} ≤ 0.75x better peer and ≤ 1.15x floor", key, 0.75, use_floor=1.15)
    for w in wslbs:
        v, hp = values.get((w, "hold_bytes_per_conn")), values.get(("haproxy", "hold_bytes_per_conn"))
        if num(v):
            fig = fmt(v, "B") + (f" = {v / hp:.2f}x HAProxy" if num(hp) and hp > 0 else ", HAProxy n/a")
            met = v <= 1.2 * 1024 and (v / hp <= 0.25 if num(hp) and hp > 0 else False)
            lines.append(f"| Memory per idle WS session ≤ 1.2 KiB and ≤ 0.25x HAProxy | {w} | {fig} | {met_cell(met)} |")
        else:
            lines.append(f"| Memory per idle WS session ≤ 1.2 KiB and ≤ 0.25x HAProxy | {w} | n/a | n/a |")
    ratio_goal("Memory per idle wss session ≤ 0.25x better peer", "tls_hold_bytes_per_conn", 0.25)
    ratio_goal("TLS full handshakes per core ≥ better peer", "tls_full_per_core", 1.0, higher=True)
    ratio_goal("TLS resumed handshakes per core ≥ better peer", "tls_res_per_core", 1.0, higher=True)
    ratio_goal("CPU per kept-alive HTTPS request ≤ 0.8x better peer", "tls_http_cpu_us", 0.8)
    for key, what in (("rate_p99_us", "HTTP at a fixed rate (2)"), ("lowrate_p99_us", "WS at 1 msg/s (6)")):
        for w in wslbs:
            mine = rounds.get((w, key), {})
            peer_rounds = [rounds.get((p, key), {}) for p in peers]
            judged, ok, worst = 0, 0, None
            for rnd, v in sorted(mine.items()):
                pv = [pr.get(rnd) for pr in peer_rounds]
                if not num(v) or not all(num(x) for x in pv):
                    continue
                judged += 1
                lo = min(pv)
                ok += v <= lo
                worst = max(worst or 0, v / lo if lo > 0 else 0)
            if judged == 0:
                lines.append(f"| p99 {what} no worse than either peer, every round | {w} | n/a | n/a |")
                continue
            fig = f"{ok} of {judged} rounds (worst {worst:.2f}x the better peer's p99)"
            lines.append(f"| p99 {what} no worse than either peer, every round | {w} | {fig} | {met_cell(ok == judged)} |")
    return lines
