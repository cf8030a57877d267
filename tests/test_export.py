"""scam-export: graphs, parity, manifest, CLI errors, TensorRT checks."""
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY, tensorrt_gpu_reason

from models import ATTENTION_PATHS, ModelConfig, SATEncoder, SCAMGenerator, load_checkpoint, one_hot
from models.synthetic import random_checkpoint
from scam_export import EXIT_BAD_CHECKPOINT, EXIT_PARITY, EXIT_TRT_UNAVAILABLE, EXIT_UNWRITABLE
from scam_export.bundle import ExportOptions, export_bundle
from scam_export.options import ATTENTION
from scam_export.cli import main
from scam_export.parity import blob_inputs, psnr_db
from scam_export.trt_support import check_trt_compatible
from scam_runtime.backend import BackendOptions, OnnxSession
from scam_runtime.bundle import Bundle, BundleError


def session(path: Path) -> OnnxSession:
    return OnnxSession(path, BackendOptions())


def independent_psnr(bundle_dir: Path, ckpt: Path, batch: int, seed: int) -> tuple[float, float]:
    """Fresh inputs, our own ORT run against the checkpoint: (latents max abs, output PSNR)."""
    config, enc, gen = load_checkpoint(ckpt)
    images, labels, _ = blob_inputs(config, batch, seed=seed)
    with torch.no_grad():
        mask = one_hot(torch.from_numpy(labels).long(), config.num_labels)
        z = enc(torch.from_numpy(images), mask)
        ref = gen(mask, z).numpy()
    z_ort = session(bundle_dir / "encoder.onnx").run(image=images, labels=labels)
    out = session(bundle_dir / "generator.onnx").run(labels=labels, latents=z_ort)
    return float(np.abs(z_ort - z.numpy()).max()), psnr_db(out, ref)


# fp16 on the small preset (the same layer types as paper), fp32 on paper; paper in fp16 added
# ~3 CPU-minutes to the suite for no layer type the two others miss
@pytest.mark.parametrize("preset, precision", [("small", "fp16"), ("paper", "fp32")])
def test_parity(tmp_path, preset, precision):
    ckpt = random_checkpoint(tmp_path / "model.pt", preset=preset)
    manifest = export_bundle(ckpt, tmp_path / "b", ExportOptions(precision=precision), log=lambda m: None)
    parity = manifest["parity"]
    assert parity["passed"] and parity["precision"] == precision
    assert min(parity["generator_psnr_db"], parity["end_to_end_psnr_db"]) >= {"fp32": 60, "fp16": 35}[precision]
    z_err, psnr = independent_psnr(tmp_path / "b", ckpt, batch=1, seed=5)
    assert psnr >= {"fp32": 60, "fp16": 35}[precision]
    assert z_err < {"fp32": 1e-3, "fp16": 5e-2}[precision]
    if precision == "fp16":  # fp16 inside, fp32 at the edges, norms and softmax in fp32
        for name in ("encoder", "generator"):
            model = onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / "b" / f"{name}.onnx")))
            edges = list(model.graph.input) + list(model.graph.output)
            assert {v.type.tensor_type.elem_type for v in edges} <= {onnx.TensorProto.INT32, onnx.TensorProto.FLOAT}
            assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
            types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
            for node in model.graph.node:
                if node.op_type in ("LayerNormalization", "InstanceNormalization", "Softmax"):
                    assert types[node.input[0]] == onnx.TensorProto.FLOAT, f"{name}: {node.op_type} not in fp32"


def test_parity_where_nearest_resize_ratios_are_uneven(tmp_path):
    """At 256×170 the tiny generator's last block upsamples 120×80 → 256×170, where ONNX
    Runtime's Resize picked other source rows than PyTorch (31.5 dB); Resize is left only
    where the ratio is a power of two, every other resize is a Gather of constant indices."""
    ckpt = random_checkpoint(tmp_path / "tiny.pt", preset="small", height=256, width=170, **TINY)
    manifest = export_bundle(ckpt, tmp_path / "b", ExportOptions(), log=lambda m: None)
    assert manifest["parity"]["generator_psnr_db"] >= 60 and manifest["parity"]["end_to_end_psnr_db"] >= 60
    for name in ("encoder", "generator"):
        model = onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / "b" / f"{name}.onnx")))
        shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                  for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
        for node in (n for n in model.graph.node if n.op_type == "Resize"):
            for n_in, n_out in zip(shapes[node.input[0]][-2:], shapes[node.output[0]][-2:]):
                ratio = max(n_in, n_out) // min(n_in, n_out)
                assert max(n_in, n_out) % min(n_in, n_out) == 0 and ratio & (ratio - 1) == 0, (name, n_in, n_out)


