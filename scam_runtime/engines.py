"""Native TensorRT engines from a bundle (`scam-export trt`), run without ONNX Runtime.

An engine is only valid for the GPU model and TensorRT version that built it, so the
bundle keeps one folder per build (`trt/<gpu>_sm<cc>_trt<version>/` with `build.json`)
and `select_build` picks the one made for this machine from this bundle's graphs. The
TensorRT and CUDA packages are imported only when an engine is asked for, so the runtime
stays importable (and torch-free) everywhere; device memory goes through cuda-python.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from .backend import ENGINE_PROVIDER, BackendOptions, ProviderUnavailable, open_session
from .bundle import Bundle, sha256_file


class Session(Protocol):
    """What the replacer needs of a graph: named numpy inputs in, its output out."""
    provider: str

    def run(self, **inputs: np.ndarray) -> np.ndarray: ...

    def expect_batch(self, batch: int) -> None:
        """Get ready for runs of `batch` inputs before they come (OpenVINO compiles per batch size)."""


@dataclass(frozen=True)
class EngineBuild:
    """One `trt/*/build.json`: which GPU and TensorRT made the engines, from which graphs."""
    folder: Path
    gpu: str
    compute_capability: str        # "9.0"
    tensorrt: str
    max_batch: int
    engines: dict[str, str]        # engine file name -> sha256
    bundle_files: dict[str, str]   # the bundle's files (name -> sha256) at build time

    def describe(self) -> str:
        return f"{self.gpu} (sm {self.compute_capability}, TensorRT {self.tensorrt})"


@dataclass(frozen=True)
class Device:
    name: str
    compute_capability: str


def list_builds(bundle: Bundle) -> list[EngineBuild]:
    """Every readable engine build in the bundle (unreadable `build.json` files are skipped)."""
    builds = []
    for manifest in sorted((bundle.path / "trt").glob("*/build.json")):
        try:
            b = json.loads(manifest.read_text())
            builds.append(EngineBuild(manifest.parent, str(b["gpu"]), str(b["compute_capability"]),
                                      str(b["tensorrt"]), int(b["max_batch"]),
                                      {k: str(v["sha256"]) for k, v in b["engines"].items()},
                                      {k: str(v) for k, v in b["bundle_files"].items()}))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return builds


def select_build(bundle: Bundle, device: Device, tensorrt_version: str) -> EngineBuild:
    """The build for this GPU and TensorRT from the bundle's current graphs, with intact engines.

    Same compute capability and TensorRT version are required (TensorRT refuses anything
    else); among those a build on the same GPU model is preferred. Raises
    `ProviderUnavailable` saying what the bundle has and how to add an engine for here.
    """
    graphs = {bundle.encoder.file, bundle.generator.file}
    current = {name: bundle.manifest["files"][name] for name in graphs}
    builds = list_builds(bundle)
    usable = [b for b in builds
              if b.compute_capability == device.compute_capability and b.tensorrt == tensorrt_version]
    here = f"{device.name} (sm {device.compute_capability}, TensorRT {tensorrt_version})"
    hint = f"run `scam-export trt {bundle.path}` on this machine"
    if not usable:
        found = "; ".join(b.describe() for b in builds) or "none"
        raise ProviderUnavailable(f"{bundle.path}: no TensorRT engines for {here} (the bundle has: {found}); {hint}")
    build = min(usable, key=lambda b: b.gpu != device.name)
    if {k: build.bundle_files.get(k) for k in graphs} != current:
        raise ProviderUnavailable(f"{build.folder}: engines were built from other graphs than this bundle's; {hint}")
    for graph in sorted(graphs):
        engine = build.folder / f"{Path(graph).stem}.engine"
        digest = build.engines.get(engine.name)
        if digest is None or not engine.is_file():
            raise ProviderUnavailable(f"{engine}: missing; {hint}")
        if sha256_file(engine) != digest:
            raise ProviderUnavailable(f"{engine}: sha256 does not match {build.folder / 'build.json'} "
                                      f"(file altered or corrupt); {hint}")
    return build


def tensorrt_module() -> Any:
    """The TensorRT package (10 or newer: the tensor-name API the engines are built and run with)."""
    try:
        import tensorrt
    except ImportError:
        raise ProviderUnavailable("the TensorRT Python package is not installed "
                                  "(pip install 'scam[tensorrt]' on an NVIDIA GPU machine)") from None
    if int(tensorrt.__version__.split(".")[0]) < 10:
        raise ProviderUnavailable(f"TensorRT {tensorrt.__version__} found; scam needs TensorRT 10 or newer")
    return tensorrt


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # cuda-python before 12.6
        except ImportError:
            raise ProviderUnavailable("cuda-python is not installed (pip install 'scam[tensorrt]')") from None
    return runtime


def _call(cudart: Any, result: tuple) -> Any:
    """cuda-python returns (error, value...): the value, or RuntimeError with CUDA's message."""
    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA: {cudart.cudaGetErrorString(err)[1].decode()}")
    return values[0] if len(values) == 1 else tuple(values)


