"""SAT encoder: image + one-hot mask -> m latents, each attending only its label's pixels."""
from __future__ import annotations

import torch
from torch import nn

from .attention import ATTENTION_PATHS, SATBlock
from .config import ModelConfig
from .layout import NearestResize, assignment_matrix, expand_mask, latent_block_mask
from .posemb import add_posemb, concat_posemb, sinusoidal_table
from .validation import OneOf, check_mask


def level_sizes(config: ModelConfig) -> list[tuple[int, int]]:
    """Map size of each pyramid level (3×3 convolutions, stride 2, padding 1: ceil(n / 2))."""
    sizes = [(config.height, config.width)]
    for _ in range(1, config.enc_blocks):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


class EncoderBlock(nn.Module):
    """Latents attend one pyramid level (cross), then each other within their label (self)."""

    def __init__(self, config: ModelConfig, level_channels: int) -> None:
        super().__init__()
        m, d, a, h = config.num_latents, config.latent_dim, config.attn_dim, config.heads
        self.cross_attention = SATBlock(d, m, level_channels, a, h)
        self.self_attention = SATBlock(d, m, d, a, h)

    def forward(self, z: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor,
                block_mask: torch.Tensor, folded: bool) -> torch.Tensor:
        """`pixels` channel-first `B×C×n`; `folded`: through `SATBlock.from_pixels`."""
        if folded:
            z = self.cross_attention.from_pixels(z, pixels, mask)
        else:
            z = self.cross_attention(z, pixels.transpose(1, 2), mask)
        return self.self_attention(z, z, block_mask)


class SATEncoder(nn.Module):
    """`encoder(image, mask) -> latents`: image `B×3×H×W` in [-1, 1], one-hot mask `B×s×H×W`,
    latents `B×m×d` ordered as `models.latent_layout(config)`.

    `attention_path`: `dense` (the reference's form) or `folded` (the map's projections
    folded onto the latents, `attention.latents_attend_pixels`); the same function.
    """

    attention_path = OneOf(ATTENTION_PATHS)

    def __init__(self, config: ModelConfig, attention_path: str = "dense") -> None:
        super().__init__()
        self.config = config
        self.attention_path = attention_path
        nf = config.enc_nf
        self.latents = nn.Parameter(torch.randn(config.num_latents, config.latent_dim))
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(3 if i == 1 else nf * 2 ** (i - 1), nf * 2 ** i, 3, stride=2, padding=1),
                          nn.LeakyReLU(0.2))
            for i in range(1, config.enc_blocks))
        level_channels = [3 + config.enc_posemb_dim] + [nf * 2 ** i for i in range(1, config.enc_blocks)]
        self.blocks = nn.ModuleList(EncoderBlock(config, c) for c in level_channels)
        self.register_buffer("assignment", assignment_matrix(config), persistent=False)
        self.register_buffer("block_mask", latent_block_mask(config), persistent=False)
        self.mask_resize = NearestResize(((config.height, config.width), size) for size in level_sizes(config))
        for i, (c, (h, w)) in enumerate(zip([config.enc_posemb_dim] + level_channels[1:], level_sizes(config))):
            self.register_buffer(f"posemb{i}", sinusoidal_table(c, h, w), persistent=False)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        size = (self.config.height, self.config.width)
        if image.dim() != 4 or image.shape[1] != 3 or tuple(image.shape[-2:]) != size:
            raise ValueError(f"image must be B×3×{size[0]}×{size[1]}, got {tuple(image.shape)}")
        check_mask(mask, self.config, image.shape[0], size)
        mask = mask.to(image.dtype)
        z = self.latents.unsqueeze(0).expand(image.shape[0], -1, -1)
        feats = image
        for i, block in enumerate(self.blocks):
            table = getattr(self, f"posemb{i}")
            if i == 0:
                tokens = concat_posemb(feats, table)
            else:
                feats = self.convs[i - 1](feats)
                tokens = add_posemb(feats, table)
            level_mask = expand_mask(self.mask_resize(mask, tuple(feats.shape[-2:])), self.assignment)
            z = block(z, tokens.flatten(2), level_mask, self.block_mask, self.attention_path == "folded")
        return z
