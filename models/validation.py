"""Shape checks at the networks' entry points, so misuse fails with a readable message."""
from __future__ import annotations

import torch

from .config import ModelConfig


class OneOf:
    """A class attribute that must be one of `choices` at every assignment: a wrong value
    fails where it is set, not deep in a forward pass. `check` tests a value given per call."""

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.slot = name, f"_{name}"

    def __get__(self, obj: object, owner: type | None = None):
        return self if obj is None else obj.__dict__[self.slot]

    def __set__(self, obj: object, value: str) -> None:
        obj.__dict__[self.slot] = self.check(value)

    def check(self, value: str) -> str:
        if value not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
        return value


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
