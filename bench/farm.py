"""Frames per second per machine for the farm's Replace step: how many `scam-run video`
processes, threads each and batch size get the most frames through one machine.

    python bench/farm.py [--frames 120] [--providers cpu openvino] [--layouts 1x2 2x1] [--batches 1 8]

Each configuration splits `--frames` frames of the clip into one contiguous chunk per
process and runs the processes at once, as a farm worker running several tasks would:
`scam-run video CLIP --subject subject.npz --frames A-B -o frames/frame.%06d.png` (the
Open Job Description template's command, PNG frames, built-in parser, the default
bundle) with `--provider`, `--threads` and `--batch` set. Machine fps = frames / wall
time from the first start to the last exit, start-up (imports, session compilation)
included, as a farm pays it once per task. Layout `PxT`: P processes of T threads.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCAM_RUN = str(Path(sys.executable).with_name("scam-run"))


def run_config(clip: Path, subject: Path, out: Path, frames: int, provider: str, procs: int, threads: int,
               batch: int) -> float:
    """Machine fps of `procs` concurrent `scam-run video` chunks covering `frames` frames."""
    bounds = [round(i * frames / procs) for i in range(procs + 1)]
    commands = [[SCAM_RUN, "video", str(clip), "--subject", str(subject), "--frames", f"{a}-{b - 1}",
                 "-o", str(out / "frame.%06d.png"), "--provider", provider, "--threads", str(threads),
                 "--batch", str(batch), "--parser", "builtin", "--quiet"]
                for a, b in zip(bounds, bounds[1:])]
    start = time.perf_counter()
    running = [subprocess.Popen(c, stderr=subprocess.PIPE, text=True) for c in commands]
    for process in running:
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(f"scam-run video failed ({process.returncode}): {err.strip()}")
    wall = time.perf_counter() - start
    written = len(list(out.glob("frame.*.png")))
    if written != frames:
        raise SystemExit(f"{out}: {written} frames written, expected {frames}")
    return frames / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=ROOT.parent / "shared" / "data" / "video" / "pose_1.mp4")
    ap.add_argument("--subject", type=Path, default=ROOT / "scam_runtime" / "demo" / "subject.jpg")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--providers", nargs="+", default=["cpu", "openvino"])
    ap.add_argument("--layouts", nargs="+", default=["1x2", "2x1"], help="PxT: P processes of T threads")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="scam-bench-farm-") as tmp:
        subject = Path(tmp) / "subject.npz"
        subprocess.run([SCAM_RUN, "encode-subject", str(args.subject), "-o", str(subject), "--parser", "builtin"],
                       check=True)
        print(f"# {args.clip.name}, {args.frames} frames, default bundle, built-in parser, PNG frames; "
              "machine fps = frames / wall time of all processes, start-up included")
        print("| provider | processes x threads | batch | machine fps | vs first row |")
        print("|---|---|---|---|---|")
        baseline = None
        for provider in args.providers:
            for layout in args.layouts:
                procs, threads = (int(v) for v in layout.split("x"))
                for batch in args.batches:
                    out = Path(tmp) / f"{provider}_{layout}_{batch}"
                    out.mkdir()
                    fps = run_config(args.clip, subject, out, args.frames, provider, procs, threads, batch)
                    baseline = baseline or fps
                    print(f"| {provider} | {procs} x {threads} | {batch} | {fps:.2f} | {fps / baseline:.2f} |",
                          flush=True)


if __name__ == "__main__":
    main()
