"""The parser description: the JSON beside a parser's `.onnx`, written by `scam-train
parser-fit` and read by the ONNX parser (as `bundle.py` is for bundles).

    {"labels": [...], "input": {"name", "height", "width", "range": [lo, hi], "layout": "NCHW RGB",
     "fit": "letterbox"|"crop"}, "output": {"name", "kind": "probabilities"|"logits"},
     "merge": {target: [source labels]}, "refine": ["head.onnx"], "crop": {CropSpec}, "passes": 2,
     ...anything else (training provenance) kept as it is}

`merge` maps the model's labels onto the bundle's (`labels.merge_table`, the rule the
training schemes use too); `refine` names refiner models beside it; a refiner carries `crop`
(where it looks) and `passes`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic import write_json
from ..errors import LabelError
from ..labels import merge_table

_KNOWN = ("labels", "input", "output", "merge", "refine", "crop", "passes")


@dataclass(frozen=True)
class CropSpec:
    """Where a refiner looks. The region of `label` (its pixels' 2nd–98th percentile extent,
    size s = the larger side) gives a box `width`·s wide, starting `top`·s above the region,
    as tall as the refiner's canvas aspect makes it (long hair falls well below the face).
    Training crops its examples with the same box (`scam_train.parser_data`)."""
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


@dataclass(frozen=True)
class ParserDescription:
    labels: tuple[str, ...]
    height: int
    width: int
    range: tuple[float, float] = (-1.0, 1.0)   # the pixel range the model wants
    fit: str = "letterbox"                      # letterbox | crop, as the bundle's geometry
    kind: str = "probabilities"                 # probabilities | logits (softmax applied here)
    merge: dict[str, list[str]] | None = None   # bundle label -> model labels
    refine: tuple[str, ...] = ()                # refiner models beside this one
    crop: CropSpec | None = None                # a refiner's box
    passes: int = 1                             # a refiner: runs per frame, each around the last one's labels
    extra: dict[str, Any] = field(default_factory=dict)  # provenance (trained_on, validation...)

    @classmethod
    def load(cls, path: Path) -> "ParserDescription":
        try:
            meta = json.loads(Path(path).read_text())
            source = meta["input"]
            lo, hi = source.get("range", [-1, 1])
            return cls(tuple(meta["labels"]), int(source["height"]), int(source["width"]), (float(lo), float(hi)),
                       source.get("fit", "letterbox"), meta.get("output", {}).get("kind", "probabilities"),
                       meta.get("merge"), tuple(meta.get("refine", ())),
                       CropSpec(**meta["crop"]) if "crop" in meta else None, int(meta.get("passes", 1)),
                       {k: v for k, v in meta.items() if k not in _KNOWN})
        except FileNotFoundError:
            raise LabelError(f"{path}: parser description not found (it sits beside the .onnx)") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LabelError(f"{path}: not a parser description ({type(exc).__name__}: {exc})") from None

    def to_json(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "labels": list(self.labels),
            "input": {"name": "image", "height": self.height, "width": self.width, "range": list(self.range),
                      "layout": "NCHW RGB", "fit": self.fit},
            "output": {"name": "probs", "kind": self.kind}, **self.extra}
        if self.merge is not None:
            meta["merge"] = self.merge
        if self.refine:
            meta["refine"] = list(self.refine)
        if self.crop is not None:
            meta.update(crop=asdict(self.crop), passes=self.passes)
        return meta

    def write(self, path: Path) -> Path:
        return write_json(path, self.to_json())

    def lut(self, target: tuple[str, ...], path: Path) -> np.ndarray:
        """Model label index -> bundle label id: by name, or through `merge` (unnamed model
        labels become background, the bundle's first label)."""
        if self.merge is None:
            missing = [n for n in self.labels if n not in target]
            if missing:
                raise LabelError(f"{path}: parser labels {missing} are not in the bundle's labels {list(target)}; "
                                 f"add a 'merge' map to the JSON")
            return np.array([target.index(n) for n in self.labels], np.int32)
        try:
            return merge_table(list(self.labels), target, self.merge, default=target[0]).astype(np.int32)
        except ValueError as exc:
            raise LabelError(f"{path}: {exc}") from None
