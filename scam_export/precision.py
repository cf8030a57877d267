"""fp16 copies of the networks with LayerNorm and InstanceNorm kept in fp32.

TensorRT 10+ is strongly typed: the precision of each layer comes from the ONNX graph,
so the fp16 graph is traced from a half-precision model rather than converted after the
fact. Softmax already runs in fp32 inside `models.attention`.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
_FP32_LAYERS = (nn.LayerNorm, nn.InstanceNorm2d)


class Fp32Island(nn.Module):
    """Runs the wrapped layer in fp32 and hands its result back in the caller's dtype."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.float()).to(x.dtype)


def with_precision(net: nn.Module, precision: str) -> nn.Module:
    """`net` itself for fp32; for fp16 a half copy whose normalisation layers stay fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return net
    half = copy.deepcopy(net).half()
    for parent in list(half.modules()):
        for name, child in parent.named_children():
            if isinstance(child, _FP32_LAYERS):
                setattr(parent, name, Fp32Island(child))
    return half
