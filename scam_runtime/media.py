"""Video (PyAV) and image-sequence reading and writing that keep the plate's timing.

Videos decode sequentially (frame-exact ranges: any split of `--frames` gives the same
frames as one run), and are written under a partial name renamed only when complete
(`atomic`). Image sequences are plates (`plates`, OpenImageIO): each frame keeps its plate,
in its own pixel type and colourspace, beside the 8-bit sRGB image the parser sees; the
replacer composites over the plate (`Frame.pixels`), and each frame is written like its
plate, atomically.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .atomic import partial_path, write_image
from .colour import ColourOptions, ColourPath, srgb8
from .errors import InputError, OutputError, UsageError
from .labels import Warn, read_image
from .plates import Plate, format_of, new_plate, read_plate as read_plate_file, write_plate
from .replacer import Result

AUDIO = ("copy", "none")
CODECS = {"h264": "libx264", "h265": "libx265", "prores": "prores_ks", "ffv1": "ffv1"}
DEFAULT_PIX_FMT = {"libx264": "yuv420p", "libx265": "yuv420p", "prores_ks": "yuv422p10le", "ffv1": "yuv420p"}
PRESET_CODECS = ("h264", "h265")  # x264 and x265 share these preset names
ENCODER_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
"""Encoding speed against file size at a given quality, fastest first (the codecs' default: medium)."""
SEQUENCE_PATTERN = re.compile(r"%0?(\d*)d")
PHOTO_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
"""Single images in these are photos (Pillow, EXIF orientation applied, 8-bit sRGB); other
files (DPX, TIFF, EXR...) are plates, read with OpenImageIO in their own type and colourspace."""
NEW_PLATE_FORMATS = ("openexr", "dpx")
"""Formats an 8-bit input is written in as a plate (float or 10-bit); others get the 8-bit composite."""


@dataclass(frozen=True)
class Encoding:
    """How a movie is encoded: `scam-run video`'s output and `assemble`'s. Checked when made,
    so a bad combination stops a job before any work."""
    codec: str = "h264"           # h264 | h265 | prores | ffv1
    crf: int | None = 18          # h264/h265 quality
    pix_fmt: str | None = None    # None: the input's where the codec allows
    preset: str | None = None     # h264/h265 speed against file size at the same crf (None: the codec's, medium)
    threads: int = 0              # the codec's threads (0: its own choice, e.g. x264's 1.5 per core)

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise UsageError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if self.preset is not None and self.preset not in ENCODER_PRESETS:
            raise UsageError(f"--encoder-preset {self.preset}: not a preset; choose one of "
                             f"{', '.join(ENCODER_PRESETS)}")
        if self.preset is not None and self.codec not in PRESET_CODECS:
            raise UsageError(f"--encoder-preset: only for --codec {' or '.join(PRESET_CODECS)} "
                             f"(the codec is {self.codec})")

    @property
    def options(self) -> dict[str, str]:
        """The codec's private options (x265 logs 25 lines of settings per file unless told not to)."""
        if self.codec not in PRESET_CODECS:
            return {}
        options = {} if self.crf is None else {"crf": str(self.crf)}
        if self.codec == "h265":
            options["x265-params"] = "log-level=error"
        return options | ({} if self.preset is None else {"preset": self.preset})


def is_sequence(spec: str | Path) -> bool:
    """`plate.%04d.png`-style printf patterns name image sequences."""
    return bool(SEQUENCE_PATTERN.search(str(spec)))


@dataclass(frozen=True)
class FrameRange:
    """Inclusive frame numbers `A-B` (`A-` to the end, `-B` from the start), or `A+N`: the
    N frames from A (what a farm chunk of fixed size names without arithmetic)."""
    first: int | None = None
    last: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> "FrameRange":
        if not text:
            return cls()
        chunk = re.fullmatch(r"\s*(\d+)\s*\+\s*(\d+)\s*", text)
        if chunk:
            if int(chunk.group(2)) < 1:
                raise UsageError(f"--frames {text}: a chunk needs at least one frame")
            return cls(int(chunk.group(1)), int(chunk.group(1)) + int(chunk.group(2)) - 1)
        m = re.fullmatch(r"\s*(\d*)\s*-\s*(\d*)\s*|\s*(\d+)\s*", text)
        if not m:
            raise UsageError(f"--frames must look like A-B, A-, -B or A+N, got {text!r}")
        if m.group(3):
            return cls(int(m.group(3)), int(m.group(3)))
        first = int(m.group(1)) if m.group(1) else None
        last = int(m.group(2)) if m.group(2) else None
        if first is not None and last is not None and last < first:
            raise UsageError(f"--frames {text}: the last frame comes before the first")
        return cls(first, last)

    def describe(self) -> str:
        return f"{'' if self.first is None else self.first}-{'' if self.last is None else self.last}"

    def __contains__(self, number: int) -> bool:
        return (self.first is None or number >= self.first) and (self.last is None or number <= self.last)


@dataclass
class Frame:
    index: int          # position in the input (0-based)
    number: int         # frame number: the index for videos, the file number for sequences
    image: np.ndarray   # uint8 H×W×3 sRGB: what the parser and the networks see
    pts: int | None = None
    plate: Plate | None = None  # the plate of an image file (`image` is its sRGB view)

    @property
    def pixels(self) -> np.ndarray:
        """What the replacer composites over: the plate's R, G, B where there is one, else `image`."""
        return self.image if self.plate is None else self.plate.rgb

    @property
    def colour(self) -> ColourPath:
        """The colourspace of `pixels`."""
        return srgb8() if self.plate is None else self.plate.colour

    def for_output(self, format_name: str | None, colour: ColourOptions) -> "Frame":
        """This frame as the output format needs it: over its own plate when the output is in
        the plate's format; over a plate made from `image` for an EXR (scene-linear half) or
        DPX (10-bit) output of another input; else over the 8-bit `image`."""
        if self.plate is not None and self.plate.format == format_name:
            return self
        plate = new_plate(self.image, format_name, colour) if format_name in NEW_PLATE_FORMATS else None
        return Frame(self.index, self.number, self.image, self.pts, plate)


def read_plate(path: Path, labels_hw: tuple[int, int] | None = None, warn: Warn | None = None,
               colour: ColourOptions = ColourOptions()) -> tuple[np.ndarray, Plate | None]:
    """uint8 sRGB of a single image file, and its plate: a photo (`PHOTO_EXTS`) is read upright
    with Pillow (`read_image`) and has none; DPX, TIFF, EXR and the rest are plates."""
    if path.suffix.lower() in PHOTO_EXTS:
        return read_image(path, labels_hw, warn), None
    plate = read_plate_file(path, colour)
    return plate.display, plate


def why(exc: BaseException) -> str:
    """The reason of a failure for its one line: FFmpeg's own words without PyAV's errno
    number and the repeated path (`[Errno 1094995529] Invalid data ...: 'in.mp4'`)."""
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return exc.strerror
    return str(exc)


class VideoReader:
    """A video's frames as RGB, upright as a player shows them (a display rotation applied)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        try:
            self.container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"{path}: unreadable video ({why(exc)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{path}: no video stream")
        self.path = path
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.audio = list(self.container.streams.audio)
        self.decoded = 0  # frames decoded so far: the clip's length once a run went past its end
        # both kept: `short_by` reads them after `close`
        self.count: int | None = self.stream.frames or None  # when the container says (exact)
        self.estimated_count = self._estimate()
        # whether that estimate is the video's own length (an audio track can outlast it)
        self.video_duration = bool(self.stream.duration) or not self.audio
        try:
            self.quarter_turns = _quarter_turns(path)
        except InputError:
            self.container.close()
            raise

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames as displayed, which is how `frames` gives them."""
        w, h = self.stream.codec_context.width, self.stream.codec_context.height
        return (h, w) if self.quarter_turns % 2 else (w, h)

    def _estimate(self) -> int | None:
        """`count`, else estimated from duration × rate (for progress only)."""
        if self.stream.frames:
            return self.stream.frames
        rate = self.stream.average_rate
        if self.stream.duration and rate:
            return round(self.stream.duration * self.stream.time_base * rate)
        if self.container.duration and rate:
            return round(self.container.duration / av.time_base * rate)
        return None

    def frames(self, frames: FrameRange) -> Iterator[Frame]:
        try:
            for index, vf in enumerate(self.container.decode(self.stream)):
                self.decoded = index + 1
                if frames.last is not None and index > frames.last:
                    break
                if index in frames:
                    image = vf.to_ndarray(format="rgb24")
                    if self.quarter_turns:
                        image = np.ascontiguousarray(np.rot90(image, self.quarter_turns))
                    yield Frame(index, index, image, vf.pts)
            else:
                wanted = self.count if frames.last is None else min(frames.last + 1, self.count or 0)
                if self.count and self.decoded < wanted:
                    raise InputError(f"{self.path}: ends after {self.decoded} frames where its header says "
                                     f"{self.count} (truncated?)")
                if frames.last is None and self.short_by and self.video_duration:
                    raise InputError(f"{self.path}: ends after {self.decoded} frames where its duration says "
                                     f"about {self.decoded + self.short_by} (truncated or corrupt?)")
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: decoding failed after {self.decoded} frames ({why(exc)})") from None

    @property
    def short_by(self) -> int:
        """After a run to the end: how many frames fewer than the duration suggests were
        decoded, where the header has no exact count (a truncated or corrupt file, or a clip
        whose audio outlasts its video: `video_duration` tells which `frames` can be sure of)."""
        estimate = self.estimated_count or 0
        return estimate - self.decoded if not self.count and self.decoded < 0.9 * estimate - 1 else 0

    def close(self) -> None:
        self.container.close()


def _quarter_turns(path: Path) -> int:
    """How many quarter turns counter-clockwise (`np.rot90`'s k) show the stored frames as a
    player does: the display matrix (how phones store portrait video) that FFmpeg attaches
    to every decoded frame, read off the first one."""
    try:
        with av.open(str(path)) as probe:
            first = next(probe.decode(video=0), None)
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: decoding failed ({why(exc)})") from None
    angle = 0.0 if first is None else first.rotation
    if angle % 90:
        raise InputError(f"{path}: displayed rotated by {angle:g} degrees; only quarter turns are supported")
    return round(angle / 90) % 4


class SequenceReader:
    """Frames `pattern % number` for every number present on disk, in order."""

    def __init__(self, pattern: str, colour: ColourOptions = ColourOptions()) -> None:
        path = Path(pattern)
        m = SEQUENCE_PATTERN.search(path.name)
        if not m:
            raise InputError(f"{pattern}: not a sequence pattern")
        regex = re.compile(re.escape(path.name[:m.start()]) + r"(\d+)" + re.escape(path.name[m.end():]) + "$")
        folder = path.parent
        found = sorted((int(r.group(1)), folder / p) for p in (os.listdir(folder) if folder.is_dir() else [])
                       if (r := regex.match(p)))
        if not found:
            raise InputError(f"{pattern}: no frames match this pattern")
        self.pattern, self.files, self.colour = pattern, found, colour
        self.audio: list = []
        self.stream = None

    @property
    def count(self) -> int:
        return len(self.files)

    estimated_count = count

    def frames(self, frames: FrameRange) -> Iterator[Frame]:
        for index, (number, path) in enumerate(self.files):
            if number in frames:
                plate = read_plate_file(path, self.colour)
                yield Frame(index, number, plate.display, plate=plate)

    def close(self) -> None:
        pass


def open_input(spec: str, colour: ColourOptions = ColourOptions()) -> VideoReader | SequenceReader:
    """A sequence pattern's plates (in `colour`), or a video (sRGB-encoded 8-bit frames)."""
    if is_sequence(spec):
        return SequenceReader(spec, colour)
    if colour.colorspace:
        raise UsageError(f"--colorspace {colour.colorspace}: a video's frames are taken as sRGB-encoded; "
                         f"--colorspace names an image plate's colourspace")
    return VideoReader(Path(spec))


def write_result(path: Path, composite: np.ndarray, plate: Plate | None) -> None:
    """A composite like `plate` (its format, channels, types and metadata) when `path` is in
    the plate's format, else an 8-bit image (PNG, JPEG, TIFF...)."""
    if plate is not None and plate.format == format_of(path):
        write_plate(path, plate, plate.with_rgb(composite))
    elif composite.dtype == np.uint8:
        write_image(path, composite)
    else:
        raise OutputError(f"{path}: a {composite.dtype} composite needs a plate of this format "
                          f"(give the replacer Frame.for_output(...).pixels)")


class SequenceWriter:
    """Writes `pattern % number`; with `resume`, frames already on disk are skipped."""

    def __init__(self, pattern: str, resume: bool = False) -> None:
        folder = Path(pattern).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise OutputError(f"{folder}: output folder missing or not writable")
        if format_of(pattern) is None:
            raise OutputError(f"{pattern}: no image format writes this extension")
        self.pattern, self.resume = pattern, resume

    def path(self, number: int) -> Path:
        return Path(self.pattern % number)

    def done(self, number: int) -> bool:
        return self.resume and self.path(number).is_file()

    def write(self, frame: Frame, result: Result) -> None:
        write_result(self.path(frame.number), result.composite, frame.plate)

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass  # written frames are complete files: --resume continues from them


def _subsampled(pix_fmt: str, width: int, height: int) -> bool:
    """Whether `pix_fmt`'s chroma subsampling needs a size this frame does not have."""
    components = av.VideoFormat(pix_fmt, 4, 4).components  # a subsampled plane is narrower than 4
    horizontal = any(c.width < 4 for c in components)
    vertical = any(c.height < 4 for c in components)
    return (horizontal and width % 2 == 1) or (vertical and height % 2 == 1)


def _pixel_format(codec: str, requested: str | None, source: str | None, width: int, height: int) -> str:
    """The requested format if the codec takes it and the frame size fits it; else the
    input's, else the codec's default, or a 4:4:4 one where an odd size rules those out."""
    supported = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    if requested is not None:
        if requested not in supported:
            raise UsageError(f"--pix-fmt {requested}: not a format {codec} writes; choose one of "
                             f"{', '.join(supported)}")
        if _subsampled(requested, width, height):
            raise UsageError(f"--pix-fmt {requested}: halves the chroma, which a {width}x{height} frame cannot "
                             f"have (odd size); pass a 4:4:4 format such as yuv444p, or --codec ffv1")
        return requested
    for candidate in (source, DEFAULT_PIX_FMT[codec], "yuv444p", "yuv444p10le", "gbrp"):
        if candidate in supported and not _subsampled(candidate, width, height):
            return candidate
    raise UsageError(f"{codec} has no pixel format for a {width}x{height} frame; use --codec ffv1")


class VideoWriter:
    """Encodes at the input's frame rate and timestamps (and time base, where the container
    keeps it); copies audio packets."""

    def __init__(self, path: Path, source: VideoReader, encoding: Encoding = Encoding(), audio: str = "copy",
                 frames: FrameRange = FrameRange()) -> None:
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise OutputError(f"{path.parent}: output folder missing or not writable")
        self.path, self.source, self.frames = path, source, frames
        self.tmp = partial_path(path)
        try:
            self.container = av.open(str(self.tmp), "w")
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise OutputError(f"{path}: cannot create the output ({why(exc)})") from None
        src = source.stream
        name = CODECS[encoding.codec]
        self.stream = self.container.add_stream(name, rate=src.average_rate or Fraction(25))
        self.stream.width, self.stream.height = source.size  # frames come upright: no display matrix
        self.stream.pix_fmt = _pixel_format(name, encoding.pix_fmt, src.codec_context.pix_fmt,
                                            self.stream.width, self.stream.height)
        self.stream.time_base = src.time_base
        self.stream.codec_context.time_base = src.time_base
        # frames carry the plate's timestamps in its time base; the stream's may change when the
        # muxer writes its header (MP4 raises a 1/1000 time base to 1/16000), this one does not
        self.time_base = src.time_base
        if encoding.options:
            self.stream.options = encoding.options
        if encoding.threads:
            self.stream.codec_context.thread_count = encoding.threads
        for tag in ("color_range", "color_primaries", "color_trc", "colorspace"):
            try:
                setattr(self.stream.codec_context, tag, getattr(src.codec_context, tag))
            except (AttributeError, ValueError, TypeError):
                pass  # not every codec or PyAV version carries every tag
        self.audio_out = []
        if audio == "copy":
            for a in source.audio:
                self.audio_out.append((a, self.container.add_stream_from_template(a)))
        self.first_pts: int | None = None
        self.last_pts: int | None = None

    def write(self, frame: Frame, result: Result) -> None:
        self.write_image(frame, result.composite)

    def write_image(self, frame: Frame, rgb: np.ndarray) -> None:
        """An 8-bit RGB picture at `frame`'s timestamp."""
        vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=self.stream.pix_fmt)
        vf.pts, vf.time_base = frame.pts, self.time_base
        if self.first_pts is None:
            self.first_pts = frame.pts
        self.last_pts = frame.pts
        try:
            self.container.mux(self.stream.encode(vf))
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.path}: writing failed ({why(exc)})") from None

    def _copy_audio(self) -> None:
        """Audio packets of the written span, untouched (no re-encoding)."""
        if not self.audio_out or self.first_pts is None:
            return
        tb = self.source.stream.time_base
        start = self.first_pts * tb if self.frames.first is not None else None
        end = None
        if self.frames.last is not None:
            rate = self.source.stream.average_rate or Fraction(25)
            end = self.last_pts * tb + 1 / rate
        with av.open(str(self.source.path)) as src:
            streams = [src.streams[a.index] for a, _ in self.audio_out]
            outputs = {a.index: out for a, out in self.audio_out}
            for packet in src.demux(*streams):
                if packet.dts is None or packet.size == 0:
                    continue
                t = packet.pts * packet.time_base if packet.pts is not None else None
                if t is not None and ((start is not None and t < start) or (end is not None and t >= end)):
                    continue
                packet.stream = outputs[packet.stream.index]
                self.container.mux(packet)

    def finish(self) -> None:
        try:
            self.container.mux(self.stream.encode(None))
            self._copy_audio()
            self.container.close()
            os.replace(self.tmp, self.path)
        except (av.error.FFmpegError, OSError) as exc:
            self.abort()
            raise OutputError(f"{self.path}: writing failed ({why(exc)})") from None

    def abort(self) -> None:
        try:
            self.container.close()
        except (av.error.FFmpegError, OSError):
            pass
        self.tmp.unlink(missing_ok=True)
