"""Human parsers: person IoU on the shared people photos, CPU time per frame and temporal
stability on the shared video clips.

    python bench/parsing.py [--parsers builtin mediapipe onnx:PATH] [--smoothing 0 0.5 0.8] [--threads 2] [--no-refine]

Per backend and photo of `../shared/data/people`: IoU of the person pixels (labels > 0)
with the photo's person mask (the subject alone for the single-person photos; every
person, `keep="all"`, for three_people.jpg): the numbers behind the test floors.
Per backend and clip: milliseconds per frame for the whole parse (letterbox, network,
post-processing, resize back to the frame, refiner passes) and, for ONNX parsers, for
their network runs alone in the same run (the whole-frame network plus each refiner pass:
the baseline, so the ratio shows what the rest costs); then the mean IoU between
consecutive frames' person masks (labels > 0) and face masks, without and with temporal
smoothing of the probabilities. `--no-refine`: the whole-frame pass alone. Each backend missing from this environment (mediapipe
needs its own, see docs/parsing.md) is reported and skipped.
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
from scam_runtime.parsers import OnnxParser, ParserOptions, get_parser  # noqa: E402

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


def network_ms(parser: OnnxParser, repeats: int = 10) -> float:
    """The ONNX runs of one parse alone: the whole-frame network, and each refiner's passes."""
    runs = [(parser, 1)] + [(r, r.passes) for r in parser.refiners]
    total = 0.0
    for net, count in runs:
        x = np.zeros((1, 3, net.height, net.width), np.float32)
        net.session.run(**{net.session.input_names[0]: x})
        start = time.perf_counter()
        for _ in range(repeats):
            net.session.run(**{net.session.input_names[0]: x})
        total += (time.perf_counter() - start) / repeats * count
    return total * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", nargs="+", default=sorted(str(p) for p in (ROOT.parent / "shared" / "data" /
                                                                           "video").glob("*.mp4")))
    ap.add_argument("--parsers", nargs="+", default=["builtin", "mediapipe"])
    ap.add_argument("--smoothing", nargs="+", type=float, default=[0.0, 0.5, 0.8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-refine", action="store_true", help="parsers without their refiners")
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
          + " | ".join(f"person consecutive IoU, smoothing {s}" for s in args.smoothing) + " | "
          + " | ".join(f"face, smoothing {s}" for s in args.smoothing) + " |")
    print("|---|---|---|---|---|" + "---|" * 2 * len(args.smoothing))
    for name in args.parsers:
        for clip, video in clips.items():
            row = []
            for smoothing in args.smoothing:
                try:
                    parser = get_parser(name, LABELS, ParserOptions(smoothing=smoothing, backend=backend,
                                                                    refine=not args.no_refine))
                except LabelError as exc:
                    print(f"| {name} | skipped: {exc} |")
                    break
                times, labels = [], []
                for image in video:
                    start = time.perf_counter()
                    labels.append(parser(image))
                    times.append(time.perf_counter() - start)
                row.append((statistics.median(times[1:]) * 1000, mean_consecutive_iou([x > 0 for x in labels]),
                            mean_consecutive_iou([x == LABELS.index("face") for x in labels]), parser))
            if not row:
                break
            parse_ms, _, _, parser = row[0]
            network = "-"
            ratio = "-"
            if isinstance(parser, OnnxParser):
                net_ms = network_ms(parser)
                network, ratio = f"{net_ms:.1f}", f"{parse_ms / net_ms:.2f}x"
            print(f"| {name} | {clip} | {parse_ms:.1f} | {network} | {ratio} | "
                  + " | ".join(f"{person:.4f}" for _, person, _, _ in row) + " | "
                  + " | ".join(f"{face:.4f}" for _, _, face, _ in row) + " |", flush=True)


if __name__ == "__main__":
    main()
