"""Human parsers: photo or frame → label map in the bundle's scheme, without torch.

Backends share one interface (`Parser`, made by name with `get_parser`):
`builtin` (our ONNX network shipped in this package), `onnx:PATH` (any parsing model with
a JSON beside it), and `mediapipe` (optional extra). Every ONNX parser runs on the same
`OnnxSession` as the bundle, so it gets the CUDA/TensorRT providers too.

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
from .errors import LabelError
from .geometry import Fit

BUILTIN_DIR = Path(__file__).resolve().parent / "parsers"
BUILTIN_MODEL = BUILTIN_DIR / "builtin.onnx"


@dataclass(frozen=True)
class ParserOptions:
    smoothing: float = 0.0          # α of the temporal EMA of probabilities; 0 = off
    keep: str = "largest"           # largest | all
    min_blob: float = 0.002         # person regions below this fraction of the canvas are dropped
    flip: bool = False              # ONNX parsers: average with the mirrored frame (one batch of 2)
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

    def _canvas_probabilities(self, image: np.ndarray) -> tuple[np.ndarray, Fit]:
        """L×h×w probabilities in the bundle's label order, and how the canvas maps to the image."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the temporal state (a new shot or video)."""
        self._state = None

    def probabilities(self, image: np.ndarray) -> tuple[np.ndarray, Fit]:
        """Bundle-label probabilities on the canvas, temporally smoothed, and the canvas fit."""
        probs, fit = self._canvas_probabilities(_as_rgb(image))
        if self.options.smoothing and self._state is not None and self._state.shape == probs.shape:
            probs = (1 - self.options.smoothing) * probs + self.options.smoothing * self._state
        self._state = probs
        return probs, fit

    def __call__(self, image: np.ndarray) -> np.ndarray:
        probs, fit = self.probabilities(image)
        raw = argmax_labels(probs)
        kept = select_people(raw, self.options.keep, self.options.min_blob)
        dropped = kept != raw  # pixels of other people and blobs become background
        if dropped.any():
            probs = np.where(dropped[None], 0, probs)
            probs[0][dropped] = 1
        # back to the image: the covered region's probabilities resized bilinearly, then argmax
        my, mx, fy, fx = fit.valid_region()
        size = (fx.stop - fx.start, fy.stop - fy.start)
        region = probs[:, my, mx]
        if region.shape[2:0:-1] != size:
            region = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(p)).resize(size, Image.BILINEAR))
                               for p in region])
        h, w = fit.frame_h, fit.frame_w
        labels = np.zeros((h, w), np.int32)
        labels[fy, fx] = argmax_labels(region)
        return labels


class OnnxParser(ProbabilityParser):
    """An ONNX parsing model with its JSON: input size, range and fit, labels, and an
    optional `merge` map from the model's labels to the target scheme's names."""

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
        except FileNotFoundError:
            raise LabelError(f"{meta_path}: parser description not found (it sits beside the .onnx)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise LabelError(f"{meta_path}: not a parser description ({type(exc).__name__}: {exc})") from None
        # the canvas comes in [-1, 1]; the model wants [lo, hi]: one multiply-add per frame, or none
        self.scale, self.offset = (hi - lo) / 2, (hi + lo) / 2
        self.lut = self._merge_table(meta_path, source, meta.get("merge"), labels)
        self.one_to_one = len(set(self.lut.tolist())) == len(self.lut)  # no labels merged: a copy suffices
        self.num_labels = len(labels)
        self.session = OnnxSession(model, options.backend)
        self.provider = self.session.provider
        batch = self.session.session.get_inputs()[0].shape[0]
        self.batch_of_two = not isinstance(batch, int) or batch == 2  # else the mirror gets its own run

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
        name = self.session.input_names[0]
        if self.options.flip:  # the mirrored canvas (in the same run where the batch allows), mirrored back
            mirror = np.ascontiguousarray(x[:, :, ::-1])
            if self.batch_of_two:
                out, flipped = self.session.run(**{name: np.stack([x, mirror])})
            else:
                out, flipped = (self.session.run(**{name: v[None]})[0] for v in (x, mirror))
            out = (out + flipped[:, :, ::-1]) * np.float32(0.5)
        else:
            out = self.session.run(**{name: x[None]})[0]
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
    """uint8 H×W×3 from greyscale (H×W or H×W×1), RGBA or float [0, 1] arrays."""
    if image.dtype != np.uint8:
        image = np.clip(np.asarray(image, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


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
    PARSERS[name] = factory


def get_parser(name: str, labels: tuple[str, ...], options: ParserOptions = ParserOptions()) -> Parser:
    """A new parser instance (its own temporal state) for the bundle's `labels`."""
    if name.startswith("onnx:"):
        return OnnxParser(Path(name[len("onnx:"):]), labels, options)
    if name not in PARSERS:
        raise LabelError(f"unknown parser '{name}' (available: {', '.join(sorted(PARSERS))}, onnx:PATH)")
    return PARSERS[name](labels, options)
