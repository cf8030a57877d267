"""Plates as studios deliver them (OpenImageIO: 10-bit DPX, 16-bit TIFF, EXR with a data
window) and colour through OpenColorIO: written back in their format, depth and metadata,
bit-exact outside the matte, and the networks see an ACEScg plate as the same picture in sRGB."""
import numpy as np
import OpenImageIO as oiio
import pytest
from click.testing import CliRunner
from PIL import Image

from models.synthetic import person_labels
from scam_runtime.cli import main
from scam_runtime.colour import SRGB8_TO_LINEAR, ColourOptions, linear_to_srgb8
from scam_runtime.composite import composite
from scam_runtime.errors import InputError, UsageError
from scam_runtime.plates import read_plate, write_plate
from scam_runtime.replacer import SubjectReplacer

H, W = 96, 128
STUDIO = "ocio://studio-config-latest"  # has ADX10, the default of a log DPX
RNG = np.random.default_rng(0)


def picture(seed: int) -> np.ndarray:
    """An 8-bit sRGB picture with smooth regions (what a plate shows, in display terms)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((W, H), Image.BILINEAR))


def write(path, pixels, spec):
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), out.geterror()
    assert out.write_image(np.ascontiguousarray(pixels)), out.geterror()
    out.close()


def make_exr(path, seed):
    """An ACEScg half-float plate (highlights above 1) in a data window inside a larger display
    window, with a float depth channel and a studio attribute."""
    acescg = ColourOptions("ACEScg").path(np.dtype(np.float32))
    rgb = acescg.from_display(picture(seed)) * np.float32(1.5)
    spec = oiio.ImageSpec(W, H, 5, "half")
    spec.x, spec.y, spec.full_width, spec.full_height = 16, 8, W + 40, H + 20
    spec.channelnames = ("R", "G", "B", "A", "depth.Z")
    spec.channelformats = (oiio.HALF, oiio.HALF, oiio.HALF, oiio.HALF, oiio.FLOAT)
    spec.attribute("compression", "piz")
    spec.attribute("studio:shot", "sh010")
    pixels = np.concatenate([rgb, np.ones((H, W, 1), np.float32), RNG.random((H, W, 1), dtype=np.float32)], -1)
    write(path, pixels, spec)


def make_dpx(path, seed, transfer="Printing density"):
    """A 10-bit DPX with its film and timecode headers."""
    spec = oiio.ImageSpec(W, H, 3, "uint16")
    spec.attribute("oiio:BitsPerSample", 10)
    spec.attribute("dpx:Transfer", transfer)
    spec.attribute("smpte:TimeCode", oiio.TypeDesc("timecode"), (0x01000000 + seed, 0))
    spec.attribute("dpx:InputDevice", "scanner 7")
    write(path, (picture(seed).astype(np.uint16) << 8) | 0x55, spec)


def make_tiff(path, seed):
    spec = oiio.ImageSpec(W, H, 3, "uint16")
    spec.attribute("compression", "zip")
    spec.attribute("Artist", "plate dept")
    write(path, picture(seed).astype(np.uint16) * 257 + 3, spec)


MAKERS = {"exr": make_exr, "dpx": make_dpx, "tif": make_tiff}


def metadata(spec):
    return {a.name: a.value for a in spec.extra_attribs if a.name not in ("DateTime", "Software")}


@pytest.mark.parametrize("ext", list(MAKERS))
def test_read_write_keeps_pixels_windows_types_and_metadata(tmp_path, ext):
    MAKERS[ext](tmp_path / f"in.{ext}", 1)
    colour = ColourOptions(ocio=STUDIO)
    plate = read_plate(tmp_path / f"in.{ext}", colour)
    write_plate(tmp_path / f"out.{ext}", plate, plate.pixels)
    again = read_plate(tmp_path / f"out.{ext}", colour)
    assert again.pixels.dtype == plate.pixels.dtype and np.array_equal(again.pixels, plate.pixels)
    assert metadata(again.spec) == metadata(plate.spec)
    for key in ("x", "y", "width", "height", "full_width", "full_height", "nchannels"):
        assert getattr(again.spec, key) == getattr(plate.spec, key), key
    assert tuple(map(str, again.spec.channelformats)) == tuple(map(str, plate.spec.channelformats))
    expected = {"exr": ("ACEScg", np.float32), "dpx": ("ADX10", np.uint16),
                "tif": ("sRGB Encoded Rec.709 (sRGB)", np.uint16)}[ext]
    assert (plate.colour.name, plate.pixels.dtype) == expected
    if ext == "dpx":
        assert again.spec.get_int_attribute("oiio:BitsPerSample") == 10
        assert again.spec.getattribute("dpx:TimeCode") == "01:00:00:01"
        assert again.spec.getattribute("dpx:InputDevice") == "scanner 7"


def test_networks_see_an_acescg_plate_as_the_same_picture_in_srgb(small_bundle):
    """An ACEScg half-float plate reaches the networks as its sRGB picture would, within
    quantisation; the composite stays in ACEScg, bit-exact outside the matte."""
    replacer = SubjectReplacer(small_bundle)
    srgb = picture(3)
    acescg = ColourOptions().path(np.dtype(np.float16))
    plate = acescg.to_dtype(acescg.from_display(srgb))
    labels = person_labels(H, W)
    a = replacer.prepare_frame(plate, labels)  # float: the config's scene_linear (ACEScg)
    b = replacer.prepare_frame(srgb, labels)
    assert a.colour.name == "ACEScg"
    assert np.abs(a.display.astype(int) - srgb).max() <= 1  # half-float steps
    assert np.abs(a.crops[0].image - b.crops[0].image).max() <= 2 * 2 / 255 + 1e-6
    subject = replacer.encode_subject(srgb, labels)
    r = replacer.process(plate, labels, subject)
    assert r.composite.dtype == np.float16
    outside = r.matte == 0
    assert outside.any() and np.array_equal(r.composite[outside].view(np.uint16), plate[outside].view(np.uint16))
    inside = r.matte == 1
    back = acescg.to_dtype(acescg.from_display(r.generated))
    assert np.array_equal(r.composite[inside], back[inside])


def test_a_named_colourspace_and_the_fast_paths():
    lin = ColourOptions("lin_rec709").path(np.dtype(np.float32))
    assert lin.name == "Linear Rec.709 (sRGB)" and lin.kind == "linear"
    x = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2)
    assert np.array_equal(lin.from_display(x), SRGB8_TO_LINEAR[x])
    assert np.array_equal(lin.display(SRGB8_TO_LINEAR[x]), x)
    for name in ("ACEScg", "ACEScct", "Linear Rec.2020"):  # through OCIO, and back
        path = ColourOptions(name).path(np.dtype(np.float32))
        assert path.kind == "ocio" and np.array_equal(path.display(path.from_display(x)), x), name
    with pytest.raises(UsageError, match="--colorspace nonsense: not in the OCIO config"):
        ColourOptions("nonsense").path(np.dtype(np.float32))
    with pytest.raises(UsageError, match="--ocio /no/such.ocio: not a usable OpenColorIO config"):
        ColourOptions(ocio="/no/such.ocio").path(np.dtype(np.uint8))


def test_a_config_file_from_ocio_env_or_option(tmp_path, monkeypatch):
    """A studio's config file, from $OCIO or --ocio (here the built-in studio config, written out)."""
    import PyOpenColorIO as ocio
    config = tmp_path / "show.ocio"
    config.write_text(ocio.Config.CreateFromFile(STUDIO).serialize())
    monkeypatch.setenv("OCIO", str(config))
    assert ColourOptions().source == str(config)
    adx = ColourOptions("ADX10").path(np.dtype(np.uint16))
    assert adx.kind == "ocio" and ColourOptions().path(np.dtype(np.float32)).name == "ACEScg"
    x = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2)
    assert np.array_equal(adx.display(adx.to_dtype(adx.from_display(x))), x)
    monkeypatch.delenv("OCIO")
    assert ColourOptions(ocio=str(config)).path(np.dtype(np.uint16), "ADX10").name == "ADX10"
    with pytest.raises(UsageError, match="ADX10: not in the OCIO config"):
        ColourOptions("ADX10").path(np.dtype(np.uint16))  # the built-in CG config has no log spaces


