"""Figures where users see them: the person region (every pixel the ground truth does not
label background, which is all the runtime composites) and the whole photo, at the photo's
own resolution, each beside a floor and a ceiling computed on the same photos without a
model:

- floor: each label's region painted with its mean colour (a model that learnt one colour
  per label would score this);
- ceiling: the photo resampled to the model's canvas and back (no model at this resolution
  can do better).

And the swap figure: the mean colour of each label's region in a subject swap against the
mean colour of the same label in the subject's photo (does the shirt come out the
subject's colour?), beside the same distance for the target's own colours (what a swap
that ignored the subject would score).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from scam_runtime.geometry import Fit
from scam_runtime.labels import read_image, read_labels

from .data import PairDataset


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR (dB) of uint8 H×W×3 images, over the pixels of `where` (H×W bool) if given."""
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = diff[where].mean() if where is not None else diff.mean()
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def mean_colour_fill(image: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`image` with every label's region painted in that region's mean colour."""
    out = np.empty_like(image)
    for label in np.unique(ids):
        region = ids == label
        out[region] = np.rint(image[region].mean(axis=0)).astype(np.uint8)
    return out


def photo_figures(dataset: PairDataset, recon: torch.Tensor,
                  each: Callable[[int], None] = lambda n: None) -> dict[str, float]:
    """Person-region and whole-photo PSNR of the reconstructions (model canvases, B×3×h×w in
    [-1, 1]) brought back to each photo's size, with the floor and ceiling on the same
    pixels; each figure is the mean over photos of the per-photo PSNR."""
    rows: list[list[float]] = []
    for i, pair in enumerate(dataset.pairs):
        labels = read_labels(pair.labels)
        photo = read_image(pair.image, labels.shape)
        ids = dataset.scheme.apply(labels, pair.labels)
        fit = Fit.compute(photo.shape[:2], dataset.size, dataset.fit)
        generated, (fy, fx) = fit.image_to_frame(recon[i].numpy())
        ceiling, _ = fit.image_to_frame(fit.image_to_model(photo))
        photo, ids = photo[fy, fx], ids[fy, fx]  # the frame region the model covers
        person = ids > 0
        floor = mean_colour_fill(photo, ids)
        rows.append([psnr(generated, photo, person), psnr(floor, photo, person), psnr(ceiling, photo, person),
                     psnr(generated, photo), psnr(floor, photo), psnr(ceiling, photo)])
        each(1)
    mean = np.mean(rows, axis=0)
    names = ("photo_person_psnr_db", "floor_person_psnr_db", "ceiling_person_psnr_db",
             "photo_psnr_db", "floor_psnr_db", "ceiling_psnr_db")
    return {name: round(float(v), 3) for name, v in zip(names, mean)}


def colour_misses(subject: np.ndarray, subject_ids: np.ndarray, result: np.ndarray, target: np.ndarray,
                  target_ids: np.ndarray, labels: tuple[str, ...]) -> list[tuple[str, float, float]]:
    """One swap (`result`: `target` generated with `subject`'s latents). For each
    non-background label present in both: (label, distance of the result's mean colour from
    the subject's, the same for the target's own colours). H×W×3 images in 0–255, H×W ids."""
    rows = []
    for label, name in enumerate(labels[1:], start=1):
        source, here = subject_ids == label, target_ids == label
        if not source.any() or not here.any():
            continue
        want = subject[source].astype(np.float64).mean(0)
        rows.append((name, float(np.linalg.norm(result[here].astype(np.float64).mean(0) - want)),
                     float(np.linalg.norm(target[here].astype(np.float64).mean(0) - want))))
    return rows


def swap_figures(rows: Iterable[tuple[str, float, float]], labels: tuple[str, ...]) -> dict[str, object]:
    """`colour_misses` rows of many swaps as means: over all rows, per label, and the baseline."""
    errors: dict[str, list[float]] = {name: [] for name in labels[1:]}
    baseline: list[float] = []
    for name, error, own in rows:
        errors[name].append(error)
        baseline.append(own)
    every = [e for values in errors.values() for e in values]
    return {"swap_colour_error": round(float(np.mean(every)), 2) if every else None,
            "swap_colour_baseline": round(float(np.mean(baseline)), 2) if baseline else None,
            "swap_colour_error_by_label": {k: round(float(np.mean(v)), 2) for k, v in errors.items() if v}}


def swap_colours(images: torch.Tensor, ids: torch.Tensor, swaps: torch.Tensor, labels: tuple[str, ...]
                 ) -> dict[str, object]:
    """`swap_figures` of a batch in which image i was generated with image i-1's latents
    (B×3×h×w in [-1, 1], ids B×h×w)."""
    rgb = ((images.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).double().numpy()
    out = ((swaps.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).double().numpy()
    ids = ids.numpy()
    n = len(rgb)
    return swap_figures((row for i in range(n) for row in colour_misses(
        rgb[(i - 1) % n], ids[(i - 1) % n], out[i], rgb[i], ids[i], labels)), labels)
