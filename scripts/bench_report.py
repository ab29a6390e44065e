#!/usr/bin/env python3
"""BENCHMARKS.md's summary: the latest value of each figure benches/targets.toml names,
its target, whether it is met, and the machine that measured it, written between the
summary markers at the top of BENCHMARKS.md from the history rows below them.

    scripts/bench_report.py           rewrite the summary (scripts/bench.sh runs it)
    scripts/bench_report.py --check   exit 1 if the summary is not what the history says
"""
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- summary: written by scripts/bench_report.py from the history below; do not edit -->"
END = "<!-- end of summary -->"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def history(text):
    """The history rows: (date, machine, figure, value, ratio), oldest first."""
    rows = []
    for line in text.splitlines():
        if not re.match(r"^\| \d{4}-\d\d-\d\d \|", line):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5:
            rows.append(tuple(cells[:5]))
    return rows


def number(cell, index):
    found = NUMBER.findall(cell.replace(",", ""))
    return float(found[index]) if index < len(found) else None


def shown(x):
    return f"{x:,.0f}" if x >= 100 or x == int(x) else f"{x:g}"


def summary(text, targets):
    rows = history(text)
    out = [
        BEGIN,
        "",
        "| figure | target | latest | met | machine | date |",
        "|---|---|---|---|---|---|",
    ]
    for f in targets["figure"]:
        pattern = re.compile(f["match"])
        latest = next((r for r in reversed(rows) if pattern.match(r[2])), None)
        unit = f.get("unit", "")
        target = f"{f['op']} {shown(f['target'])} {unit}".strip() if "target" in f else "—"
        if latest is None:
            out.append(f"| {f['name']} | {target} | not measured | | | |")
            continue
        date, machine, _, value, ratio = latest
        v = number(ratio if f.get("cell") == "ratio" else value, f.get("index", 0))
        if v is None:
            out.append(f"| {f['name']} | {target} | `{value}` unreadable | | {machine} | {date} |")
            continue
        met = ""
        if "target" in f:
            ok = v >= f["target"] if f["op"] == ">=" else v <= f["target"]
            met = "yes" if ok else "**no**"
        out.append(f"| {f['name']} | {target} | {shown(v)} {unit} | {met} | {machine} | {date} |".replace("  |", " |"))
    out += ["", END]
    return "\n".join(out)


def main():
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text()
    targets = tomllib.loads((ROOT / "benches/targets.toml").read_text())
    new = summary(text, targets)
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        updated = text[:a] + new + text[b:]
    else:
        # After the title line.
        head, _, rest = text.partition("\n")
        updated = f"{head}\n\n{new}\n{rest}"
    if "--check" in sys.argv[1:]:
        if updated != text:
            print("bench_report: BENCHMARKS.md's summary is not what its history and benches/targets.toml say: "
                  "run scripts/bench_report.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
