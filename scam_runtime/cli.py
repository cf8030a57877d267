"""`scam-run`: subject replacement on images, videos and image sequences, without torch."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click
import numpy as np

from .atomic import write_text
from .backend import (
    PROVIDER_CHOICES,
    BackendOptions,
    ProviderUnavailable,
    available_providers,
)
from .bundle import DEFAULT_BUNDLE, Bundle, BundleError
from .colour import ColourOptions, default_colourspace
from .composite import COMPOSITE_MODES
from .engines import current_device, list_builds, select_build
from .errors import BundleFailure, OutputError, RuntimeFailure, UsageError
from .failure import Terminated, fail, sigterm_raises
from .framing import FRAMINGS
from .jobs import (
    StillParser,
    VideoOptions,
    VideoReport,
    bundle_files,
    load_subject,
    replace_image,
    replace_video,
    save_subject,
)
from .media import AUDIO, CODECS, ENCODER_PRESETS, Encoding, SequenceReader, is_sequence
from .openvino_session import PRECISION_HINTS
from .outputs import guard_file
from .parsers import BUILTIN_MODEL, auto_parser_name
from .progress import PROGRESS_MODES
from .replacer import PEOPLE_MODES, ReplaceOptions, SubjectReplacer

REPLACE = ReplaceOptions()   # option defaults come from the dataclasses the library uses
VIDEO = VideoOptions()
OPENJD_TEMPLATE = Path(__file__).resolve().parent / "farm" / "openjd.yaml"


def _warn(message: str) -> None:
    click.echo(f"scam-run: warning: {message}", err=True)


def _note(message: str) -> None:
    click.echo(f"scam-run: {message}", err=True)


def _written(report: VideoReport) -> None:
    done = f", {report.skipped} already done" if report.skipped else ""
    click.echo(f"written: {report.output} ({report.frames} frames{done})", err=True)


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
                     help="ONNX Runtime provider; trt-engine: the bundle's TensorRT engines for this GPU; "
                          "openvino: OpenVINO on the CPU (pip install 'scam[openvino]')"),
        click.option("--precision-hint", type=click.Choice(PRECISION_HINTS), default=BackendOptions.precision_hint,
                     show_default=True, help="openvino: bf16 where the CPU has it natively (auto), or force bf16/f32"),
        click.option("--allow-fallback", is_flag=True, help="use a lesser provider if the requested one is missing"),
        click.option("--threads", type=click.IntRange(0, 256), default=0, help="CPU threads (0: automatic)"),
        click.option("--fit", type=click.Choice(FRAMINGS), default=REPLACE.fit, show_default=True,
                     help="subject: the model's canvas framed on the person, as its training photos; "
                          "letterbox: the whole frame fitted; crop: the whole frame filled"),
        click.option("--people", type=click.Choice(PEOPLE_MODES), default=REPLACE.people, show_default=True,
                     help="--fit subject with several people in a label map: a canvas each, or one for all"),
        click.option("--composite", type=click.Choice(COMPOSITE_MODES), default=REPLACE.composite, show_default=True),
        click.option("--feather", type=click.FloatRange(0, 100), default=REPLACE.feather, show_default=True,
                     help="matte softness in pixels"),
        click.option("--keep", multiple=True, help="label whose latents stay the frame's (repeatable), e.g. body"),
        click.option("--debug", is_flag=True, help="show tracebacks"),
    ]
    for d in reversed(decorators):
        f = d(f)
    return f


def _common(bundle, provider, precision_hint, allow_fallback, threads, fit, people, composite, feather, keep, debug,
            temporal: str = "per-frame") -> Common:
    return Common(bundle, BackendOptions(provider, allow_fallback, threads, precision_hint),
                  ReplaceOptions(fit=fit, composite=composite, feather=feather, keep=tuple(keep), temporal=temporal,
                                 people=people), debug)


def _replacer(c: Common) -> SubjectReplacer:
    replacer = SubjectReplacer(c.bundle, c.options, c.backend, warn=_warn)
    sources = replacer.mix_sources()
    click.echo(f"scam-run: provider {replacer.provider}; latents from the frame: "
               f"{', '.join(n for n, s in sources.items() if s == 'frame')}; from the subject: "
               f"{', '.join(n for n, s in sources.items() if s == 'subject') or 'none'}", err=True)
    return replacer


def _version_of(module: str, extra: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(module)
    except PackageNotFoundError:
        return f"not installed (pip install 'scam[{extra}]')"


PARSER_HELP = ("label parser for images without a label map: auto (mediapipe where installed, else builtin), "
               "builtin, mediapipe or onnx:PATH")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Replace the person in images and video plates by a subject (SCAM)."""


OVERWRITE_HELP = "replace an existing output (never an input)"