def current_device() -> Device:
    """GPU 0 as CUDA names it (the name `scam-export trt` records), or `ProviderUnavailable`."""
    cudart = _cudart()
    try:
        if _call(cudart, cudart.cudaGetDeviceCount()) < 1:
            raise RuntimeError("no CUDA device")
        props = _call(cudart, cudart.cudaGetDeviceProperties(0))
    except RuntimeError as exc:
        raise ProviderUnavailable(f"no usable CUDA GPU for TensorRT engines ({exc})") from None
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return Device(name.split("\x00")[0].strip(), f"{props.major}.{props.minor}")


def open_sessions(bundle: Bundle, options: BackendOptions,
                  warn: Callable[[str], None]) -> tuple[Session, Session]:
    """Encoder and generator sessions. `trt-engine` takes the bundle's engines for this GPU,
    or with `allow_fallback` ONNX Runtime's TensorRT provider and the ones below it (`warn`
    says why)."""
    if options.provider == ENGINE_PROVIDER:
        try:
            trt = tensorrt_module()
            build = select_build(bundle, current_device(), trt.__version__)
            return (EngineSession(build.folder / f"{Path(bundle.encoder.file).stem}.engine"),
                    EngineSession(build.folder / f"{Path(bundle.generator.file).stem}.engine"))
        except ProviderUnavailable as exc:
            if not options.allow_fallback:
                raise
            warn(f"no TensorRT engines: {exc}; falling back to ONNX Runtime")
            options = replace(options, provider="tensorrt")
    return (open_session(bundle.file(bundle.encoder.file), options, warn),
            open_session(bundle.file(bundle.generator.file), options))


class EngineSession:
    """One deserialised engine with its execution context, CUDA stream and device buffers.

    `run` has `OnnxSession.run`'s contract (named numpy inputs, the one output as numpy);
    batches larger than the engine's optimisation profile are run in slices. Buffers grow
    to the largest batch seen and are reused; one run at a time per session.
    """

    provider = ENGINE_PROVIDER

    def __init__(self, path: Path) -> None:
        trt, self._cudart = tensorrt_module(), _cudart()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ProviderUnavailable(f"{path}: TensorRT could not load this engine (see its log above)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in self.input_names]
        if len(outputs) != 1:
            raise ProviderUnavailable(f"{path}: expected one output, the engine has {len(outputs)}")
        self._output = outputs[0]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.max_batch = min(int(self.engine.get_tensor_profile_shape(n, 0)[2][0]) for n in self.input_names)
        self._stream = _call(self._cudart, self._cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # tensor name -> (device pointer, bytes)
        self._lock = threading.Lock()

    def run(self, **inputs: np.ndarray) -> np.ndarray:
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise ValueError(f"missing inputs: {', '.join(sorted(missing))}")
        batch = len(inputs[self.input_names[0]])
        with self._lock:
            parts = [self._run({n: inputs[n][start:start + self.max_batch] for n in self.input_names})
                     for start in range(0, batch, self.max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def expect_batch(self, batch: int) -> None:
        """Nothing to do: the engine's optimisation profile covers every batch up to `max_batch`."""

    def _device(self, name: str, nbytes: int) -> int:
        pointer, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                _call(self._cudart, self._cudart.cudaFree(pointer))
            pointer = int(_call(self._cudart, self._cudart.cudaMalloc(nbytes)))
            self._buffers[name] = (pointer, nbytes)
        return pointer

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        cudart, stream = self._cudart, self._stream
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        for name in self.input_names:
            host = np.ascontiguousarray(inputs[name], dtype=self._dtypes[name])
            if not self.context.set_input_shape(name, host.shape):
                raise ValueError(f"{name}: shape {host.shape} is outside the engine's optimisation profile")
            pointer = self._device(name, host.nbytes)
            _call(cudart, cudart.cudaMemcpyAsync(pointer, host.ctypes.data, host.nbytes, to_device, stream))
            self.context.set_tensor_address(name, pointer)
        out = np.empty(tuple(self.context.get_tensor_shape(self._output)), self._dtypes[self._output])
        pointer = self._device(self._output, out.nbytes)
        self.context.set_tensor_address(self._output, pointer)
        if not self.context.execute_async_v3(int(stream)):
            raise RuntimeError("TensorRT engine execution failed (see its log above)")
        _call(cudart, cudart.cudaMemcpyAsync(out.ctypes.data, pointer, out.nbytes,
                                             cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))
        _call(cudart, cudart.cudaStreamSynchronize(stream))
        return out

    def close(self) -> None:
        """Frees the device buffers, the stream and the engine, context first (also on collection)."""
        for pointer, _ in self._buffers.values():
            self._cudart.cudaFree(pointer)
        self._buffers.clear()
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self.context = self.engine = None

    def __del__(self) -> None:
        if hasattr(self, "_buffers"):  # fully constructed
            self.close()
