"""Mattes and compositing: generated pixels inside the person, the plate untouched elsewhere."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

COMPOSITE_MODES = ("masked", "full")


def person_matte(labels: np.ndarray, feather: float) -> np.ndarray:
    """float32 H×W in [0, 1]: 1 on every non-background label, falling off over about
    `feather` px outside it (dilated, then blurred), so the plate's person never shows
    through at the edges. Computed on 8-bit values: exactly 0 far from the person."""
    matte = Image.fromarray(np.where(labels != 0, 255, 0).astype(np.uint8))
    if feather > 0:
        grow = math.ceil(feather)
        matte = matte.filter(ImageFilter.MaxFilter(2 * grow + 1)).filter(ImageFilter.GaussianBlur(feather / 2))
    return np.asarray(matte).astype(np.float32) / 255.0


def composite(plate: np.ndarray, generated: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """uint8 H×W×3: `plate` where the matte is 0 (bit-exact), blended elsewhere."""
    m = matte[..., None]
    blended = plate.astype(np.float32) * (1 - m) + generated.astype(np.float32) * m
    out = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return np.where(m > 0, out, plate)
