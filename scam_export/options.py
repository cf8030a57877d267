"""What an export can be asked for, torch-free so that `scam-export --help` shows the same
defaults the exporter uses without loading torch."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_OPSET = 18           # LayerNormalization needs 17; TensorRT 10 reads up to 20
TRT_WORKSPACE = "4G"         # TensorRT builder workspace limit
PRECISIONS = ("fp32", "fp16", "int8")
WEIGHTS = ("fp32", "fp16")
NOISE = ("const", "none")
ATTENTION = ("folded", "dense")  # models.ATTENTION_PATHS, without importing torch


@dataclass(frozen=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    max_batch: int = 8
    precision: str = "fp32"    # graph arithmetic
    noise: str = "const"       # generator noise baked into the graph, or none
    attention: str = "folded"  # the same function as dense, a fraction of the work (bench/export.py)
    weights: str = "fp32"      # storage of fp32 graphs' weights: fp32, or fp16 cast back to fp32 at load
    calibration: str | None = None    # int8: folder of photos + label maps (training layout)
    calibration_labels: str = "labels"  # its label folder (e.g. labels3 in CCP)
    calibration_images: int = 48      # photos used: 3/4 calibrate, 1/4 check the layer search
    int8_target_db: float = 38.0      # int8: leave the most sensitive layers fp32 until this close to fp32

    def __post_init__(self) -> None:
        if self.precision == "int8" and not self.calibration:
            raise ValueError("--precision int8 needs --calibration DIR (photos and label maps, training layout)")
