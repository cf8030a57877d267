"""The main jobs as library calls: `replace_image` and `replace_video` (what RVM's
`convert_video` is to its model). They own what a run must get right beyond the
networks: no input or earlier result written over, outputs complete or absent, label maps
from files or a parser, resumable image sequences, plates (DPX, TIFF, EXR) composited in
their own colourspace and written like them. The
`scam-run` commands and `bench/runtime.py` call them.

    from scam_runtime import SubjectReplacer, replace_video
    report = replace_video("plate.mp4", "actor.jpg")          # -> plate.scam.mp4
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import atomic_path, write_image
from .colour import ColourOptions
from .errors import InputError, OutputError, UsageError
from .framing import BoxSmoother
from .labels import MaskFiles, check_labels, read_labels
from .media import (
    Encoding,
    Frame,
    FrameRange,
    SequenceReader,
    SequenceWriter,
    VideoReader,
    VideoWriter,
    is_sequence,
    open_input,
    read_plate,
    write_result,
)
from .outputs import default_output, guard_file, guard_folder, guard_sequence
from .parsers import Parser, ParserOptions, auto_parser_name, get_parser
from .pipeline import ExtraOutputs, run_stream
from .plates import format_of
from .progress import Progress
from .replacer import Subject, SubjectReplacer

Note = Callable[[str], None]


def _silent(message: str) -> None:
    """The default `note`: a library call prints nothing but its progress."""


@dataclass(frozen=True)
class VideoOptions:
    """Everything about a video job except the plate, the subject and the output."""
    subject_mask: Path | None = None  # label map of the subject photo (else the parser's)
    masks: str | None = None          # frames' label maps: a folder or a pattern masks/%04d.png (else the parser)
    parser: str = "auto"              # auto | builtin | mediapipe | onnx:PATH | a registered name
    label_smoothing: float = 0.0      # parser: weight of earlier frames in the running label probabilities
    refine: bool = True               # parser: the head refiner pass
    frames: str | None = None         # A-B, A-, -B or A+N (None: all)
    batch: int = 1                    # frames per network run
    codec: str = "h264"               # video output: h264 | h265 | prores | ffv1
    crf: int = 18                     # h264/h265 quality
    pix_fmt: str | None = None        # None: the input's where the codec allows
    audio: str = "copy"               # copy | none
    write_matte: str | None = None    # 8-bit sequence patterns written beside the output
    write_labels: str | None = None
    write_raw: str | None = None
    resume: bool = False              # sequence output: keep frames already written
    overwrite: bool = False           # replace existing outputs (never inputs)
    encoder_threads: int = 0          # video codec threads; 0: one when the networks run on the CPU, else the codec's
    encoder_preset: str | None = None  # h264/h265 speed against size (None: the codec's, medium)
    box_smoothing: bool = False       # subject framing: smooth the person box over frames (chunks then differ)
    colorspace: str | None = None     # an image sequence's colourspace (None: each file's default)
    ocio: str | None = None           # OCIO config (None: $OCIO, else the built-in CG config)

    def __post_init__(self) -> None:
        self.encoding("cpu")  # checks codec and preset before any work, not at the writer

    @property
    def colour(self) -> ColourOptions:
        return ColourOptions(self.colorspace, self.ocio)

    def encoding(self, provider: str) -> Encoding:
        """The video output's encoding, its codec threads chosen for the networks' `provider`."""
        return Encoding(self.codec, self.crf, self.pix_fmt, self.encoder_preset,
                        encoder_threads(self.encoder_threads, provider))


CPU_PROVIDERS = ("cpu", "openvino")  # providers whose networks run on the CPU's cores


def encoder_threads(requested: int, provider: str) -> int:
    """The video codec's threads: as requested, else one beside CPU inference (decode, the
    networks and encoding already run in parallel there, and x264's own frame threads cost
    about a fifth more CPU per frame on a 2-core machine: docs/runtime.md), else the codec's
    own count (0), which a GPU job needs to keep up."""
    return requested or (1 if provider in CPU_PROVIDERS else 0)


@dataclass(frozen=True)
class VideoReport:
    output: str
    frames: int          # written by this call
    skipped: int         # already on disk (resume)
    no_person: int       # frames written unchanged for want of a person
    resized_maps: int    # label-map files not at their frame's size


class StillParser:
    """The parser for single images (subject, target), made on first use and then shared."""

    def __init__(self, name: str, replacer: SubjectReplacer, note: Note = _silent, what: str = "subject") -> None:
        self.name, self.replacer, self.note, self.what = name, replacer, note, what
        self._parser: Parser | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._parser is None:
            self._parser = make_parser(self.name, self.replacer, ParserOptions(backend=self.replacer.backend),
                                       self.note, self.what)
        return self._parser(image)


def make_parser(name: str, replacer: SubjectReplacer, options: ParserOptions, note: Note = _silent,
                what: str = "frames") -> Parser:
    if name == "auto":
        name = auto_parser_name()
    parser = get_parser(name, replacer.bundle.labels, options)
    note(f"{what}: label maps from the {name} parser")
    return parser


def load_subject(replacer: SubjectReplacer, subject: str | Path | Subject, subject_mask: Path | None,
                 parser: StillParser) -> Subject:
    """A Subject as given, from its .npz, or encoded from a photo and its label map (file or parser)."""
    if isinstance(subject, Subject):
        return subject
    subject = Path(subject)
    if subject.suffix == ".npz":
        return Subject.load(subject)
    if subject_mask is None:
        image, _ = read_plate(subject)
        return replacer.encode_subject(image, parser(image))
    labels = read_labels(subject_mask)
    image, _ = read_plate(subject, labels.shape, parser.note)
    return replacer.encode_subject(image, labels, source=str(subject_mask))


def bundle_files(replacer: SubjectReplacer) -> list[Path]:
    b = replacer.bundle
    return [b.path / "bundle.json", *(b.path / name for name in b.manifest["files"])]


def _inputs(*paths: str | Path | Subject | None) -> list[Path]:
    return [Path(p) for p in paths if p is not None and not isinstance(p, Subject)]


def replace_image(target: str | Path, subject: str | Path | Subject, output: str | Path | None = None, *,
                  replacer: SubjectReplacer | None = None, subject_mask: Path | None = None,
                  mask: Path | None = None, parser: str = "auto", write_matte: Path | None = None,
                  write_raw: Path | None = None, overwrite: bool = False, note: Note = _silent,
                  colour: ColourOptions = ColourOptions()) -> Path:
    """Put the subject into one image; returns the output (default: TARGET.scam.EXT beside it).
    A plate target (DPX, TIFF, EXR...) is composited in its own colourspace (`colour`) and
    written like it when the output has its format; an EXR or DPX output of a photo target is
    composited over a plate made from it (scene-linear half, 10-bit)."""
    replacer = replacer or SubjectReplacer()
    target = Path(target)
    out = Path(output) if output is not None else Path(default_output(target))
    inputs = _inputs(target, subject, subject_mask, mask) + bundle_files(replacer)
    for option, path in (("-o", out), ("--write-matte", write_matte), ("--write-raw", write_raw)):
        if path is not None:
            guard_file(path, inputs, overwrite, option)
            guard_folder(path, option)
    still = StillParser(parser, replacer, note, "subject and target")
    subj = load_subject(replacer, subject, subject_mask, still)
    labels = None if mask is None else read_labels(mask)
    image, plate = read_plate(target, None if labels is None else labels.shape, note, colour)
    frame = Frame(0, 0, image, plate=plate).for_output(format_of(out), colour)
    labels, source = (still(image), None) if labels is None else (labels, str(mask))
    result = replacer.process(frame.pixels, labels, subj, source=source, display=frame.image, colour=frame.colour)
    for path, picture in ((write_matte, np.round(result.matte * 255).astype(np.uint8)),
                          (write_raw, result.generated)):
        if path is not None:
            write_image(path, picture)
    write_result(out, result.composite, frame.plate)
    return out


def save_subject(subject: Subject, out: Path) -> Path:
    """The subject's latents as a .npz, complete or absent."""
    guard_folder(out)
    try:
        with atomic_path(out) as tmp:
            subject.save(tmp)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write ({exc})") from None
    return out


