"""The training folder format: `DIR/images/NAME.{jpg,png,...}` beside `DIR/labels/NAME.png`.

A split is a subfolder of `DIR` in the same format or a text file of names (one per
line). Every pair is checked once up front (readable, same size, ids within the scheme),
so a bad file stops the run with its name before any step is taken. Images and labels go
through the runtime's own `Fit` geometry, so training sees frames as `scam-run` shows them.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, DistributedSampler

from scam_runtime.errors import RuntimeFailure
from scam_runtime.geometry import FIT_MODES, Fit
from scam_runtime.labels import IMAGE_EXTS, ORIENTATION_TAG, read_image, read_labels

from .errors import DataError
from .schemes import LabelScheme


@dataclass(frozen=True)
class Pair:
    image: Path
    labels: Path


def find_pairs(root: str | Path, split: str | None = None, labels_dir: str = "labels") -> list[Pair]:
    """Every (image, label map) pair of `root` (or of its split), sorted by name."""
    root = Path(root)
    names: list[str] | None = None
    if split is not None:
        if (root / split).is_dir():
            root = root / split
        else:
            list_file = Path(split) if Path(split).is_file() else root / split
            if not list_file.is_file():
                raise DataError(f"{split}: split is neither a folder of {root} nor a list file")
            names = [Path(line.strip()).stem for line in list_file.read_text().splitlines() if line.strip()]
    image_dir, label_dir = root / "images", root / labels_dir
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder (the data format is DIR/images + DIR/{labels_dir})")
    images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_EXTS}
    labels = {p.stem: p for p in sorted(label_dir.iterdir()) if p.suffix.lower() == ".png"}
    if names is None:
        names = sorted(images)
        orphans = sorted(set(labels) - set(images))
        if orphans:
            raise DataError(f"{labels[orphans[0]]}: label map without an image "
                            f"({len(orphans)} such file{'s' * (len(orphans) > 1)})")
    pairs = []
    for name in names:
        if name not in images:
            raise DataError(f"{image_dir / name}: image listed in the split not found ({'/'.join(IMAGE_EXTS)})")
        if name not in labels:
            raise DataError(f"{images[name]}: no label map {label_dir / (name + '.png')}")
        pairs.append(Pair(images[name], labels[name]))
    if not pairs:
        raise DataError(f"{image_dir}: no images ({'/'.join(IMAGE_EXTS)})")
    return pairs


def check_pairs(pairs: list[Pair], scheme: LabelScheme,
                warn: Callable[[str], None] = lambda m: warnings.warn(m, stacklevel=2)) -> LabelScheme:
    """Validate every pair; returns the scheme, made concrete if it reads its count off the data.
    Photos count upright (EXIF orientation applied, as `read_image` gives them); a label map
    that fits only the stored pixels is used with those, and `warn` names it."""
    top = 0
    for pair in pairs:
        try:
            with Image.open(pair.image) as im:
                stored, orientation = im.size, im.getexif().get(ORIENTATION_TAG, 1)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{pair.image}: unreadable image ({exc})") from None
        size = stored[::-1] if orientation in (5, 6, 7, 8) else stored  # these turn the photo a quarter
        ids = _labels(pair)
        if ids.shape[::-1] != size and ids.shape[::-1] == stored:
            warn(f"{pair.labels}: fits {pair.image.name} as stored, not as displayed (EXIF orientation "
                 f"{orientation}): the photo is used as stored")
        elif ids.shape[::-1] != size:
            raise DataError(f"{pair.labels}: label map is {ids.shape[1]}x{ids.shape[0]}, "
                            f"its image {pair.image.name} is {size[0]}x{size[1]}")
        top = max(top, int(scheme.apply(ids, pair.labels).max()))
    return scheme.with_label_count(top + 1)


def _labels(pair: Pair) -> np.ndarray:
    try:
        return read_labels(pair.labels)
    except RuntimeFailure as exc:
        raise DataError(str(exc)) from None


@dataclass(frozen=True)
class Augment:
    """Training-only: horizontal flip, light colour jitter (factors in 1 ± `jitter`) and a
    zoom (a crop 1/(1 + z) of the canvas at a random place, z uniform in [0, `zoom`], scaled
    back): the default model overfits CCP's photos, which frame their people alike."""
    flip: bool = True
    jitter: float = 0.1
    zoom: float = 0.0


