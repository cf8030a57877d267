"""Which latents belong to which label, and the mask expansions that follow from it."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import ModelConfig


def latent_layout(config: ModelConfig) -> dict[str, slice]:
    """Each label's slice of latent indices: background's `k_bg` first, then `k` per label."""
    layout = {config.labels[0]: slice(0, config.latents_bg)}
    start = config.latents_bg
    for name in config.labels[1:]:
        layout[name] = slice(start, start + config.latents_per_label)
        start += config.latents_per_label
    return layout


def latent_labels(config: ModelConfig) -> torch.Tensor:
    """Label id of every latent, shape (m,)."""
    ids = torch.empty(config.num_latents, dtype=torch.long)
    for label, sl in enumerate(latent_layout(config).values()):
        ids[sl] = label
    return ids


def assignment_matrix(config: ModelConfig) -> torch.Tensor:
    """Constant (m, s) 0/1 matrix; `A @ S` turns an s-channel one-hot mask into m channels."""
    return F.one_hot(latent_labels(config), config.num_labels).float()


def latent_block_mask(config: ModelConfig) -> torch.Tensor:
    """(1, m, m) block-diagonal mask: a latent may attend only latents of its own label."""
    ids = latent_labels(config)
    return (ids[:, None] == ids[None, :]).float().unsqueeze(0)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Legacy nearest resize (source index floor(dst * in / out)), as the reference does."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask, size=size, mode="nearest")


def expand_mask(mask: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """One-hot `B×s×h×w` mask to the latents' `B×m×(h·w)` mask (a constant matmul, exact)."""
    return torch.matmul(assignment.to(mask.dtype), mask.flatten(2))


def one_hot(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Integer label map `B×H×W` to the float one-hot mask `B×s×H×W` the networks take."""
    if labels.dtype.is_floating_point:
        raise TypeError(f"label map must hold integer ids, got {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_labels:
        raise ValueError(f"label ids must lie in [0, {num_labels - 1}], found [{lo}, {hi}]")
    return F.one_hot(labels.long(), num_labels).permute(0, 3, 1, 2).float()
