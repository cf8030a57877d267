"""OpenEXR plates (optional extra `exr`): scene-linear float in, float composite out.

A compositor's EXR plate is scene-linear RGB (Rec.709/sRGB primaries assumed) with values
above 1 and often more channels (A, Z, AOVs). The networks see its sRGB encoding
(`colour`); the composite itself is done in linear float on the plate's own values: outside
the matte every channel of the written file is bit-identical to the input (highlights
above 1, half/float pixel types, extra channels and the header's compression, windows and
metadata carried over); inside it, the generated pixels (display-referred, so at most 1.0
linear) are linearised and blended with the plate.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .colour import SRGB8_TO_LINEAR, linear_to_srgb8
from .errors import InputError, OutputError

RGB = ("R", "G", "B")


def load_openexr(error: type[InputError | OutputError] = InputError):
    """The OpenEXR module, or `error` saying how to install it (an optional extra)."""
    try:
        import OpenEXR
    except ImportError:
        raise error("reading or writing .exr needs the OpenEXR package: pip install 'scam[exr]'") from None
    return OpenEXR


@dataclass(frozen=True)
class ExrPlate:
    """One EXR image as read: RGB in its own pixel type, every other channel, the header."""
    rgb: np.ndarray                  # H×W×3 float16 or float32, scene-linear
    others: dict[str, np.ndarray]    # A, Z, AOVs... written back untouched
    header: dict                     # compression, data/display windows, metadata

    @property
    def display(self) -> np.ndarray:
        """uint8 H×W×3 sRGB for the parser and the networks."""
        return linear_to_srgb8(self.rgb)


def read_exr(path: Path) -> ExrPlate:
    """The first part of a scanline or tiled EXR with R, G and B channels."""
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file")
    exr = load_openexr()
    try:
        with exr.File(str(path), separate_channels=True) as f:
            header = {k: v for k, v in f.header().items() if k != "channels"}
            channels = {name: ch.pixels for name, ch in f.channels().items()}
    except (RuntimeError, OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable EXR ({str(exc).splitlines()[0]})") from None
    missing = [c for c in RGB if c not in channels]
    if missing:
        raise InputError(f"{path}: EXR without {'/'.join(missing)} channel(s) (has {', '.join(sorted(channels))})")
    if any(channels[c].dtype.kind != "f" for c in RGB):
        raise InputError(f"{path}: EXR colour channels must be half or float, not integer")
    rgb = np.stack([channels.pop(c) for c in RGB], axis=-1)
    return ExrPlate(rgb, channels, header)


def plate_from_display(image: np.ndarray) -> ExrPlate:
    """An 8-bit sRGB frame (from a video or PNG) as a half-float linear plate, for EXR output."""
    exr = load_openexr(OutputError)
    return ExrPlate(SRGB8_TO_LINEAR[image].astype(np.float16), {}, {"compression": exr.ZIP_COMPRESSION})


def write_exr(path: Path, rgb: np.ndarray, like: ExrPlate) -> None:
    """`rgb` with `like`'s other channels and header; renamed into place once complete."""
    exr = load_openexr(OutputError)
    channels = {c: np.ascontiguousarray(rgb[..., i]) for i, c in enumerate(RGB)} | like.others
    header = {"compression": exr.ZIP_COMPRESSION, "type": exr.scanlineimage} | like.header
    try:
        with atomic_path(path) as tmp:
            exr.File(header, channels).write(str(tmp))
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        raise OutputError(f"{path}: cannot write ({str(exc).splitlines()[0]})") from None