def test_small_bundle_parity_and_symbolic_batch(small_bundle):
    manifest = json.loads((small_bundle / "bundle.json").read_text())
    assert manifest["parity"]["passed"] and manifest["parity"]["generator_psnr_db"] >= 60
    assert manifest["attention_path"] == "folded"
    for name in ("encoder", "generator"):
        model = onnx.load(str(small_bundle / f"{name}.onnx"))
        for value in list(model.graph.input) + list(model.graph.output):
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch", value.name
    assert sorted(p.name for p in small_bundle.iterdir()) == ["bundle.json", "encoder.onnx", "generator.onnx"]
    z_err, psnr = independent_psnr(small_bundle, small_bundle.parent / "model.pt", batch=3, seed=9)
    assert z_err < 1e-3 and psnr >= 60  # batch 3 ≠ the export example's 2
    one = independent_psnr(small_bundle, small_bundle.parent / "model.pt", batch=1, seed=9)
    assert one[1] >= 60


def test_parity_inputs_have_an_absent_label():
    config = ModelConfig.preset("small", labels=["background", "face", "body", "shoes"], height=128, width=128)
    images, labels, absent = blob_inputs(config, 3)
    assert absent not in labels[0] and all(absent in labels[b] for b in (1, 2))
    assert images.min() >= -1 and images.max() <= 1 and labels.dtype == np.int32


@pytest.mark.parametrize("preset", ["small", "paper"])
@pytest.mark.parametrize("n_labels", [3, 19])
def test_dense_and_folded_paths_agree(preset, n_labels):
    labels = ["background"] + [f"l{i}" for i in range(1, n_labels)]
    config = ModelConfig.preset(preset, labels=labels, height=128, width=128, heads=2, latents_bg=4)
    torch.manual_seed(0)
    enc, gen = SATEncoder(config).eval(), SCAMGenerator(config, noise_mode="const").eval()
    ids = torch.randint(0, n_labels, (2, 128, 128))
    ids[0][ids[0] == 2] = 0  # label 2 absent from the first map: its latents attend uniformly
    mask = one_hot(ids, n_labels)
    image = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        z = enc(image, mask)
        dense = gen(mask, z)
        enc.attention_path = gen.attention_path = "folded"
        z_folded = enc(image, mask)
        folded = gen(mask, z)
    torch.testing.assert_close(z_folded, z, rtol=0, atol=1e-4)
    torch.testing.assert_close(folded, dense, rtol=0, atol=2e-4)
    assert set(ATTENTION) == set(ATTENTION_PATHS)  # the CLI's torch-free copy


def test_folded_path_trains_like_dense():
    """Same gradients (float64, so that rounding does not hide a difference): the folded path
    is another schedule of the same function, so training may use either."""
    config = ModelConfig.preset("small", labels=["background", "face", "body"], height=128, width=128)
    torch.manual_seed(0)
    gen = SCAMGenerator(config, noise_mode="const").double()
    mask = one_hot(torch.randint(0, 3, (2, 128, 128)), 3).double()
    z = torch.randn(2, config.num_latents, config.latent_dim, dtype=torch.float64)
    grads = []
    for path in ATTENTION_PATHS:
        gen.attention_path = path
        gen.zero_grad()
        gen(mask, z).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in gen.named_parameters()})
    for name, dense in grads[0].items():
        if name.endswith("attention.k.bias"):  # adds the same logit to every key: gradient 0 up to rounding
            assert dense.abs().max() < 1e-9 and grads[1][name].abs().max() < 1e-9, name
        else:
            assert (grads[1][name] - dense).norm() <= 1e-5 * dense.norm(), name


def test_manifest_is_complete_and_hashes_are_enforced(small_bundle, tmp_path):
    m = json.loads((small_bundle / "bundle.json").read_text())
    for key in ("format", "format_version", "labels", "latent_layout", "resolution", "normalisation", "noise",
                "precision", "attention_path", "graphs", "files", "source", "exporter", "parity"):
        assert key in m, key
    assert m["labels"] == [{"id": 0, "name": "background"}, {"id": 1, "name": "face"}, {"id": 2, "name": "body"}]
    assert m["latent_layout"] == {"background": [0, 8], "face": [8, 16], "body": [16, 24]}
    assert m["graphs"]["encoder"]["inputs"] == [
        {"name": "image", "shape": ["batch", 3, 128, 128], "dtype": "float32"},
        {"name": "labels", "shape": ["batch", 128, 128], "dtype": "int32"}]
    assert m["graphs"]["generator"]["outputs"] == [{"name": "image", "shape": ["batch", 3, 128, 128], "dtype": "float32"}]
    assert m["source"]["config"]["latent_dim"] == 128 and len(m["source"]["sha256"]) == 64
    assert {"torch", "onnx", "onnxruntime", "scam"} <= set(m["exporter"])
    bundle = Bundle.load(small_bundle)
    assert bundle.labels == ("background", "face", "body") and bundle.num_latents == 24

    altered = tmp_path / "altered"
    shutil.copytree(small_bundle, altered)
    data = bytearray((altered / "generator.onnx").read_bytes())
    data[-10] ^= 0xFF
    (altered / "generator.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="generator.onnx: sha256 does not match"):
        Bundle.load(altered)
    (altered / "generator.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        Bundle.load(altered)
    manifest = json.loads((altered / "bundle.json").read_text())
    manifest["format_version"] = 99
    (altered / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="newer"):
        Bundle.load(altered)


def test_graphs_pass_tensorrt_static_check(small_bundle):
    for name in ("encoder", "generator"):
        report = check_trt_compatible(onnx.load(str(small_bundle / f"{name}.onnx")))
        assert report.ok, report.problems
        assert {"LayerNormalization", "MatMul", "Softmax"} <= report.ops and "Einsum" not in report.ops
        assert not [op for op in report.ops if op.startswith("Random")]  # noise is baked, never drawn


def test_tensorrt_static_check_finds_problems():
    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])
    ids = h.make_tensor_value_info("ids", onnx.TensorProto.INT64, [2])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    u = h.make_tensor_value_info("u", onnx.TensorProto.FLOAT, None)
    graph = h.make_graph([h.make_node("Reshape", ["x", "ids"], ["y"]), h.make_node("Unique", ["x"], ["u"])],
                         "bad", [x, ids], [y, u])
    report = check_trt_compatible(h.make_model(graph, opset_imports=[h.make_opsetid("", 23)]))
    text = "\n".join(report.problems)
    assert "opset 23 outside" in text and "unsupported op Unique" in text
    assert "shape input depends on the data of 'ids'" in text


