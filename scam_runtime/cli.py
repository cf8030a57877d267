"""`scam-run`: subject replacement on images, videos and image sequences, without torch."""
from __future__ import annotations

import json
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click
import numpy as np

from .backend import (
    PROVIDER_CHOICES,
    BackendOptions,
    ProviderUnavailable,
    available_providers,
)
from .bundle import Bundle, BundleError
from .engines import current_device, list_builds, select_build
from .errors import BundleFailure, OutputError, RuntimeFailure
from .geometry import FIT_MODES
from .labels import MaskFiles, check_labels, read_labels
from .media import (
    CODECS,
    FrameRange,
    SequenceWriter,
    VideoReader,
    VideoWriter,
    is_sequence,
    open_input,
    read_plate,
    write_image_atomic,
    write_result,
)
from .parsing import BUILTIN_MODEL, Parser, ParserOptions, auto_parser_name, get_parser
from .pipeline import ExtraOutputs, run_stream
from .progress import PROGRESS_MODES, Progress
from .replacer import ReplaceOptions, Subject, SubjectReplacer

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default_bundle"


def _warn(message: str) -> None:
    click.echo(f"scam-run: warning: {message}", err=True)


@dataclass(frozen=True)
class Common:
    bundle: Path
    backend: BackendOptions
    options: ReplaceOptions
    debug: bool


def _bundle_path(path: Path | None) -> Path:
    if path is not None:
        return path
    if (DEFAULT_BUNDLE / "bundle.json").is_file():
        return DEFAULT_BUNDLE
    raise BundleFailure("no default bundle is installed with this scam; pass --bundle DIR "
                        "(made by scam-export --ckpt model.pt)")


