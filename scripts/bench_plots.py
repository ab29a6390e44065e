#!/usr/bin/env python3
"""The benchmark's plots, as SVG, from what scripts/bench.sh left in its output folder:

    throughput.svg  completed against offered load: SIP MESSAGE transactions/s (sip-steps.csv)
                    and receipts/s of the load generator (load-sweep.csv)
    latency.svg     submit → receipt p50 / p90 / p99 / p99.9 against offered load (load-sweep.csv)
    scaling.svg     receipts/s against worker lcores, DPDK rings and plain threads, with the
                    linear ideal (scaling.json)
    rss.svg         iwf's VmRSS and its correlation entries over a soak (rss.csv)

    scripts/bench_plots.py IN_DIR OUT_DIR [MACHINE]

A plot whose data is missing (its part was not run) is left as it was, and said.
No dependencies beyond Python's standard library.
"""
import csv
import json
import math
import sys
from pathlib import Path

W, H = 900, 400
LEFT, RIGHT, TOP, BOTTOM = 80, 270, 48, 56
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def nice_ticks(hi, n=5):
    """Round tick values from 0 to at least `hi`."""
    if hi <= 0:
        return [0, 1]
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    return [i * step for i in range(int(math.ceil(hi / step)) + 1)]


def fmt(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chart(path, title, xlabel, ylabel, series, note="", y2=None, whole_x=False):
    """Line chart of `series` [(name, [(x, y), ...], dashed)]; `y2` a second axis's
    (label, series) on the right."""
    xs = [x for _, pts, _ in series for x, _ in pts] + [x for _, pts, _ in (y2[1] if y2 else []) for x, _ in pts]
    ys = [y for _, pts, _ in series for _, y in pts]
    if not xs or not ys:
        return False
    xt, yt = nice_ticks(max(xs)), nice_ticks(max(ys))
    if whole_x and max(xs) <= 16:
        xt = list(range(0, int(max(xs)) + 1))
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    sx = lambda x: LEFT + pw * x / xt[-1]
    sy = lambda y, top=yt[-1]: TOP + ph - ph * y / top
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{esc(title)}</text>']
    for t in yt:
        o.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{fmt(t)}</text>')
    for t in xt:
        o.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{TOP + ph}" y2="{TOP + ph + 4}" stroke="#333"/>')
        o.append(f'<text x="{sx(t):.1f}" y="{TOP + ph + 18}" text-anchor="middle">{fmt(t)}</text>')
    o.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{LEFT + pw / 2}" y="{H - 14}" text-anchor="middle">{esc(xlabel)}</text>')
    o.append(f'<text transform="translate(18,{TOP + ph / 2}) rotate(-90)" text-anchor="middle">{esc(ylabel)}</text>')
    legend = []

    def draw(all_series, scale_y, start):
        for i, (name, pts, dashed) in enumerate(all_series):
            c = COLOURS[(start + i) % len(COLOURS)]
            pts = sorted(pts)
            d = " ".join(f"{sx(x):.1f},{scale_y(y):.1f}" for x, y in pts)
            dash = ' stroke-dasharray="6 4"' if dashed else ""
            o.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
            for x, y in pts:
                o.append(f'<circle cx="{sx(x):.1f}" cy="{scale_y(y):.1f}" r="3" fill="{c}"/>')
            legend.append((name, c, dashed))

    draw(series, sy, 0)
    if y2:
        label2, s2 = y2
        top2 = nice_ticks(max(y for _, pts, _ in s2 for _, y in pts))
        for t in top2:
            o.append(f'<text x="{LEFT + pw + 6}" y="{sy(t, top2[-1]) + 4:.1f}">{fmt(t)}</text>')
        o.append(f'<text transform="translate({LEFT + pw + 48},{TOP + ph / 2}) rotate(90)" '
                 f'text-anchor="middle">{esc(label2)}</text>')
        draw(s2, lambda y: sy(y, top2[-1]), len(series))
    lx = W - RIGHT + (70 if y2 else 16)
    for i, (name, c, dashed) in enumerate(legend):
        y = TOP + 10 + 18 * i
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        o.append(f'<line x1="{lx}" x2="{lx + 20}" y1="{y}" y2="{y}" stroke="{c}" stroke-width="2"{dash}/>')
        o.append(f'<text x="{lx + 26}" y="{y + 4}" font-size="11">{esc(name)}</text>')
    if note:
        o.append(f'<text x="{LEFT}" y="{TOP - 8}" font-size="10" fill="#555">{esc(note)}</text>')
    o.append("</svg>")
    path.write_text("\n".join(o) + "\n")
    return True


def read_csv(path):
    if not path.exists():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def main():
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    machine = sys.argv[3] if len(sys.argv) > 3 else ""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    sip, load = read_csv(src / "sip-steps.csv"), read_csv(src / "load-sweep.csv")
    series = []
    if sip:
        series.append(("SIP MESSAGE transactions/s", [(r["offered"], r["completed"]) for r in sip], False))
    if load:
        series.append(("receipts/s (load generator)", [(r["offered"], r["receipts_per_s"]) for r in load], False))
    if series:
        top = max(x for _, pts, _ in series for x, _ in pts)
        series.append(("completed = offered", [(0, 0), (top, top)], True))
        if chart(out / "throughput.svg", "Completed against offered load", "offered per second",
                 "completed per second", series, machine):
            made.append("throughput.svg")
    if load:
        pct = [(f"p{n}", [(r["offered"], r[f"p{k}_us"] / 1000) for r in load if f"p{k}_us" in r], False)
               for n, k in (("50", "50"), ("90", "90"), ("99", "99"), ("99.9", "999"))]
        if chart(out / "latency.svg", "submit → receipt latency against offered load", "offered receipts per second",
                 "milliseconds", [p for p in pct if p[1]], machine):
            made.append("latency.svg")
    scaling = src / "scaling.json"
    if scaling.exists():
        rows = [json.loads(l) for l in scaling.read_text().splitlines() if l.strip()]
        rows = [r for r in rows if "receipts_per_s" in r]
        s = []
        for fig, name in (("scaling_dpdk_ring", "DPDK net_ring queues"), ("scaling", "pinned threads, no DPDK")):
            pts = [(r["workers"], r["receipts_per_s"]) for r in rows if r["figure"] == fig]
            if pts:
                s.append((name, pts, False))
                one = next((y for x, y in pts if x == 1), None)
                if one:
                    s.append((f"{name}: N × 1 worker", [(x, one * x) for x, _ in pts], True))
        if s and chart(out / "scaling.svg", "Receipt path against worker lcores", "worker lcores", "receipts per second",
                       s, machine, whole_x=True):
            made.append("scaling.svg")
    rss = read_csv(src / "rss.csv")
    if rss:
        if chart(out / "rss.svg", "iwf's memory over a soak", "seconds", "VmRSS, MiB",
                 [("VmRSS", [(r["seconds"], r["vmrss_kb"] / 1024) for r in rss], False)], machine,
                 y2=("correlation entries", [("correlation entries",
                                              [(r["seconds"], r.get("correlation_entries", 0)) for r in rss], True)])):
            made.append("rss.svg")
    print(f"bench_plots: {', '.join(made) if made else 'no data for any plot'} in {out}")


if __name__ == "__main__":
    main()
