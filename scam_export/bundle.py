"""Checkpoint -> bundle folder: graphs, checks, parity, manifest; atomic on the final name."""
from __future__ import annotations

import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime
import torch

from models import ModelConfig, latent_layout, load_checkpoint, one_hot
from scam_runtime.atomic import atomic_path
from scam_runtime.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST_NAME, sha256_file

from .graphs import LABEL_DTYPE, EncoderGraph, GeneratorGraph, export_onnx
from .int8 import CalibrationSet, Int8Search
from .options import ExportOptions
from .parity import ParityReport, check_parity
from .weights import store_weights_fp16

NORMALISATION = {
    "image_in": "float32 RGB, B×3×H×W, value = uint8 / 127.5 - 1 (range [-1, 1])",
    "image_out": "float32 RGB, B×3×H×W in [-1, 1]; uint8 = round((value + 1) * 127.5)",
    "labels": "int32 label ids, B×H×W, 0 = background",
}


class ParityError(RuntimeError):
    """The exported graphs disagree with the checkpoint beyond the tolerance."""


def _graph_io(model: onnx.ModelProto) -> dict[str, list[dict]]:
    def spec(v: onnx.ValueInfoProto) -> dict:
        t = v.type.tensor_type
        shape = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        return {"name": v.name, "shape": shape, "dtype": dtype}
    return {"inputs": [spec(v) for v in model.graph.input], "outputs": [spec(v) for v in model.graph.output]}


def check_graph(path: Path) -> onnx.ModelProto:
    """Full checker and strict shape inference, on the file as saved."""
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise RuntimeError(f"{path.name} has external data; expected a single file")
    return model


def _versions() -> dict[str, str]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"
    return {"scam": version("scam"), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def export_bundle(ckpt: Path, out: Path, options: ExportOptions = ExportOptions(), force: bool = False,
                  log: Callable[[str], None] = print) -> dict:
    """Write the bundle for `ckpt` at `out` and return its manifest.

    Everything is built in a temporary sibling folder and renamed into place only once
    parity passed; on any error nothing is left under `out`.
    Raises `models.CheckpointError`, `ParityError`, `OSError`, `FileExistsError`.
    """
    config, encoder, generator = load_checkpoint(ckpt, noise_mode=options.noise)
    if out.exists() and not force:
        raise FileExistsError(f"{out}: already exists (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise PermissionError(f"{out.parent}: not writable")
    calibration = None
    if options.precision == "int8":  # read (and fail on) the photos before minutes of export
        calibration = CalibrationSet.load(Path(options.calibration), options.calibration_labels,
                                          options.calibration_images, config)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        return _build(ckpt, tmp, config, encoder, generator, options, calibration, log)


def _build(ckpt: Path, folder: Path, config: ModelConfig, encoder, generator, options: ExportOptions,
           calibration: CalibrationSet | None, log: Callable[[str], None]) -> dict:
    batch = 2
    torch.manual_seed(0)
    image = torch.rand(batch, 3, config.height, config.width) * 2 - 1
    labels = torch.randint(0, config.num_labels, (batch, config.height, config.width), dtype=LABEL_DTYPE)
    with torch.no_grad():
        latents = encoder(image, one_hot(labels.long(), config.num_labels))
    attention_path = generator.attention_path = encoder.attention_path = options.attention
    int8 = calibration is not None
    traced = "fp32" if int8 else options.precision  # int8 quantizes the fp32 graphs
    graphs, quantization, parity_inputs = {}, None, None
    with tempfile.TemporaryDirectory(prefix="scam-export-") as work:
        work_dir = Path(work)
        for name, graph, example in (
                ("encoder", EncoderGraph(encoder, traced), (image, labels)),
                ("generator", GeneratorGraph(generator, traced), (labels, latents))):
            log(f"exporting {name} ({traced}, opset {options.opset}, attention {attention_path})...")
            target = (work_dir if int8 else folder) / f"{name}.onnx"
            export_onnx(graph, example, target, options.opset, options.max_batch)
            if options.weights == "fp16" and options.precision == "fp32":
                log(f"storing {name} weights in fp16 ({store_weights_fp16(target)} tensors)")
        if int8:
            quantization, parity_inputs = _quantize(work_dir, folder, config, options, calibration, log)
    for name in ("encoder", "generator"):
        graphs[name] = {"file": f"{name}.onnx", **_graph_io(check_graph(folder / f"{name}.onnx"))}
    log("checking parity against the checkpoint in PyTorch...")
    generator.attention_path = encoder.attention_path = "dense"  # the reference's form
    report = check_parity(folder / "encoder.onnx", folder / "generator.onnx", encoder, generator,
                          options.precision, options.weights, inputs=parity_inputs)
    log(f"parity: latents max abs {report.encoder_latents_max_abs:.2e}, generator "
        f"{report.generator_psnr_db:.1f} dB, end to end {report.end_to_end_psnr_db:.1f} dB "
        f"(minimum {report.min_psnr_db:.0f} dB)")
    if not report.passed:
        raise ParityError(f"{ckpt}: parity check failed: generator {report.generator_psnr_db:.1f} dB, "
                          f"end to end {report.end_to_end_psnr_db:.1f} dB < {report.min_psnr_db:.0f} dB")
    manifest = _manifest(ckpt, folder, config, options, attention_path, graphs, report)
    if quantization is not None:
        manifest["int8"] = quantization
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _quantize(fp32_dir: Path, folder: Path, config: ModelConfig, options: ExportOptions, data: CalibrationSet,
              log: Callable[[str], None]) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """int8 graphs into `folder`; returns the search's report (for the manifest) and the
    photos it held out of calibration (the parity check's inputs)."""
    log(f"int8: calibrating on {options.calibration} ({len(data.images)} photos)...")
    with tempfile.TemporaryDirectory(prefix="scam-int8-") as work:
        search = Int8Search(folder, fp32_dir / "encoder.onnx", fp32_dir / "generator.onnx", data, config, Path(work))
        report = search.run(options.int8_target_db, log)
    return ({**report.to_dict(), "calibration": {"folder": Path(options.calibration).name,
                                                 "labels": options.calibration_labels}},
            (search.check.images, search.check.labels))


def _manifest(ckpt: Path, folder: Path, config: ModelConfig, options: ExportOptions, attention_path: str,
              graphs: dict, report: ParityReport) -> dict:
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "labels": [{"id": i, "name": n} for i, n in enumerate(config.labels)],
        "latent_layout": {k: [v.start, v.stop] for k, v in latent_layout(config).items()},
        "num_latents": config.num_latents,
        "latent_dim": config.latent_dim,
        "resolution": {"height": config.height, "width": config.width},
        "normalisation": NORMALISATION,
        "noise": options.noise,
        "precision": options.precision,
        "weights": options.weights if options.precision == "fp32" else options.precision,  # int8: int8
        "attention_path": attention_path,
        "max_batch": options.max_batch,
        "opset": options.opset,
        "graphs": graphs,
        "files": {g["file"]: sha256_file(folder / g["file"]) for g in graphs.values()},
        "source": {"checkpoint": ckpt.name, "sha256": sha256_file(ckpt), "config": config.to_dict()},
        "exporter": _versions(),
        "parity": report.to_dict(),
    }
