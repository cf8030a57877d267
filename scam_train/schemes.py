"""Label schemes as data: the model's label names and an optional merge map from a
dataset's source ids (e.g. CCP's 59 labels → background/face/body).

A scheme is a JSON file: `labels` (names, or "auto" to read the count off the data),
optionally `source_labels` (names of the dataset's ids), `merge` (target name → list of
source names) and `default` (the target of every source label `merge` does not name).
Shipped schemes live in `scam_train/schemes/`; `--scheme` takes their name or a path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scam_runtime.labels import merge_table

from .errors import ConfigError, DataError

SCHEME_DIR = Path(__file__).resolve().parent / "schemes"
MAX_LABEL_ID = 65535  # label maps are 8- or 16-bit


def scheme_names() -> list[str]:
    return sorted(p.stem for p in SCHEME_DIR.glob("*.json"))


@dataclass(frozen=True)
class LabelScheme:
    """`lut[source_id]` is the target id, or -1 for an id outside the scheme."""
    name: str
    labels: tuple[str, ...] | None  # None: "auto", fixed by `with_label_count`
    lut: np.ndarray | None          # None: ids are taken as they are

    @property
    def num_source_ids(self) -> int | None:
        return None if self.lut is None else len(self.lut)

    def with_label_count(self, count: int) -> LabelScheme:
        """An "auto" scheme made concrete once the data's largest id is known."""
        if self.labels is not None:
            return self
        return LabelScheme(self.name, tuple(f"label{i}" for i in range(count)), None)

    def apply(self, ids: np.ndarray, path: Path | str) -> np.ndarray:
        """Source ids → target ids (int64); an id the scheme does not know is an error naming `path`."""
        ids = ids.astype(np.int64, copy=False)
        if self.lut is not None:
            bad = ids >= len(self.lut)
            if not bad.any():
                out = self.lut[ids]
                bad = out < 0
            if bad.any():
                raise DataError(f"{path}: label id {int(ids[bad].max())} is not in scheme '{self.name}' "
                                f"(source ids 0..{len(self.lut) - 1})")
            return out
        if self.labels is not None and ids.size and int(ids.max()) >= len(self.labels):
            raise DataError(f"{path}: label id {int(ids.max())} is not in scheme '{self.name}' "
                            f"(ids 0..{len(self.labels) - 1})")
        return ids


def load_scheme(name_or_path: str) -> LabelScheme:
    """A shipped scheme by name, or a JSON file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCHEME_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise ConfigError(f"--scheme: unknown label scheme '{name_or_path}'; shipped ones: {', '.join(scheme_names())}, "
                            f"or give a path to a JSON file")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable label scheme ({exc})") from exc
    return parse_scheme(data, path.stem, path)


def parse_scheme(data: dict, name: str, origin: Path | str = "<scheme>") -> LabelScheme:
    if not isinstance(data, dict) or "labels" not in data:
        raise DataError(f"{origin}: a label scheme is a JSON object with 'labels'")
    labels = data["labels"]
    if labels == "auto":
        if "merge" in data:
            raise DataError(f"{origin}: 'merge' needs explicit 'labels'")
        return LabelScheme(name, None, None)
    if not (isinstance(labels, list) and labels and all(isinstance(s, str) for s in labels)) \
            or len(set(labels)) != len(labels):
        raise DataError(f"{origin}: 'labels' must be a list of distinct names (or \"auto\")")
    if "merge" not in data:
        return LabelScheme(name, tuple(labels), None)
    source = data.get("source_labels")
    if not (isinstance(source, list) and all(isinstance(s, str) for s in source)) or len(source) > MAX_LABEL_ID + 1:
        raise DataError(f"{origin}: 'merge' needs 'source_labels', the names of the dataset's ids")
    try:
        lut = merge_table(source, labels, data["merge"], data.get("default"))
    except ValueError as exc:
        raise DataError(f"{origin}: {exc}") from None
    return LabelScheme(name, tuple(labels), lut)
