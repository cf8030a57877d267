"""The model shipped inside the package: it loads, verifies, reconstructs a fixed input as
recorded when it was exported, and `scam-run demo` / `scam-run video` work without options."""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT

from models.checkpoint import DEFAULT_CHECKPOINT
from scam_runtime.backend import BackendOptions
from scam_runtime.bundle import DEFAULT_BUNDLE, Bundle
from scam_runtime.cli import main
from scam_runtime.replacer import SubjectReplacer

EXPECTED = ROOT / "tests" / "default_model_expected.json"


def synthetic_input(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """A fixed image (smooth gradients) and label map (a standing figure), no randomness."""
    h, w = bundle.height, bundle.width
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 7 + y / 11)]) * 2 - 1
    labels = np.zeros((h, w), np.int32)
    labels[h // 5: h - h // 10, w // 3: 2 * w // 3] = 2
    labels[h // 10: h // 5 + 2, 2 * w // 5: 3 * w // 5] = 1
    return image[None].astype(np.float32), labels[None]


def reconstruction_stats(bundle: Bundle) -> dict:
    replacer = SubjectReplacer(bundle, backend=BackendOptions("cpu", threads=1))
    image, labels = synthetic_input(bundle)
    z = replacer.encoder.run(image=image, labels=labels)
    out = replacer.generator.run(labels=labels, latents=z)[0]
    return {"latents_mean": float(z.mean()), "latents_std": float(z.std()),
            "latents_sample": [float(v) for v in z[0, ::4, 0]],
            "image_mean_rgb": [float(c) for c in out.mean(axis=(1, 2))], "image_std": float(out.std()),
            "psnr_db": float(10 * np.log10(4 / np.mean((out - image[0]) ** 2)))}


def test_default_bundle_loads_and_verifies():
    bundle = Bundle.load()  # verifies every listed sha256
    assert bundle.path == DEFAULT_BUNDLE
    assert bundle.labels == ("background", "face", "body")
    assert set(bundle.manifest["files"]) == {"encoder.onnx", "generator.onnx"}
    assert bundle.manifest["parity"]["passed"]
    weights = sum(p.stat().st_size for p in DEFAULT_BUNDLE.iterdir())
    assert weights + DEFAULT_CHECKPOINT.stat().st_size < 100e6


def test_default_bundle_reconstructs_as_recorded():
    expected = json.loads(EXPECTED.read_text())
    got = reconstruction_stats(Bundle.load())
    assert got["latents_mean"] == pytest.approx(expected["latents_mean"], abs=1e-4)
    assert got["latents_std"] == pytest.approx(expected["latents_std"], abs=1e-4)
    assert got["latents_sample"] == pytest.approx(expected["latents_sample"], abs=1e-3)
    assert got["image_mean_rgb"] == pytest.approx(expected["image_mean_rgb"], abs=1e-4)
    assert got["image_std"] == pytest.approx(expected["image_std"], abs=1e-4)
    assert got["psnr_db"] == pytest.approx(expected["psnr_db"], abs=0.01)


def test_demo_runs_on_shipped_material(tmp_path):
    result = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "demo"), "--frames", "6", "--quiet"])
    assert result.exit_code == 0, result.stderr
    video, sheet = tmp_path / "demo" / "demo.scam.mp4", tmp_path / "demo" / "demo_contact_sheet.png"
    assert video.is_file() and sheet.is_file()
    assert f"replaced 6 frames -> {video}" in result.stderr
    import av
    with av.open(str(video)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6
    again = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "demo"), "--frames", "6", "--quiet"])
    assert again.exit_code == 2 and "--overwrite" in again.stderr


def test_video_without_bundle_or_output_writes_beside_the_input(tmp_path):
    from scam_runtime.demo import CLIP, SUBJECT
    clip = tmp_path / "plate.mp4"
    shutil.copy(CLIP, clip)
    args = ["video", "--subject", str(SUBJECT), str(clip), "--frames", "0-2", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "plate.scam.mp4"
    assert out.is_file() and f"written: {out} (3 frames)" in result.stderr
    before = out.read_bytes()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "exists; pass --overwrite" in again.stderr
    assert out.read_bytes() == before


def test_doctor_reports_the_default_bundle():
    result = CliRunner().invoke(main, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["bundle"]
    assert report["default"] and Path(report["path"]) == DEFAULT_BUNDLE
    assert set(report["sha256"]) == {"encoder.onnx", "generator.onnx"}


@pytest.mark.parametrize("mediapipe", ["as installed", "missing"])
def test_doctor_says_which_parser_auto_uses(mediapipe):
    """The README's install falls back to the built-in parser where mediapipe's wheel does
    not exist; `doctor` must then say so (here: mediapipe made unimportable in a child)."""
    hide = "sys.modules['mediapipe'] = None; " if mediapipe == "missing" else ""
    code = (f"import sys; {hide}from scam_runtime.cli import main; "
            "main(['doctor', '--json'], standalone_mode=False)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    parsers = json.loads(proc.stdout[proc.stdout.index("{"):])["parsers"]
    installed = mediapipe == "as installed" and importlib.util.find_spec("mediapipe") is not None
    assert parsers["auto"] == ("mediapipe" if installed else "builtin")
    assert Path(parsers["builtin"]).is_file()


def test_shipped_checkpoint_is_the_bundle_in_pytorch():
    """The checkpoint beside the bundle (for scam-export and fit --init) is the same model."""
    import torch

    from models import load_checkpoint, one_hot
    bundle = Bundle.load()
    config, encoder, generator = load_checkpoint(DEFAULT_CHECKPOINT)
    assert config.to_dict() == bundle.manifest["source"]["config"]
    image, labels = synthetic_input(bundle)
    with torch.no_grad():
        mask = one_hot(torch.from_numpy(labels).long(), config.num_labels)
        z = encoder(torch.from_numpy(image), mask)
        out = generator(mask, z).numpy()
    replacer = SubjectReplacer(bundle, backend=BackendOptions("cpu", threads=1))
    ort = replacer.generator.run(labels=labels, latents=replacer.encoder.run(image=image, labels=labels))
    assert 10 * np.log10(4 / np.mean((out - ort) ** 2)) > 45
