"""Sample grids: one row per image — image | mask | reconstruction | subject swap."""
from __future__ import annotations

import numpy as np
import torch

_BASE = np.array([[0, 0, 0], [255, 200, 40], [40, 120, 255], [220, 60, 60], [60, 200, 90],
                  [180, 80, 220], [0, 200, 200], [240, 130, 0]], np.uint8)


def palette(num_labels: int) -> np.ndarray:
    """Fixed colours for the first labels, then reproducible pseudo-random ones."""
    extra = np.random.default_rng(0).integers(40, 256, (max(0, num_labels - len(_BASE)), 3), dtype=np.uint8)
    return np.concatenate([_BASE, extra])[:num_labels]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """B×3×H×W in [-1, 1] -> B×H×W×3 uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def grid(columns: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Columns of B×H×W×3 uint8 images -> one H·B × W·C image with white gaps."""
    b, h, w, _ = columns[0].shape
    out = np.full((b * h + (b - 1) * gap, len(columns) * w + (len(columns) - 1) * gap, 3), 255, np.uint8)
    for c, col in enumerate(columns):
        for r in range(b):
            out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = col[r]
    return out


def sample_grid(images: torch.Tensor, ids: torch.Tensor, recon: torch.Tensor, swap: torch.Tensor,
                num_labels: int) -> np.ndarray:
    colours = palette(num_labels)[ids.cpu().numpy()]
    return grid([to_uint8(images), colours, to_uint8(recon), to_uint8(swap)])
