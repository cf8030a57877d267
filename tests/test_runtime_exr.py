"""EXR plates: scene-linear float in, float composite out, the plate's bits kept outside the matte."""
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from models.synthetic import person_labels
from scam_runtime.cli import main
from scam_runtime.errors import InputError
from scam_runtime.colour import SRGB8_TO_LINEAR, linear_to_srgb8
from scam_runtime.composite import composite
from scam_runtime.exr import read_exr, write_exr

OpenEXR = pytest.importorskip("OpenEXR", reason="the exr extra (OpenEXR) is not installed")
H, W = 96, 128


def make_plate(path, seed=0, half=True):
    """A plate with highlights above 1, negative fringes, an alpha and an AOV channel."""
    rng = np.random.default_rng(seed)
    rgb = rng.gamma(0.6, 0.5, (H, W, 3)).astype(np.float16 if half else np.float32)
    rgb[0, :4] = -0.01
    channels = {c: np.ascontiguousarray(rgb[..., i]) for i, c in enumerate("RGB")} | {
        "A": np.ones((H, W), np.float16), "depth.Z": rng.random((H, W), dtype=np.float32)}
    OpenEXR.File({"compression": OpenEXR.PIZ_COMPRESSION, "type": OpenEXR.scanlineimage,
                  "owner": "scam tests"}, dict(channels)).write(str(path))  # File() converts its dict in place
    return rgb, channels


def channels_of(path):
    with OpenEXR.File(str(path), separate_channels=True) as f:
        return {k: v.pixels for k, v in f.channels().items()}, dict(f.header())


def test_srgb_tables_round_trip():
    assert np.array_equal(linear_to_srgb8(SRGB8_TO_LINEAR), np.arange(256))
    x = np.linspace(-0.5, 4, 100001, dtype=np.float32)
    c = np.clip(x, 0, 1)
    exact = np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055) * 255
    assert np.abs(linear_to_srgb8(x).astype(float) - exact).max() <= 0.53  # rounding + the 16-bit table step


def test_read_write_keeps_channels_types_and_header(tmp_path):
    rgb, channels = make_plate(tmp_path / "in.exr")
    plate = read_exr(tmp_path / "in.exr")
    assert plate.rgb.dtype == np.float16 and np.array_equal(plate.rgb, rgb)
    assert set(plate.others) == {"A", "depth.Z"} and plate.display.dtype == np.uint8
    write_exr(tmp_path / "out.exr", plate.rgb, plate)
    got, header = channels_of(tmp_path / "out.exr")
    assert {k: v.dtype for k, v in got.items()} == {k: v.dtype for k, v in channels.items()}
    assert all(np.array_equal(got[k].view(np.uint8), channels[k].view(np.uint8)) for k in channels)
    assert header["compression"] == OpenEXR.PIZ_COMPRESSION and header["owner"] == "scam tests"


def test_linear_composite_is_bit_exact_outside_the_matte():
    rng = np.random.default_rng(0)
    plate = (rng.random((8, 10, 3)) * 3).astype(np.float32)
    generated = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    matte = np.zeros((8, 10), np.float32)
    matte[2:5, 3:7] = 1.0
    matte[5, 3:7] = 0.25
    out = composite(plate, generated, matte)
    assert np.array_equal(out[matte == 0], plate[matte == 0])
    assert np.array_equal(out[2:5, 3:7], SRGB8_TO_LINEAR[generated[2:5, 3:7]])
    np.testing.assert_allclose(out[5, 3:7], 0.75 * plate[5, 3:7] + 0.25 * SRGB8_TO_LINEAR[generated[5, 3:7]],
                               rtol=1e-6)


@pytest.fixture
def exr_shot(tmp_path):
    for i in range(3):
        make_plate(tmp_path / f"plate.{1001 + i:04d}.exr", seed=i)
        Image.fromarray(person_labels(H, W, shift=i)).save(tmp_path / f"mask.{1001 + i:04d}.png")
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (200, 120, 3), dtype=np.uint8)).save(tmp_path / "actor.png")
    Image.fromarray(person_labels(200, 120)).save(tmp_path / "actor_mask.png")
    return tmp_path


def shot_args(bundle, d, out, *extra):
    return ["video", "--bundle", str(bundle), "--subject", str(d / "actor.png"), "--subject-mask",
            str(d / "actor_mask.png"), "--masks", str(d / "mask.%04d.png"), str(d / "plate.%04d.exr"),
            "-o", str(out), "--quiet", "--write-matte", str(d / "matte.%04d.png"), *extra]