def run_cli(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def test_cli_bad_checkpoint(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    result = run_cli("--ckpt", bad, "-o", tmp_path / "out")
    assert result.exit_code == EXIT_BAD_CHECKPOINT
    assert result.stderr.strip().splitlines()[-1].startswith(f"scam-export: error: {bad}: not a readable")
    assert not (tmp_path / "out").exists()


def test_cli_unwritable_output_and_existing_bundle(tmp_path):
    ckpt = random_checkpoint(tmp_path / "tiny.pt", preset="small", height=64, width=64, **TINY)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("--ckpt", ckpt, "-o", blocker / "bundle")
    assert result.exit_code == EXIT_UNWRITABLE and "cannot write the bundle" in result.stderr
    existing = tmp_path / "existing"
    existing.mkdir()
    result = run_cli("--ckpt", ckpt, "-o", existing)
    assert result.exit_code == EXIT_UNWRITABLE and "already exists" in result.stderr


def test_cli_export_then_a_failed_force_keeps_the_earlier_bundle(tmp_path, monkeypatch):
    import scam_export.parity as parity
    ckpt = random_checkpoint(tmp_path / "tiny.pt", preset="small", height=64, width=64, **TINY)
    result = run_cli("--ckpt", ckpt, "--noise", "none", "--attention", "dense")
    assert result.exit_code == 0, result.stderr
    manifest = (tmp_path / "tiny.bundle" / "bundle.json").read_text()
    assert (json.loads(manifest)["noise"], json.loads(manifest)["attention_path"]) == ("none", "dense")
    monkeypatch.setitem(parity.MIN_PSNR_DB, "fp32", 1000.0)
    result = run_cli("--ckpt", ckpt, "--force")
    assert result.exit_code == EXIT_PARITY and "parity check failed" in result.stderr
    assert (tmp_path / "tiny.bundle" / "bundle.json").read_text() == manifest  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.bundle", "tiny.pt"]  # no partial folder


@pytest.mark.skipif(tensorrt_gpu_reason() is None, reason="TensorRT and a GPU are present")
def test_cli_trt_without_tensorrt_exits_3(small_bundle):
    result = run_cli("trt", small_bundle)
    assert result.exit_code == EXIT_TRT_UNAVAILABLE
    assert result.stderr.startswith("scam-export: error: TensorRT engines not built: ")


@pytest.mark.skipif(tensorrt_gpu_reason() is not None, reason=str(tensorrt_gpu_reason()))
def test_tensorrt_engines_match_onnxruntime(small_bundle, tmp_path):
    from scam_export.trt import build_engines
    from scam_runtime.engines import EngineSession
    bundle = tmp_path / "b"
    shutil.copytree(small_bundle, bundle)
    folder = build_engines(bundle, max_batch=4)
    build = json.loads((folder / "build.json").read_text())
    assert set(build["engines"]) == {"encoder.engine", "generator.engine"}
    assert (bundle / "trt" / "timing.cache").stat().st_size > 0
    images, labels, _ = blob_inputs(ModelConfig.preset("small", labels=["background", "face", "body"],
                                                       height=128, width=128), 2, seed=3)

    z_trt = EngineSession(folder / "encoder.engine").run(image=images, labels=labels)
    out_trt = EngineSession(folder / "generator.engine").run(labels=labels, latents=z_trt)
    z_ort = session(bundle / "encoder.onnx").run(image=images, labels=labels)
    out_ort = session(bundle / "generator.onnx").run(labels=labels, latents=z_ort)
    print(f"TensorRT vs ONNX Runtime: latents max abs {np.abs(z_trt - z_ort).max():.2e}, "
          f"image PSNR {psnr_db(out_trt, out_ort):.1f} dB")
    assert psnr_db(out_trt, out_ort) >= 50
