"""SCAM generator: one-hot mask + latents -> image, modulated by semantic cross attention."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .attention import ATTENTION_PATHS, SATBlock, SemanticCrossAttention, pixels_attend_latents
from .config import ModelConfig
from .layout import NearestResize, assignment_matrix, expand_mask
from .posemb import add_posemb, sinusoidal_table
from .validation import OneOf, check_latents, check_mask

NOISE_MODES = ("random", "const", "none")

MaskAt = Callable[[tuple[int, int]], torch.Tensor]
"""Feature-map size -> the label map there as the latents' mask, B×m×(h·w) (1: latent j may see pixel p)."""


class SCAMOperation(nn.Module):
    """Modulates a map with its label's latents; duplex also updates the latents (SAT).

    With `noise`, the layer adds per-pixel noise scaled per channel, and keeps a fixed
    `noise_const` draw of its map size for deterministic inference.
    """

    def __init__(self, config: ModelConfig, channels: int, size: tuple[int, int], duplex: bool,
                 noise: bool) -> None:
        super().__init__()
        d, a, h, m = config.latent_dim, config.attn_dim, config.heads, config.num_latents
        self.duplex = duplex
        if duplex:
            self.latent_update = SATBlock(d, m, channels, a, h)
        else:
            self.latent_update = nn.Sequential(nn.Linear(d, d), nn.LeakyReLU(0.2), nn.Linear(d, d))
        self.pixel_attention = SemanticCrossAttention(channels, d, a, h)
        self.gamma = nn.Linear(channels, channels)
        self.beta = nn.Linear(channels, channels)
        self.norm = nn.InstanceNorm2d(channels, affine=False, eps=1e-5)
        self.has_noise = noise
        if noise:
            self.noise_strength = nn.Parameter(torch.zeros(channels))
            self.register_buffer("noise_const", torch.randn(1, 1, *size))
        self.register_buffer("posemb", sinusoidal_table(channels, *size), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, z: torch.Tensor,
                noise_mode: str, folded: bool) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        if folded:
            gamma, beta, z = self._folded_modulation(x, mask, z)
        else:
            tokens = add_posemb(x, self.posemb).flatten(2).transpose(1, 2)
            z = self.latent_update(z, tokens, mask) if self.duplex else self.latent_update(z)
            x_sca = self.pixel_attention(tokens, z, mask.transpose(1, 2))
            gamma = self.gamma(x_sca).transpose(1, 2).reshape(b, c, h, w)
            beta = self.beta(x_sca).transpose(1, 2).reshape(b, c, h, w)
        out = (1 + gamma) * self.norm(x) + beta
        if self.has_noise and noise_mode != "none":
            if noise_mode == "const":
                noise = self.noise_const.to(out.dtype)
            else:  # drawn W-major like the reference, so a shared seed gives the same noise
                noise = torch.randn(b, w, h, 1, device=x.device, dtype=out.dtype).transpose(1, 3)
            out = out + self.noise_strength.view(1, -1, 1, 1).to(out.dtype) * noise
        return F.leaky_relu(out, 0.2), z

    def _folded_modulation(self, x: torch.Tensor, mask: torch.Tensor,
                           z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The folded path's `(gamma, beta, z)`: the map stays channel-first, and gamma and
        beta come out of one product with the pixel attention's folded values."""
        pixels = add_posemb(x, self.posemb).flatten(2)
        z = self.latent_update.from_pixels(z, pixels, mask) if self.duplex else self.latent_update(z)
        weight = torch.cat([self.gamma.weight, self.beta.weight])
        bias = torch.cat([self.gamma.bias, self.beta.bias])
        both = pixels_attend_latents(self.pixel_attention, pixels, z, mask, weight, bias)
        gamma, beta = both.view(x.shape[0], 2, *x.shape[1:]).unbind(1)
        return gamma, beta, z


class SCAMBlock(nn.Module):
    """Two modulated convolutions with an upsampling between, plus a skip-architecture ToRGB."""

    def __init__(self, config: ModelConfig, in_ch: int, out_ch: int,
                 in_size: tuple[int, int], out_size: tuple[int, int], last: bool) -> None:
        super().__init__()
        mid = min(in_ch, out_ch)
        self.out_size = out_size
        self.up = NearestResize([(in_size, out_size)])
        self.mod0 = SCAMOperation(config, in_ch, in_size, duplex=True, noise=True)
        self.conv0 = nn.Conv2d(in_ch, mid, 3, padding=1)
        self.mod1 = SCAMOperation(config, mid, out_size, duplex=True, noise=True)
        self.conv1 = nn.Conv2d(mid, out_ch, 3, padding=1)
        self.torgb_mod = None if last else SCAMOperation(config, out_ch, out_size, duplex=False, noise=False)
        self.torgb = nn.Conv2d(out_ch, 3, 1)

    def forward(self, x: torch.Tensor, mask_at: MaskAt, z: torch.Tensor,
                rgb: torch.Tensor | None, noise_mode: str, folded: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dx, z = self.mod0(x, mask_at(tuple(x.shape[-2:])), z, noise_mode, folded)
        dx = self.up(self.conv0(F.leaky_relu(dx, 0.2)), self.out_size)
        dx, z = self.mod1(dx, mask_at(self.out_size), z, noise_mode, folded)
        dx = self.conv1(F.leaky_relu(dx, 0.2))
        y = dx
        if self.torgb_mod is not None:
            y, _ = self.torgb_mod(dx, mask_at(self.out_size), z, noise_mode, folded)
        out_rgb = self.torgb(y)
        if rgb is not None:
            out_rgb = out_rgb + self.up(rgb, self.out_size)
        return dx, z, out_rgb


class SCAMGenerator(nn.Module):
    """`generator(mask, latents) -> image` in [-1, 1], `B×3×H×W` at the config's size.

    `noise_mode` (attribute, or per call): `random` for training, `const` for deterministic
    inference and export (the `noise_const` buffers travel with the weights), `none`.
    `attention_path`: how latents and maps attend each other: `dense` (masked, the
    reference's form) or `folded` (every projection folded onto the latents:
    `attention.latents_attend_pixels`, `pixels_attend_latents`); both compute the same
    function, folded with a fraction of the work (bench/export.py).
    """

    noise_mode = OneOf(NOISE_MODES)
    attention_path = OneOf(ATTENTION_PATHS)

    def __init__(self, config: ModelConfig, noise_mode: str = "random",
                 attention_path: str = "dense") -> None:
        super().__init__()
        self.config = config
        self.noise_mode = noise_mode
        nf, n_blocks = config.gen_nf, config.gen_blocks
        self.first_conv = nn.Conv2d(config.num_labels, 16 * nf, 3, padding=1)
        channels = [16 * nf] * (n_blocks - 3) + [8 * nf, 4 * nf, 2 * nf, nf]
        h0, w0 = config.start_size
        blocks = []
        for i in range(n_blocks):
            last = i == n_blocks - 1
            in_size = (h0 * 2 ** i, w0 * 2 ** i)
            out_size = (config.height, config.width) if last else (2 * in_size[0], 2 * in_size[1])
            blocks.append(SCAMBlock(config, channels[i], channels[i + 1], in_size, out_size, last))
        self.blocks = nn.ModuleList(blocks)
        full = (config.height, config.width)
        self.mask_resize = NearestResize([(full, (h0, w0))] + [(full, b.out_size) for b in blocks]
                                         + [(full, (h0 * 2 ** i, w0 * 2 ** i)) for i in range(n_blocks)])
        self.register_buffer("assignment", assignment_matrix(config), persistent=False)
        self.attention_path = attention_path

    def forward(self, mask: torch.Tensor, latents: torch.Tensor,
                noise_mode: str | None = None) -> torch.Tensor:
        cfg = self.config
        check_mask(mask, cfg, None, (cfg.height, cfg.width))
        check_latents(latents, cfg, mask.shape[0])
        noise_mode = self.noise_mode if noise_mode is None else SCAMGenerator.noise_mode.check(noise_mode)
        mask = mask.to(latents.dtype)
        folded = self.attention_path == "folded"
        cache: dict[tuple[int, int], torch.Tensor] = {}

        def mask_at(size: tuple[int, int]) -> torch.Tensor:
            if size not in cache:
                cache[size] = expand_mask(self.mask_resize(mask, size), self.assignment)
            return cache[size]

        x = self.first_conv(self.mask_resize(mask, cfg.start_size))
        z, rgb = latents, None
        for block in self.blocks:
            x, z, rgb = block(x, mask_at, z, rgb, noise_mode, folded)
        return torch.tanh(rgb)
