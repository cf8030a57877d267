"""PSNR on the held-out photos against CPU-hours of training, as a PNG (no plotting library).

    python bench/training_curve.py RUN --cpu 353=1823 --cpu 2000=9000 [--report 2012=last.eval.json] -o curve.png

Points are the `RUN/step_NNNNNNN.eval.json` reports of `scam-train evaluate` (their
`psnr_db`), and `--report STEP=FILE` for a checkpoint that is not a snapshot (the last.pt
a run stopped with). CPU-hours per step come from `--cpu STEP=SECONDS` anchors (the training
process's CPU time, e.g. from `ps -o time`, when it stopped at STEP), interpolated
linearly by step between them from 0 at step 0: the run may change thread counts between
anchors (a resumed run), which wall time alone would hide.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

W, H, MARGIN = 720, 420, 60


def read_points(run: Path, extra: list[tuple[int, Path]]) -> list[tuple[int, float]]:
    reports = [(int(re.search(r"step_(\d+)", p.name).group(1)), p) for p in run.glob("step_*.eval.json")]
    return sorted((step, float(json.loads(p.read_text())["psnr_db"])) for step, p in reports + extra)


def cpu_hours(step: int, anchors: list[tuple[int, float]]) -> float:
    steps, seconds = zip(*[(0, 0.0), *sorted(anchors)])
    return float(np.interp(step, steps, seconds, right=np.nan)) / 3600


def plot(points: list[tuple[float, float, int]], out: Path, target: float | None) -> None:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_max = max(xs) * 1.05
    y_lo, y_hi = min(ys + ([target] if target else [])) - 0.5, max(ys + ([target] if target else [])) + 0.5
    image = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(image)

    def at(x: float, y: float) -> tuple[float, float]:
        return (MARGIN + x / x_max * (W - 2 * MARGIN), H - MARGIN - (y - y_lo) / (y_hi - y_lo) * (H - 2 * MARGIN))

    draw.line([at(0, y_lo), at(x_max, y_lo)], fill="black")
    draw.line([at(0, y_lo), at(0, y_hi)], fill="black")
    for y in np.arange(np.ceil(y_lo), y_hi, 1.0):
        draw.line([at(0, y), at(x_max, y)], fill=(225, 225, 225))
        draw.text((MARGIN - 30, at(0, y)[1] - 6), f"{y:.0f}", fill="black")
    for x in np.linspace(0, x_max, 6):
        draw.text((at(x, y_lo)[0] - 10, H - MARGIN + 8), f"{x:.2f}", fill="black")
    if target:
        draw.line([at(0, target), at(x_max, target)], fill=(200, 60, 60))
        draw.text((at(0, target)[0] + 6, at(0, target)[1] - 14), f"target {target:g} dB", fill=(200, 60, 60))
    draw.line([at(x, y) for x, y in zip(xs, ys)], fill=(40, 90, 200), width=2)
    for x, y, step in points:
        cx, cy = at(x, y)
        draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=(40, 90, 200))
        draw.text((cx + 4, cy + 4), str(step), fill=(110, 110, 110))
    draw.text((W // 2 - 80, H - 22), "CPU-hours of training", fill="black")
    draw.text((8, 8), "PSNR (dB) on ccp-val, reconstruction; labels: step", fill="black")
    image.save(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--cpu", action="append", required=True, metavar="STEP=SECONDS",
                    help="cumulative CPU seconds of the training process at STEP (repeatable)")
    ap.add_argument("--report", action="append", default=[], metavar="STEP=FILE",
                    help="an evaluate report of the checkpoint at STEP that is not a snapshot (repeatable)")
    ap.add_argument("--target", type=float, default=16.0)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    anchors = [(int(s), float(c)) for s, c in (a.split("=", 1) for a in args.cpu)]
    extra = [(int(s), Path(f)) for s, f in (r.split("=", 1) for r in args.report)]
    rows = [(cpu_hours(step, anchors), psnr, step) for step, psnr in read_points(args.run, extra)]
    rows = [r for r in rows if not np.isnan(r[0])]
    print("| step | CPU-hours | PSNR (dB) |\n|---|---|---|")
    for hours, psnr, step in rows:
        print(f"| {step} | {hours:.2f} | {psnr:.2f} |")
    plot(rows, args.out, args.target)


if __name__ == "__main__":
    main()
