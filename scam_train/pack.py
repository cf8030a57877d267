"""A packed training set: every pair already at the model's size, in one compressed `.npz`.

A lent GPU gets its data as one small file (the photos themselves stay behind), and no
step decodes a JPEG. The images are exactly what `PairDataset.load` feeds the network
(the runtime's `Fit` resamples to uint8 before scaling to [-1, 1], so uint8 storage loses
nothing), each stored as a PNG (CCP's 855 training photos at 128×85 make a 17.0 MB file,
against 22.8 MB for the raw array deflated); label ids are the scheme's, as
uint8. `fit --data FILE.npz` and `evaluate --data FILE.npz` read it; its size and labels
are checked against the run's.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from scam_runtime.atomic import atomic_path

from .data import AugmentedDataset, Augment, PairDataset, check_pairs, find_pairs
from .errors import ConfigError, DataError
from .schemes import LabelScheme, load_scheme

PACK_FORMAT = "scam-pack"
PACK_VERSION = 1


def is_pack(data: str | Path) -> bool:
    """`--data` names a packed set (a file) rather than a folder."""
    return Path(data).suffix.lower() == ".npz"


@dataclass(frozen=True)
class PackSpec:
    """What to pack: a data folder (or its split) at one model size and fit."""
    data: str
    height: int
    width: int
    scheme: str = "bfb3"
    labels_dir: str = "labels"
    split: str | None = None
    fit: str = "letterbox"


def write_pack(spec: PackSpec, out: Path, overwrite: bool = False,
               each: Callable[[int], None] = lambda total: None) -> Path:
    """Pack every pair of `spec` into `out` (atomic; refuses to replace a file unless told)."""
    if out.suffix.lower() != ".npz":
        raise ConfigError(f"{out}: a packed set is written as a .npz file")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: exists; choose another name or pass --overwrite")
    pairs = find_pairs(spec.data, spec.split, spec.labels_dir)
    scheme = check_pairs(pairs, load_scheme(spec.scheme))
    if len(scheme.labels) > 256:
        raise ConfigError(f"scheme '{scheme.name}' has {len(scheme.labels)} labels; a pack stores ids as uint8")
    dataset = PairDataset(pairs, scheme, spec.height, spec.width, spec.fit)
    pngs: list[bytes] = []
    ids = np.empty((len(pairs), spec.height, spec.width), np.uint8)
    for i in range(len(pairs)):
        image, label = dataset.load(i)
        buffer = io.BytesIO()
        Image.fromarray(np.rint((image.transpose(1, 2, 0) + 1) * 127.5).astype(np.uint8)).save(
            buffer, "PNG", optimize=True)
        pngs.append(buffer.getvalue())
        ids[i] = label
        each(len(pairs))
    offsets = np.cumsum([0] + [len(b) for b in pngs], dtype=np.int64)
    meta = {"format": PACK_FORMAT, "version": PACK_VERSION, "height": spec.height, "width": spec.width,
            "fit": spec.fit, "scheme": scheme.name, "labels": list(scheme.labels),
            "source": {"data": str(spec.data), "split": spec.split, "labels_dir": spec.labels_dir},
            "names": [p.image.stem for p in pairs]}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:  # a file object: numpy would append .npz to a temporary name
            np.savez_compressed(f, png=np.frombuffer(b"".join(pngs), np.uint8), offsets=offsets, ids=ids,
                                meta=np.array(json.dumps(meta)))
    return out


class PackedDataset(AugmentedDataset):
    """A pack's pairs, held in memory, with the folder dataset's interface and augmentation."""

    def __init__(self, path: str | Path, augment: Augment | None = None, seed: int = 0) -> None:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                png, offsets, self.ids = npz["png"], npz["offsets"], npz["ids"]
        except FileNotFoundError:
            raise DataError(f"{path}: no such packed set") from None
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{path}: not a packed set ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                            ) from None
        if meta.get("format") != PACK_FORMAT or meta.get("version", 0) > PACK_VERSION:
            raise DataError(f"{path}: not a packed set of this scam (format {meta.get('format')!r}, "
                            f"version {meta.get('version')!r})")
        self.images = np.stack([np.asarray(Image.open(io.BytesIO(png[a:b].tobytes())).convert("RGB"))
                                for a, b in zip(offsets[:-1], offsets[1:])])
        self.path, self.meta = path, meta
        self.names: list[str] = meta["names"]
        self.scheme = LabelScheme(meta["scheme"], tuple(meta["labels"]), None)
        self.size: tuple[int, int] = (meta["height"], meta["width"])
        self.fit: str = meta["fit"]
        super().__init__(augment, seed)

    def check(self, height: int, width: int, fit: str) -> None:
        """A pack is made for one model size and fit: refuse to train another on it."""
        if self.size != (height, width) or self.fit != fit:
            raise ConfigError(f"{self.path}: packed at {self.size[0]}x{self.size[1]} ({self.fit}), the run is "
                              f"{height}x{width} ({fit}); pack again with scam-train pack")

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = self.images[index].astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
        return image, self.ids[index].astype(np.int64)