def replace_video(source: str | Path, subject: str | Path | Subject, output: str | Path | None = None, *,
                  options: VideoOptions = VideoOptions(), replacer: SubjectReplacer | None = None,
                  progress: str = "bar", note: Note = _silent, warn: Note | None = None) -> VideoReport:
    """Replace the person in a video or an image sequence (`plate.%04d.exr`) by the subject (a
    photo, its .npz, or a `Subject`). The output defaults to SOURCE.scam.EXT (NAME_scam.%04d.EXT)
    beside the source. Every output is checked against every input before any frame is read.
    `progress`: bar | json | none; `note`: informational lines; `warn` (default: the replacer's)."""
    replacer = replacer or SubjectReplacer()
    warn = warn or replacer.warn
    source = str(source)
    output = str(output) if output is not None else default_output(source)
    o = options
    frames = FrameRange.parse(o.frames)
    extras = (("--write-matte", o.write_matte), ("--write-labels", o.write_labels), ("--write-raw", o.write_raw))
    for option, value in extras:
        if value and (not is_sequence(value) or value.lower().endswith(".exr")):
            raise UsageError(f"{option} needs an 8-bit image-sequence pattern such as out.%04d.png, got {value}")
    reader = open_input(source, o.colour)
    try:
        numbers = _numbers(reader, frames)
        mask_files = MaskFiles(o.masks) if o.masks else None
        inputs = _inputs(subject, o.subject_mask) + bundle_files(replacer)
        inputs += [path for _, path in reader.files] if isinstance(reader, SequenceReader) else [reader.path]
        if mask_files is not None:
            inputs += mask_files.files or [Path(o.masks % n) for n in numbers]
        if is_sequence(output):
            guard_sequence(output, numbers, inputs, o.overwrite, o.resume)
        elif isinstance(reader, VideoReader):
            guard_file(Path(output), inputs, o.overwrite)
        else:
            raise OutputError(f"{output}: image-sequence input needs an image-sequence output pattern")
        guard_folder(output)
        for option, value in extras:
            if value:
                guard_sequence(value, numbers, inputs + [Path(output)], o.overwrite, o.resume, option)
                guard_folder(value, option)
        subj = load_subject(replacer, subject, o.subject_mask, StillParser(o.parser, replacer, note))
        frame_parser = None
        if mask_files is None:
            frame_parser = make_parser(o.parser, replacer,
                                       ParserOptions(o.label_smoothing, refine=o.refine, backend=replacer.backend),
                                       note)
        elif frames == FrameRange() and reader.count:
            mask_files.check_count(reader.count)
        writer: VideoWriter | SequenceWriter
        if is_sequence(output):
            writer = SequenceWriter(output, o.resume)
        else:
            writer = VideoWriter(Path(output), reader, o.encoding(replacer.provider), o.audio, frames)
        out_format = format_of(output)
        no_person = resized = 0

        def resize_warning(message: str) -> None:
            nonlocal resized
            resized += 1
            if resized == 1:
                warn(f"{message} (once per run; the count comes at the end)")

        def labels_for(frame: Frame) -> np.ndarray:
            nonlocal no_person
            if mask_files is not None:
                path = mask_files.path(frame.index, frame.number)
                labels = check_labels(read_labels(path), len(replacer.bundle.labels), frame.image.shape[:2],
                                      str(path), resize_warning)
            else:
                labels = frame_parser(frame.image)
            no_person += not labels.any()
            return labels

        done = [n for n in numbers if isinstance(writer, SequenceWriter) and writer.done(n)]
        todo = (f.for_output(out_format, o.colour) for f in reader.frames(frames)
                if not (isinstance(writer, SequenceWriter) and writer.done(f.number)))
        n = run_stream(replacer, subj, todo, labels_for, writer,
                       Progress(len(numbers) - len(done) if numbers else None, progress), o.batch,
                       ExtraOutputs(o.write_matte, o.write_labels, o.write_raw),
                       smoother=BoxSmoother() if o.box_smoothing else None, source=source)
    finally:
        reader.close()
    if n == 0 and not done:
        length = f"the clip has {reader.decoded} frames" if isinstance(reader, VideoReader) else "it has none"
        raise InputError(f"{source}: no frame in --frames {frames.describe()} ({length})")
    if isinstance(reader, VideoReader) and frames.last is None and reader.short_by:
        warn(f"{source}: ended after {reader.decoded} frames where its duration says about "
             f"{reader.decoded + reader.short_by} (truncated, or audio longer than the video?); {n} frames written")
    if resized:
        warn(f"{resized} of {n} label maps were not their frame's size and were resized (nearest)")
    if no_person:
        warn(f"{no_person} of {n} frames had no person; they were written unchanged")
    return VideoReport(output, n, len(done), no_person, resized)


def _numbers(reader: VideoReader | SequenceReader, frames: FrameRange) -> list[int]:
    """The frame numbers the run covers; a range past the input's end is an error."""
    if isinstance(reader, SequenceReader):
        numbers = [number for number, _ in reader.files if number in frames]
        if not numbers:
            raise InputError(f"{reader.pattern}: no frame numbered in --frames {frames.describe()} "
                             f"(the sequence has {reader.files[0][0]}..{reader.files[-1][0]})")
        return numbers
    count = reader.count or reader.estimated_count
    if not count:
        return []
    if reader.count and frames.first is not None and frames.first >= count:
        raise InputError(f"{reader.path}: --frames {frames.describe()} starts past the end "
                         f"(the clip has {count} frames, 0..{count - 1})")
    last = count - 1 if frames.last is None else min(frames.last, count - 1)
    return list(range(frames.first or 0, last + 1))

