"""2-D sinusoidal positional embedding of the spec (channels [sin x, sin y, cos x, cos y])."""
from __future__ import annotations

import torch


def sinusoidal_table(channels: int, height: int, width: int) -> torch.Tensor:
    """The `1×C×H×W` float32 table, computed in float32 like the reference.

    Layers build it once for their fixed map size (a non-persistent buffer), so training
    never recomputes it and an ONNX export holds it as a constant.
    """
    if channels % 4:
        raise ValueError(f"positional embedding needs a multiple of 4 channels, got {channels}")
    half = channels // 2
    inv_freq = 1.0 / (10000 ** (torch.arange(0, half, 2).float() / half))
    y = torch.linspace(-1.0, 1.0, height)
    x = torch.linspace(-1.0, 1.0, width)
    fx = torch.outer(x, inv_freq).t()[:, None, :].expand(-1, height, width)  # C/4×H×W
    fy = torch.outer(y, inv_freq).t()[:, :, None].expand(-1, height, width)
    table = torch.cat([fx.sin(), fy.sin(), fx.cos(), fy.cos()], dim=0)
    return table.unsqueeze(0).contiguous()


def add_posemb(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """'add' mode: the map plus a table of its own width."""
    return x + table.to(x.dtype)


def concat_posemb(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """'concat' mode: the table's channels appended to the map."""
    return torch.cat([x, table.to(x.dtype).expand(x.shape[0], -1, -1, -1)], dim=1)
