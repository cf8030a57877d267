"""Synthetic inputs for benchmarks and tests: a random-weight checkpoint (our real layers,
nothing trained) and a person-shaped label map. Benchmarks of speed need no trained
weights; both `bench/` and `tests/` import these from here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import save_checkpoint
from .config import ModelConfig
from .encoder import SATEncoder
from .generator import SCAMGenerator


def random_checkpoint(path: Path, preset: str = "small", labels: tuple[str, ...] = ("background", "face", "body"),
                      height: int = 128, width: int = 128, seed: int = 0, **overrides) -> Path:
    """A random-weight checkpoint whose noise is switched on (trained strengths start at 0)."""
    torch.manual_seed(seed)
    config = ModelConfig.preset(preset, labels=list(labels), height=height, width=width, **overrides)
    encoder, generator = SATEncoder(config), SCAMGenerator(config)
    with torch.no_grad():
        for name, p in generator.named_parameters():
            if name.endswith("noise_strength"):
                p.uniform_(0.05, 0.3)
    return save_checkpoint(path, config, encoder, generator)


def person_labels(h: int, w: int, shift: int = 0) -> np.ndarray:
    """uint8 background/face/body ids: a body rectangle with a face on top, shifted right by `shift` px."""
    lab = np.zeros((h, w), np.uint8)
    lab[h // 4: 3 * h // 4, w // 3 + shift: 2 * w // 3 + shift] = 2
    lab[h // 4: h // 4 + h // 8, w // 3 + shift + 4: 2 * w // 3 + shift - 4] = 1
    return lab
