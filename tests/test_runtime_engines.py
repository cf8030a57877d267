"""Native TensorRT engines in the runtime: which build is chosen, strictness, and (on a GPU
with TensorRT) that the engines give ONNX Runtime's results through `SubjectReplacer`."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
from conftest import tensorrt_gpu_reason

from models.synthetic import person_labels
from scam_runtime.backend import BackendOptions, ProviderUnavailable, resolve_providers
from scam_runtime.bundle import Bundle, sha256_file
from scam_runtime.engines import Device, list_builds, select_build
from scam_runtime.errors import ProviderFailure
from scam_runtime.replacer import SubjectReplacer

H100 = Device("NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture
def bundle(small_bundle, tmp_path) -> Bundle:
    """The small bundle's manifest seen at `tmp_path`, where engine builds are written."""
    return dataclasses.replace(Bundle.load(small_bundle, verify=False), path=tmp_path)


def add_build(bundle: Bundle, folder: str, gpu: str, cc: str, trt: str, **changes) -> None:
    """A build folder as `scam-export trt` writes it; the engine files are opaque bytes here."""
    d = bundle.path / "trt" / folder
    d.mkdir(parents=True)
    engines = {}
    for name in ("encoder.engine", "generator.engine"):
        (d / name).write_bytes(f"{folder}/{name}".encode())
        engines[name] = {"sha256": sha256_file(d / name), "seconds": 1.0}
    build = {"gpu": gpu, "compute_capability": cc, "tensorrt": trt, "max_batch": 8, "workspace_bytes": 1 << 30,
             "precision": "fp32", "bundle_files": dict(bundle.manifest["files"]), "engines": engines, **changes}
    (d / "build.json").write_text(json.dumps(build))


def test_select_build_matches_gpu_and_tensorrt(bundle):
    add_build(bundle, "a100_sm80_trt10.3.0", "NVIDIA A100-SXM4-40GB", "8.0", "10.3.0")
    add_build(bundle, "h100-pcie_sm90_trt10.3.0", "NVIDIA H100 PCIe", "9.0", "10.3.0")
    add_build(bundle, "h100_sm90_trt10.3.0", H100.name, "9.0", "10.3.0")
    add_build(bundle, "h100_sm90_trt10.7.0", H100.name, "9.0", "10.7.0")
    (bundle.path / "trt" / "broken").mkdir()
    (bundle.path / "trt" / "broken" / "build.json").write_text("{not json")
    assert len(list_builds(bundle)) == 4
    assert select_build(bundle, H100, "10.3.0").folder.name == "h100_sm90_trt10.3.0"
    assert select_build(bundle, H100, "10.7.0").folder.name == "h100_sm90_trt10.7.0"
    # another board of the same architecture can run them (TensorRT checks the SM, not the name)
    assert select_build(bundle, Device("NVIDIA H100 NVL", "9.0"), "10.7.0").folder.name == "h100_sm90_trt10.7.0"
    with pytest.raises(ProviderUnavailable) as err:
        select_build(bundle, Device("NVIDIA L4", "8.9"), "10.3.0")
    message = str(err.value)
    assert "no TensorRT engines for NVIDIA L4 (sm 8.9, TensorRT 10.3.0)" in message
    assert "NVIDIA A100-SXM4-40GB (sm 8.0, TensorRT 10.3.0)" in message
    assert f"run `scam-export trt {bundle.path}` on this machine" in message
    with pytest.raises(ProviderUnavailable, match=r"the bundle has: none"):
        select_build(dataclasses.replace(bundle, path=bundle.path / "elsewhere"), H100, "10.3.0")


def test_select_build_refuses_stale_or_altered_engines(bundle):
    stale = dict(bundle.manifest["files"], **{bundle.generator.file: "0" * 64})
    add_build(bundle, "stale", H100.name, "9.0", "10.3.0", bundle_files=stale)
    with pytest.raises(ProviderUnavailable, match="built from other graphs than this bundle's"):
        select_build(bundle, H100, "10.3.0")
    shutil.rmtree(bundle.path / "trt")
    add_build(bundle, "h100", H100.name, "9.0", "10.3.0")
    (bundle.path / "trt" / "h100" / "generator.engine").write_bytes(b"altered")
    with pytest.raises(ProviderUnavailable, match=r"generator.engine: sha256 does not match .*build.json"):
        select_build(bundle, H100, "10.3.0")
    (bundle.path / "trt" / "h100" / "generator.engine").unlink()
    with pytest.raises(ProviderUnavailable, match=r"generator.engine: missing"):
        select_build(bundle, H100, "10.3.0")


@pytest.mark.skipif(tensorrt_gpu_reason() is None, reason="TensorRT and a GPU are present")
def test_trt_engine_is_strict(small_bundle):
    with pytest.raises(ProviderFailure, match="TensorRT|cuda-python|GPU"):
        SubjectReplacer(small_bundle, backend=BackendOptions("trt-engine"))
    expected = resolve_providers(BackendOptions("tensorrt", allow_fallback=True))[0]
    messages = []
    replacer = SubjectReplacer(small_bundle, backend=BackendOptions("trt-engine", allow_fallback=True),
                               warn=messages.append)
    assert len(messages) == 1 and messages[0].startswith("no TensorRT engines: ")
    assert messages[0].endswith("; falling back to ONNX Runtime")
    assert replacer.encoder.session.get_providers()[0] == expected
    # graphs without engines (the parsers) read trt-engine as ONNX Runtime's CUDA provider
    if "CUDAExecutionProvider" not in expected:
        with pytest.raises(ProviderUnavailable, match="'cuda' is not available"):
            resolve_providers(BackendOptions("trt-engine"))


@pytest.mark.skipif(tensorrt_gpu_reason() is not None, reason=str(tensorrt_gpu_reason()))
def test_engines_run_the_replacer_like_onnxruntime(small_bundle, tmp_path):
    from scam_export.trt import build_engines
    bundle = tmp_path / "b"
    shutil.copytree(small_bundle, bundle)
    build_engines(bundle, max_batch=4)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(6)]
    labels = [person_labels(96, 128, shift=i) for i in range(6)]
    results = {}
    for provider in ("cpu", "trt-engine"):
        replacer = SubjectReplacer(bundle, backend=BackendOptions(provider))
        assert replacer.provider == provider
        subject = replacer.encode_subject(frames[0], labels[0])
        results[provider] = (subject.latents, replacer.process_batch(frames, labels, subject))  # 6 > max batch 4
    (z_cpu, cpu), (z_trt, trt) = results["cpu"], results["trt-engine"]
    diff = np.abs(np.stack([r.generated for r in cpu]).astype(int) - np.stack([r.generated for r in trt]))
    print(f"engines vs ONNX Runtime CPU: latents max abs {np.abs(z_trt - z_cpu).max():.2e}, "
          f"generated 8-bit max {diff.max()}, mean {diff.mean():.3f}")
    assert np.abs(z_trt - z_cpu).max() < 1e-2
    assert diff.mean() < 1.0 and diff.max() <= 16
