"""Plates as studios deliver them, read and written through OpenImageIO: DPX, TIFF (8/16-bit,
float), EXR (half/float, any channels, data windows), PNG, JPEG, and whatever else it reads.

A `Plate` is one image as read: its pixels in their stored type (uint8, uint16, half, float;
10/12-bit DPX as uint16), every channel, the file's ImageSpec (windows, channel names and
types, tiles, compression, and the format's metadata: DPX film and timecode headers, EXR
attributes) and its colour path. A result is written with that spec, so format, bit depth and
metadata carry over and only R, G and B inside the matte change. The networks see the data
window (the pixels the file holds).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from .atomic import atomic_path
from .colour import ColourOptions, ColourPath
from .errors import InputError, OutputError

RGB = ("R", "G", "B")
LOG_TRANSFERS = ("Printing density", "Logarithmic")
LOG_DEFAULT = "ADX10"
"""A DPX whose header says log (printing density): Kodak's ADX10 encoding, in the configs that have it."""


@dataclass(frozen=True)
class Plate:
    """One image file as read (the first subimage), ready to be written back like it."""
    pixels: np.ndarray      # H×W×C, the data window, in the stored pixel type
    spec: oiio.ImageSpec
    format: str             # OpenImageIO's format name: openexr, dpx, tiff, png, jpeg...
    colour: ColourPath

    @property
    def rgb_channels(self) -> tuple[int, int, int]:
        names = tuple(self.spec.channelnames)
        return tuple(names.index(c) for c in RGB)  # type: ignore[return-value]

    @property
    def rgb(self) -> np.ndarray:
        """H×W×3 R, G, B in the plate's own values (what is composited over)."""
        idx = self.rgb_channels
        if idx == (0, 1, 2):
            return self.pixels[..., :3]
        return self.pixels[..., list(idx)]

    @cached_property
    def display(self) -> np.ndarray:
        """uint8 H×W×3 sRGB for the parser and the networks."""
        return self.colour.display(self.rgb)

    def with_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """Every channel of the plate, with R, G and B replaced."""
        pixels = self.pixels.copy()
        pixels[..., list(self.rgb_channels)] = rgb
        return pixels


def format_of(path: str | Path) -> str | None:
    """OpenImageIO's format name for a file name's extension (None: none writes it)."""
    out = oiio.ImageOutput.create(str(path))
    if out is None:
        oiio.geterror()  # clears it: OpenImageIO prints errors nobody retrieved at exit
        return None
    return out.format_name()


OIIO_TYPES = {"uint8": np.dtype(np.uint8), "uint16": np.dtype(np.uint16), "half": np.dtype(np.float16),
              "float": np.dtype(np.float32)}


def _stored_type(spec: oiio.ImageSpec) -> str:
    """The OpenImageIO type that holds every channel as stored (mixed EXR channels, other
    integer depths: float)."""
    formats = {str(f) for f in spec.channelformats} or {str(spec.format)}
    return formats.pop() if len(formats) == 1 and next(iter(formats)) in OIIO_TYPES else "float"


def _colourspace(path: Path, spec: oiio.ImageSpec, format_name: str, dtype: np.dtype,
                      options: ColourOptions) -> str:
    """`--colorspace`, else what the file says (OpenImageIO's `oiio:ColorSpace` when the config
    knows it; a DPX's transfer characteristic), else the pixel type's default: float
    scene-linear, integers sRGB-encoded."""
    config = options.config
    if options.colorspace:
        return options.colorspace
    stated = spec.getattribute("oiio:ColorSpace")
    if stated and config.getColorSpace(stated) is not None:
        return config.getColorSpace(stated).getName()
    if format_name == "dpx":
        transfer = spec.getattribute("dpx:Transfer") or ""
        if transfer == "Linear":
            return options.path(np.dtype(np.float32)).name  # the scene_linear role
        if transfer in LOG_TRANSFERS:
            if config.getColorSpace(LOG_DEFAULT) is None:
                raise InputError(f"{path}: its DPX header says {transfer} (log) and the OCIO config "
                                 f"{config.getName()} has no {LOG_DEFAULT}: pass --colorspace NAME (or --ocio "
                                 f"ocio://studio-config-latest, which has it)")
            return LOG_DEFAULT
    return options.path(dtype).name


def read_plate(path: Path, options: ColourOptions = ColourOptions()) -> Plate:
    """The first subimage of an image file, in its stored pixel type, with its colour path."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    inp = oiio.ImageInput.open(str(path))
    if inp is None:
        raise InputError(f"{path}: unreadable image ({_oiio_error()})")
    try:
        spec = inp.spec()
        stored = _stored_type(spec)
        pixels = inp.read_image(0, 0, 0, spec.nchannels, stored)
        format_name = inp.format_name()
        if pixels is None:
            raise InputError(f"{path}: unreadable image ({inp.geterror() or _oiio_error()})")
    finally:
        inp.close()
    dtype = OIIO_TYPES[stored]
    pixels = np.asarray(pixels, dtype).reshape(spec.height, spec.width, spec.nchannels)
    names = tuple(spec.channelnames)
    if spec.nchannels < 3 or any(c not in names for c in RGB):
        raise InputError(f"{path}: no R, G and B channels (has {', '.join(names)})")
    colour = options.path(dtype, _colourspace(path, spec, format_name, dtype, options))
    return Plate(pixels, spec, format_name, colour)


def write_plate(path: Path, plate: Plate, pixels: np.ndarray) -> None:
    """`pixels` (every channel) in `plate`'s format, types and metadata; renamed into place once complete."""
    path = Path(path)
    out = oiio.ImageOutput.create(str(path))
    if out is None:
        raise OutputError(f"{path}: no image format for this extension ({_oiio_error()})")
    spec = oiio.ImageSpec(plate.spec)
    try:
        with atomic_path(path) as tmp:
            if not out.open(str(tmp), spec) or not out.write_image(np.ascontiguousarray(pixels)):
                raise OutputError(f"{path}: cannot write ({out.geterror() or _oiio_error()})")
            if not out.close():
                raise OutputError(f"{path}: cannot write ({out.geterror() or _oiio_error()})")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


def new_plate(display: np.ndarray, format_name: str, options: ColourOptions) -> Plate:
    """An 8-bit sRGB frame (a video's, a photo's) as a plate of another format, to write a
    result in it: EXR half-float in the scene_linear role, DPX 10-bit and TIFF 16-bit
    sRGB-encoded; other formats 8-bit."""
    height, width = display.shape[:2]
    dtype = {"openexr": np.float16, "dpx": np.uint16, "tiff": np.uint16}.get(format_name, np.uint8)
    colour = ColourOptions(None, options.ocio).path(np.dtype(dtype))
    spec = oiio.ImageSpec(width, height, 3, {np.float16: "half", np.uint16: "uint16"}.get(dtype, "uint8"))
    if format_name == "dpx":
        spec.attribute("oiio:BitsPerSample", 10)
    if format_name == "openexr":
        spec.attribute("compression", "zip")
    return Plate(colour.to_dtype(colour.from_display(display)), spec, format_name, colour)


def _oiio_error() -> str:
    return (oiio.geterror() or "unknown error").strip().splitlines()[0]
