"""The default model's figures on photos this project never trained on: the three photos of
`../shared/data/people` (each with a person mask drawn by hand) and the demo's subject
photo, through the runtime as users run it (the mediapipe parser's labels, subject
framing, the bundle on ONNX Runtime).

    python bench/unseen.py [--bundle DIR] [--parser mediapipe]

- Reconstruction: each people photo generated from its own latents; PSNR (dB) at the
  photo's size over the mask's person pixels, beside the same no-model floor and ceiling
  as `scam-train evaluate` (each parsed label painted in its mean colour; each canvas's
  region resampled to the model's resolution and back).
- Swaps: every photo's latents into every other photo; per label (face, body) the
  distance (RGB, 0–255) between the mean colour of the label's region in the result and
  in the subject's photo, beside the target's own colours (a swap that ignored the
  subject). Means over every (subject, target, label) present in both.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from parsing import LABELS, PEOPLE, person_mask  # noqa: E402
from scam_runtime.backend import BackendOptions  # noqa: E402
from scam_runtime.demo import SUBJECT  # noqa: E402
from scam_runtime.labels import read_image  # noqa: E402
from scam_runtime.parsers import ParserOptions, get_parser  # noqa: E402
from scam_runtime.replacer import ReplaceOptions, SubjectReplacer  # noqa: E402
from scam_train.region_metrics import colour_misses, mean_colour_fill, psnr, swap_figures  # noqa: E402

PEOPLE_DIR = ROOT.parent / "shared" / "data" / "people"


def ceiling(replacer: SubjectReplacer, photo: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The photo with each canvas's region resampled to the model's resolution and back:
    what a perfect model at this resolution would give."""
    out = photo.copy()
    for crop in replacer.prepare_frame(photo, labels).crops:
        region, (fy, fx) = crop.fit.image_to_frame(crop.image)
        out[fy, fx] = region
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=None, help="bundle folder [default: the shipped one]")
    ap.add_argument("--parser", default="mediapipe")
    args = ap.parse_args()
    replacer = SubjectReplacer(args.bundle, ReplaceOptions(), BackendOptions("cpu"), warn=lambda s: None)
    photos: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    print(f"# reconstruction from own latents, {args.parser} labels, person PSNR (dB) at photo size over the mask")
    print("| photo | model | floor | ceiling | parser's person IoU with the mask |\n|---|---|---|---|---|")
    for name, mask_name, keep in PEOPLE:
        photo = read_image(PEOPLE_DIR / name)
        labels = get_parser(args.parser, LABELS, ParserOptions(keep=keep))(photo)
        photos[name] = photo, labels
        truth = person_mask(PEOPLE_DIR / mask_name)
        generated = replacer.process(photo, labels, replacer.encode_subject(photo, labels)).generated
        iou = (truth & (labels > 0)).sum() / (truth | (labels > 0)).sum()
        print(f"| {name} | {psnr(generated, photo, truth):.2f} | {psnr(mean_colour_fill(photo, labels), photo, truth):.2f}"
              f" | {psnr(ceiling(replacer, photo, labels), photo, truth):.2f} | {iou:.3f} |", flush=True)
    subject = read_image(SUBJECT)
    photos["demo subject.jpg"] = subject, get_parser(args.parser, LABELS, ParserOptions())(subject)
    latents = {name: replacer.encode_subject(*pair) for name, pair in photos.items()}
    rows = []
    for source, (source_photo, source_labels) in photos.items():
        for target, (target_photo, target_labels) in photos.items():
            if source != target:
                out = replacer.process(target_photo, target_labels, latents[source]).generated
                rows += colour_misses(source_photo, source_labels, out, target_photo, target_labels, LABELS)
    figures = swap_figures(rows, LABELS)
    n = len(photos)
    print(f"\n# swaps among {n} photos ({n * (n - 1)} pairs), mean colour distance (RGB, 0-255)")
    print("| " + " | ".join(LABELS[1:]) + " | all | target's own colours |\n|---|---|---|---|")
    print("| " + " | ".join(f"{figures['swap_colour_error_by_label'][name]:.1f}" for name in LABELS[1:])
          + f" | {figures['swap_colour_error']:.1f} | {figures['swap_colour_baseline']:.1f} |")

if __name__ == "__main__":
    main()
