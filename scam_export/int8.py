"""Static int8 quantization of the exported fp32 graphs (ONNX Runtime's tooling, QDQ format,
per-channel weights), calibrated on real photos and label maps.

Candidates are the weight-bearing matrix products (convolutions, the linear layers'
MatMul/Gemm): that is where the time goes. Everything else stays fp32 by design: the
products of two activations around the softmax (attention scores, attention × values),
the normalisations and the output convolution, whose error lands on the pixels unfiltered.
Among the candidates a measured search leaves the most sensitive in fp32 (`Int8Search`).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from models import ModelConfig, latent_layout
from scam_runtime.backend import BackendOptions, OnnxSession
from scam_runtime.errors import RuntimeFailure
from scam_runtime.geometry import Fit
from scam_runtime.labels import IMAGE_EXTS, read_image, read_labels

from .parity import psnr_db

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


class CalibrationError(ValueError):
    """The calibration folder is missing, empty or does not fit the model."""


@dataclass(frozen=True)
class CalibrationSet:
    """Model-resolution inputs: images B×3×H×W in [-1, 1] and label maps B×H×W int32, fitted
    to the model exactly as the runtime fits frames (letterbox)."""
    images: np.ndarray
    labels: np.ndarray

    @classmethod
    def load(cls, folder: Path, labels_dir: str, count: int, config: ModelConfig) -> CalibrationSet:
        """`count` photos spread evenly over `folder/images` (sorted by name) with their maps in
        `folder/labels_dir` (ids of the model's labels)."""
        images_dir, labels_root = folder / "images", folder / labels_dir
        if not images_dir.is_dir() or not labels_root.is_dir():
            raise CalibrationError(f"{folder}: calibration data needs images/ and {labels_dir}/ (the training layout)")
        pairs = [(p, labels_root / f"{p.stem}.png") for p in sorted(images_dir.iterdir())
                 if p.suffix.lower() in IMAGE_EXTS and (labels_root / f"{p.stem}.png").is_file()]
        if len(pairs) < 2:
            raise CalibrationError(f"{folder}: {len(pairs)} photo(s) with a label map in {labels_dir}/; need at least 2")
        picks = [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, min(count, len(pairs)))]
        model_hw = (config.height, config.width)
        images, labels = [], []
        for image_path, label_path in picks:
            try:
                image, ids = read_image(image_path), read_labels(label_path)
            except RuntimeFailure as exc:
                raise CalibrationError(str(exc)) from None
            if ids.shape != image.shape[:2]:
                raise CalibrationError(f"{label_path}: label map is {ids.shape[1]}x{ids.shape[0]}, its image "
                                       f"{image.shape[1]}x{image.shape[0]}")
            if ids.max() >= config.num_labels:
                raise CalibrationError(f"{label_path}: label id {int(ids.max())}, the model has {config.num_labels} "
                                       f"labels ({', '.join(config.labels)})")
            fit = Fit.compute(image.shape[:2], model_hw, "letterbox")
            images.append(fit.image_to_model(image))
            labels.append(fit.labels_to_model(ids.astype(np.int32)))
        return cls(np.stack(images).astype(np.float32), np.stack(labels).astype(np.int32))


def swap_latents(z: np.ndarray, config: ModelConfig, shift: int = 1) -> np.ndarray:
    """Each photo's background latents with another photo's (`shift` places along) for every
    other label: a subject swap, as the runtime mixes them."""
    swapped = np.roll(z, shift, axis=0).copy()
    background = latent_layout(config)[config.labels[0]]
    swapped[:, background] = z[:, background]
    return swapped


def generator_feeds(encoder_onnx: Path, data: CalibrationSet, config: ModelConfig) -> list[dict[str, np.ndarray]]:
    """Generator inputs as the runtime makes them: each photo's own latents (reconstruction)
    and, as often, the next photo's appearance in its background and pose (a swap)."""
    z = OnnxSession(encoder_onnx, BackendOptions()).run(image=data.images, labels=data.labels)
    swapped = swap_latents(z, config, shift=-1)
    return [{"labels": data.labels[i:i + 1], "latents": latents[i:i + 1]} for i in range(len(z))
            for latents in (z, swapped)]


