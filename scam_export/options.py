"""What an export can be asked for, torch-free so that `scam-export --help` shows the same
defaults the exporter uses without loading torch."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_OPSET = 18           # LayerNormalization needs 17; TensorRT 10 reads up to 20
TRT_WORKSPACE = "4G"         # TensorRT builder workspace limit
PRECISIONS = ("fp32", "fp16")
WEIGHTS = ("fp32", "fp16")
NOISE = ("const", "none")
ATTENTION = ("auto", "dense", "sparse")


@dataclass(frozen=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    max_batch: int = 8
    precision: str = "fp32"    # graph arithmetic
    noise: str = "const"       # generator noise baked into the graph, or none
    attention: str = "auto"    # dense | sparse | auto (label-sparse where the layout allows)
    weights: str = "fp32"      # storage of fp32 graphs' weights: fp32, or fp16 cast back to fp32 at load
