"""`scam-run`: subject replacement on images, videos and image sequences, without torch."""
from __future__ import annotations

import json
import sys
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
from .bundle import DEFAULT_BUNDLE, Bundle, BundleError
from .engines import current_device, list_builds, select_build
from .errors import BundleFailure, InputError, OutputError, RuntimeFailure, UsageError
from .failure import Terminated, fail, sigterm_raises
from .geometry import FIT_MODES
from .labels import MaskFiles, check_labels, read_labels
from .media import (
    CODECS,
    FrameRange,
    SequenceReader,
    SequenceWriter,
    VideoReader,
    VideoWriter,
    is_sequence,
    open_input,
    read_plate,
    write_image_atomic,
    write_result,
)
from .outputs import default_output, guard_file, guard_sequence, write_text_atomic
from .parsing import BUILTIN_MODEL, Parser, ParserOptions, auto_parser_name, get_parser
from .pipeline import ExtraOutputs, run_stream
from .progress import PROGRESS_MODES, Progress
from .replacer import ReplaceOptions, Subject, SubjectReplacer


OPENJD_TEMPLATE = Path(__file__).resolve().parent / "farm" / "openjd.yaml"


def _warn(message: str) -> None:
    click.echo(f"scam-run: warning: {message}", err=True)


@dataclass(frozen=True)
class Common:
    bundle: Path | None   # None: the shipped default
    backend: BackendOptions
    options: ReplaceOptions
    debug: bool


def _guard(action: Callable[[], None], debug: bool) -> None:
    """One line and a distinct exit code for every failure a user can act on."""
    try:
        with sigterm_raises():
            action()
    except Terminated:
        fail("scam-run", "terminated (SIGTERM); no partial file was left under the output name", 143, debug)
    except RuntimeFailure as exc:
        fail("scam-run", str(exc), exc.exit_code, debug)
    except KeyboardInterrupt:
        fail("scam-run", "interrupted; no partial file was left under the output name", 130, debug)


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
    replacer = SubjectReplacer(c.bundle, c.options, c.backend, warn=_warn)
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


def _bundle_files(replacer: SubjectReplacer) -> list[Path]:
    b = replacer.bundle
    return [b.path / "bundle.json", *(b.path / name for name in b.manifest["files"])]


OVERWRITE_HELP = "replace an existing output (never an input)"


