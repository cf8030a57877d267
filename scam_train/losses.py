"""Losses of the spec (paper §3.4, reference defaults), on the discriminator's outputs.

`disc(image, mask)` returns, per scale, the features of every layer with the patch logits
last; the GAN terms read the logits, feature matching the layers before them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

DiscOutput = list[list[torch.Tensor]]


def hinge_d(real: DiscOutput, fake: DiscOutput) -> torch.Tensor:
    """Discriminator: mean(relu(1 - D(real))) + mean(relu(1 + D(fake))), averaged over scales."""
    terms = [F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake)]
    return torch.stack(terms).mean()


def hinge_g(fake: DiscOutput) -> torch.Tensor:
    """Generator: -mean(D(fake)), averaged over scales."""
    return torch.stack([-f[-1].mean() for f in fake]).mean()


def reconstruction(fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor | None = None,
                   kind: str = "l1") -> torch.Tensor:
    """Pixel reconstruction loss: the spec's L1 (weighted by λ₁ = 10 in its training), or the
    squared error, whose optimum is the per-pixel mean and so the best PSNR a blurred
    prediction can reach. `weight` (B×1×H×W) weighs pixels; the sum is divided by the
    weights' sum, so the loss keeps its scale."""
    error = (fake - real).abs() if kind == "l1" else (fake - real).square()
    if weight is None:
        return error.mean()
    weight = weight.expand_as(real)
    return (error * weight).sum() / weight.sum()


def person_weights(ids: torch.Tensor, person_weight: float) -> torch.Tensor | None:
    """B×1×H×W pixel weights: `person_weight` where the label is not background (id 0), else
    1. None at weight 1 (unweighted)."""
    if person_weight == 1:
        return None
    return torch.where(ids > 0, person_weight, 1.0).unsqueeze(1).float()


def feature_matching(real: DiscOutput, fake: DiscOutput) -> torch.Tensor:
    """L1 between the discriminator's intermediate features of fake and (detached) real
    images, averaged over layers and scales: the weight-free alternative to VGG."""
    per_scale = [torch.stack([F.l1_loss(f, r.detach()) for f, r in zip(fs[:-1], rs[:-1])]).mean()
                 for rs, fs in zip(real, fake)]
    return torch.stack(per_scale).mean()