def test_srgb_tables_round_trip():
    assert np.array_equal(linear_to_srgb8(SRGB8_TO_LINEAR), np.arange(256))
    x = np.linspace(-0.5, 4, 100001, dtype=np.float32)
    c = np.clip(x, 0, 1)
    exact = np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055) * 255
    assert np.abs(linear_to_srgb8(x).astype(float) - exact).max() <= 0.53  # rounding + the 16-bit table step


def test_composite_in_a_16bit_plate_is_bit_exact_outside_the_matte():
    path = ColourOptions().path(np.dtype(np.uint16))
    plate = RNG.integers(0, 65536, (8, 10, 3), dtype=np.uint16)
    generated = RNG.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    matte = np.zeros((8, 10), np.float32)
    matte[2:5, 3:7] = 1.0
    matte[5, 3:7] = 0.25
    out = composite(plate, generated, matte, path)
    assert out.dtype == np.uint16 and np.array_equal(out[matte == 0], plate[matte == 0])
    assert np.array_equal(out[2:5, 3:7], generated[2:5, 3:7].astype(np.uint16) * 257)
    mixed = 0.75 * plate[5, 3:7] + 0.25 * generated[5, 3:7] * 257.0
    assert np.abs(out[5, 3:7].astype(float) - mixed).max() <= 0.51


