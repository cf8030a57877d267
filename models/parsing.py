"""The built-in human parser: a small U-Net of depthwise-separable blocks that maps an RGB
image to per-pixel logits of the model's labels (background / face / body by default).

Small on purpose: it runs on every video frame next to SCAM, on CPU too, and ships inside
the runtime package as an ONNX file of a few MB.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ParserNetConfig:
    labels: tuple[str, ...] = ("background", "face", "body")
    height: int = 320                                  # input canvas (the frame is letterboxed into it)
    width: int = 224
    widths: tuple[int, ...] = (24, 48, 64, 128, 192)  # channels at strides 2, 4, 8, 16, 32

    def __post_init__(self) -> None:
        stride = 2 ** len(self.widths)
        if self.height % stride or self.width % stride:
            raise ValueError(f"parser input {self.height}x{self.width} must be a multiple of {stride}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> ParserNetConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SeparableBlock(nn.Sequential):
    """3×3 depthwise (optionally strided) then 1×1 pointwise, each with BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(_conv_bn(cin, cin, 3, stride, groups=cin), _conv_bn(cin, cout, 1))


class ParserNet(nn.Module):
    """Input: B×3×H×W in [-1, 1]. Output: B×L×H×W logits."""

    def __init__(self, config: ParserNetConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.stem = _conv_bn(3, w[0], 3, 2)
        self.down = nn.ModuleList(
            nn.Sequential(SeparableBlock(w[i - 1], w[i], 2), SeparableBlock(w[i], w[i])) for i in range(1, len(w)))
        self.context = SeparableBlock(w[-1], w[-1])
        self.up = nn.ModuleList(SeparableBlock(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1)))
        self.head = nn.Conv2d(w[0], len(config.labels), 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(image)]
        for block in self.down:
            skips.append(block(skips[-1]))
        x = self.context(skips.pop())
        for block in self.up:
            skip = skips.pop()
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False),
                                 skip], dim=1))
        return F.interpolate(self.head(x), size=image.shape[-2:], mode="bilinear", align_corners=False)