def test_exr_sequence_in_and_out(small_bundle, exr_shot):
    d = exr_shot
    result = CliRunner().invoke(main, shot_args(small_bundle, d, d / "out.%04d.exr"))
    assert result.exit_code == 0, result.stderr
    for i in range(3):
        number = 1001 + i
        src, _ = channels_of(d / f"plate.{number:04d}.exr")
        out, header = channels_of(d / f"out.{number:04d}.exr")
        assert header["compression"] == OpenEXR.PIZ_COMPRESSION
        assert {k: v.dtype for k, v in out.items()} == {k: v.dtype for k, v in src.items()}
        matte = np.asarray(Image.open(d / f"matte.{number:04d}.png"))
        outside = matte == 0
        assert outside.mean() > 0.5 and (~outside).sum() > 100
        for c in src:  # every channel keeps its bits where the matte is 0; A and Z everywhere
            where = outside if c in "RGB" else np.ones_like(outside)
            assert np.array_equal(out[c][where].view(np.uint16 if out[c].dtype == np.float16 else np.uint32),
                                  src[c][where].view(np.uint16 if src[c].dtype == np.float16 else np.uint32)), c
        inside = matte == 255  # generated pixels: display-referred, so within [0, 1] linear
        rgb = np.stack([out[c] for c in "RGB"], -1)[inside].astype(np.float32)
        assert rgb.min() >= 0 and rgb.max() <= 1 and not np.array_equal(rgb, np.stack(
            [src[c] for c in "RGB"], -1)[inside].astype(np.float32))


def test_exr_plate_to_png_and_png_to_exr(small_bundle, exr_shot, tmp_path):
    d = exr_shot
    assert CliRunner().invoke(main, shot_args(small_bundle, d, d / "o8.%04d.png")).exit_code == 0
    assert np.asarray(Image.open(d / "o8.1001.png")).dtype == np.uint8
    target = np.asarray(Image.open(d / "o8.1001.png"))
    Image.fromarray(target).save(tmp_path / "target.png")
    Image.fromarray(person_labels(H, W)).save(tmp_path / "target_mask.png")
    result = CliRunner().invoke(main, ["image", "--bundle", str(small_bundle), "--subject", str(d / "actor.png"),
                                       "--subject-mask", str(d / "actor_mask.png"), str(tmp_path / "target.png"),
                                       "--mask", str(tmp_path / "target_mask.png"), "-o", str(tmp_path / "o.exr"),
                                       "--write-matte", str(tmp_path / "m.png")])
    assert result.exit_code == 0, result.stderr
    out, _ = channels_of(tmp_path / "o.exr")
    matte = np.asarray(Image.open(tmp_path / "m.png"))
    linear = SRGB8_TO_LINEAR[target].astype(np.float16)
    assert np.array_equal(np.stack([out[c] for c in "RGB"], -1)[matte == 0], linear[matte == 0])


@pytest.mark.parametrize("case, message", [
    ("garbage", "unreadable EXR"),
    ("no colour", "EXR without R/G/B channel(s)"),
    ("exr matte", "--write-matte needs an 8-bit image-sequence pattern"),
])
def test_exr_errors(small_bundle, exr_shot, case, message):
    d = exr_shot
    extra = []
    if case == "garbage":
        (d / "plate.1002.exr").write_bytes(b"not an exr")
    elif case == "no colour":
        OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                     {"Y": np.zeros((H, W), np.float32)}).write(str(d / "plate.1002.exr"))
    else:
        extra = ["--write-matte", str(d / "matte.%04d.exr")]
    result = CliRunner().invoke(main, shot_args(small_bundle, d, d / "out.%04d.exr", *extra))
    assert result.exit_code != 0 and message in result.stderr and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and (case == "exr matte" or "plate.1002.exr" in lines[0])
    assert not list(d.glob(".*partial*"))


def test_without_openexr_the_error_says_how_to_install(tmp_path, monkeypatch):
    make_plate(tmp_path / "p.exr")
    monkeypatch.setitem(sys.modules, "OpenEXR", None)
    with pytest.raises(InputError, match=r"pip install 'scam\[exr\]'"):
        read_exr(tmp_path / "p.exr")