@pytest.fixture
def shots(tmp_path):
    """plate.1001..1003 in each format, their label maps, a subject photo."""
    for i in range(3):
        for ext, make in MAKERS.items():
            make(tmp_path / f"plate.{1001 + i:04d}.{ext}", i)
        Image.fromarray(person_labels(H, W, shift=i)).save(tmp_path / f"mask.{1001 + i:04d}.png")
    Image.fromarray(picture(9)).save(tmp_path / "actor.png")
    Image.fromarray(person_labels(H, W)).save(tmp_path / "actor_mask.png")
    return tmp_path


def run(bundle, d, source, out, *extra):
    return CliRunner().invoke(main, [
        "video", "--bundle", str(bundle), "--subject", str(d / "actor.png"), "--subject-mask",
        str(d / "actor_mask.png"), "--masks", str(d / "mask.%04d.png"), str(source), "-o", str(out), "--quiet",
        "--write-matte", str(d / "matte.%04d.png"), "--overwrite", *extra])


@pytest.mark.parametrize("ext", list(MAKERS))
def test_a_sequence_comes_back_in_its_format_bit_exact_outside_the_matte(small_bundle, shots, ext):
    d = shots
    r = run(small_bundle, d, d / f"plate.%04d.{ext}", d / f"out.%04d.{ext}", "--ocio", STUDIO)
    assert r.exit_code == 0, r.stderr
    colour = ColourOptions(ocio=STUDIO)
    for number in (1001, 1002, 1003):
        src = read_plate(d / f"plate.{number}.{ext}", colour)
        out = read_plate(d / f"out.{number}.{ext}", colour)
        assert out.pixels.dtype == src.pixels.dtype and out.pixels.shape == src.pixels.shape
        assert metadata(out.spec) == metadata(src.spec)
        assert (out.spec.x, out.spec.y, out.spec.full_width) == (src.spec.x, src.spec.y, src.spec.full_width)
        matte = np.asarray(Image.open(d / f"matte.{number}.png"))
        outside = matte == 0
        assert 0.3 < outside.mean() < 0.95
        raw = lambda a: a.view(np.uint16) if a.dtype == np.float16 else a.view(np.uint32) if a.dtype == np.float32 \
            else a
        assert np.array_equal(raw(out.pixels[outside]), raw(src.pixels[outside]))  # every channel
        if ext == "exr":  # alpha and depth everywhere
            assert np.array_equal(raw(out.pixels[..., 3:]), raw(src.pixels[..., 3:]))
        inside = matte == 255
        assert not np.array_equal(out.rgb[inside], src.rgb[inside])


