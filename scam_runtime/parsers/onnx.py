"""ONNX parsers: any parsing model with its description JSON beside it (`onnx:PATH`), and
`builtin`, ours, shipped in this folder. They run on the same sessions as the bundle (`backend.open_session`),
so they get the CUDA/TensorRT providers too.

A parser may name refiners in its JSON (`"refine": ["builtin_face.onnx"]`): parsers
trained on crops around one label (the built-in one: the head, where hair against dark
clothing is the hardest call at whole-figure scale). After the whole-frame pass, each
refiner parses its crop around that label's region and re-labels the person's pixels there
(the person's outline stays the whole-frame pass's).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backend import open_session
from ..errors import BundleFailure, LabelError
from ..geometry import Fit
from .base import ParserOptions, ProbabilityParser, argmax_labels, person_regions, region_probabilities
from .description import ParserDescription

BUILTIN_DIR = Path(__file__).resolve().parent
BUILTIN_MODEL = BUILTIN_DIR / "builtin.onnx"


def crop_padded(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """`image[y0:y1, x0:x1]` with black (or background) where the box leaves the image."""
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0, *image.shape[2:]), image.dtype)
    h, w = image.shape[:2]
    iy0, ix0, iy1, ix1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if iy0 < iy1 and ix0 < ix1:
        out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = image[iy0:iy1, ix0:ix1]
    return out


class OnnxParser(ProbabilityParser):
    """An ONNX parsing model with its JSON: input size, range and fit, labels, an optional
    `merge` map from the model's labels to the target scheme's names, optional `refine`
    (refiner models beside it) and, for a refiner, `crop` (its `CropSpec`)."""

    def __init__(self, model: Path, labels: tuple[str, ...], options: ParserOptions = ParserOptions()) -> None:
        super().__init__(options)
        meta_path = model.with_suffix(".json")
        if not model.is_file():
            raise LabelError(f"{model}: parser model not found")
        self.description = meta = ParserDescription.load(meta_path)
        self.height, self.width, self.fit_mode, self.kind = meta.height, meta.width, meta.fit, meta.kind
        self.crop, self.passes = meta.crop, meta.passes
        # the canvas comes in [-1, 1]; the model wants [lo, hi]: one multiply-add per frame, or none
        lo, hi = meta.range
        self.scale, self.offset = (hi - lo) / 2, (hi + lo) / 2
        self.lut = meta.lut(labels, meta_path)
        self.one_to_one = len(set(self.lut.tolist())) == len(self.lut)  # no labels merged: a copy suffices
        self.num_labels = len(labels)
        try:
            self.session = open_session(model, options.backend)
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
            self.refiners = [OnnxParser(model.parent / name, labels, options) for name in meta.refine]
            if any(r.crop is None for r in self.refiners):
                raise LabelError(f"{meta_path}: a model named in 'refine' has no 'crop' in its JSON")

    def reset(self) -> None:
        super().reset()
        self._frame_state = None

    def refine(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """`labels` with the person's labels in this refiner's crop around each kept person's
        `crop.label` region re-decided by the refiner. The person's outline stays the whole-frame
        pass's: it is smoothed over time there, and replacing it with the crop's made the masks
        of consecutive video frames agree less (docs/parsing.md)."""
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
                crop, fy, fx = region_probabilities(probs, fit)
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


def builtin_refiners(labels: tuple[str, ...], options: ParserOptions) -> list[OnnxParser]:
    """The built-in parser's refiners alone, to put on another backend's parse (mediapipe)."""
    if not options.refine:
        return []
    names = ParserDescription.load(BUILTIN_MODEL.with_suffix(".json")).refine
    return [OnnxParser(BUILTIN_DIR / name, labels, options) for name in names]


def builtin_parser(labels: tuple[str, ...], options: ParserOptions = ParserOptions()) -> OnnxParser:
    if not BUILTIN_MODEL.is_file():
        raise LabelError(f"{BUILTIN_MODEL}: the built-in parser is missing from this installation")
    return OnnxParser(BUILTIN_MODEL, labels, options)
