"""What the perceptual losses share: a frozen network read at several depths, and
Σ wᵢ·L1(φᵢ(fake), φᵢ(real)) over those maps (the real image's without gradients)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TappedLoss(nn.Module):
    """Subclasses set `tap_weights` and implement `_taps(x)` for images in [-1, 1]."""

    tap_weights: tuple[float, ...] = ()

    def train(self, mode: bool = True) -> TappedLoss:
        return super().train(False)  # frozen: always eval (batch norms keep their statistics)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real_taps = self._taps(real)
        return sum(w * F.l1_loss(f, r) for w, f, r in zip(self.tap_weights, self._taps(fake), real_taps))