@main.command()
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--subject", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="subject image, or a .npz from encode-subject")
@click.option("--subject-mask", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--mask", type=click.Path(dir_okay=False, path_type=Path), help="label map of TARGET")
@click.option("--parser", default="auto", show_default=True, help=PARSER_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="result image [default: TARGET.scam.EXT beside TARGET]")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
@click.option("--write-matte", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--write-raw", type=click.Path(dir_okay=False, path_type=Path))
@common_options
def image(target, subject, subject_mask, mask, parser, output, overwrite, write_matte, write_raw, **kw) -> None:
    """Put the subject into one TARGET image."""
    def action() -> None:
        c = _common(**kw)
        out = output or Path(default_output(target))
        replacer = _replacer(c)
        inputs = [p for p in (target, subject, subject_mask, mask) if p is not None] + _bundle_files(replacer)
        for option, path in (("-o", out), ("--write-matte", write_matte), ("--write-raw", write_raw)):
            if path is not None:
                guard_file(path, inputs, overwrite, option)
                if not path.parent.is_dir():
                    raise OutputError(f"{path.parent}: output folder missing")
        still = _StillParser(parser, replacer.bundle.labels, c.backend)
        subj = _subject(replacer, subject, subject_mask, still)
        frame, plate = read_plate(target)
        result = replacer.process(frame, _labels_for_image(replacer, frame, mask, still), subj)
        for path, img in ((write_matte, np.round(result.matte * 255).astype(np.uint8)), (write_raw, result.generated)):
            if path is not None:
                write_image_atomic(path, img)
        write_result(out, result, frame, plate)
        click.echo(f"written: {out}", err=True)

    _guard(action, kw["debug"])


@main.command("encode-subject")
@click.argument("subject", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--subject-mask", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--parser", default="auto", show_default=True, help=PARSER_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="latents file [default: SUBJECT.scam.npz beside SUBJECT]")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
@common_options
def encode_subject(subject, subject_mask, parser, output, overwrite, **kw) -> None:
    """Encode SUBJECT once into a small .npz reusable with --subject."""
    def action() -> None:
        c = _common(**kw)
        out = output or subject.with_name(f"{subject.stem}.scam.npz")
        replacer = _replacer(c)
        guard_file(out, [p for p in (subject, subject_mask) if p is not None] + _bundle_files(replacer), overwrite)
        if not out.parent.is_dir():
            raise OutputError(f"{out.parent}: output folder missing")
        subj = _subject(replacer, subject, subject_mask, _StillParser(parser, replacer.bundle.labels, c.backend))
        tmp = out.with_name(f".{out.stem}.partial.npz")
        try:
            subj.save(tmp)
            tmp.replace(out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"{out}: cannot write ({exc})") from None
        click.echo(f"written: {out} (labels shown: {', '.join(subj.present)})", err=True)

    _guard(action, kw["debug"])


@dataclass(frozen=True)
class VideoJob:
    """What `scam-run video` (and `demo`) runs: the plate, the subject and where results go."""
    source: str
    subject: Path
    output: str
    subject_mask: Path | None = None
    masks: str | None = None
    parser: str = "auto"
    label_smoothing: float = 0.0
    refine: bool = True
    frame_range: str | None = None
    batch: int = 1
    codec: str = "h264"
    crf: int = 18
    pix_fmt: str | None = None
    audio: str = "copy"
    write_matte: str | None = None
    write_labels: str | None = None
    write_raw: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: str = "bar"


def run_video(c: Common, job: VideoJob) -> int:
    """Check every output against the inputs, then stream the plate; returns frames written."""
    frames = FrameRange.parse(job.frame_range)
    extras = (("--write-matte", job.write_matte), ("--write-labels", job.write_labels),
              ("--write-raw", job.write_raw))
    for option, value in extras:
        if value and (not is_sequence(value) or value.lower().endswith(".exr")):
            raise UsageError(f"{option} needs an 8-bit image-sequence pattern such as out.%04d.png, got {value}")
    replacer = _replacer(c)
    reader = open_input(job.source)
    try:
        numbers = _numbers(reader, frames)
        mask_files = MaskFiles(job.masks) if job.masks else None
        inputs = [p for p in (job.subject, job.subject_mask) if p is not None] + _bundle_files(replacer)
        inputs += [path for _, path in reader.files] if isinstance(reader, SequenceReader) else [reader.path]
        if mask_files is not None:
            inputs += mask_files.files or [Path(job.masks % n) for n in numbers]
        if is_sequence(job.output):
            guard_sequence(job.output, numbers, inputs, job.overwrite, job.resume)
        elif isinstance(reader, VideoReader):
            guard_file(Path(job.output), inputs, job.overwrite)
        else:
            raise OutputError(f"{job.output}: image-sequence input needs an image-sequence output pattern")
        for option, value in extras:
            if value:
                guard_sequence(value, numbers, inputs + [Path(job.output)], job.overwrite, job.resume, option)
        subj = _subject(replacer, job.subject, job.subject_mask,
                        _StillParser(job.parser, replacer.bundle.labels, c.backend))
        frame_parser = None
        if mask_files is None:
            frame_parser = _make_parser(job.parser, replacer.bundle.labels,
                                        ParserOptions(job.label_smoothing, refine=job.refine, backend=c.backend))
        if mask_files is not None and frames == FrameRange() and reader.count:
            mask_files.check_count(reader.count)
        writer: VideoWriter | SequenceWriter
        if is_sequence(job.output):
            writer = SequenceWriter(job.output, job.resume)
        else:
            writer = VideoWriter(Path(job.output), reader, job.codec, job.crf, job.pix_fmt, job.audio, frames)
        no_person = resized = 0

        def resize_warning(message: str) -> None:
            nonlocal resized
            resized += 1
            if resized == 1:
                _warn(f"{message} (once per run; the count comes at the end)")

        def labels_for(frame):
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
        todo = (f for f in reader.frames(frames)
                if not (isinstance(writer, SequenceWriter) and writer.done(f.number)))
        progress = Progress(len(numbers) - len(done) if numbers else None, job.progress)
        n = run_stream(replacer, subj, todo, labels_for, writer, progress, job.batch,
                       ExtraOutputs(job.write_matte, job.write_labels, job.write_raw))
    finally:
        reader.close()
    if n == 0 and not done:
        length = f"the clip has {reader.decoded} frames" if isinstance(reader, VideoReader) else "it has none"
        raise InputError(f"{job.source}: no frame in --frames {frames.describe()} ({length})")
    if resized:
        _warn(f"{resized} of {n} label maps were not their frame's size and were resized (nearest)")
    if no_person:
        _warn(f"{no_person} of {n} frames had no person; they were written unchanged")
    click.echo(f"written: {job.output} ({n} frames{f', {len(done)} already done' if done else ''})", err=True)
    return n


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
@click.option("-o", "--output",
              help="video file, or an image-sequence pattern out.%04d.png (.exr: float composite over the plate) "
                   "[default: SOURCE.scam.EXT, or NAME_scam.%04d.EXT for a sequence, beside SOURCE]")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
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
def video(source, subject, subject_mask, masks, parser, label_smoothing, no_refine, output, overwrite, frame_range,
          batch, codec, crf, pix_fmt, audio, temporal, write_matte, write_labels, write_raw, resume, progress_mode,
          quiet, **kw) -> None:
    """Replace the person in SOURCE (a video, or a pattern like plate.%04d.png)."""
    def action() -> None:
        c = _common(**kw, temporal=temporal)
        run_video(c, VideoJob(source, subject, output or default_output(source), subject_mask, masks, parser,
                              label_smoothing, not no_refine, frame_range, batch, codec, crf, pix_fmt, audio,
                              write_matte, write_labels, write_raw, resume, overwrite,
                              "none" if quiet else progress_mode))

    _guard(action, kw["debug"])


@main.command()
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("scam-demo"),
              show_default=True, help="folder for the replaced clip and the contact sheet")
@click.option("--frames", "count", type=click.IntRange(1), help="the clip's first N frames only [default: all 90]")
@click.option("--overwrite", is_flag=True, help="replace the results of an earlier demo in the folder")
@click.option("--quiet", is_flag=True, help="no progress output")
@common_options
def demo(out_dir, count, overwrite, quiet, **kw) -> None:
    """Replace the dancer in a shipped 3-second clip by a shipped subject photo; nothing to provide."""
    from .demo import CLIP, OUTPUT_NAME, SHEET_NAME, SUBJECT, contact_sheet

    def action() -> None:
        c = _common(**kw)
        sheet = out_dir / SHEET_NAME
        guard_file(sheet, [CLIP, SUBJECT], overwrite)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{out_dir}: cannot create the folder ({exc.strerror})") from None
        output = out_dir / OUTPUT_NAME
        click.echo(f"scam-run demo: {CLIP.name} ({CLIP.parent}) with the subject {SUBJECT.name}", err=True)
        n = run_video(c, VideoJob(str(CLIP), SUBJECT, str(output), frame_range=f"0-{count - 1}" if count else None,
                                  overwrite=overwrite, progress="none" if quiet else "bar"))
        contact_sheet(CLIP, output, SUBJECT, sheet)
        click.echo(f"scam-run demo: replaced {n} frames -> {output}; plate / result / subject -> {sheet}", err=True)

    _guard(action, kw["debug"])


@main.command()
@click.argument("sequence")
@click.option("--like", "plate", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the plate whose frame rate, timestamps and audio the movie takes")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="movie file")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
@click.option("--codec", type=click.Choice(list(CODECS)), default="h264", show_default=True)
@click.option("--crf", type=click.IntRange(0, 51), default=18, show_default=True, help="h264/h265 quality")
@click.option("--pix-fmt", help="output pixel format [default: the plate's when the codec allows]")
@click.option("--audio", type=click.Choice(["copy", "none"]), default="copy", show_default=True)
@click.option("--debug", is_flag=True, help="show tracebacks")
def assemble(sequence, plate, output, overwrite, codec, crf, pix_fmt, audio, debug) -> None:
    """Encode SEQUENCE (frame.%06d.png, frame N = the plate's frame N) with the plate's timing and audio."""
    from .assemble import assemble_sequence

    def action() -> None:
        if not is_sequence(sequence):
            raise UsageError(f"{sequence}: not an image-sequence pattern such as frames/frame.%06d.png")
        inputs = [plate] + [path for _, path in SequenceReader(sequence).files]
        guard_file(output, inputs, overwrite)
        n = assemble_sequence(sequence, plate, output, codec, crf, pix_fmt, audio)
        click.echo(f"written: {output} ({n} frames)", err=True)

    _guard(action, debug)


@main.group()
def farm() -> None:
    """Job templates for render farms."""


@farm.command("openjd")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="folder for template.yaml (a Deadline Cloud job bundle, or `openjd run DIR/template.yaml`)")
@click.option("--overwrite", is_flag=True, help="replace an existing template.yaml")
def farm_openjd(out_dir: Path, overwrite: bool) -> None:
    """Write the Open Job Description template: encode subject, replace in chunks, assemble."""
    def action() -> None:
        target = out_dir / "template.yaml"
        guard_file(target, [], overwrite)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(target, OPENJD_TEMPLATE.read_text())
        except OSError as exc:
            raise OutputError(f"{target}: cannot write ({exc.strerror})") from None
        click.echo(f"written: {target}", err=True)

    _guard(action, False)


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


def _check_graphs(bundle: Bundle) -> None:
    """Both graphs load in ONNX Runtime (a file can match its hash and still not be ONNX)."""
    from .backend import OnnxSession
    for graph in (bundle.encoder, bundle.generator):
        OnnxSession(bundle.file(graph.file), BackendOptions("cpu", threads=1))


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
        b = Bundle.load(bundle)
        _check_graphs(b)
        report["bundle"] = {"path": str(b.path), "default": b.path == DEFAULT_BUNDLE, "ok": True,
                            "labels": list(b.labels), "sha256": dict(b.manifest["files"]),
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
