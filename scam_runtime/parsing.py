"""Human parsers: photo or frame → label map in the bundle's scheme, without torch.

Backends share one interface (`Parser`, made by name with `get_parser`):
`builtin` (our ONNX network shipped in this package), `onnx:PATH` (any parsing model with
a JSON beside it), and `mediapipe` (optional extra). Every ONNX parser runs on the same
`OnnxSession` as the bundle, so it gets the CUDA/TensorRT providers too.

An ONNX parser may name refiners in its JSON (`"refine": ["builtin_face.onnx"]`): parsers
trained on crops around one label (the built-in one: the head, where hair against dark
clothing is the hardest call at whole-figure scale). After the whole-frame pass, each
refiner parses its crop around that label's region and re-labels the person's pixels there
(the person's outline stays the whole-frame pass's).

Post-processing, in the parser's probability space:
- temporal smoothing (`smoothing` = α): p̄ₜ = (1 − α)·pₜ + α·p̄ₜ₋₁, one state per parser
  instance (one instance per video; the subject photo gets its own);
- the subject is the largest connected person region (4-connected, on the parser's
  canvas); other people and blobs are set to background (`keep="all"` keeps every
  region of at least `min_blob` of the canvas, e.g. for crowds or evaluation).
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
from PIL import Image

from .backend import BackendOptions, OnnxSession
from .colour import linear_to_srgb8
from .errors import BundleFailure, LabelError, UsageError
from .geometry import Fit

BUILTIN_DIR = Path(__file__).resolve().parent / "parsers"
BUILTIN_MODEL = BUILTIN_DIR / "builtin.onnx"


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


@dataclass(frozen=True)
class CropSpec:
    """Where a refiner looks. The region of `label` (its pixels' 2nd–98th percentile extent,
    size s = the larger side) gives a box `width`·s wide, starting `top`·s above the region,
    as tall as the refiner's canvas aspect makes it (long hair falls well below the face)."""
    label: str = "face"
    width: float = 2.6
    top: float = 0.35

    def box(self, mask: np.ndarray, aspect: float, jitter: Callable[[float, float], float] | None = None
            ) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1) in `mask`'s pixels, possibly beyond its edges; None without the label.
        `jitter(lo, hi)` (training) draws a random scale and shifts."""
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            return None
        y0, y1 = np.percentile(ys, (2, 98))
        x0, x1 = np.percentile(xs, (2, 98))
        size = max(y1 - y0, x1 - x0, 8.0)
        width, cx, top = self.width * size, (x0 + x1) / 2, y0 - self.top * size
        if jitter is not None:
            width *= jitter(0.8, 1.25)
            cx += jitter(-0.15, 0.15) * size
            top += jitter(-0.15, 0.15) * size
        left = round(cx - width / 2)
        top, width = round(top), max(2, round(width))
        return left, top, left + width, top + max(2, round(width * aspect))


def crop_padded(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """`image[y0:y1, x0:x1]` with black (or background) where the box leaves the image."""
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0, *image.shape[2:]), image.dtype)
    h, w = image.shape[:2]
    iy0, ix0, iy1, ix1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if iy0 < iy1 and ix0 < ix1:
        out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = image[iy0:iy1, ix0:ix1]
    return out


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
        image = _as_rgb(image)
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


def _region_probabilities(probs: np.ndarray, fit: Fit) -> tuple[np.ndarray, slice, slice]:
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
    region, fy, fx = _region_probabilities(probs, fit)
    labels = np.zeros((fit.frame_h, fit.frame_w), np.int32)
    labels[fy, fx] = argmax_labels(region)
    return labels


class OnnxParser(ProbabilityParser):
    """An ONNX parsing model with its JSON: input size, range and fit, labels, an optional
    `merge` map from the model's labels to the target scheme's names, optional `refine`
    (refiner models beside it) and, for a refiner, `crop` (its `CropSpec`)."""

    def __init__(self, model: Path, labels: tuple[str, ...], options: ParserOptions = ParserOptions()) -> None:
        super().__init__(options)
        meta_path = model.with_suffix(".json")
        if not model.is_file():
            raise LabelError(f"{model}: parser model not found")
        try:
            meta = json.loads(meta_path.read_text())
            self.height, self.width = int(meta["input"]["height"]), int(meta["input"]["width"])
            lo, hi = meta["input"].get("range", [-1, 1])
            self.fit_mode = meta["input"].get("fit", "letterbox")
            self.kind = meta.get("output", {}).get("kind", "probabilities")
            source = list(meta["labels"])
            self.crop = CropSpec(**meta["crop"]) if "crop" in meta else None
            self.passes = int(meta.get("passes", 1))  # a refiner: each pass crops around the last one's labels
            refine = [model.parent / name for name in meta.get("refine", [])]
        except FileNotFoundError:
            raise LabelError(f"{meta_path}: parser description not found (it sits beside the .onnx)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise LabelError(f"{meta_path}: not a parser description ({type(exc).__name__}: {exc})") from None
        # the canvas comes in [-1, 1]; the model wants [lo, hi]: one multiply-add per frame, or none
        self.scale, self.offset = (hi - lo) / 2, (hi + lo) / 2
        self.lut = self._merge_table(meta_path, source, meta.get("merge"), labels)
        self.one_to_one = len(set(self.lut.tolist())) == len(self.lut)  # no labels merged: a copy suffices
        self.num_labels = len(labels)
        try:
            self.session = OnnxSession(model, options.backend)
        except BundleFailure as exc:  # a file that is not ONNX: a parser problem here, not a bundle one
            raise LabelError(str(exc)) from None
        self.provider = self.session.provider
        self._frame_state: np.ndarray | None = None  # as a refiner: its smoothed probabilities, frame coordinates
        if self.crop is not None:
            if self.crop.label not in labels:
                raise LabelError(f"{meta_path}: crop label '{self.crop.label}' is not a bundle label ({list(labels)})")
            self.crop_id = labels.index(self.crop.label)
            # what a person pixel the refiner calls background becomes when it was the crop's label
            self.other_id = next((i for i in range(1, len(labels)) if i != self.crop_id), self.crop_id)
        if options.refine:
            self.refiners = [OnnxParser(path, labels, options) for path in refine]
            if any(r.crop is None for r in self.refiners):
                raise LabelError(f"{meta_path}: a model named in 'refine' has no 'crop' in its JSON")

    def reset(self) -> None:
        super().reset()
        self._frame_state = None

    def refine(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """`labels` with the person's labels in this refiner's crop around each kept person's
        `crop.label` region re-decided by the refiner. The person's outline stays the whole-frame
        pass's: it is smoothed over time there, and replacing it with the crop's made the masks
        of consecutive video frames agree less (README)."""
        out = labels.copy()
        h, w = out.shape
        for last in [False] * (self.passes - 1) + [True]:
            regions, count = person_regions(out != 0) if self.options.keep == "all" else (out != 0, 1)
            for region in range(1, count + 1):
                box = self.crop.box((regions == region) & (out == self.crop_id), self.height / self.width)
                if box is None:
                    continue
                x0, y0, x1, y1 = box
                iy0, ix0, iy1, ix1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
                if not (iy0 < iy1 and ix0 < ix1):
                    continue
                probs, fit = self._canvas_probabilities(crop_padded(image, box))
                crop, fy, fx = _region_probabilities(probs, fit)
                full = np.zeros((len(probs), y1 - y0, x1 - x0), np.float32)
                full[0] = 1
                full[:, fy, fx] = crop
                new = full[:, iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
                if last:
                    new = self._smooth(new, (slice(iy0, iy1), slice(ix0, ix1)), (h, w))
                new = argmax_labels(new)
                old = labels[iy0:iy1, ix0:ix1]
                # person pixels the refiner calls background keep their label, unless it was
                # the crop's label (a person pixel it does not call face is body)
                unsure = np.where(old == self.crop_id, self.other_id, old)
                out[iy0:iy1, ix0:ix1] = np.where(old == 0, 0, np.where(new == 0, unsure, new))
        return out

    def _smooth(self, probs: np.ndarray, where: tuple[slice, slice], frame_hw: tuple[int, int]) -> np.ndarray:
        """The refiner's own temporal EMA (`smoothing`), kept in frame coordinates: its crop
        moves with the person, so its probabilities are averaged where they land in the frame."""
        alpha = self.options.smoothing
        if not alpha:
            return probs
        if self._frame_state is None or self._frame_state.shape[1:] != frame_hw:
            self._frame_state = np.full((len(probs), *frame_hw), np.nan, np.float32)
        before = self._frame_state[(slice(None), *where)]
        seen = ~np.isnan(before[0])
        probs = np.where(seen, (1 - alpha) * probs + alpha * before, probs)
        self._frame_state[(slice(None), *where)] = probs
        return probs

    @staticmethod
    def _merge_table(meta_path: Path, source: list[str], merge: dict | None, target: tuple[str, ...]) -> np.ndarray:
        """source label index → target label id (background for unnamed sources when merging)."""
        if merge is None:
            missing = [n for n in source if n not in target]
            if missing:
                raise LabelError(f"{meta_path}: parser labels {missing} are not in the bundle's labels {list(target)}; "
                                 f"add a 'merge' map to the JSON")
            return np.array([target.index(n) for n in source], np.int32)
        lut = np.zeros(len(source), np.int32)
        for name, sources in merge.items():
            if name not in target:
                raise LabelError(f"{meta_path}: merge target '{name}' is not a bundle label ({list(target)})")
            for s in sources:
                if s not in source:
                    raise LabelError(f"{meta_path}: merge source '{s}' is not one of the parser's labels")
                lut[source.index(s)] = target.index(name)
        return lut

    def _canvas_probabilities(self, image: np.ndarray) -> tuple[np.ndarray, Fit]:
        fit = Fit.compute(image.shape[:2], (self.height, self.width), self.fit_mode)
        x = fit.image_to_model(image)  # letterboxed or cropped like the bundle's input
        if (self.scale, self.offset) != (1, 0):
            x = x * np.float32(self.scale) + np.float32(self.offset)
        out = self.session.run(**{self.session.input_names[0]: x[None]})[0]
        if self.kind == "logits":
            out = np.exp(out - out.max(0, keepdims=True))
            out /= out.sum(0, keepdims=True)
        probs = np.zeros((self.num_labels, *out.shape[1:]), np.float32)
        if self.one_to_one:
            probs[self.lut] = out
        else:
            np.add.at(probs, self.lut, out)
        return probs, fit


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 H×W×3 sRGB from greyscale (H×W or H×W×1), RGBA, or float (scene-linear, as
    `SubjectReplacer` takes float frames) arrays."""
    if image.dtype != np.uint8:
        image = linear_to_srgb8(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def builtin_refiners(labels: tuple[str, ...], options: ParserOptions) -> list[OnnxParser]:
    """The built-in parser's refiners alone, to put on another backend's parse (mediapipe)."""
    names = json.loads(BUILTIN_MODEL.with_suffix(".json").read_text()).get("refine", [])
    return [OnnxParser(BUILTIN_DIR / name, labels, options) for name in names] if options.refine else []


def builtin_parser(labels: tuple[str, ...], options: ParserOptions = ParserOptions()) -> OnnxParser:
    if not BUILTIN_MODEL.is_file():
        raise LabelError(f"{BUILTIN_MODEL}: the built-in parser is missing from this installation")
    return OnnxParser(BUILTIN_MODEL, labels, options)


class Parser(Protocol):
    """RGB uint8 H×W×3 (greyscale and RGBA accepted) → H×W int32 ids of the bundle's labels."""

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


def _mediapipe(labels: tuple[str, ...], options: ParserOptions) -> Parser:
    # imported on use: mediapipe is heavy and optional
    from .mediapipe_parser import MediapipeParser
    return MediapipeParser(labels, options)


def auto_parser_name() -> str:
    """`mediapipe` where its extra is installed (it measured better, see README), else `builtin`."""
    return "mediapipe" if importlib.util.find_spec("mediapipe") is not None else "builtin"


PARSERS: dict[str, Callable[[tuple[str, ...], ParserOptions], Parser]] = {
    "builtin": builtin_parser, "mediapipe": _mediapipe,
    "auto": lambda labels, options: PARSERS[auto_parser_name()](labels, options)}
"""name -> factory(bundle label names, options); `onnx:PATH` is resolved by `get_parser`."""


def register_parser(name: str, factory: Callable[[tuple[str, ...], ParserOptions], Parser]) -> None:
    """Plug in a studio's own parser: `factory(labels, options)` returns a `Parser` (any
    object whose `__call__(rgb_frame)` gives an H×W map of the bundle's label ids); it is
    then a `--parser NAME` choice for everything in this process that calls `get_parser`."""
    PARSERS[name] = factory


def get_parser(name: str, labels: tuple[str, ...], options: ParserOptions = ParserOptions()) -> Parser:
    """A new parser instance (its own temporal state) for the bundle's `labels`."""
    if name.startswith("onnx:"):
        return OnnxParser(Path(name[len("onnx:"):]), labels, options)
    if name not in PARSERS:
        raise UsageError(f"--parser: unknown parser '{name}' (available: {', '.join(sorted(PARSERS))}, onnx:PATH)")
    return PARSERS[name](labels, options)