def epoch_index(key: int | tuple[int, int], epoch: int) -> tuple[int, int]:
    """A dataset key as (epoch, index): a plain index is augmented as of `epoch` (the
    dataset's own); `ResumableSampler` sends (epoch, index) to workers that outlive an epoch."""
    return key if isinstance(key, tuple) else (epoch, key)


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start an epoch part-way (`skip` samples of this rank) and
    yields (epoch, index) for `epoch_index`: the loader's workers live across epochs (a fresh
    fork each epoch stalled the next step for seconds while the trainer's memory was copied
    on write), so the epoch that seeds augmentation travels with each index. `scam-train fit`
    and `parser-fit` both draw their order from it."""

    skip = 0

    def __iter__(self):
        return iter([(self.epoch, i) for i in list(super().__iter__())[self.skip:]])

    def __len__(self) -> int:
        return super().__len__() - self.skip


class AugmentedDataset(Dataset):
    """(image in [-1, 1] as 3×H×W float, label ids as H×W int64) at the model's size, from
    `load` (a folder of photos or a packed set), augmented when training.

    Augmentation draws from a generator seeded by (seed, epoch, index): a sample is the
    same whatever the worker count, and a resumed run sees what an unbroken one would.
    """

    scheme: LabelScheme

    def __init__(self, augment: Augment | None = None, seed: int = 0) -> None:
        self.augment, self.seed, self.epoch = augment, seed, 0

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = epoch_index(key, self.epoch)
        image, ids = (torch.from_numpy(a) for a in self.load(index))
        if self.augment is not None:
            gen = torch.Generator().manual_seed(hash((self.seed, epoch, index)) & 0x7FFFFFFF)
            image, ids = _augment(image, ids, self.augment, gen)
        return image, ids


class CombinedDataset(AugmentedDataset):
    """Several training sets as one (`fit --extra`, e.g. photos a parser labelled): one
    scheme, one augmentation; the parts are loaded unaugmented."""

    def __init__(self, parts: list[AugmentedDataset], augment: Augment | None = None, seed: int = 0) -> None:
        for part in parts[1:]:
            if part.scheme.labels != parts[0].scheme.labels:
                raise DataError(f"training sets with different labels: {', '.join(parts[0].scheme.labels)} "
                                f"against {', '.join(part.scheme.labels)}")
        self.parts, self.scheme = parts, parts[0].scheme
        self.starts = np.cumsum([0] + [len(p) for p in parts])
        super().__init__(augment, seed)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        part = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.parts[part].load(index - int(self.starts[part]))


class PairDataset(AugmentedDataset):
    """The pairs of a data folder, read and fitted to the model's size on each load."""

    def __init__(self, pairs: list[Pair], scheme: LabelScheme, height: int, width: int,
                 fit: str = "letterbox", augment: Augment | None = None, seed: int = 0) -> None:
        if fit not in FIT_MODES:
            raise DataError(f"fit must be one of {', '.join(FIT_MODES)}, got {fit!r}")
        self.pairs, self.scheme, self.size, self.fit = pairs, scheme, (height, width), fit
        super().__init__(augment, seed)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The pair at the model's size: float32 3×H×W image in [-1, 1], int64 H×W target ids."""
        pair = self.pairs[index]
        try:
            labels = _labels(pair)
            image = read_image(pair.image, labels.shape)  # check_pairs warned of a stored-only fit
        except RuntimeFailure as exc:
            raise DataError(str(exc)) from None
        ids = self.scheme.apply(labels, pair.labels)
        if ids.shape != image.shape[:2]:
            raise DataError(f"{pair.labels}: label map is {ids.shape[1]}x{ids.shape[0]}, "
                            f"its image {pair.image.name} is {image.shape[1]}x{image.shape[0]}")
        fit = Fit.compute(image.shape[:2], self.size, self.fit)
        return fit.image_to_model(image), fit.labels_to_model(ids).astype(np.int64)


def _augment(image: torch.Tensor, ids: torch.Tensor, aug: Augment, gen: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
    draws = torch.rand(7, generator=gen)
    if aug.flip and draws[0] < 0.5:
        image, ids = image.flip(-1), ids.flip(-1)
    if aug.zoom > 0:
        image, ids = _zoom(image, ids, 1 + aug.zoom * float(draws[4]), float(draws[5]), float(draws[6]))
    if aug.jitter > 0:
        brightness, contrast, saturation = (1 + aug.jitter * (2 * draws[1:4] - 1)).tolist()
        x = (image + 1) / 2 * brightness
        x = (x - x.mean()) * contrast + x.mean()
        grey = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)
        x = (x - grey) * saturation + grey
        image = x.clamp(0, 1) * 2 - 1
    return image, ids


def _zoom(image: torch.Tensor, ids: torch.Tensor, scale: float, fy: float, fx: float
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The crop 1/`scale` of the canvas whose top-left corner sits at fractions (fy, fx) of
    the room left, resized back: bilinear for the image, nearest for the labels."""
    h, w = ids.shape
    ch, cw = max(1, round(h / scale)), max(1, round(w / scale))
    y, x = round(fy * (h - ch)), round(fx * (w - cw))
    crop = image[None, :, y:y + ch, x:x + cw]
    image = torch.nn.functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]
    rows = y + (2 * torch.arange(h) + 1) * ch // (2 * h)  # the source pixel under each centre
    cols = x + (2 * torch.arange(w) + 1) * cw // (2 * w)
    return image, ids[rows][:, cols]
