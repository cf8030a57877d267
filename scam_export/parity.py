"""Exported graphs in ONNX Runtime against the checkpoint in PyTorch, on real-looking inputs."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models import ModelConfig, SATEncoder, SCAMGenerator, one_hot
from scam_runtime.backend import BackendOptions, OnnxSession

# int8: 35 dB on real photos. Looked at side by side (docs/performance.md, "CPU fast path"): at the
# 33.5 dB of quantizing every layer, the images cannot be told apart at 1:1, the
# difference shows only amplified 10x; below 35 we do not ship.
MIN_PSNR_DB = {"fp32": 60.0, "fp16": 35.0, "int8": 35.0}
MIN_PSNR_DB_FP16_WEIGHTS = 45.0   # fp32 arithmetic on weights rounded to fp16


@dataclass(frozen=True)
class ParityReport:
    precision: str
    batch: int
    absent_label: int                 # label missing from the first image of the batch (-1: real photos)
    encoder_latents_max_abs: float
    generator_max_abs: float
    generator_psnr_db: float          # ORT generator on the PyTorch latents
    end_to_end_psnr_db: float         # ORT encoder -> ORT generator vs PyTorch
    min_psnr_db: float                # the export fails below this

    @property
    def passed(self) -> bool:
        return min(self.generator_psnr_db, self.end_to_end_psnr_db) >= self.min_psnr_db

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def blob_inputs(config: ModelConfig, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Smooth random images in [-1, 1] and blob-shaped label maps (int32); the first map
    lacks one non-background label entirely. Returns (images, labels, absent label)."""
    g = torch.Generator().manual_seed(seed)
    h, w, s = config.height, config.width, config.num_labels
    fields = F.interpolate(torch.randn(batch, s, 6, 4, generator=g), size=(h, w), mode="bicubic",
                           align_corners=False)
    labels = fields.argmax(dim=1)
    absent = 1 + int(torch.randint(0, s - 1, (1,), generator=g))
    labels[0][labels[0] == absent] = 0
    for b in range(1, batch):  # every label shows up in the other maps
        labels[b, : s, 0] = torch.arange(s)
    colours = F.interpolate(torch.rand(batch, 3, 8, 6, generator=g), size=(h, w), mode="bilinear",
                            align_corners=False)
    images = (colours + 0.1 * torch.randn(batch, 3, h, w, generator=g)).clamp(0, 1) * 2 - 1
    return images.numpy().astype(np.float32), labels.numpy().astype(np.int32), absent


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two images in [-1, 1] (peak-to-peak 2)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def check_parity(encoder_onnx: Path, generator_onnx: Path, encoder: SATEncoder,
                 generator: SCAMGenerator, precision: str, weights: str = "fp32", batch: int = 3,
                 inputs: tuple[np.ndarray, np.ndarray] | None = None) -> ParityReport:
    """`encoder`/`generator` are the checkpoint's fp32 networks with the bundle's noise mode.
    `inputs` (images, labels): real photos instead of blobs, for graphs calibrated on photos
    (int8), whose ranges blobs would overflow."""
    config = encoder.config
    if inputs is None:
        images, labels, absent = blob_inputs(config, batch)
    else:
        (images, labels), absent = inputs, -1
        batch = len(images)
    with torch.no_grad():
        mask = one_hot(torch.from_numpy(labels).long(), config.num_labels)
        z_ref = encoder(torch.from_numpy(images), mask)
        out_ref = generator(mask, z_ref).numpy()
    enc, gen = OnnxSession(encoder_onnx, BackendOptions()), OnnxSession(generator_onnx, BackendOptions())
    z_ort = enc.run(image=images, labels=labels)
    out_gen = gen.run(labels=labels, latents=z_ref.numpy())
    out_e2e = gen.run(labels=labels, latents=z_ort)
    return ParityReport(
        precision=precision, batch=batch, absent_label=absent,
        encoder_latents_max_abs=float(np.abs(z_ort - z_ref.numpy()).max()),
        generator_max_abs=float(np.abs(out_gen - out_ref).max()),
        generator_psnr_db=round(psnr_db(out_gen, out_ref), 2),
        end_to_end_psnr_db=round(psnr_db(out_e2e, out_ref), 2),
        min_psnr_db=MIN_PSNR_DB_FP16_WEIGHTS if (precision, weights) == ("fp32", "fp16") else MIN_PSNR_DB[precision])
