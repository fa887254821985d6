#!/usr/bin/env python3
"""Summarise Autobahn (kosoku) fuzzingclient reports for wslb.

Reads TARGET_DIR/index.json for each target (Autobahn format:
{agent: {case_id: {"behavior": ..., "behaviorClose": ..., ...}}}), prints a
table per target (counts per behavior, FAILED case ids) and the cases where a
balancer target did worse than the direct target, optionally writes the same
as markdown, and exits 1 if any case FAILED or a balancer target is worse than
direct (2 on unusable input).

Usage:
  autobahn_summary.py [--direct NAME] [--write-docs [PATH]] DIR/NAME ...
Each positional argument is a report directory; its base name is the target
name (e.g. target/autobahn/direct target/autobahn/inspect).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import NoReturn

BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
# Lower is better. Anything unknown ranks as FAILED.
# behaviorClose may also be UNCLEAN, WRONG CODE or FAILED BY CLIENT.
RANK = {
    "OK": 0,
    "INFORMATIONAL": 0,
    "NON-STRICT": 1,
    "UNIMPLEMENTED": 2,
    "UNCLEAN": 2,
    "WRONG CODE": 3,
    "FAILED BY CLIENT": 3,
    "FAILED": 3,
}
BAD_CLOSE = {"FAILED", "WRONG CODE", "UNCLEAN", "FAILED BY CLIENT"}


def case_key(case_id: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.]", case_id))


def rank(b: str | None) -> int:
    return RANK.get(b or "FAILED", 3)


def die(msg: str) -> NoReturn:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def load(dirpath: str) -> dict[str, dict]:
    """Returns {case_id: entry}, merged over agents (one agent per run)."""
    path = os.path.join(dirpath, "index.json")
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except FileNotFoundError:
        die(f"no report at {path} (did kosoku run?)")
    except json.JSONDecodeError as e:
        die(f"{path} is not valid JSON: {e}")
    if not isinstance(index, dict) or not index:
        die(f"{path} holds no agent results")
    cases: dict[str, dict] = {}
    for agent, per_case in index.items():
        if not isinstance(per_case, dict):
            die(f"{path}: agent {agent!r} has no case map")
        for case_id, entry in per_case.items():
            cases[case_id] = entry if isinstance(entry, dict) else {}
    return cases


def worst(entry: dict) -> str:
    """The worse of behavior and behaviorClose."""
    b, bc = entry.get("behavior"), entry.get("behaviorClose")
    return b if rank(b) >= rank(bc) else bc


def summarise(targets: dict[str, dict[str, dict]], direct: str | None) -> tuple[list[str], bool]:
    lines: list[str] = []
    bad = False
    lines.append("| target | cases | " + " | ".join(BEHAVIORS) + " | bad close |")
    lines.append("|---|---:|" + "---:|" * len(BEHAVIORS) + "---:|")
    failed_lists: dict[str, list[str]] = {}
    for name, cases in targets.items():
        counts = {b: 0 for b in BEHAVIORS}
        close_failed = 0
        failed = []
        for cid, e in cases.items():
            b = e.get("behavior", "FAILED")
            counts[b if b in counts else "FAILED"] += 1
            if e.get("behaviorClose") in BAD_CLOSE:
                close_failed += 1
            if b not in counts or b == "FAILED" or e.get("behaviorClose") == "FAILED":
                failed.append(cid)
        failed.sort(key=case_key)
        failed_lists[name] = failed
        bad |= bool(failed)
        lines.append(
            f"| {name} | {len(cases)} | "
            + " | ".join(str(counts[b]) for b in BEHAVIORS)
            + f" | {close_failed} |"
        )
    lines.append("")
    for name, failed in failed_lists.items():
        if failed:
            lines.append(f"FAILED in **{name}** ({len(failed)}): " + ", ".join(failed))
        else:
            lines.append(f"FAILED in **{name}**: none")
    if direct and direct in targets:
        base = targets[direct]
        for name, cases in targets.items():
            if name == direct:
                continue
            worse = []
            missing = []
            for cid, e in base.items():
                if cid not in cases:
                    missing.append(cid)
                elif rank(worst(cases[cid])) > rank(worst(e)):
                    worse.append(f"{cid} ({worst(e)} -> {worst(cases[cid])})")
            worse.sort(key=lambda s: case_key(s.split(" ")[0]))
            missing.sort(key=case_key)
            bad |= bool(worse) or bool(missing)
            lines.append(
                f"Worse than {direct} in **{name}** ({len(worse)}): "
                + (", ".join(worse) if worse else "none")
            )
            if missing:
                lines.append(f"Missing from **{name}** ({len(missing)}): " + ", ".join(missing))
    return lines, bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", help="report directories, one per target")
    ap.add_argument("--direct", default="direct", help="target name of the direct (no balancer) run")
    ap.add_argument(
        "--write-docs",
        nargs="?",
        const="docs/autobahn-summary.md",
        default=None,
        metavar="PATH",
        help="also write the summary as markdown (default path docs/autobahn-summary.md)",
    )
    ap.add_argument("--title", default="Autobahn conformance summary")
    args = ap.parse_args()

    targets = {os.path.basename(os.path.normpath(d)): load(d) for d in args.dirs}
    direct = args.direct if args.direct in targets else None
    lines, bad = summarise(targets, direct)
    text = "\n".join(lines)
    print(text)
    print("\nRESULT: " + ("FAIL" if bad else "PASS"))
    if args.write_docs:
        os.makedirs(os.path.dirname(args.write_docs) or ".", exist_ok=True)
        with open(args.write_docs, "w", encoding="utf-8") as f:
            f.write(f"# {args.title}\n\n")
            f.write("Generated by `scripts/autobahn.sh` (kosoku fuzzingclient; cases 12.* and 13.*, compression, excluded).\n")
            f.write("Counts are of each case's `behavior`; 'bad close' counts `behaviorClose` of FAILED, WRONG CODE, UNCLEAN or FAILED BY CLIENT. A case is listed as failed when its behavior or its close behavior is FAILED.\n\n")
            f.write(text + "\n\n")
            f.write(f"Result: **{'FAIL' if bad else 'PASS'}**\n")
        print(f"wrote {args.write_docs}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
