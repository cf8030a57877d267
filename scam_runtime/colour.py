"""Colour management (OpenColorIO): a plate's own colourspace and the 8-bit sRGB the networks see.

The parser and the networks were trained on sRGB photos, so every frame reaches them in the
sRGB encoding (clipped to [0, 1], 8 bits). Compositing happens in the plate's own space on
its own values: the generated pixels are converted into that space and blended through the
matte, and outside the matte the plate is untouched.

The config is `--ocio` (a file, or an `ocio://` built-in), else `$OCIO`, else OCIO's
built-in CG config, which ships inside the library (offline). A colourspace is named as the
config names it, aliases included; `default_colourspace` gives each kind of pixel its default.
The two conversions every run meets (8-bit sRGB, linear Rec.709) take table lookups, the rest
OCIO's CPU processor.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import PyOpenColorIO as ocio

from .errors import InputError, UsageError

BUILTIN_CONFIG = "ocio://cg-config-latest"
SRGB = "sRGB - Texture"       # the built-in configs' name of what the networks see
LINEAR_709 = "lin_rec709"     # scene-linear with sRGB primaries: a fast path


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


# 8-bit sRGB code → linear, and linear (clipped, 16-bit steps) → 8-bit code: table lookups
# instead of a power per pixel (a 2K plate has 6 M values)
SRGB8_TO_LINEAR = np.where((c := np.arange(256) / 255.0) <= 0.04045, c / 12.92,
                           ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
_LINEAR16_TO_SRGB8 = np.round(_srgb_encode(np.arange(65536) / 65535.0) * 255).astype(np.uint8)


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """uint8 sRGB of scene-linear Rec.709 values (clipped to [0, 1])."""
    index = np.clip(np.asarray(linear, np.float32) * 65535 + 0.5, 0, 65535).astype(np.uint16)
    return _LINEAR16_TO_SRGB8[index]


@dataclass(frozen=True)
class ColourOptions:
    """Where a job's colour comes from: `--colorspace` (the plate's; None: each input's
    default) and `--ocio` (None: `$OCIO`, else the built-in CG config)."""
    colorspace: str | None = None
    ocio: str | None = None

    @property
    def source(self) -> str:
        return self.ocio or os.environ.get("OCIO") or BUILTIN_CONFIG

    @property
    def config(self) -> ocio.Config:
        return load_config(self.source)

    def path(self, dtype: np.dtype, default: str | None = None) -> "ColourPath":
        """The colour path of pixels of `dtype`: `--colorspace`, else `default`, else
        `default_colourspace` for the dtype."""
        config = self.config
        return colour_path(self.source, self.colorspace or default or default_colourspace(config, dtype),
                           np.dtype(dtype).name)


@lru_cache(maxsize=8)
def load_config(source: str) -> ocio.Config:
    try:
        return ocio.Config.CreateFromFile(source)
    except (ocio.Exception, ocio.ExceptionMissingFile) as exc:
        where = "--ocio" if source != os.environ.get("OCIO") else "$OCIO"
        raise UsageError(f"{where} {source}: not a usable OpenColorIO config ({str(exc).splitlines()[0]})") from None


def default_colourspace(config: ocio.Config, dtype: np.dtype) -> str:
    """Float pixels are scene-linear (the config's scene_linear role); integer pixels are
    sRGB-encoded (the config's equivalent of sRGB - Texture)."""
    if np.dtype(dtype).kind == "f":
        role = config.getColorSpace(ocio.ROLE_SCENE_LINEAR)
        if role is None:
            raise UsageError(f"the OCIO config {config.getName()} has no scene_linear role: pass --colorspace")
        return role.getName()
    srgb = _builtin_equivalent(config, SRGB)
    if srgb is None:
        raise UsageError(f"the OCIO config {config.getName()} has no colourspace OCIO can identify as {SRGB} "
                         f"(it needs the config's interchange roles): pass --colorspace")
    return srgb


def _builtin_equivalent(config: ocio.Config, builtin: str) -> str | None:
    """The config's colourspace equal to a built-in one, if OCIO can tell (it needs the
    config's interchange roles)."""
    try:
        return ocio.Config.IdentifyBuiltinColorSpace(config, load_config(BUILTIN_CONFIG), builtin) or None
    except ocio.Exception:
        return None


_BIT_DEPTHS = {np.dtype(np.uint8): ocio.BIT_DEPTH_UINT8, np.dtype(np.uint16): ocio.BIT_DEPTH_UINT16,
               np.dtype(np.float16): ocio.BIT_DEPTH_F16, np.dtype(np.float32): ocio.BIT_DEPTH_F32}


def _apply(processor: ocio.CPUProcessor, rgb: np.ndarray, out_dtype: type) -> np.ndarray:
    """`processor` over an H×W×3 array into a new one of `out_dtype` (bit depths as built)."""
    src = np.ascontiguousarray(rgb)
    out = np.empty(src.shape, out_dtype)
    h, w = src.shape[:2]

    def desc(a: np.ndarray) -> ocio.PackedImageDesc:
        size = a.dtype.itemsize
        return ocio.PackedImageDesc(a, w, h, 3, _BIT_DEPTHS[a.dtype], size, 3 * size, 3 * size * w)
    processor.apply(desc(src), desc(out))
    return out


@lru_cache(maxsize=64)
def colour_path(source: str, colourspace: str, dtype: str) -> "ColourPath":
    return ColourPath(load_config(source), colourspace, np.dtype(dtype))


class ColourPath:
    """Pixels of one dtype in one colourspace of a config, to and from 8-bit sRGB. Integer
    pixels are read as code values over their maximum (uint16: 0..65535 → 0..1)."""

    def __init__(self, config: ocio.Config, colourspace: str, dtype: np.dtype) -> None:
        space = config.getColorSpace(colourspace)
        if space is None:
            raise UsageError(f"--colorspace {colourspace}: not in the OCIO config {config.getName()} "
                             f"(scam-run doctor lists its colourspaces)")
        self.config, self.name, self.dtype = config, space.getName(), np.dtype(dtype)
        if self.dtype not in (np.uint8, np.uint16, np.float16, np.float32, np.float64):
            raise InputError(f"pixels of type {self.dtype} (expected uint8, uint16 or float)")
        self.scale = float(np.iinfo(self.dtype).max) if self.dtype.kind == "u" else 1.0
        self.kind = ("srgb" if self.name == _builtin_equivalent(config, SRGB) else
                     "linear" if self.name == _builtin_equivalent(config, LINEAR_709) else "ocio")

    def __repr__(self) -> str:
        return f"ColourPath({self.name!r}, {self.dtype})"

    @cached_property
    def _processors(self) -> tuple[ocio.CPUProcessor, ocio.CPUProcessor]:
        """OCIO's to sRGB (this pixel type in, 8-bit out: it scales, clamps and rounds) and
        back (8-bit in, float out): no numpy pass over the frame besides OCIO's own."""
        try:
            to = ocio.Config.GetProcessorToBuiltinColorSpace(self.config, self.name, SRGB)
            back = ocio.Config.GetProcessorFromBuiltinColorSpace(SRGB, self.config, self.name)
        except ocio.Exception as exc:
            raise UsageError(f"the OCIO config {self.config.getName()} cannot convert {self.name} to sRGB "
                             f"({str(exc).splitlines()[0]})") from None
        source = _BIT_DEPTHS[np.dtype(np.float32) if self.dtype == np.float64 else self.dtype]
        return (to.getOptimizedCPUProcessor(source, ocio.BIT_DEPTH_UINT8, ocio.OPTIMIZATION_DEFAULT),
                back.getOptimizedCPUProcessor(ocio.BIT_DEPTH_UINT8, ocio.BIT_DEPTH_F32, ocio.OPTIMIZATION_DEFAULT))

    def display(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 H×W×3 sRGB of pixels in this space: what the parser and the networks see."""
        if self.kind == "srgb" and self.dtype == np.uint8:
            return np.asarray(rgb)
        if self.kind == "ocio":
            return _apply(self._processors[0], rgb if self.dtype != np.float64 else rgb.astype(np.float32),
                          np.uint8)
        x = np.asarray(rgb, np.float32) / np.float32(self.scale) if self.scale != 1.0 else rgb
        if self.kind == "linear":
            return linear_to_srgb8(x)
        return np.clip(x * np.float32(255) + np.float32(0.5), 0, 255).astype(np.uint8)

    def from_display(self, srgb8: np.ndarray) -> np.ndarray:
        """float32 values in this space and scale (integer plates: code values) of uint8 sRGB
        pixels: the generated image, ready to blend with the plate."""
        if self.kind == "srgb":
            return srgb8.astype(np.float32) * np.float32(self.scale / 255.0)
        x = SRGB8_TO_LINEAR[srgb8] if self.kind == "linear" else _apply(self._processors[1], srgb8, np.float32)
        return x * np.float32(self.scale) if self.scale != 1.0 else x

    def to_dtype(self, values: np.ndarray) -> np.ndarray:
        """Float values in this space's scale back to its pixel type (integers rounded, clipped)."""
        if self.dtype.kind == "u":
            return np.clip(values + 0.5, 0, self.scale).astype(self.dtype)
        return values.astype(self.dtype)


def srgb8() -> ColourPath:
    """8-bit sRGB (video frames, photos): the same in any config, so taken from the built-in one."""
    return colour_path(BUILTIN_CONFIG, SRGB, "uint8")


def frame_colour(image: np.ndarray, name: str, colour: ColourPath | str | None = None) -> ColourPath:
    """The colour path of an array frame: `colour` (a path, or a colourspace name in the
    default config), else its dtype's default (uint8: sRGB)."""
    if isinstance(colour, ColourPath):
        if colour.dtype != image.dtype:
            raise InputError(f"{name}: {image.dtype} pixels, but its colour path is for {colour.dtype}")
        return colour
    if image.dtype not in (np.uint8, np.uint16, np.float16, np.float32, np.float64):
        raise InputError(f"{name}: expected uint8/uint16 (sRGB-encoded) or float (scene-linear) pixels, "
                         f"got {image.dtype}")
    return srgb8() if colour is None and image.dtype == np.uint8 else ColourOptions(colour).path(image.dtype)
