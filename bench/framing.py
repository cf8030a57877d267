"""Framing on plates: held-out CCP photos pasted into plates at several person heights, each
reconstructed from its own latents through `SubjectReplacer.process` with its ground-truth
label map; person-region PSNR of the generated image against the pasted photo, per framing
mode, beside the photo at its own framing (the photo as the plate: what training saw).

    python bench/framing.py [--split scam_train/splits/ccp-val-b.txt] [--limit 24]
        [--plates 1920x1080 1280x720] [--heights 0.25 0.5 0.9] [--modes subject letterbox]
    python bench/framing.py --no-plates --people --clips    # only several people (no clips either)

Several people (`--people`): pairs of the photos pasted side by side (centres at a third and
two thirds of the plate's width), each person reconstructed from its own latents (one run
per person's latents, PSNR over that person's pixels), with a canvas for each person
(`people="each"`) against one canvas around both (`together`).

And on the shared clips (`--clips`): frames reconstructed from their own latents in each
mode (the built-in parser's labels standing for the truth), and the person box's
steadiness over time, raw and as framed (`framing.BoxSmoother`: smoothed, grown to hold the
frame's box): jitter is the mean second difference (frame-to-frame acceleration) of the
box centre, in box heights, and of its log height; lag the mean distance between the
framed and the raw centre, in box heights.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scam_runtime.framing import BoxSmoother, person_box  # noqa: E402
from scam_runtime.labels import read_image, read_labels  # noqa: E402
from scam_runtime.replacer import ReplaceOptions, SubjectReplacer  # noqa: E402
from scam_runtime.backend import BackendOptions  # noqa: E402
from scam_train.region_metrics import psnr  # noqa: E402

GREY = 118


def paste(photo: np.ndarray, labels: np.ndarray, plate_hw: tuple[int, int], height: float,
          centre_x: float = 0.5, onto: tuple[np.ndarray, np.ndarray] | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """`photo` scaled so its person is `height` of the plate, centred at `centre_x` of its
    width on a grey plate (or on `onto`'s plate and labels)."""
    y0, x0, y1, x1 = person_box(labels)
    scale = height * plate_hw[0] / (y1 - y0)
    size = (max(1, round(photo.shape[1] * scale)), max(1, round(photo.shape[0] * scale)))
    im = np.asarray(Image.fromarray(photo).resize(size, Image.BILINEAR))
    lab = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize(size, Image.NEAREST))
    if onto is None:
        plate, plate_labels = np.full((*plate_hw, 3), GREY, np.uint8), np.zeros(plate_hw, np.uint8)
    else:
        plate, plate_labels = onto[0].copy(), onto[1].copy()
    cy, cx = (y0 + y1) / 2 * scale, (x0 + x1) / 2 * scale
    top, left = round(plate_hw[0] / 2 - cy), round(plate_hw[1] * centre_x - cx)
    ys, xs = slice(max(top, 0), min(top + size[1], plate_hw[0])), slice(max(left, 0), min(left + size[0], plate_hw[1]))
    src = (slice(ys.start - top, ys.stop - top), slice(xs.start - left, xs.stop - left))
    person = lab[src] > 0  # only the person over what is there: two photos' backgrounds overlap
    plate[ys, xs] = np.where(person[..., None] | (onto is None), im[src], plate[ys, xs])
    plate_labels[ys, xs] = np.where(person, lab[src], plate_labels[ys, xs])
    return plate, plate_labels


def plates(args: argparse.Namespace) -> None:
    names = [n for n in (ROOT / args.split).read_text().split()][:args.limit]
    data = ROOT.parent / "shared" / "data" / "ccp"
    replacers = {m: SubjectReplacer(args.bundle, ReplaceOptions(fit=m), BackendOptions("cpu"), warn=lambda s: None)
                 for m in args.modes}
    rows: dict[tuple[str, str], list[float]] = {}
    for name in names:
        photo = read_image(data / "images" / f"{name}.jpg")
        labels = read_labels(data / "labels3" / f"{name}.png")
        for mode, replacer in replacers.items():
            subject = replacer.encode_subject(photo, labels)
            own = replacer.process(photo, labels, subject).generated
            rows.setdefault((mode, "photo itself"), []).append(psnr(own, photo, labels > 0))
            for plate_size in args.plates:
                w, h = (int(v) for v in plate_size.split("x"))
                for height in args.heights:
                    plate, plate_labels = paste(photo, labels, (h, w), height)
                    out = replacer.process(plate, plate_labels, subject).generated
                    rows.setdefault((mode, f"{plate_size}, person {height:.0%}"), []).append(
                        psnr(out, plate, plate_labels > 0))
    print(f"person-region PSNR (dB), mean over {len(names)} photos of {args.split}, each from its own latents\n")
    print("| plate | " + " | ".join(args.modes) + " |")
    print("|---|" + "---|" * len(args.modes))
    for where in dict.fromkeys(k[1] for k in rows):
        print(f"| {where} | " + " | ".join(f"{np.mean(rows[(m, where)]):.2f}" for m in args.modes) + " |")


