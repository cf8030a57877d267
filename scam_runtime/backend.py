"""One inference-session abstraction over ONNX Runtime's execution providers.

`provider="cuda"` means CUDA or an error: nothing falls back silently unless the caller
opts in with `allow_fallback=True`, and the provider actually used is always reported.
Two choices are not ONNX Runtime providers: `trt-engine` (the bundle's own TensorRT
engines, `engines.py`; graphs without an engine, the parsers, run on CUDA then) and
`openvino` (OpenVINO compiling the same ONNX files for the CPU, `openvino_session.py`).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import BundleFailure
from .openvino_session import OpenVinoSession
from .providers import (
    ENGINE_PROVIDER,
    OPENVINO_PROVIDER,
    PROVIDER_CHOICES,
    PROVIDERS,
    BackendOptions,
    ProviderUnavailable,
)

__all__ = ["ENGINE_PROVIDER", "OPENVINO_PROVIDER", "PROVIDER_CHOICES", "PROVIDERS", "BackendOptions",
           "OnnxSession", "ProviderUnavailable", "available_providers", "open_session", "resolve_providers"]


def available_providers() -> list[str]:
    """Our names of the providers this onnxruntime build offers."""
    offered = set(ort.get_available_providers())
    return [name for name, ep in PROVIDERS.items() if ep in offered]


def ort_provider(provider: str) -> str:
    """The ONNX Runtime provider that stands for `provider` on a graph without engines
    (and for `openvino` where fallback is allowed and OpenVINO is missing)."""
    return {ENGINE_PROVIDER: "cuda", OPENVINO_PROVIDER: "cpu"}.get(provider, provider)


def resolve_providers(options: BackendOptions) -> list[str]:
    """ONNX Runtime's provider list for `options` (CPU last, for nodes a GPU provider lacks),
    or `ProviderUnavailable` when the requested provider is missing and fallback is off."""
    if options.provider not in PROVIDER_CHOICES:
        raise ProviderUnavailable(f"unknown provider {options.provider!r}; choose one of {', '.join(PROVIDER_CHOICES)}")
    requested = ort_provider(options.provider)
    available = available_providers()
    chain = {"tensorrt": ["tensorrt", "cuda", "cpu"], "cuda": ["cuda", "cpu"], "cpu": ["cpu"]}[requested]
    if requested not in available:
        if not options.allow_fallback:
            raise ProviderUnavailable(
                f"execution provider '{requested}' is not available in this onnxruntime build "
                f"(available: {', '.join(available)}); install onnxruntime-gpu, or allow fallback "
                f"(allow_fallback=True, --allow-fallback)")
        chain = [p for p in chain if p in available]
    return [PROVIDERS[p] for p in chain]


class OnnxSession:
    """A session created once and reused; `run` is safe to call from several threads."""

    def __init__(self, path: Path, options: BackendOptions) -> None:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        # Encoder and generator alternate, beside decode/encode threads: a pool that
        # spin-waits after its run steals the cores the next one needs (docs/runtime.md).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if options.threads:
            so.intra_op_num_threads = options.threads
            so.inter_op_num_threads = 1
        providers = resolve_providers(options)
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... classes
            raise BundleFailure(f"{path}: not a readable ONNX graph ({str(exc).splitlines()[0][:200]})") from None
        active = self.session.get_providers()[0]
        if active != PROVIDERS[ort_provider(options.provider)] and not options.allow_fallback:
            raise ProviderUnavailable(f"{path.name}: '{ort_provider(options.provider)}' could not be initialised "
                                      f"(onnxruntime chose {active}); pass --allow-fallback to accept that")
        self.provider = next(name for name, ep in PROVIDERS.items() if ep == active)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._lock = threading.Lock()

    def run(self, **inputs: np.ndarray) -> np.ndarray:
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise ValueError(f"missing inputs: {', '.join(sorted(missing))}")
        with self._lock:  # one run at a time per session keeps memory bounded and order stable
            return self.session.run(None, {k: inputs[k] for k in self.input_names})[0]

    def expect_batch(self, batch: int) -> None:
        """Nothing to do: ONNX Runtime runs any batch size of the graph's dynamic batch as it comes."""


def open_session(path: Path, options: BackendOptions, warn: Callable[[str], None] | None = None):
    """`OnnxSession`, or `OpenVinoSession` for provider `openvino` (with `allow_fallback`, ONNX
    Runtime's CPU provider where OpenVINO is missing, said through `warn`)."""
    if options.provider == OPENVINO_PROVIDER:
        try:
            return OpenVinoSession(path, options)
        except ProviderUnavailable as exc:
            if not options.allow_fallback:
                raise
            if warn is not None:
                warn(f"{exc}; falling back to ONNX Runtime's CPU provider")
    return OnnxSession(path, options)
