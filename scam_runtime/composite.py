"""Mattes and compositing: generated pixels inside the person, the plate untouched elsewhere."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from .colour import ColourPath

COMPOSITE_MODES = ("masked", "full")


def _box_dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2r+1)² square, separable, through cumulative sums: O(H·W) for any r."""
    out = mask
    for axis in (0, 1):
        c = np.cumsum(out, axis=axis, dtype=np.int32)
        n = out.shape[axis]
        hi = np.take(c, np.minimum(np.arange(n) + radius, n - 1), axis=axis)
        lo_idx = np.arange(n) - radius - 1
        lo = np.take(c, np.maximum(lo_idx, 0), axis=axis)
        lo = np.where(np.expand_dims(lo_idx < 0, 1 - axis), 0, lo)
        out = (hi - lo) > 0
    return out


def person_matte(labels: np.ndarray, feather: float) -> np.ndarray:
    """float32 H×W in [0, 1]: 1 on every non-background label, falling off over about
    `feather` px outside it (dilated, then blurred), so the plate's person never shows
    through at the edges. Computed on 8-bit values: exactly 0 far from the person.

    Only the person's bounding box plus the reach of the dilation and blur is computed (the
    rest is 0 either way): a full-body subject covers a fraction of the frame, and the
    matte was the costliest part of compositing."""
    person = labels != 0
    if feather <= 0:
        return person.astype(np.float32)
    rows, cols = np.flatnonzero(person.any(axis=1)), np.flatnonzero(person.any(axis=0))
    matte = np.zeros(labels.shape, np.float32)
    if rows.size == 0:
        return matte
    reach = math.ceil(feather) + math.ceil(2 * feather) + 2  # dilation, then ±4σ of the blur (σ = feather/2)
    box = (slice(max(rows[0] - reach, 0), rows[-1] + 1 + reach), slice(max(cols[0] - reach, 0), cols[-1] + 1 + reach))
    grown = _box_dilate(person[box], math.ceil(feather))
    blurred = Image.fromarray(grown.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(feather / 2))
    matte[box] = np.asarray(blurred).astype(np.float32) / 255.0
    return matte


def matte_box(matte: np.ndarray) -> tuple[slice, slice] | None:
    """The smallest frame window holding every matte value above 0 (None: an empty matte)."""
    rows, cols = np.flatnonzero(matte.any(axis=1)), np.flatnonzero(matte.any(axis=0))
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def blend_patch(plate: np.ndarray, patch: np.ndarray | None, matte: np.ndarray,
                box: tuple[slice, slice] | None, colour: ColourPath) -> np.ndarray:
    """The plate where the matte is 0 (bit-exact), blended elsewhere with `patch`, uint8 sRGB
    generated pixels of `box` = `matte_box(matte)`: all compositing reads of the generation, so
    only that window need be brought to frame size. The patch is converted into the plate's
    colourspace (`colour`) and blended there, on the plate's own values and pixel type."""
    out = plate.copy()
    if box is None:
        return out
    m = matte[box][..., None]
    p = plate[box]
    blended = p.astype(np.float32) * (1 - m) + colour.from_display(patch) * m
    out[box] = np.where(m > 0, colour.to_dtype(blended), p)
    return out


def composite(plate: np.ndarray, generated: np.ndarray, matte: np.ndarray, colour: ColourPath) -> np.ndarray:
    """`plate` where the matte is 0 (bit-exact), blended elsewhere with `generated` (uint8 sRGB
    at the plate's size) in the plate's colourspace (`colour`)."""
    box = matte_box(matte)
    return blend_patch(plate, None if box is None else generated[box], matte, box, colour)
