"""TensorRT engines from a bundle's ONNX graphs (TensorRT 10+ Python API, strongly typed)."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from scam_runtime.atomic import write_bytes, write_json
from scam_runtime.backend import ProviderUnavailable
from scam_runtime.bundle import Bundle, sha256_file
from scam_runtime.engines import Device, current_device, tensorrt_module

from .options import TRT_WORKSPACE

T = TypeVar("T")


class TensorRTUnavailable(RuntimeError):
    """No TensorRT Python package, or no CUDA GPU to build for."""


def parse_size(text: str) -> int:
    """'4G', '512M', '1073741824' -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 4G or 512M)")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def _checked(probe: Callable[[], T]) -> T:
    """The runtime's TensorRT/GPU probe (what it will match engines against), as this module's error."""
    try:
        return probe()
    except ProviderUnavailable as exc:
        raise TensorRTUnavailable(str(exc)) from None


def engine_folder(bundle: Path, device: Device, trt_version: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device.name).strip("-").lower()
    return bundle / "trt" / f"{slug}_sm{device.compute_capability.replace('.', '')}_trt{trt_version}"


def build_engines(bundle_dir: Path, max_batch: int | None = None, workspace: int = parse_size(TRT_WORKSPACE),
                  log: Callable[[str], None] = print) -> Path:
    """Build encoder and generator engines; returns their folder. Raises `TensorRTUnavailable`."""
    trt = _checked(tensorrt_module)
    device = _checked(current_device)  # cuda-python: torch's CPU build would not see the GPU
    bundle = Bundle.load(bundle_dir)
    max_batch = max_batch or int(bundle.manifest.get("max_batch", 8))
    folder = engine_folder(bundle_dir, device, trt.__version__)
    folder.mkdir(parents=True, exist_ok=True)
    cache_path = bundle_dir / "trt" / "timing.cache"
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    cache_bytes = cache_path.read_bytes() if cache_path.exists() else b""
    engines = {}
    for spec in (bundle.encoder, bundle.generator):
        name = Path(spec.file).stem
        started = time.monotonic()
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(bundle_dir / spec.file)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"{spec.file}: TensorRT could not parse the graph: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        cache = config.create_timing_cache(cache_bytes)
        config.set_timing_cache(cache, ignore_mismatch=False)
        config.progress_monitor = _progress_monitor(trt, name, log)
        profile = builder.create_optimization_profile()
        for t in spec.inputs:
            dims = [d for d in t.shape[1:]]
            profile.set_shape(t.name, [1, *dims], [max(1, max_batch // 2), *dims], [max_batch, *dims])
        config.add_optimization_profile(profile)
        log(f"building TensorRT engine for {name} (batch 1..{max_batch}); this can take minutes...")
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"{spec.file}: TensorRT engine build failed (see the log above)")
        target = folder / f"{name}.engine"
        write_bytes(target, bytes(serialized))
        cache_bytes = bytes(cache.serialize())
        engines[target.name] = {"sha256": sha256_file(target), "seconds": round(time.monotonic() - started, 1)}
        log(f"{target} written in {engines[target.name]['seconds']} s")
    write_bytes(cache_path, cache_bytes)
    write_json(folder / "build.json", {
        "gpu": device.name, "compute_capability": device.compute_capability, "tensorrt": trt.__version__,
        "max_batch": max_batch, "workspace_bytes": workspace, "precision": bundle.precision,
        "bundle_files": bundle.manifest["files"], "engines": engines})
    return folder


def _progress_monitor(trt: Any, name: str, log: Callable[[str], None]) -> Any:
    """Logs each top-level build phase, so a minutes-long build shows it is alive."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:
                log(f"  {name}: {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # keep building

        def phase_finish(self, phase_name: str) -> None:
            pass

    return Monitor()
