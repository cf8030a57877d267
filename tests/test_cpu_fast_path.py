"""The CPU fast path: int8 bundles (calibrated on real photos) and the OpenVINO backend."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from models import load_checkpoint
from models.synthetic import person_labels
from scam_export.bundle import ExportOptions, export_bundle
from scam_export.cli import main as export_main
from scam_export.int8 import CalibrationSet
from scam_export.parity import MIN_PSNR_DB, psnr_db
from scam_runtime.backend import BackendOptions, open_session
from scam_runtime.bundle import DEFAULT_BUNDLE, Bundle
from scam_runtime.cli import main as run_main
from scam_runtime.openvino_session import inference_precision
from scam_runtime.replacer import SubjectReplacer

openvino = pytest.importorskip("openvino", reason="the openvino extra is not installed")


# trained weights: int8 hides its problems on random ones (their activations have none of
# a trained network's outliers)
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default_model.pt"


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory, shared):
    folder = tmp_path_factory.mktemp("int8")
    options = ExportOptions(precision="int8", calibration=str(shared / "data" / "ccp"), calibration_labels="labels3",
                            calibration_images=8)
    manifest = export_bundle(DEFAULT_MODEL, folder / "bundle", options, log=lambda m: None)
    return folder / "bundle", manifest


def _ccp_inputs(shared, config):
    """Three CCP photos the 8-photo calibration did not pick."""
    data = CalibrationSet.load(shared / "data" / "ccp", "labels3", 95, config)  # spread over the folder
    return data.images[1:4], data.labels[1:4]


def test_int8_export_passes_its_parity_gate_and_records_the_search(int8_bundle, shared):
    folder, manifest = int8_bundle
    assert manifest["precision"] == "int8" and manifest["parity"]["passed"]
    assert manifest["parity"]["min_psnr_db"] == MIN_PSNR_DB["int8"] == 35.0
    assert manifest["parity"]["absent_label"] == -1  # real photos, not blobs
    search = manifest["int8"]
    assert search["psnr_db"] >= search["target_db"] and search["calibration"]["labels"] == "labels3"
    assert search["quantized_nodes"]["generator"] > 0 and search["quantized_nodes"]["encoder"] > 0
    assert set(search["kept_fp32"]) <= set(search["groups_db"])
    written = json.loads((folder / "bundle.json").read_text())
    assert written["int8"] == search
    nodes = onnx.load(str(folder / "generator.onnx")).graph.node
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in nodes}
    softmax_out = {n.output[0] for n in nodes if n.op_type == "Softmax"}
    quantized_in = {n.input[0] for n in nodes if n.op_type == "QuantizeLinear"}
    assert softmax_out and not softmax_out & quantized_in  # attention weights stay fp32


def test_int8_bundle_runs_close_to_fp32_on_onnxruntime_and_openvino(int8_bundle, shared):
    folder, _ = int8_bundle
    fp32 = DEFAULT_BUNDLE  # fp32 arithmetic (weights stored fp16: 103 dB from the checkpoint)
    config, _, _ = load_checkpoint(DEFAULT_MODEL)
    images, labels = _ccp_inputs(shared, config)

    def generate(bundle, options):
        enc, gen = open_session(bundle / "encoder.onnx", options), open_session(bundle / "generator.onnx", options)
        return gen.run(labels=labels, latents=enc.run(image=images, labels=labels))

    reference = generate(fp32, BackendOptions())
    assert psnr_db(generate(folder, BackendOptions()), reference) >= 35
    assert psnr_db(generate(folder, BackendOptions("openvino")), reference) >= 35


def test_openvino_replacer_equals_onnxruntime(small_bundle):
    frame = np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8)
    labels = person_labels(96, 128)
    outputs = {}
    for name, backend in (("ort", BackendOptions()), ("f32", BackendOptions("openvino", precision_hint="f32")),
                          ("auto", BackendOptions("openvino"))):
        replacer = SubjectReplacer(small_bundle, backend=backend)
        subject = replacer.encode_subject(frame[:, ::-1].copy(), labels[:, ::-1].copy())
        outputs[name] = replacer.process(frame, labels, subject).generated.astype(np.float32) / 127.5 - 1
        assert replacer.provider == backend.provider
    assert psnr_db(outputs["f32"], outputs["ort"]) >= 50
    assert psnr_db(outputs["auto"], outputs["ort"]) >= 35  # bf16 where the CPU has it


def test_openvino_compiles_the_expected_batch_and_pads_a_shorter_one(small_bundle):
    """A video's last batch is padded to the size compiled for it (compiling another costs ~1 s)."""
    from scam_runtime.openvino_session import OpenVinoSession
    bundle = Bundle.load(small_bundle)
    session = OpenVinoSession(bundle.file(bundle.generator.file), BackendOptions("openvino", precision_hint="f32"))
    session.expect_batch(4)
    assert sorted(session._compiled) == [1, 4]
    labels = np.stack([person_labels(bundle.height, bundle.width)] * 3)
    latents = np.random.default_rng(1).standard_normal((3, bundle.num_latents, bundle.latent_dim)).astype(np.float32)
    out = session.run(labels=labels, latents=latents)
    assert out.shape[0] == 3 and sorted(session._compiled) == [1, 4]  # padded, nothing compiled
    for i in range(3):
        np.testing.assert_allclose(out[i:i + 1], session.run(labels=labels[i:i + 1], latents=latents[i:i + 1]),
                                   atol=1e-4)