def _guard(action: Callable[[], None], debug: bool) -> None:
    """One line and a distinct exit code for every failure a user can act on."""
    try:
        action()
    except RuntimeFailure as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"scam-run: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except ValueError as exc:  # option values checked late (e.g. --frames, --temporal)
        if debug:
            traceback.print_exc()
        click.echo(f"scam-run: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("scam-run: interrupted; no partial video was left under the output name", err=True)
        sys.exit(130)


def common_options(f):
    decorators = [
        click.option("--bundle", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="bundle folder from scam-export [default: the bundle shipped with scam]"),
        click.option("--provider", type=click.Choice(PROVIDER_CHOICES), default="cpu", show_default=True,
                     help="ONNX Runtime provider, or trt-engine: the bundle's TensorRT engines for this GPU"),
        click.option("--allow-fallback", is_flag=True, help="use a lesser provider if the requested one is missing"),
        click.option("--threads", type=click.IntRange(0, 256), default=0, help="CPU threads (0: automatic)"),
        click.option("--fit", type=click.Choice(FIT_MODES), default="letterbox", show_default=True),
        click.option("--composite", type=click.Choice(["masked", "full"]), default="masked", show_default=True),
        click.option("--feather", type=click.FloatRange(0, 100), default=2.0, show_default=True,
                     help="matte softness in pixels"),
        click.option("--keep", multiple=True, help="label whose latents stay the frame's (repeatable), e.g. body"),
        click.option("--debug", is_flag=True, help="show tracebacks"),
    ]
    for d in reversed(decorators):
        f = d(f)
    return f


def _common(bundle, provider, allow_fallback, threads, fit, composite, feather, keep, debug,
            temporal: str = "per-frame") -> Common:
    return Common(bundle, BackendOptions(provider, allow_fallback, threads),
                  ReplaceOptions(fit=fit, composite=composite, feather=feather, keep=tuple(keep), temporal=temporal),
                  debug)


def _replacer(c: Common) -> SubjectReplacer:
    replacer = SubjectReplacer(_bundle_path(c.bundle), c.options, c.backend, warn=_warn)
    sources = replacer.mix_sources()
    click.echo(f"scam-run: provider {replacer.provider}; latents from the frame: "
               f"{', '.join(n for n, s in sources.items() if s == 'frame')}; from the subject: "
               f"{', '.join(n for n, s in sources.items() if s == 'subject') or 'none'}", err=True)
    return replacer


class _StillParser:
    """The parser for single images (subject, target), made on first use and then shared."""

    def __init__(self, name: str, labels: tuple[str, ...], backend: BackendOptions) -> None:
        self.name, self.labels, self.backend = name, labels, backend
        self._parser: Parser | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._parser is None:
            self._parser = _make_parser(self.name, self.labels, ParserOptions(backend=self.backend))
        return self._parser(image)


def _labels_for_image(replacer: SubjectReplacer, image: np.ndarray, mask: Path | None,
                      parser: _StillParser) -> np.ndarray:
    """The label map from its file, else from the parser."""
    if mask is not None:
        return check_labels(read_labels(mask), len(replacer.bundle.labels), image.shape[:2], str(mask), _warn)
    return parser(image)


def _make_parser(name: str, labels: tuple[str, ...], options: ParserOptions) -> Parser:
    if name == "auto":
        name = auto_parser_name()
    parser = get_parser(name, labels, options)
    click.echo(f"scam-run: label maps from the {name} parser", err=True)
    return parser


def _subject(replacer: SubjectReplacer, subject: Path, subject_mask: Path | None, parser: _StillParser) -> Subject:
    if subject.suffix == ".npz":
        return Subject.load(subject)
    image, _ = read_plate(subject)
    return replacer.encode_subject(image, _labels_for_image(replacer, image, subject_mask, parser))


def _version_of(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed (pip install 'scam[mediapipe]')"


PARSER_HELP = ("label parser for images without a label map: auto (mediapipe where installed, else builtin), "
               "builtin, mediapipe or onnx:PATH")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Replace the person in images and video plates by a subject (SCAM)."""


@main.command()
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--subject", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="subject image, or a .npz from encode-subject")
@click.option("--subject-mask", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--mask", type=click.Path(dir_okay=False, path_type=Path), help="label map of TARGET")
@click.option("--parser", default="auto", show_default=True, help=PARSER_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--write-matte", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--write-raw", type=click.Path(dir_okay=False, path_type=Path))
@common_options
def image(target, subject, subject_mask, mask, parser, output, write_matte, write_raw, **kw) -> None:
    """Put the subject into one TARGET image."""
    c = _common(**kw)

    def action() -> None:
        replacer = _replacer(c)
        still = _StillParser(parser, replacer.bundle.labels, c.backend)
        subj = _subject(replacer, subject, subject_mask, still)
        frame, plate = read_plate(target)
        result = replacer.process(frame, _labels_for_image(replacer, frame, mask, still), subj)
        for path in (output, write_matte, write_raw):
            if path is not None and not path.parent.is_dir():
                raise OutputError(f"{path.parent}: output folder missing")
        for path, img in ((write_matte, np.round(result.matte * 255).astype(np.uint8)), (write_raw, result.generated)):
            if path is not None:
                write_image_atomic(path, img)
        write_result(output, result, frame, plate)
        click.echo(f"written: {output}", err=True)

    _guard(action, c.debug)


@main.command("encode-subject")
@click.argument("subject", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--subject-mask", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--parser", default="auto", show_default=True, help=PARSER_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@common_options
def encode_subject(subject, subject_mask, parser, output, **kw) -> None:
    """Encode SUBJECT once into a small .npz reusable with --subject."""
    c = _common(**kw)

    def action() -> None:
        replacer = _replacer(c)
        subj = _subject(replacer, subject, subject_mask, _StillParser(parser, replacer.bundle.labels, c.backend))
        if not output.parent.is_dir():
            raise OutputError(f"{output.parent}: output folder missing")
        tmp = output.with_name(f".{output.stem}.partial.npz")
        try:
            subj.save(tmp)
            tmp.replace(output)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"{output}: cannot write ({exc})") from None
        click.echo(f"written: {output} (labels shown: {', '.join(subj.present)})", err=True)

    _guard(action, c.debug)


@main.command()
@click.argument("source")
@click.option("--subject", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="subject image, or a .npz from encode-subject")
@click.option("--subject-mask", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--masks", help="label maps of the frames: a folder, or a pattern like masks/%04d.png")
@click.option("--parser", default="auto", show_default=True, help=PARSER_HELP + " (frames without --masks)")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="parser: weight of the previous frames in the running average of label probabilities")
@click.option("--no-refine", is_flag=True,
              help="parser: whole-frame pass only (no head refiner; its face can flicker more on video, see README)")
@click.option("-o", "--output", required=True,
              help="video file, or an image-sequence pattern out.%04d.png (.exr: float composite over the plate)")
@click.option("--frames", "frame_range", help="frame numbers A-B (inclusive), A- or -B")
@click.option("--batch", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--codec", type=click.Choice(list(CODECS)), default="h264", show_default=True)
@click.option("--crf", type=click.IntRange(0, 51), default=18, show_default=True, help="h264/h265 quality")
@click.option("--pix-fmt", help="output pixel format [default: the input's when the codec allows]")
@click.option("--audio", type=click.Choice(["copy", "none"]), default="copy", show_default=True)
@click.option("--temporal", default="per-frame", show_default=True,
              help="background latents over time: per-frame, ema=ALPHA or first")
@click.option("--write-matte", help="pattern for matte PNGs, e.g. matte.%04d.png")
@click.option("--write-labels", help="pattern for label-map PNGs")
@click.option("--write-raw", help="pattern for the raw generations")
@click.option("--resume", is_flag=True, help="image-sequence output: skip frames already written")
@click.option("--progress", "progress_mode", type=click.Choice(PROGRESS_MODES), default="bar", show_default=True)
@click.option("--quiet", is_flag=True, help="no progress output")
@common_options
def video(source, subject, subject_mask, masks, parser, label_smoothing, no_refine, output, frame_range, batch, codec,
          crf, pix_fmt, audio, temporal, write_matte, write_labels, write_raw, resume, progress_mode, quiet,
          **kw) -> None:
    """Replace the person in SOURCE (a video, or a pattern like plate.%04d.png)."""
    c = _common(**kw, temporal=temporal)

    def action() -> None:
        frames = FrameRange.parse(frame_range)
        for option, value in (("--write-matte", write_matte), ("--write-labels", write_labels),
                              ("--write-raw", write_raw)):
            if value and (not is_sequence(value) or value.lower().endswith(".exr")):
                raise ValueError(f"{option} needs an 8-bit image-sequence pattern such as out.%04d.png, got {value}")
        replacer = _replacer(c)
        subj = _subject(replacer, subject, subject_mask, _StillParser(parser, replacer.bundle.labels, c.backend))
        reader = open_input(source)
        try:
            mask_files = MaskFiles(masks) if masks else None
            frame_parser = None
            if mask_files is None:
                frame_parser = _make_parser(parser, replacer.bundle.labels,
                                            ParserOptions(label_smoothing, refine=not no_refine,
                                                          backend=c.backend))
            if mask_files is not None and frames == FrameRange() and reader.count:
                mask_files.check_count(reader.count)
            writer: VideoWriter | SequenceWriter
            if is_sequence(output):
                writer = SequenceWriter(output, resume)
            elif isinstance(reader, VideoReader):
                writer = VideoWriter(Path(output), reader, codec, crf, pix_fmt, audio, frames)
            else:
                raise OutputError(f"{output}: image-sequence input needs an image-sequence output pattern")

            def labels_for(frame):
                if mask_files is not None:
                    path = mask_files.path(frame.index, frame.number)
                    return check_labels(read_labels(path), len(replacer.bundle.labels), frame.image.shape[:2],
                                        str(path), _warn)
                return frame_parser(frame.image)

            todo = (f for f in reader.frames(frames)
                    if not (isinstance(writer, SequenceWriter) and writer.done(f.number)))
            total = _count(reader, frames)
            progress = Progress(total, "none" if quiet else progress_mode)
            n = run_stream(replacer, subj, todo, labels_for, writer, progress, batch,
                           ExtraOutputs(write_matte, write_labels, write_raw))
        finally:
            reader.close()
        click.echo(f"written: {output} ({n} frames)", err=True)

    _guard(action, c.debug)


def _count(reader, frames: FrameRange) -> int | None:
    """Frames the run will cover, for the progress bar (estimated where the container is silent)."""
    count = reader.estimated_count
    if not count:
        return None
    first = frames.first or 0
    last = count - 1 if frames.last is None else min(frames.last, count - 1)
    if isinstance(reader, VideoReader):
        return max(0, last - first + 1)
    return sum(1 for number, _ in reader.files if number in frames)


@main.command()
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True, help="machine-readable report")
def doctor(bundle: Path | None, as_json: bool) -> None:
    """Report versions, execution providers, GPU and TensorRT, and check the bundle."""
    import platform

    import av
    import onnxruntime as ort
    report: dict = {"python": platform.python_version(), "onnxruntime": ort.__version__, "av": av.__version__,
                    "numpy": np.__version__, "providers": available_providers(),
                    "onnxruntime_device": ort.get_device()}
    try:
        import tensorrt
        report["tensorrt"] = tensorrt.__version__
    except ImportError:
        report["tensorrt"] = None
    try:
        device = current_device()
        report["gpu"] = f"{device.name} (sm {device.compute_capability})"
    except ProviderUnavailable as exc:
        device, report["gpu"] = None, str(exc)
    report["parsers"] = {"builtin": str(BUILTIN_MODEL) if BUILTIN_MODEL.is_file() else "missing",
                         "mediapipe": _version_of("mediapipe")}
    ok = True
    try:
        path = _bundle_path(bundle)
        b = Bundle.load(path)
        report["bundle"] = {"path": str(path), "ok": True, "labels": list(b.labels),
                            "resolution": f"{b.width}x{b.height}", "precision": b.precision,
                            "attention_path": b.attention_path,
                            "engines": [build.describe() for build in list_builds(b)]}
        if device is not None and report["tensorrt"]:
            try:
                report["bundle"]["engine_here"] = str(select_build(b, device, report["tensorrt"]).folder)
            except ProviderUnavailable as exc:
                report["bundle"]["engine_here"] = str(exc)
    except (BundleError, BundleFailure) as exc:
        ok = False
        report["bundle"] = {"ok": False, "error": str(exc)}
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            click.echo(f"{key:20s} {value}")
    sys.exit(0 if ok else BundleFailure.exit_code)