class _Reader(CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def structural_exclusions(model: onnx.ModelProto) -> set[str]:
    """Quantizable-op nodes always kept in fp32: products without a constant operand (attention
    scores, attention × values) and the last convolution (the output layer)."""
    constants = {t.name for t in model.graph.initializer}
    constants |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    keep = {n.name for n in model.graph.node
            if n.op_type in QUANTIZED_OPS and (len(n.input) < 2 or n.input[1] not in constants)}
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    return keep | set(convs[-1:])


def layer_groups(model: onnx.ModelProto, graph: str) -> dict[str, list[str]]:
    """Units of the sensitivity search: each convolution alone, and the linear layers together
    (one group: there are a hundred of them, each small)."""
    excluded = structural_exclusions(model)
    nodes = [n for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.name not in excluded]
    groups = {f"{graph}:{n.name}": [n.name] for n in nodes if n.op_type == "Conv"}
    linear = [n.name for n in nodes if n.op_type != "Conv"]
    if linear:
        groups[f"{graph}:linear"] = linear
    return groups


@dataclass(frozen=True)
class Int8Report:
    """What the sensitivity search measured (PSNR in dB against the fp32 graphs, on the
    calibration photos held out from calibration, reconstructions and swaps)."""
    target_db: float
    calibration_images: int
    check_images: int
    groups_db: dict[str, float]    # each group quantized alone
    kept_fp32: list[str]           # groups left in fp32, most sensitive first
    quantized_nodes: dict[str, int]
    psnr_db: float                 # the bundle as written

    def to_dict(self) -> dict:
        return asdict(self)


def _noise(db: float) -> float:
    """Mean squared error relative to the signal peak: what adds up across layers."""
    return 10 ** (-db / 10)


class Int8Search:
    """Quantizes both graphs of an fp32 bundle, leaving the most sensitive groups in fp32
    until the whole pair is within `target_db` of fp32 (measured, not predicted)."""

    def __init__(self, folder: Path, encoder_onnx: Path, generator_onnx: Path, data: CalibrationSet,
                 config: ModelConfig, work: Path) -> None:
        self.folder, self.config, self.work = folder, config, work
        held = max(2, len(data.images) // 4)
        self.calibration = CalibrationSet(data.images[:-held], data.labels[:-held])
        self.check = CalibrationSet(data.images[-held:], data.labels[-held:])
        self.prepared = {}
        for name, path in (("encoder", encoder_onnx), ("generator", generator_onnx)):
            self.prepared[name] = work / f"{name}.prepared.onnx"
            quant_pre_process(str(path), str(self.prepared[name]), skip_symbolic_shape=True)
        self.fp32 = {"encoder": encoder_onnx, "generator": generator_onnx}
        feeds = {"encoder": [{"image": self.calibration.images[i:i + 1], "labels": self.calibration.labels[i:i + 1]}
                             for i in range(len(self.calibration.images))],
                 "generator": generator_feeds(encoder_onnx, self.calibration, config)}
        self.caches = {name: work / f"{name}.ranges.json" for name in feeds}
        for name in feeds:  # one calibration pass per graph; every later quantization reuses its ranges
            self._quantize(name, [], feeds[name])
        # the fp32 side of each trial is the same every time: its latents and session are made once
        self._z_fp32 = OnnxSession(encoder_onnx, BackendOptions()).run(image=self.check.images,
                                                                       labels=self.check.labels)
        self._generator_fp32 = OnnxSession(generator_onnx, BackendOptions())
        self.reference = self._pixels(self.fp32["encoder"], self.fp32["generator"])

    def _quantize(self, graph: str, nodes: list[str], feeds: list | None = None) -> Path:
        """`nodes` empty: calibrate only (no node is named "-"), filling the ranges cache."""
        out = self.work / f"{graph}.int8.onnx"
        quantize_static(str(self.prepared[graph]), str(out), _Reader(feeds or []), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_quantize=nodes or ["-"],
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=self.caches[graph],
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return out

    def _pixels(self, encoder: Path, generator: Path) -> np.ndarray:
        """Reconstructions and swaps of the check photos (the runtime's two uses)."""
        data = self.check
        z = (self._z_fp32 if encoder == self.fp32["encoder"]
             else OnnxSession(encoder, BackendOptions()).run(image=data.images, labels=data.labels))
        gen = self._generator_fp32 if generator == self.fp32["generator"] else OnnxSession(generator, BackendOptions())
        return np.stack([gen.run(labels=data.labels, latents=z),
                         gen.run(labels=data.labels, latents=swap_latents(z, self.config))])

    def _psnr(self, quantized: dict[str, list[str]]) -> float:
        paths = {g: self._quantize(g, nodes) if nodes else self.fp32[g] for g, nodes in quantized.items()}
        return psnr_db(self._pixels(paths["encoder"], paths["generator"]), self.reference)

    def run(self, target_db: float, log: Callable[[str], None]) -> Int8Report:
        groups = {}
        for graph in ("encoder", "generator"):
            groups.update(layer_groups(onnx.load(str(self.prepared[graph])), graph))
        alone = {}
        for i, (name, nodes) in enumerate(groups.items()):
            graph = name.split(":")[0]
            alone[name] = round(self._psnr({g: nodes if g == graph else [] for g in self.fp32}), 2)
            log(f"int8 sensitivity {i + 1}/{len(groups)}: {name} alone {alone[name]:.1f} dB")
        order = sorted(groups, key=lambda n: alone[n])  # most sensitive first
        kept: list[str] = []
        while sum(_noise(alone[n]) for n in order if n not in kept) > _noise(target_db) and len(kept) < len(order):
            kept.append(order[len(kept)])  # predicted from the groups' noise: errors of layers add up
        while True:
            chosen = {g: [node for n in order if n not in kept and n.startswith(f"{g}:") for node in groups[n]]
                      for g in self.fp32}
            psnr = self._psnr(chosen)
            log(f"int8: {sum(map(len, chosen.values()))} nodes quantized, {len(kept)} group(s) kept fp32: "
                f"{psnr:.1f} dB (target {target_db:.0f})")
            if psnr >= target_db or len(kept) == len(order):
                break
            kept.append(order[len(kept)])
        for graph, nodes in chosen.items():
            source = self._quantize(graph, nodes) if nodes else self.fp32[graph]
            shutil.copyfile(source, self.folder / f"{graph}.onnx")
        return Int8Report(target_db, len(self.calibration.images), len(self.check.images), alone, kept,
                          {g: len(n) for g, n in chosen.items()}, round(psnr, 2))