def test_openvino_precision_rules():
    assert inference_precision("auto", ["FP32", "BF16"]) == "bf16"
    assert inference_precision("auto", ["FP32"]) == "f32"
    assert inference_precision("auto", ["FP32", "BF16"], quantized=True) == "f32"
    from scam_runtime.backend import ProviderUnavailable
    with pytest.raises(ProviderUnavailable, match="no native bf16"):
        inference_precision("bf16", ["FP32"])
    with pytest.raises(ProviderUnavailable, match="int8 bundle"):
        inference_precision("bf16", ["FP32", "BF16"], quantized=True)


def test_openvino_without_the_extra_exits_13_in_one_line(small_bundle, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    from PIL import Image
    Image.fromarray(np.zeros((96, 128, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(person_labels(96, 128)).save(tmp_path / "m.png")
    result = CliRunner().invoke(run_main, ["image", "--bundle", str(small_bundle), "--provider", "openvino",
                                           "--subject", str(tmp_path / "a.png"), "--subject-mask", str(tmp_path / "m.png"),
                                           "--mask", str(tmp_path / "m.png"), str(tmp_path / "a.png"),
                                           "-o", str(tmp_path / "out.png")], catch_exceptions=False)
    assert result.exit_code == 13, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("scam-run: error:")]
    assert len(errors) == 1 and "pip install 'scam[openvino]'" in errors[0]
    assert not (tmp_path / "out.png").exists()


def test_int8_export_errors(tmp_path):
    from models.synthetic import random_checkpoint
    from conftest import TINY
    ckpt = random_checkpoint(tmp_path / "m.pt", height=64, width=64, **TINY)
    runner = CliRunner()
    result = runner.invoke(export_main, ["--ckpt", str(ckpt), "-o", str(tmp_path / "b"), "--precision", "int8"])
    assert result.exit_code == 2 and "needs --calibration" in result.output
    (tmp_path / "cal" / "images").mkdir(parents=True)
    result = runner.invoke(export_main, ["--ckpt", str(ckpt), "-o", str(tmp_path / "b"), "--precision", "int8",
                                         "--calibration", str(tmp_path / "cal")])
    assert result.exit_code == 7 and "calibration data needs images/ and labels/" in result.stderr
    assert not (tmp_path / "b").exists()
