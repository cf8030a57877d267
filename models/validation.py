"""Shape checks at the networks' entry points, so misuse fails with a readable message."""
from __future__ import annotations

import torch

from .config import ModelConfig


def check_mask(mask: torch.Tensor, config: ModelConfig, batch: int | None,
               size: tuple[int, int] | None) -> None:
    s = config.num_labels
    if mask.dim() != 4 or mask.shape[1] != s:
        raise ValueError(f"mask must be a one-hot B×{s}×H×W tensor ({s} labels), got {tuple(mask.shape)}")
    if batch is not None and mask.shape[0] != batch:
        raise ValueError(f"mask batch {mask.shape[0]} does not match {batch}")
    if size is not None and tuple(mask.shape[-2:]) != tuple(size):
        raise ValueError(f"mask is {tuple(mask.shape[-2:])} but must be {tuple(size)}")


def check_latents(latents: torch.Tensor, config: ModelConfig, batch: int) -> None:
    want = (batch, config.num_latents, config.latent_dim)
    if tuple(latents.shape) != want:
        raise ValueError(f"latents must be {want} (B×m×d), got {tuple(latents.shape)}")
