"""`scam-export`: checkpoint -> verified bundle (`scam-export --ckpt model.pt`), and
`scam-export trt BUNDLE` to add TensorRT engines to an existing bundle."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from scam_runtime.failure import Terminated, fail, sigterm_raises

from . import EXIT_BAD_CALIBRATION, EXIT_BAD_CHECKPOINT, EXIT_PARITY, EXIT_TRT_UNAVAILABLE, EXIT_UNWRITABLE
from .options import ATTENTION, NOISE, PRECISIONS, TRT_WORKSPACE, WEIGHTS, ExportOptions

DEFAULTS = ExportOptions()


def _log(msg: str) -> None:
    click.echo(msg, err=True)


def _fail(message: str, code: int, debug: bool) -> None:
    fail("scam-export", message, code, debug)


def _run(action: Callable[[], None], debug: bool) -> None:
    """Map the exporter's failures to one line and a distinct exit code."""
    from models import CheckpointError
    from scam_runtime.bundle import BundleError

    from .bundle import ParityError
    from .int8 import CalibrationError
    from .trt import TensorRTUnavailable
    try:
        with sigterm_raises():
            action()
    except TensorRTUnavailable as exc:
        _fail(f"TensorRT engines not built: {exc}", EXIT_TRT_UNAVAILABLE, debug)
    except (CheckpointError, BundleError) as exc:
        _fail(str(exc), EXIT_BAD_CHECKPOINT, debug)
    except ParityError as exc:
        _fail(str(exc), EXIT_PARITY, debug)
    except CalibrationError as exc:
        _fail(f"int8 calibration: {exc}", EXIT_BAD_CALIBRATION, debug)
    except OSError as exc:  # includes FileExistsError and PermissionError
        _fail(f"cannot write the bundle: {exc}", EXIT_UNWRITABLE, debug)
    except KeyboardInterrupt:
        _fail("interrupted; nothing was written under the output name", 130, debug)
    except Terminated:
        _fail("terminated (SIGTERM); nothing was written under the output name", 143, debug)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ckpt", type=click.Path(dir_okay=False, path_type=Path), help="checkpoint (model.pt) to export")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="bundle folder [default: next to the checkpoint, <name>.bundle]")
@click.option("--opset", type=click.IntRange(17, 20), default=DEFAULTS.opset, show_default=True,
              help="ONNX opset (17..20: LayerNormalization needs 17, TensorRT 10 reads up to 20)")
@click.option("--max-batch", type=click.IntRange(1, 256), default=DEFAULTS.max_batch, show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default=DEFAULTS.precision, show_default=True,
              help="graph arithmetic; int8: static QDQ quantization for CPUs, calibrated on --calibration")
@click.option("--calibration", type=click.Path(file_okay=False), default=None,
              help="int8: folder of photos (images/) and label maps in the model's ids (training layout)")
@click.option("--calibration-labels", default=DEFAULTS.calibration_labels, show_default=True,
              help="int8: the label folder inside --calibration (e.g. labels3)")
@click.option("--calibration-images", type=click.IntRange(4, 4096), default=DEFAULTS.calibration_images,
              show_default=True, help="int8: photos used, spread over the folder (a quarter checks the layer search)")
@click.option("--weights", type=click.Choice(WEIGHTS), default=DEFAULTS.weights, show_default=True,
              help="storage of an fp32 bundle's weights: fp16 halves the files, arithmetic stays fp32 "
                   "(parity gate 45 dB)")
@click.option("--noise", type=click.Choice(NOISE), default=DEFAULTS.noise, show_default=True,
              help="generator noise baked into the graph")
@click.option("--attention", type=click.Choice(ATTENTION), default=DEFAULTS.attention, show_default=True,
              help="latent<->pixel attention: folded computes the reference's dense form with a fraction of the work")
@click.option("--trt", "build_trt", is_flag=True, help="also build TensorRT engines (needs an NVIDIA GPU)")
@click.option("--trt-workspace", default=TRT_WORKSPACE, show_default=True, help="TensorRT workspace limit")
@click.option("--force", is_flag=True, help="replace an existing bundle")
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.pass_context
def main(ctx: click.Context, ckpt: Path | None, output: Path | None, opset: int, max_batch: int,
         precision: str, calibration: str | None, calibration_labels: str, calibration_images: int, weights: str,
         noise: str, attention: str, build_trt: bool, trt_workspace: str, force: bool, debug: bool) -> None:
    """Export a SCAM checkpoint to a verified ONNX (and TensorRT) bundle."""
    ctx.obj = {"debug": debug}
    if ctx.invoked_subcommand is not None:
        return
    if ckpt is None:
        raise click.UsageError("--ckpt is required (or use a subcommand: scam-export trt BUNDLE)")
    from .bundle import export_bundle
    from .trt import build_engines, parse_size
    try:
        workspace = parse_size(trt_workspace)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--trt-workspace")
    out = output or ckpt.with_name(f"{ckpt.stem}.bundle")
    if build_trt and precision == "int8":
        raise click.UsageError("--trt: int8 bundles are the CPU path (ONNX Runtime, OpenVINO); build engines "
                               "from an fp16 or fp32 bundle")
    try:
        options = ExportOptions(opset=opset, max_batch=max_batch, precision=precision, noise=noise,
                                attention=attention, weights=weights, calibration=calibration,
                                calibration_labels=calibration_labels, calibration_images=calibration_images)
    except ValueError as exc:
        raise click.UsageError(str(exc))

    def action() -> None:
        export_bundle(ckpt, out, options, force=force, log=_log)
        _log(f"bundle written: {out}")
        if build_trt:
            build_engines(out, max_batch, workspace, log=_log)

    _run(action, debug)


@main.command("trt")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option("--max-batch", type=click.IntRange(1, 256), default=None, help="[default: the bundle's]")
@click.option("--trt-workspace", default=TRT_WORKSPACE, show_default=True, help="TensorRT workspace limit")
@click.pass_context
def trt_command(ctx: click.Context, bundle: Path, max_batch: int | None, trt_workspace: str) -> None:
    """Build TensorRT engines for BUNDLE on this machine's GPU (run them: scam-run --provider trt-engine)."""
    from .trt import build_engines, parse_size
    try:
        workspace = parse_size(trt_workspace)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--trt-workspace")
    _run(lambda: _log(f"engines written: {build_engines(bundle, max_batch, workspace, log=_log)}"),
         ctx.obj["debug"])
