"""The OpenVINO backend: the bundle's own ONNX graphs compiled by OpenVINO for the CPU.

Why: on CPUs with native bf16 (AVX-512 BF16, AMX) OpenVINO runs our graphs in bf16, and
it runs int8 (QDQ) bundles with its low-precision kernels; ONNX Runtime's CPU provider
uses neither for these graphs (docs/performance.md, "CPU fast path"). Strict like the other providers:
a missing `openvino` package or a forced precision the CPU lacks is `ProviderUnavailable`.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .errors import BundleFailure
from .providers import OPENVINO_PROVIDER, BackendOptions, ProviderUnavailable

PRECISION_HINTS = ("auto", "bf16", "f32")


def openvino_module():
    """The `openvino` package, or `ProviderUnavailable` naming the extra that installs it."""
    try:
        import openvino
    except ImportError:
        raise ProviderUnavailable("provider 'openvino' needs the OpenVINO runtime: pip install 'scam[openvino]'") from None
    return openvino


def cpu_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin can compute natively here (e.g. FP32, BF16, INT8)."""
    return list(openvino_module().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def inference_precision(hint: str, capabilities: list[str], quantized: bool = False) -> str:
    """`auto`: bf16 where the CPU computes it natively, else f32; a forced bf16 on a CPU
    without it is refused rather than emulated (emulated bf16 is slower than f32). An int8
    (QDQ) graph runs its other layers in f32: OpenVINO 2026.4 dies with SIGFPE compiling
    our int8 generator for bf16 (seen here), so that is refused too."""
    if hint not in PRECISION_HINTS:
        raise ProviderUnavailable(f"precision hint must be one of {', '.join(PRECISION_HINTS)}, got {hint!r}")
    native_bf16 = "BF16" in capabilities
    if hint == "bf16" and not native_bf16:
        raise ProviderUnavailable("--precision-hint bf16: this CPU has no native bf16 "
                                  f"(OpenVINO reports {', '.join(capabilities)}); use f32 or auto")
    if hint == "bf16" and quantized:
        raise ProviderUnavailable("--precision-hint bf16: not with an int8 bundle (OpenVINO crashes compiling it); "
                                  "use auto or f32")
    if hint == "auto":
        return "bf16" if native_bf16 and not quantized else "f32"
    return hint


class OpenVinoSession:
    """`OnnxSession.run`'s contract (named numpy inputs, the one output as numpy) on an
    OpenVINO compiled model. `precision` is the inference precision actually used (an int8
    bundle keeps its int8 layers whatever it is)."""

    provider = OPENVINO_PROVIDER

    def __init__(self, path: Path, options: BackendOptions) -> None:
        core = openvino_module().Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise BundleFailure(f"{path}: not a readable ONNX graph ({str(exc).splitlines()[0][:200]})") from None
        quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())  # how QDQ reads in
        self.precision = inference_precision(options.precision_hint,
                                             list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")), quantized)
        self._config: dict = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY"}
        if options.threads:
            self._config["INFERENCE_NUM_THREADS"] = options.threads
        self._core, self._model, self._path = core, model, path
        self.input_names = [i.any_name for i in model.inputs]
        self._dtypes = {i.any_name: np.dtype(i.get_element_type().to_dtype()) for i in model.inputs}
        self._compiled: dict[int, tuple] = {}  # batch size -> (compiled model, its one infer request)
        self._lock = threading.Lock()
        self.expect_batch(1)  # compile now: a graph OpenVINO cannot compile fails here, not mid-video

    def expect_batch(self, batch: int) -> None:
        """Compile for `batch` now (0.5–1.1 s per graph here), not on the first run."""
        with self._lock:
            self._request(batch)

    def _request(self, batch: int) -> tuple:
        """A model compiled for this batch size: static shapes run faster than the dynamic
        batch on OpenVINO's CPU plugin (measured: docs/performance.md). Call with the lock held."""
        if batch not in self._compiled:
            model, shapes = self._model.clone(), {}
            for i in model.inputs:
                shape = i.get_partial_shape()
                shape[0] = batch  # other dimensions as the graph has them (a parser's may be dynamic)
                shapes[i.any_name] = shape
            model.reshape(shapes)
            try:
                compiled = self._core.compile_model(model, "CPU", self._config)
            except Exception as exc:
                raise ProviderUnavailable(f"{self._path.name}: OpenVINO could not compile it "
                                          f"({str(exc).splitlines()[0][:200]})") from None
            self._compiled[batch] = (compiled, compiled.create_infer_request())
        return self._compiled[batch]

    def run(self, **inputs: np.ndarray) -> np.ndarray:
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise ValueError(f"missing inputs: {', '.join(sorted(missing))}")
        feed = {n: np.ascontiguousarray(inputs[n], self._dtypes[n]) for n in self.input_names}
        batch = len(feed[self.input_names[0]])
        with self._lock:  # one request per batch size, one run at a time (as OnnxSession)
            # a smaller batch (a video's last one) is padded to a size compiled already:
            # running a few copies costs milliseconds, compiling another size up to a second
            size = min((b for b in self._compiled if b >= batch), default=batch)
            if size > batch:
                feed = {n: np.concatenate([x, np.repeat(x[-1:], size - batch, axis=0)]) for n, x in feed.items()}
            compiled, request = self._request(size)
            return np.array(request.infer(feed)[compiled.output(0)])[:batch]
