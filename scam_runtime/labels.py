"""Label maps in the bundle's scheme: read from files, validated, and merged from another
scheme's labels (parsers: `parsers`)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError, LabelError

Warn = Callable[[str], None]
ORIENTATION_TAG = 0x0112  # EXIF Orientation
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")  # photos a folder is searched for


def read_labels(path: Path) -> np.ndarray:
    """An 8- or 16-bit (or palette) PNG of label ids -> int32 H×W."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise LabelError(f"{path}: label map must be a single-channel image of label ids, got mode {im.mode}")
            return np.asarray(im).astype(np.int32)
    except FileNotFoundError:
        raise LabelError(f"{path}: label map not found") from None
    except Image.DecompressionBombError as exc:
        raise LabelError(f"{path}: refused, too many pixels for a label map ({exc})") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise LabelError(f"{path}: unreadable label map ({exc})") from None


def read_image(path: Path, labels_hw: tuple[int, int] | None = None, warn: Warn | None = None) -> np.ndarray:
    """Any Pillow-readable image -> uint8 RGB H×W×3 (greyscale, 16-bit and alpha converted),
    upright as displayed: its EXIF orientation applied (phones store a photo held upright
    sideways, with a tag). With `labels_hw`, the size of a label map made for it: a map that
    fits only the stored pixels keeps them as stored, and `warn` says so."""
    try:
        with Image.open(path) as stored:
            orientation = stored.getexif().get(ORIENTATION_TAG, 1)
            im = ImageOps.exif_transpose(stored) if orientation != 1 else stored
            if labels_hw is not None and im.size[::-1] != labels_hw and stored.size[::-1] == labels_hw:
                if warn is not None:
                    warn(f"{path}: its label map fits the pixels as stored, not as displayed (EXIF "
                         f"orientation {orientation}): the photo is used as stored")
                im = stored
            if im.mode.startswith("I"):  # 16/32-bit greyscale: Pillow's convert would clip at 255
                wide = np.asarray(im).astype(np.float64)
                scale = 255.0 / (65535.0 if im.mode.startswith("I;16") or wide.max() > 255 else 255.0)
                grey = np.clip(wide * scale + 0.5, 0, 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: refused, too many pixels ({exc})") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: unreadable image ({exc})") from None


def check_labels(labels: np.ndarray, num_labels: int, frame_hw: tuple[int, int], source: str,
                 warn: Warn = lambda m: warnings.warn(m, stacklevel=2)) -> np.ndarray:
    """Ids within the bundle's labels; a map of another size is resized (nearest) with a warning."""
    if labels.ndim != 2:
        raise LabelError(f"{source}: label map must be H×W, got shape {labels.shape}")
    hi, lo = int(labels.max()), int(labels.min())
    if lo < 0 or hi >= num_labels:
        raise LabelError(f"{source}: label ids must lie in 0..{num_labels - 1} for this bundle, found {lo}..{hi}")
    if labels.shape != tuple(frame_hw):
        warn(f"{source}: label map is {labels.shape[1]}x{labels.shape[0]}, frame is "
             f"{frame_hw[1]}x{frame_hw[0]}; resized by nearest neighbour")
        labels = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize(frame_hw[::-1], Image.NEAREST))
    return labels.astype(np.int32)


def merge_table(source: list[str], target: tuple[str, ...] | list[str], merge: dict[str, list[str]],
                default: str | None = None) -> np.ndarray:
    """`lut[source id]` = target id: each `merge` entry (target name -> source names) maps its
    sources; every other source goes to `default`, or -1 without one. One rule for the parser
    JSON's `merge` and the training schemes' (`scam_train.schemes`); ValueError names the
    bad entry, the caller the file."""
    lut = np.full(len(source), -1, np.int64)
    if default is not None:
        if default not in target:
            raise ValueError(f"default '{default}' is not one of the labels {list(target)}")
        lut[:] = list(target).index(default)
    index = {name: i for i, name in enumerate(source)}
    if not isinstance(merge, dict):
        raise ValueError("'merge' must map label names to lists of source names")
    for name, names in merge.items():
        if name not in target:
            raise ValueError(f"merge target '{name}' is not one of the labels {list(target)}")
        for s in names:
            if s not in index:
                raise ValueError(f"merge source '{s}' is not one of the source labels")
            lut[index[s]] = list(target).index(name)
    return lut


class MaskFiles:
    """Per-frame label maps: a printf pattern (`masks/%04d.png`, frame numbers) or a folder
    (sorted PNGs, the i-th file for the i-th frame of the input)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.files: list[Path] | None = None
        if not re.search(r"%0?\d*d", spec):
            folder = Path(spec)
            if not folder.is_dir():
                raise LabelError(f"{spec}: no such mask folder (or give a pattern like masks/%04d.png)")
            self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
            if not self.files:
                raise LabelError(f"{spec}: no .png label maps in this folder")

    def path(self, index: int, number: int) -> Path:
        """Label map of the `index`-th frame of the input, whose frame number is `number`."""
        if self.files is None:
            return Path(self.spec % number)
        if index >= len(self.files):
            raise LabelError(f"{self.spec}: only {len(self.files)} label map(s), but the input has more frames")
        return self.files[index]

    def check_count(self, frames: int) -> None:
        if self.files is not None and len(self.files) != frames:
            raise LabelError(f"{self.spec}: {len(self.files)} label map(s) for {frames} frames")
