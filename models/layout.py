"""Which latents belong to which label, and the mask expansions that follow from it."""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

Size = tuple[int, int]


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


def nearest_index(in_size: int, out_size: int) -> torch.Tensor:
    """Source indices of the legacy nearest resize along one axis, computed by `F.interpolate`
    itself on a ramp (so its float arithmetic is kept, not the exact floor(dst · in / out))."""
    ramp = torch.arange(in_size, dtype=torch.float32).view(1, 1, in_size, 1)
    return F.interpolate(ramp, size=(out_size, 1), mode="nearest").view(-1).to(torch.int64)


def _power_of_two_ratio(n_in: int, n_out: int) -> bool:
    big, small = max(n_in, n_out), min(n_in, n_out)
    return big % small == 0 and (big // small) & (big // small - 1) == 0


class NearestResize(nn.Module):
    """`resize_mask` between sizes fixed at construction, bit-identical to
    `F.interpolate(mode="nearest")` in PyTorch and in the exported graphs.

    Power-of-two ratios stay `F.interpolate` (an ONNX Resize: every runtime's arithmetic is
    exact there). Other ratios gather rows, then columns (through a transpose, so both
    Gathers copy whole rows, the faster form: docs/export.md), with constant indices
    computed by `F.interpolate` itself: ONNX Runtime's nearest Resize picks other source
    rows at many sizes (120 → 256 for one, where export parity failed; docs/export.md)."""

    def __init__(self, pairs: Iterable[tuple[Size, Size]]) -> None:
        super().__init__()
        for src, dst in pairs:
            if self._exact(src, dst):
                continue
            for n_in, n_out in zip(src, dst):
                name = f"index_{n_in}_{n_out}"
                if n_in != n_out and not hasattr(self, name):
                    self.register_buffer(name, nearest_index(n_in, n_out), persistent=False)

    @staticmethod
    def _exact(src: Size, dst: Size) -> bool:
        return all(_power_of_two_ratio(i, o) for i, o in zip(src, dst))

    def _gather(self, t: torch.Tensor, n_out: int) -> torch.Tensor:
        """Rows of `t` (dim -2) at the nearest-resize indices for `n_out` rows."""
        n_in = t.shape[-2]
        return t if n_in == n_out else t.index_select(-2, getattr(self, f"index_{n_in}_{n_out}"))

    def forward(self, t: torch.Tensor, size: Size) -> torch.Tensor:
        src, size = tuple(t.shape[-2:]), tuple(size)
        if src == size:
            return t
        if self._exact(src, size):
            return F.interpolate(t, size=size, mode="nearest")
        t = self._gather(t, size[0])
        return self._gather(t.transpose(-1, -2), size[1]).transpose(-1, -2)


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
