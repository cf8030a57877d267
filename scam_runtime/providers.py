"""What a session is asked for: the provider names and options, below both session kinds
(`backend.py` for ONNX Runtime, `openvino_session.py`) so neither imports the other."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ProviderFailure

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
ENGINE_PROVIDER = "trt-engine"
OPENVINO_PROVIDER = "openvino"
PROVIDER_CHOICES = (*PROVIDERS, ENGINE_PROVIDER, OPENVINO_PROVIDER)


class ProviderUnavailable(ProviderFailure):
    """The requested execution provider is not usable on this machine (exit 13 wherever a
    session is created: bundle graphs and parsers alike)."""


@dataclass(frozen=True)
class BackendOptions:
    provider: str = "cpu"          # cpu | cuda | tensorrt | trt-engine | openvino
    allow_fallback: bool = False   # if the provider is missing, use the next one down (reported)
    threads: int = 0               # CPU intra-op threads; 0 = the runtime's default
    precision_hint: str = "auto"   # openvino: auto (bf16 where native, else f32) | bf16 | f32