def test_an_8bit_input_to_exr_and_dpx_and_a_plate_to_png(small_bundle, shots, tmp_path):
    d = shots
    r = run(small_bundle, d, d / "plate.%04d.tif", d / "o.%04d.exr")
    assert r.exit_code == 0, r.stderr
    exr = read_plate(d / "o.1001.exr")
    assert exr.pixels.dtype == np.float16 and exr.colour.name == "ACEScg"  # scene_linear of the CG config
    r = run(small_bundle, d, d / "plate.%04d.exr", d / "o.%04d.png")
    assert r.exit_code == 0, r.stderr
    assert np.asarray(Image.open(d / "o.1001.png")).dtype == np.uint8
    r = CliRunner().invoke(main, ["image", "--bundle", str(small_bundle), "--subject", str(d / "actor.png"),
                                  "--subject-mask", str(d / "actor_mask.png"), str(d / "actor.png"), "--mask",
                                  str(d / "actor_mask.png"), "-o", str(tmp_path / "o.dpx"), "--write-matte",
                                  str(tmp_path / "m.png")])
    assert r.exit_code == 0, r.stderr
    dpx = read_plate(tmp_path / "o.dpx")
    assert dpx.spec.get_int_attribute("oiio:BitsPerSample") == 10
    matte = np.asarray(Image.open(tmp_path / "m.png"))
    photo = np.asarray(Image.open(d / "actor.png"))
    assert np.array_equal(dpx.display[matte == 0], photo[matte == 0])


@pytest.mark.parametrize("case, code, message", [
    ("garbage", 10, "plate.1002.exr: unreadable image"),
    ("no colour", 10, "plate.1002.exr: no R, G and B channels (has Y)"),
    ("log dpx", 10, "plate.1001.dpx: its DPX header says Printing density (log)"),
    ("unknown colourspace", 2, "--colorspace nonsense: not in the OCIO config"),
    ("video colourspace", 2, "--colorspace ACEScg: a video's frames are taken as sRGB-encoded"),
    ("exr matte", 2, "--write-matte needs an 8-bit image-sequence pattern"),
])
def test_plate_errors(small_bundle, shots, case, code, message):
    d = shots
    source, extra = d / "plate.%04d.exr", []
    if case == "garbage":
        (d / "plate.1002.exr").write_bytes(b"not an exr")
    elif case == "no colour":
        spec = oiio.ImageSpec(W, H, 1, "float")
        spec.channelnames = ("Y",)
        write(d / "plate.1002.exr", np.zeros((H, W, 1), np.float32), spec)
    elif case == "log dpx":
        source = d / "plate.%04d.dpx"  # the CG config has no log colourspace
    elif case == "unknown colourspace":
        extra = ["--colorspace", "nonsense"]
    elif case == "video colourspace":
        from conftest import make_video
        make_video(d / "clip.mkv", 3, (H, W))
        source, extra = d / "clip.mkv", ["--colorspace", "ACEScg"]
    else:
        extra = ["--write-matte", str(d / "matte.%04d.exr")]
    out = d / ("o.mkv" if case == "video colourspace" else "out.%04d.exr")
    r = run(small_bundle, d, source, out, *extra)
    assert r.exit_code == code and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len([line for line in r.stderr.splitlines() if "error" in line]) == 1
    assert not list(d.glob(".*partial*")) and not list(d.glob("out.*")) or case in ("garbage", "no colour")


def test_doctor_lists_the_colour_config(monkeypatch):
    import json
    monkeypatch.delenv("OCIO", raising=False)
    r = CliRunner().invoke(main, ["doctor", "--json"])
    colour = json.loads(r.stdout)["colour"]
    assert colour["config"] == "ocio://cg-config-latest" and colour["scene_linear"] == "ACEScg"
    assert "sRGB Encoded Rec.709 (sRGB)" in colour["colourspaces"]