def people(args: argparse.Namespace) -> None:
    """Pairs side by side: a canvas each against one for both (person PSNR, own latents)."""
    names = [n for n in (ROOT / args.split).read_text().split()][:args.limit]
    data = ROOT.parent / "shared" / "data" / "ccp"
    replacers = {m: SubjectReplacer(args.bundle, ReplaceOptions(people=m), BackendOptions("cpu"), warn=lambda s: None)
                 for m in ("each", "together")}
    rows: dict[tuple[str, float], list[float]] = {}
    for a, b in zip(names[0::2], names[1::2]):
        pair = [(read_image(data / "images" / f"{n}.jpg"), read_labels(data / "labels3" / f"{n}.png")) for n in (a, b)]
        for height in args.heights:
            plate, plate_labels = paste(*pair[0], (1080, 1920), height, 1 / 3)
            alone = plate_labels.copy()
            plate, plate_labels = paste(*pair[1], (1080, 1920), height, 2 / 3, (plate, plate_labels))
            first = (alone > 0) & (plate_labels == alone)  # the first person where the second does not cover it
            mine = [first, (plate_labels > 0) & ~first]
            for mode, replacer in replacers.items():
                for (photo, labels), where in zip(pair, mine):
                    out = replacer.process(plate, plate_labels, replacer.encode_subject(photo, labels)).generated
                    rows.setdefault((mode, height), []).append(psnr(out, plate, where))
    print(f"\ntwo people side by side in 1920x1080, person PSNR (dB), {len(names) // 2} pairs of {args.split}, "
          f"each person from its own latents\n")
    print("| person height | a canvas each | one canvas for both |\n|---|---|---|")
    for height in args.heights:
        print(f"| {height:.0%} | {np.mean(rows[('each', height)]):.2f} | {np.mean(rows[('together', height)]):.2f} |")


def clips(args: argparse.Namespace) -> None:
    """Per clip: every `--every`-th frame reconstructed from its own latents in each mode
    (person PSNR against the frame, the built-in parser's labels standing for the truth),
    and the person box's jitter and lag, raw and smoothed, over every frame."""
    from scam_runtime.media import FrameRange, VideoReader
    from scam_runtime.parsers import ParserOptions, get_parser
    replacers = {m: SubjectReplacer(args.bundle, ReplaceOptions(fit=m), BackendOptions("cpu"), warn=lambda s: None)
                 for m in args.modes}
    print(f"\n| clip | {' | '.join(args.modes)} (person PSNR, own latents, every {args.every}th frame) |")
    print("|---|" + "---|" * len(args.modes))
    steadiness = []
    for clip in args.clips:
        reader = VideoReader(Path(clip))
        parser = get_parser("builtin", ("background", "face", "body"), ParserOptions())
        boxes, scores = [], {m: [] for m in args.modes}
        for frame in reader.frames(FrameRange()):
            labels = parser(frame.image)
            boxes.append(person_box(labels))
            if frame.index % args.every == 0 and boxes[-1] is not None:
                for mode, replacer in replacers.items():
                    out = replacer.process(frame.image, labels, replacer.encode_subject(frame.image, labels))
                    scores[mode].append(psnr(out.generated, frame.image, labels > 0))
        reader.close()
        print(f"| {Path(clip).name} | " + " | ".join(f"{np.mean(scores[m]):.2f}" for m in args.modes) + " |")
        raw = [b for b in boxes if b is not None]
        smoother = BoxSmoother()
        smooth = [smoother(b) for b in raw]
        centre_raw = np.array([((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in raw])
        height_raw = np.array([b[2] - b[0] for b in raw])
        for label, series in (("raw", raw), ("framed", smooth)):
            b = np.array(series)
            h = b[:, 2] - b[:, 0]
            centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
            jitter = (np.linalg.norm(np.diff(centre, 2, axis=0), axis=1) / h[2:]).mean()
            scale = np.abs(np.diff(np.log(h), 2)).mean()
            lag = (np.linalg.norm(centre - centre_raw, axis=1) / height_raw).mean()
            steadiness.append(f"| {Path(clip).name} | {label} | {jitter:.4f} | {scale:.4f} | {lag:.4f} |")
    print("\n| clip | box | centre jitter (box heights) | scale jitter (log) | lag (box heights) |")
    print("|---|---|---|---|---|")
    print("\n".join(steadiness))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=None, help="bundle folder [default: the shipped one]")
    p.add_argument("--split", default="scam_train/splits/ccp-val-b.txt")
    p.add_argument("--limit", type=int, default=24)
    p.add_argument("--plates", nargs="+", default=["1920x1080"])
    p.add_argument("--heights", nargs="+", type=float, default=[0.25, 0.5, 0.9])
    p.add_argument("--modes", nargs="+", default=["subject", "letterbox"])
    p.add_argument("--people", action="store_true", help="also two people side by side")
    p.add_argument("--no-plates", action="store_true", help="skip the one-person plates")
    p.add_argument("--every", type=int, default=10, help="clips: reconstruct every N-th frame")
    p.add_argument("--clips", nargs="*", default=[str(ROOT.parent / "shared" / "data" / "video" / n)
                                                 for n in ("pose_1.mp4", "pose_squats.mp4")])
    args = p.parse_args()
    if not args.no_plates:
        plates(args)
    if args.people:
        people(args)
    if args.clips:
        clips(args)


if __name__ == "__main__":
    main()
