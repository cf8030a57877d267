"""Scene-linear float frames and the 8-bit sRGB the networks see.

Float frames (EXR plates, or float32/float16 arrays from Nuke, Houdini or Resolve) are
taken as scene-linear RGB with Rec.709/sRGB primaries. The parser and the networks were
trained on display images, so they see the sRGB encoding, clipped to [0, 1] and quantised
to 8 bits; compositing stays in linear float on the frame's own values.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


# 8-bit sRGB code → linear, and linear (clipped, 16-bit steps) → 8-bit code: table lookups
# instead of a power per pixel (a 2K plate has 6 M values)
SRGB8_TO_LINEAR = np.where((c := np.arange(256) / 255.0) <= 0.04045, c / 12.92,
                           ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
_LINEAR16_TO_SRGB8 = np.round(_srgb_encode(np.arange(65536) / 65535.0) * 255).astype(np.uint8)


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """uint8 sRGB of scene-linear values (clipped to [0, 1]): what the networks see."""
    index = np.clip(np.asarray(linear, np.float32) * 65535 + 0.5, 0, 65535).astype(np.uint16)
    return _LINEAR16_TO_SRGB8[index]


def display_rgb(image: np.ndarray, name: str) -> np.ndarray:
    """uint8 H×W×3 sRGB of a uint8 sRGB or a float (scene-linear) H×W×3 frame."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name}: expected an H×W×3 RGB array, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    if image.dtype in (np.float16, np.float32, np.float64):
        return linear_to_srgb8(image)
    raise InputError(f"{name}: expected uint8 (sRGB) or float (scene-linear) pixels, got {image.dtype}")
