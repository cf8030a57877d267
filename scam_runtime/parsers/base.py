"""What every parser shares: options, the person regions, temporal smoothing, and the step
from canvas probabilities to the frame's label map.

Post-processing, in the parser's probability space:
- temporal smoothing (`smoothing` = α): p̄ₜ = (1 − α)·pₜ + α·p̄ₜ₋₁, one state per parser
  instance (one instance per video; the subject photo gets its own);
- the subject is the largest connected person region (4-connected, on the parser's
  canvas); other people and blobs are set to background (`keep="all"` keeps every
  region of at least `min_blob` of the canvas, e.g. for crowds or evaluation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from ..backend import BackendOptions
from ..colour import frame_colour
from ..errors import LabelError
from ..geometry import Fit

if TYPE_CHECKING:
    from .onnx import OnnxParser


@dataclass(frozen=True)
class ParserOptions:
    smoothing: float = 0.0          # α of the temporal EMA of probabilities; 0 = off
    keep: str = "largest"           # largest | all
    min_blob: float = 0.002         # person regions below this fraction of the canvas are dropped
    refine: bool = True             # run the refiners an ONNX parser's JSON names (the built-in head pass)
    backend: BackendOptions = BackendOptions()

    def __post_init__(self) -> None:
        if not 0 <= self.smoothing < 1:
            raise LabelError(f"label smoothing must be in [0, 1), got {self.smoothing}")
        if self.keep not in ("largest", "all"):
            raise LabelError(f"keep must be 'largest' or 'all', got {self.keep!r}")


def person_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean H×W mask: (int32 ids, 0 = none; count).

    Union-find over horizontal runs: a frame has a few runs per row, so this stays fast in
    pure numpy/Python without scipy.
    """
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    rows_s, cols_s = np.nonzero(edges == 1)
    _, cols_e = np.nonzero(edges == -1)
    parent = list(range(len(rows_s)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_starts = np.searchsorted(rows_s, np.arange(h + 1))
    for y in range(1, h):
        a0, a1 = row_starts[y - 1], row_starts[y]
        b0, b1 = row_starts[y], row_starts[y + 1]
        i, j = a0, b0
        while i < a1 and j < b1:  # runs of consecutive rows that overlap are one region
            if cols_s[i] < cols_e[j] and cols_s[j] < cols_e[i]:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
            if cols_e[i] < cols_e[j]:
                i += 1
            else:
                j += 1
    roots = np.array([find(i) for i in range(len(parent))], np.int64)
    uniq, run_region = np.unique(roots, return_inverse=True)
    out = np.zeros((h, w), np.int32)
    for r, c0, c1, region in zip(rows_s, cols_s, cols_e, run_region):
        out[r, c0:c1] = region + 1
    return out, len(uniq)


def argmax_labels(probs: np.ndarray) -> np.ndarray:
    """`probs.argmax(0)` as int32 for L×H×W maps, one vectorised pass per label: numpy's
    argmax over the first axis of a large map is 2x slower for the 3 labels we have
    (5.3 vs 2.6 ms on 3×576×576, one-off timing)."""
    best, labels = probs[0].copy(), np.zeros(probs.shape[1:], np.int32)
    for c in range(1, len(probs)):
        higher = probs[c] > best
        labels[higher] = c
        np.maximum(best, probs[c], out=best)
    return labels


def select_people(labels: np.ndarray, keep: str, min_blob: float) -> np.ndarray:
    """Labels with everything outside the kept person region(s) set to background (0)."""
    regions, count = person_regions(labels != 0)
    if count == 0:
        return labels
    sizes = np.bincount(regions.ravel(), minlength=count + 1)
    sizes[0] = 0
    if keep == "largest":
        keep_ids = [int(sizes.argmax())]
    else:
        keep_ids = [i for i in range(1, count + 1) if sizes[i] >= min_blob * labels.size]
    return np.where(np.isin(regions, keep_ids), labels, 0)


class ProbabilityParser:
    """Shared post-processing of parsers that give per-label probabilities on a canvas."""

    def __init__(self, options: ParserOptions) -> None:
        self.options = options
        self._state: np.ndarray | None = None
        self.refiners: list[OnnxParser] = []

    def _canvas_probabilities(self, image: np.ndarray) -> tuple[np.ndarray, Fit]:
        """L×h×w probabilities in the bundle's label order, and how the canvas maps to the image."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the temporal state (a new shot or video)."""
        self._state = None
        for refiner in self.refiners:
            refiner.reset()

    def probabilities(self, image: np.ndarray) -> tuple[np.ndarray, Fit]:
        """Bundle-label probabilities of a uint8 RGB image on the canvas, temporally smoothed,
        and the canvas fit."""
        probs, fit = self._canvas_probabilities(image)
        if self.options.smoothing and self._state is not None and self._state.shape == probs.shape:
            probs = (1 - self.options.smoothing) * probs + self.options.smoothing * self._state
        self._state = probs
        return probs, fit

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = as_rgb(image)
        probs, fit = self.probabilities(image)
        raw = argmax_labels(probs)
        kept = select_people(raw, self.options.keep, self.options.min_blob)
        dropped = kept != raw  # pixels of other people and blobs become background
        if dropped.any():
            probs = np.where(dropped[None], 0, probs)
            probs[0][dropped] = 1
        labels = frame_labels(probs, fit)
        for refiner in self.refiners:
            labels = refiner.refine(image, labels)
        return labels


def region_probabilities(probs: np.ndarray, fit: Fit) -> tuple[np.ndarray, slice, slice]:
    """The canvas probabilities of the frame's covered region, resized bilinearly to it."""
    my, mx, fy, fx = fit.valid_region()
    size = (fx.stop - fx.start, fy.stop - fy.start)
    region = probs[:, my, mx]
    if region.shape[2:0:-1] != size:
        region = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(p)).resize(size, Image.BILINEAR))
                           for p in region])
    return region, fy, fx


def frame_labels(probs: np.ndarray, fit: Fit) -> np.ndarray:
    """Canvas probabilities → label ids at the frame's size: the covered region's
    probabilities resized bilinearly, then the per-pixel argmax (background elsewhere)."""
    region, fy, fx = region_probabilities(probs, fit)
    labels = np.zeros((fit.frame_h, fit.frame_w), np.int32)
    labels[fy, fx] = argmax_labels(region)
    return labels


def as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 H×W×3 sRGB from greyscale (H×W or H×W×1), RGBA, uint16 or float arrays, in their
    dtype's default colourspace as `SubjectReplacer` takes them (float: scene-linear)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    image = np.ascontiguousarray(image[..., :3])
    return image if image.dtype == np.uint8 else frame_colour(image, "frame").display(image)


class Parser(Protocol):
    """RGB uint8 H×W×3 (greyscale and RGBA accepted) → H×W int32 ids of the bundle's labels."""

    def __call__(self, image: np.ndarray) -> np.ndarray: ...