def colour_options(f: Callable) -> Callable:
    """--colorspace and --ocio: where a plate's colour comes from (docs/runtime.md#colour)."""
    f = click.option("--ocio", metavar="CONFIG", help="OpenColorIO config file or ocio:// built-in "
                                                      "[default: $OCIO, else the built-in CG config]")(f)
    return click.option("--colorspace", metavar="NAME",
                        help="the plate's colourspace in the OCIO config (scam-run doctor lists them) [default: "
                             "EXR and float TIFF scene_linear, DPX as its header says, 8/16-bit sRGB]")(f)


@main.command()
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--subject", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="subject image, or a .npz from encode-subject")
@click.option("--subject-mask", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--mask", type=click.Path(dir_okay=False, path_type=Path), help="label map of TARGET")
@click.option("--parser", default=VIDEO.parser, show_default=True, help=PARSER_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="result image [default: TARGET.scam.EXT beside TARGET]")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
@click.option("--write-matte", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--write-raw", type=click.Path(dir_okay=False, path_type=Path))
@colour_options
@common_options
def image(target, subject, subject_mask, mask, parser, output, overwrite, write_matte, write_raw, colorspace, ocio,
          **kw) -> None:
    """Put the subject into one TARGET image (a photo, or a DPX/TIFF/EXR plate)."""
    def action() -> None:
        c = _common(**kw)
        out = replace_image(target, subject, output, replacer=_replacer(c), subject_mask=subject_mask, mask=mask,
                            parser=parser, write_matte=write_matte, write_raw=write_raw, overwrite=overwrite,
                            note=_note, colour=ColourOptions(colorspace, ocio))
        click.echo(f"written: {out}", err=True)

    _guard(action, kw["debug"])


@main.command("encode-subject")
@click.argument("subject", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--subject-mask", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--parser", default=VIDEO.parser, show_default=True, help=PARSER_HELP)
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
        guard_file(out, [p for p in (subject, subject_mask) if p is not None] + bundle_files(replacer), overwrite)
        subj = load_subject(replacer, subject, subject_mask, StillParser(parser, replacer, _note))
        save_subject(subj, out)
        click.echo(f"written: {out} (labels shown: {', '.join(subj.present)})", err=True)

    _guard(action, kw["debug"])


@main.command()
@click.argument("source")
@click.option("--subject", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="subject image, or a .npz from encode-subject")
@click.option("--subject-mask", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--masks", help="label maps of the frames: a folder, or a pattern like masks/%04d.png")
@click.option("--parser", default=VIDEO.parser, show_default=True, help=PARSER_HELP + " (frames without --masks)")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=VIDEO.label_smoothing,
              show_default=True,
              help="parser: weight of the previous frames in the running average of label probabilities")
@click.option("--box-smoothing", is_flag=True,
              help="--fit subject: smooth the person box over frames (one-euro filter); --frames chunks "
                   "and --resume then differ from one whole run at their first frames")
@click.option("--no-refine", is_flag=True,
              help="parser: whole-frame pass only (no head refiner; its face can flicker more on video, see docs/parsing.md)")
@click.option("-o", "--output",
              help="video file, or an image-sequence pattern out.%04d.dpx (in the plate's format: written like "
                   "the plate; .exr/.dpx of other inputs: a float/10-bit plate; else 8-bit) "
                   "[default: SOURCE.scam.EXT, or NAME_scam.%04d.EXT for a sequence, beside SOURCE]")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
@click.option("--frames", "frame_range", help="frame numbers A-B (inclusive), A- or -B")
@click.option("--batch", type=click.IntRange(1, 64), default=VIDEO.batch, show_default=True)
@click.option("--codec", type=click.Choice(list(CODECS)), default=VIDEO.codec, show_default=True)
@click.option("--crf", type=click.IntRange(0, 51), default=VIDEO.crf, show_default=True, help="h264/h265 quality")
@click.option("--pix-fmt", help="output pixel format [default: the input's when the codec allows]")
@click.option("--encoder-threads", type=click.IntRange(0, 256), default=VIDEO.encoder_threads, show_default=True,
              help="video codec threads (0: one when the networks run on the CPU, else the codec's own count)")
@click.option("--encoder-preset", type=click.Choice(ENCODER_PRESETS),
              help="h264/h265 speed against file size at the same --crf [default: the codec's, medium]")
@click.option("--audio", type=click.Choice(AUDIO), default=VIDEO.audio, show_default=True)
@click.option("--temporal", default=REPLACE.temporal, show_default=True,
              help="background latents over time: per-frame, ema=ALPHA or first")
@click.option("--write-matte", help="pattern for matte PNGs, e.g. matte.%04d.png")
@click.option("--write-labels", help="pattern for label-map PNGs")
@click.option("--write-raw", help="pattern for the raw generations")
@click.option("--resume", is_flag=True, help="image-sequence output: skip frames already written")
@click.option("--progress", "progress_mode", type=click.Choice(PROGRESS_MODES), default="bar", show_default=True)
@click.option("--quiet", is_flag=True, help="no progress output")
@colour_options
@common_options
def video(source, subject, subject_mask, masks, parser, label_smoothing, box_smoothing, no_refine, output, overwrite,
          frame_range, batch, codec, crf, pix_fmt, encoder_threads, encoder_preset, audio, temporal, write_matte,
          write_labels, write_raw, resume, progress_mode, quiet, colorspace, ocio, **kw) -> None:
    """Replace the person in SOURCE (a video, or a pattern like plate.%04d.png)."""
    def action() -> None:
        c = _common(**kw, temporal=temporal)
        options = VideoOptions(subject_mask, masks, parser, label_smoothing, not no_refine, frame_range, batch, codec,
                               crf, pix_fmt, audio, write_matte, write_labels, write_raw, resume, overwrite,
                               encoder_threads, encoder_preset, box_smoothing, colorspace, ocio)
        report = replace_video(source, subject, output, options=options, replacer=_replacer(c),
                               progress="none" if quiet else progress_mode, note=_note)
        _written(report)

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
        report = replace_video(CLIP, SUBJECT, output, replacer=_replacer(c), progress="none" if quiet else "bar",
                               options=VideoOptions(frames=f"0-{count - 1}" if count else None, overwrite=overwrite),
                               note=_note)
        _written(report)
        contact_sheet(CLIP, output, SUBJECT, sheet)
        click.echo(f"scam-run demo: replaced {report.frames} frames -> {output}; plate / result / subject -> {sheet}",
                   err=True)

    _guard(action, kw["debug"])


@main.command()
@click.argument("sequence")
@click.option("--like", "plate", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the plate whose frame rate, timestamps and audio the movie takes")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="movie file")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
@click.option("--codec", type=click.Choice(list(CODECS)), default=VIDEO.codec, show_default=True)
@click.option("--crf", type=click.IntRange(0, 51), default=VIDEO.crf, show_default=True, help="h264/h265 quality")
@click.option("--pix-fmt", help="output pixel format [default: the plate's when the codec allows]")
@click.option("--encoder-preset", type=click.Choice(ENCODER_PRESETS),
              help="h264/h265 speed against file size at the same --crf [default: the codec's, medium]")
@click.option("--audio", type=click.Choice(AUDIO), default=VIDEO.audio, show_default=True)
@click.option("--debug", is_flag=True, help="show tracebacks")
def assemble(sequence, plate, output, overwrite, codec, crf, pix_fmt, encoder_preset, audio, debug) -> None:
    """Encode SEQUENCE (frame.%06d.png, frame N = the plate's frame N) with the plate's timing and audio."""
    from .assemble import assemble_sequence

    def action() -> None:
        if not is_sequence(sequence):
            raise UsageError(f"{sequence}: not an image-sequence pattern such as frames/frame.%06d.png")
        inputs = [plate] + [path for _, path in SequenceReader(sequence).files]
        guard_file(output, inputs, overwrite)
        n = assemble_sequence(sequence, plate, output, Encoding(codec, crf, pix_fmt, encoder_preset), audio)
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
            write_text(target, OPENJD_TEMPLATE.read_text())
        except OSError as exc:
            raise OutputError(f"{target}: cannot write ({exc.strerror})") from None
        click.echo(f"written: {target}", err=True)

    _guard(action, False)


def _check_graphs(bundle: Bundle) -> None:
    """Both graphs load in ONNX Runtime (a file can match its hash and still not be ONNX)."""
    from .backend import OnnxSession
    for graph in (bundle.encoder, bundle.generator):
        OnnxSession(bundle.file(graph.file), BackendOptions("cpu", threads=1))


def _colour_report() -> dict:
    """The OCIO config a job would use, and its colourspaces (what --colorspace takes)."""
    import OpenImageIO
    import PyOpenColorIO
    options = ColourOptions()
    report = {"opencolorio": PyOpenColorIO.__version__, "openimageio": OpenImageIO.__version__,
              "config": options.source}
    try:
        config = options.config
        return report | {"name": config.getName(),
                         "scene_linear": default_colourspace(config, np.dtype(np.float32)),
                         "colourspaces": [cs.getName() for cs in config.getColorSpaces()]}
    except UsageError as exc:
        return report | {"error": str(exc)}


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
    report["parsers"] = {"auto": auto_parser_name(),
                         "builtin": str(BUILTIN_MODEL) if BUILTIN_MODEL.is_file() else "missing",
                         "mediapipe": _version_of("mediapipe", "mediapipe")}
    report["colour"] = _colour_report()
    report["openvino"] = _version_of("openvino", "openvino")
    if not report["openvino"].startswith("not installed"):
        from .openvino_session import cpu_capabilities, inference_precision
        caps = cpu_capabilities()
        report["openvino"] += f" (CPU: {', '.join(caps)}; auto precision {inference_precision('auto', caps)})"
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
