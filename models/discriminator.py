"""Two-scale PatchGAN on concat(image, mask); training only."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layout import resize_mask


class PatchGANScale(nn.Module):
    """One scale: strided 4×4 convolutions; returns every layer's features, logits last."""

    def __init__(self, in_ch: int, nf: int, n_layers: int, spectral_norm: bool) -> None:
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(in_ch, nf, 4, stride=2, padding=2), nn.LeakyReLU(0.2))]
        for n in range(1, n_layers):
            prev, nf = nf, min(2 * nf, 512)
            conv = nn.Conv2d(prev, nf, 4, stride=1 if n == n_layers - 1 else 2, padding=2)
            if spectral_norm:
                conv = nn.utils.parametrizations.spectral_norm(conv)
            layers.append(nn.Sequential(conv, nn.InstanceNorm2d(nf), nn.LeakyReLU(0.2)))
        layers.append(nn.Conv2d(nf, 1, 4, stride=1, padding=2))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class PatchGANDiscriminator(nn.Module):
    """`disc(image, mask) -> [features of scale 0, features of scale 1, ...]`; the last
    entry of each scale's list is its patch logits (hinge loss), the rest feed feature matching."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            PatchGANScale(3 + config.num_labels, config.disc_nf, config.disc_layers,
                          config.disc_spectral_norm)
            for _ in range(config.disc_scales))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> list[list[torch.Tensor]]:
        mask = mask.to(image.dtype)
        results = []
        for i, scale in enumerate(self.scales):
            if i:
                image = F.avg_pool2d(image, 3, stride=2, padding=1, count_include_pad=False)
                mask = resize_mask(mask, tuple(image.shape[-2:]))
            results.append(scale(torch.cat([image, mask], dim=1)))
        return results
