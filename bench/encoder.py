"""What the video encoder costs beside the networks: x264 presets and crf values on the shared
clips, through scam's own `VideoWriter` with one codec thread (its setting beside CPU inference).

    python bench/encoder.py [--presets medium faster veryfast] [--crf 18 17] [--frames 120]

Per clip, preset and crf: the encoder thread's CPU ms per frame (RGB→YUV conversion
included, median of `--rounds` interleaved rounds), PSNR of the decoded output against the
RGB frames given (all three channels, 8-bit), and the stream's bitrate. The frames given are
the clips' own decoded frames: the PSNR is what re-encoding a plate loses, the same for a
composite. A preset is x264's trade of encoding time against file size at a given quality;
crf sets the quality, but not identically across presets, hence the PSNR column.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scam_runtime.media import ENCODER_PRESETS, Encoding, FrameRange, VideoReader, VideoWriter  # noqa: E402

CLIPS = ("pose_1.mp4", "pose_squats.mp4")


def encode(reader: VideoReader, frames: list, out: Path, preset: str, crf: int) -> float:
    """Thread-CPU seconds to write `frames` to `out` (finish, i.e. x264's delayed frames, included)."""
    out.unlink(missing_ok=True)
    writer = VideoWriter(out, reader, Encoding("h264", crf, preset=None if preset == "medium" else preset, threads=1),
                         audio="none")
    start = time.thread_time()
    for frame in frames:
        writer.write_image(frame, frame.image)
    writer.finish()
    return time.thread_time() - start


def psnr(out: Path, frames: list) -> float:
    reader = VideoReader(out)
    try:
        decoded = [f.image for f in reader.frames(FrameRange(0, len(frames) - 1))]
    finally:
        reader.close()
    mse = np.mean([np.mean((d.astype(np.float64) - f.image) ** 2) for d, f in zip(decoded, frames, strict=True)])
    return float(10 * np.log10(255 ** 2 / mse))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", choices=ENCODER_PRESETS, default=["medium", "faster", "veryfast"])
    ap.add_argument("--crf", nargs="+", type=int, default=[18, 17])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "data" / "video")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scam-bench-encoder-"))
    print(f"# x264 through VideoWriter, 1 codec thread, {args.frames} frames per clip, CPU: median of "
          f"{args.rounds} interleaved rounds")
    print("| clip | preset | crf | CPU ms/frame | PSNR vs frames given (dB) | Mbit/s | CPU vs medium |")
    print("|---|---|---|---|---|---|---|")
    for name in CLIPS:
        reader = VideoReader(args.videos / name)
        try:
            frames = list(reader.frames(FrameRange(0, args.frames - 1)))
            rate = float(reader.stream.average_rate)
            combos = [(p, c) for p in args.presets for c in args.crf]
            cpu: dict[tuple[str, int], list[float]] = {c: [] for c in combos}
            for r in range(args.rounds):
                for preset, crf in combos:
                    cpu[preset, crf].append(encode(reader, frames, tmp / f"{preset}_{crf}.mp4", preset, crf))
                    print(f"round {r + 1}/{args.rounds}: {name} {preset} crf {crf}", file=sys.stderr, flush=True)
            ms = {c: statistics.median(v) / len(frames) * 1e3 for c, v in cpu.items()}
            base = ms.get(("medium", args.crf[0]))
            h, w = frames[0].image.shape[:2]
            for preset, crf in combos:
                out = tmp / f"{preset}_{crf}.mp4"
                mbps = out.stat().st_size * 8 / (len(frames) / rate) / 1e6
                ratio = f"{ms[preset, crf] / base:.2f}" if base else "-"
                print(f"| {name} ({w}×{h}) | {preset} | {crf} | {ms[preset, crf]:.2f} | "
                      f"{psnr(out, frames):.2f} | {mbps:.2f} | {ratio} |")
        finally:
            reader.close()


if __name__ == "__main__":
    main()
