#!/usr/bin/env python3
"""Draws the CDF of signal -> restored for each reconnect-storm result (scripts/storm.sh).

    scripts/storm-cdf.py                      # target/storm/storm-n*-*.json -> docs/storm-cdf.svg
    scripts/storm-cdf.py -o out.svg a.json b.json

One curve per result file and storm kind: kill (solid) and drain (dashed), colour by N.
Python 3 standard library only.
"""

import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTE = "kill = SIGKILL (solid), drain = SIGTERM (dashed); 3 workers behind nginx"
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
W, H = 880, 460
LEFT, RIGHT, TOP, BOTTOM = 64, 300, 56, 52


def nice_step(span):
    """A round tick step giving about 6 ticks over span."""
    for step in (10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000):
        if span / step <= 8:
            return step
    return 20000


def load(paths):
    """(N, label, kind, storms, sorted samples): the samples of every storm of one kind with
    the same N and label (build) pooled, over every file."""
    pooled = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        for s in r.get("storms", []):
            key = (r["clients"], r.get("label", ""), s.get("kind"))
            storms, samples = pooled.get(key, (0, []))
            pooled[key] = (storms + 1, samples + s.get("to_restored_ms", {}).get("samples", []))
    curves = [(n, label, kind, storms, sorted(xs)) for (n, label, kind), (storms, xs) in pooled.items() if xs]
    curves.sort(key=lambda c: (c[0], c[1], c[2] != "kill"))
    return curves


def pct(xs, p):
    i = max(1, min(len(xs), -(-p * len(xs) // 100)))
    return xs[int(i) - 1]


def svg(curves):
    xmax = max(c[4][-1] for c in curves)
    step = nice_step(xmax)
    xmax = (int(xmax // step) + 1) * step
    labels = sorted({c[1] for c in curves if c[1]})
    legend_h = TOP + 14 + len(curves) * 34
    height = max(H, legend_h + 10)
    pw, ph = W - LEFT - RIGHT, height - TOP - BOTTOM
    x = lambda v: LEFT + pw * v / xmax
    y = lambda p: TOP + ph * (1 - p)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14">Reconnect storms: signal → every component restored '
        "(CDF of affected tabs)</text>",
    ]
    for i in range(0, int(xmax) + 1, step):
        out.append(f'<line x1="{x(i):.1f}" y1="{TOP}" x2="{x(i):.1f}" y2="{TOP + ph}" stroke="#ddd"/>')
        out.append(f'<text x="{x(i):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{i}</text>')
    for p in (0, 0.25, 0.5, 0.75, 0.9, 1):
        out.append(f'<line x1="{LEFT}" y1="{y(p):.1f}" x2="{LEFT + pw}" y2="{y(p):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(p) + 4:.1f}" text-anchor="end">{p:g}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{height - 12}" text-anchor="middle">ms after the signal</text>')
    out.append(
        f'<text x="16" y="{TOP + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + ph / 2})">fraction of affected tabs restored</text>'
    )
    series = sorted({(c[0], c[1]) for c in curves})
    for j, (n, label, kind, storms, xs) in enumerate(curves):
        colour = COLOURS[series.index((n, label)) % len(COLOURS)]
        # The empirical CDF as steps; over 400 samples, its value at 400 evenly spaced ranks
        # (the drawing is 400 px tall at most, so nothing visible is lost).
        pts = [(0.0, 0.0)]
        ranks = range(len(xs)) if len(xs) <= 400 else sorted({int(k * len(xs) / 400) for k in range(400)} | {len(xs) - 1})
        prev = 0
        for i in ranks:
            pts.append((xs[i], prev / len(xs)))
            pts.append((xs[i], (i + 1) / len(xs)))
            prev = i + 1
        path = " ".join(f"{x(v):.1f},{y(p):.1f}" for v, p in pts)
        dash = "" if kind == "kill" else ' stroke-dasharray="6,4"'
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"{dash}/>')
        ly = TOP + 14 + j * 34
        lx = LEFT + pw + 14
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>')
        what = f"{storms} storms, " if storms > 1 else ""
        build = f" {label.split()[0]}" if len(labels) > 1 else ""
        out.append(f'<text x="{lx + 30}" y="{ly + 4}">N={n:,}{build} {kind} ({what}{len(xs):,} tabs)</text>')
        out.append(
            f'<text x="{lx + 30}" y="{ly + 18}" fill="#555">median {pct(xs, 50):.0f}, p99 {pct(xs, 99):.0f} ms</text>'
        )
    if labels:
        out.append(f'<text x="{LEFT}" y="{TOP - 12}" fill="#555">{", ".join(labels)}; {NOTE}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help="result files (default: target/storm/storm-n*-*.json)")
    ap.add_argument("-o", "--out", default=os.path.join(ROOT, "docs", "storm-cdf.svg"))
    a = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    files = a.files or sorted(glob.glob(os.path.join(target, "storm", "storm-n*-*.json")))
    if not files:
        sys.exit("storm-cdf: no result files (run scripts/storm.sh N first)")
    curves = load(files)
    if not curves:
        sys.exit("storm-cdf: no samples in " + ", ".join(files))
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(svg(curves))
    print(f"storm-cdf: {len(curves)} curves from {len(files)} files -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
