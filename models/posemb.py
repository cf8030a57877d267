"""2-D sinusoidal positional embedding of the spec (channels [sin x, sin y, cos x, cos y])."""
from __future__ import annotations

import torch


def sinusoidal_table(channels: int, height: int, width: int,
                     device: torch.device | None = None) -> torch.Tensor:
    """The `1×C×H×W` float32 table; computed in float32 like the reference, whatever the map's dtype."""
    if channels % 4:
        raise ValueError(f"positional embedding needs a multiple of 4 channels, got {channels}")
    half = channels // 2
    inv_freq = 1.0 / (10000 ** (torch.arange(0, half, 2, device=device).float() / half))
    y = torch.linspace(-1.0, 1.0, height, device=device)
    x = torch.linspace(-1.0, 1.0, width, device=device)
    fx = torch.outer(x, inv_freq).t()[:, None, :].expand(-1, height, width)  # C/4×H×W
    fy = torch.outer(y, inv_freq).t()[:, :, None].expand(-1, height, width)
    table = torch.cat([fx.sin(), fy.sin(), fx.cos(), fy.cos()], dim=0)
    return table.unsqueeze(0)


def add_posemb(x: torch.Tensor) -> torch.Tensor:
    """'add' mode: the map plus its own-width embedding."""
    return x + sinusoidal_table(x.shape[1], x.shape[2], x.shape[3], x.device).to(x.dtype)


def concat_posemb(x: torch.Tensor, channels: int) -> torch.Tensor:
    """'concat' mode: the map with `channels` embedding channels appended."""
    table = sinusoidal_table(channels, x.shape[2], x.shape[3], x.device).to(x.dtype)
    return torch.cat([x, table.expand(x.shape[0], -1, -1, -1)], dim=1)
