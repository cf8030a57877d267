"""Human parsers: person IoU on the shared people photos, CPU time per frame and temporal
stability on the shared video clips.

    python bench/parsing.py [--parsers builtin mediapipe onnx:PATH] [--smoothing 0 0.5 0.8] [--threads 2]

Per backend and photo of `../shared/data/people`: IoU of the person pixels (labels > 0)
with the photo's person mask (the subject alone for the single-person photos; every
person, `keep="all"`, for three_people.jpg): the numbers behind the test floors.
Per backend and clip: milliseconds per frame for the whole parse (letterbox, network,
post-processing, resize back to the frame) and, for ONNX parsers, for the network run
alone in the same run (the baseline: the ratio shows what the rest costs); then the mean
IoU between consecutive frames' person masks (labels > 0), without and with temporal
smoothing of the probabilities. Each backend missing from this environment (mediapipe
needs its own, see README) is reported and skipped.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scam_runtime.backend import BackendOptions  # noqa: E402
from scam_runtime.errors import LabelError  # noqa: E402
from scam_runtime.labels import read_image  # noqa: E402
from scam_runtime.parsing import OnnxParser, ParserOptions, get_parser  # noqa: E402

LABELS = ("background", "face", "body")


def frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


PEOPLE = [("pose.jpg", "pose_segmentation.png", "largest"), ("portrait.jpg", "portrait_segmentation.png", "largest"),
          ("three_people.jpg", "three_people_binary_mask.png", "all")]


def person_mask(path: Path) -> np.ndarray:
    """The people/ masks: a blue person on red (two of them), or a white person on black."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    if "binary" in path.name:
        return rgb[..., 0] > 127
    return (rgb[..., 2] > 127) & (rgb[..., 0] < 128)


def person_ious(folder: Path, backend: str) -> dict[str, float]:
    out = {}
    for photo, mask, keep in PEOPLE:
        labels = get_parser(backend, LABELS, ParserOptions(keep=keep))(read_image(folder / photo))
        truth, pred = person_mask(folder / mask), labels > 0
        out[photo] = float((truth & pred).sum() / (truth | pred).sum())
    return out


def mean_consecutive_iou(masks: list[np.ndarray]) -> float:
    ious = [(a & b).sum() / max((a | b).sum(), 1) for a, b in zip(masks, masks[1:])]
    return float(np.mean(ious))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", nargs="+", default=sorted(str(p) for p in (ROOT.parent / "shared" / "data" /
                                                                           "video").glob("*.mp4")))
    ap.add_argument("--parsers", nargs="+", default=["builtin", "mediapipe"])
    ap.add_argument("--smoothing", nargs="+", type=float, default=[0.0, 0.5, 0.8])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    backend = BackendOptions(threads=args.threads)
    people = ROOT.parent / "shared" / "data" / "people"
    print("# person IoU on ../shared/data/people")
    print("| parser | " + " | ".join(p for p, _, _ in PEOPLE) + " |")
    print("|---|" + "---|" * len(PEOPLE))
    for name in args.parsers:
        try:
            ious = person_ious(people, name)
        except LabelError as exc:
            print(f"| {name} | skipped: {exc} |")
            continue
        print(f"| {name} | " + " | ".join(f"{ious[p]:.3f}" for p, _, _ in PEOPLE) + " |", flush=True)
    clips = {Path(v).name: frames(Path(v)) for v in args.videos}
    print(f"# parsers on CPU ({args.threads} threads); clips: " +
          ", ".join(f"{k} {v[0].shape[1]}x{v[0].shape[0]} {len(v)} frames" for k, v in clips.items()))
    print("| parser | clip | parse (ms/frame) | network alone (ms) | parse / network | "
          + " | ".join(f"consecutive IoU, smoothing {s}" for s in args.smoothing) + " |")
    print("|---|---|---|---|---|" + "---|" * len(args.smoothing))
    for name in args.parsers:
        for clip, video in clips.items():
            row = []
            for smoothing in args.smoothing:
                try:
                    parser = get_parser(name, LABELS, ParserOptions(smoothing=smoothing, backend=backend))
                except LabelError as exc:
                    print(f"| {name} | skipped: {exc} |")
                    break
                times, masks = [], []
                for image in video:
                    start = time.perf_counter()
                    masks.append(parser(image) > 0)
                    times.append(time.perf_counter() - start)
                row.append((statistics.median(times[1:]) * 1000, mean_consecutive_iou(masks), parser))
            if not row:
                break
            parse_ms, _, parser = row[0]
            network = "-"
            ratio = "-"
            if isinstance(parser, OnnxParser):
                x = np.zeros((1, 3, parser.height, parser.width), np.float32)
                run = lambda: parser.session.run(**{parser.session.input_names[0]: x})  # noqa: E731
                run()
                start = time.perf_counter()
                for _ in range(10):
                    run()
                net_ms = (time.perf_counter() - start) * 100
                network, ratio = f"{net_ms:.1f}", f"{parse_ms / net_ms:.2f}x"
            print(f"| {name} | {clip} | {parse_ms:.1f} | {network} | {ratio} | "
                  + " | ".join(f"{iou:.4f}" for _, iou, _ in row) + " |", flush=True)


if __name__ == "__main__":
    main()
