"""VGG19 perceptual loss (spec: relu1_1..relu5_1, weights 1/32..1, ImageNet normalisation).

The network is defined here in torchvision's `vgg19().features` layout (torchvision is
not needed), so its ImageNet state dict (`vgg19-dcbb9e9d.pth`) loads as it is.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsError
from .perceptual import TappedLoss

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
TAPS = (1, 6, 11, 20, 29)                     # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in `features`
TAP_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def vgg19_features() -> nn.Sequential:
    """torchvision's `vgg19().features` up to relu5_1 (the layers after it are never used)."""
    layers: list[nn.Module] = []
    channels = 3
    for v in _CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    return nn.Sequential(*layers[:TAPS[-1] + 1])


def load_vgg19_state(weights: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    """`features.*` tensors from a local file, else torch.hub's cache or download."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"{path}: VGG19 weights file not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"{path}: not a readable VGG19 state dict ({str(exc).splitlines()[0][:160]})") from None
    else:
        try:
            state = torch.hub.load_state_dict_from_url(VGG19_URL, map_location="cpu", progress=False,
                                                       weights_only=True)
        except OSError as exc:  # URLError and socket errors: offline
            cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_URL).name
            raise WeightsError(
                f"VGG19 ImageNet weights for the perceptual loss are not in {cache} and cannot be downloaded "
                f"({exc}); pass --vgg-weights FILE (torchvision's vgg19 state dict, {Path(VGG19_URL).name}) "
                f"or turn the loss off with --perceptual-weight 0") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{weights}: not a state dict")
    return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}


class VGGPerceptual(TappedLoss):
    """Σ wᵢ·L1(φᵢ(fake), φᵢ(real)) over the five taps, on images in [-1, 1]; frozen."""

    tap_weights = TAP_WEIGHTS

    def __init__(self, weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.features = vgg19_features()
        state = load_vgg19_state(weights)
        missing = sorted(set(self.features.state_dict()) - set(state))
        if missing:
            raise WeightsError(f"{weights or VGG19_URL}: not torchvision's vgg19 layout "
                               f"(missing features.{missing[0]})")
        self.features.load_state_dict({k: state[k] for k in self.features.state_dict()})
        self.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                out.append(x)
        return out
