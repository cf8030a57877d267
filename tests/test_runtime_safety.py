"""scam-run never destroys data: outputs that are inputs, existing results, farm signals,
ranges past the end, and bundles altered behind their manifest."""
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, make_plate, make_video
from PIL import Image

from models.synthetic import person_labels
from scam_runtime.cli import main

N = 10


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    d = tmp_path_factory.mktemp("plate")
    make_plate(d, N, seed=3)
    return d


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def video(bundle, d, *extra, source=None, masks=None):
    return run("video", "--bundle", bundle, "--subject", d / "actor.png", "--subject-mask", d / "actor_mask.png",
               "--masks", masks or d / "masks", source or d / "in.mkv", "--codec", "ffv1", "--quiet", *extra)


def error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("scam-run: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def digest(path):
    return path.read_bytes()


def test_output_that_is_the_input_is_refused(small_bundle, plate, tmp_path):
    clip = tmp_path / "clip.mkv"
    shutil.copy(plate / "in.mkv", clip)
    before = digest(clip)
    result = video(small_bundle, plate, "-o", clip, "--overwrite", source=clip)
    assert result.exit_code == 2 and "is also an input" in error_line(result)
    assert digest(clip) == before
    target = tmp_path / "target.png"
    Image.fromarray(np.full((96, 128, 3), 90, np.uint8)).save(target)
    before = digest(target)
    for out in (target, plate / "actor.png", small_bundle / "encoder.onnx"):
        result = run("image", "--bundle", small_bundle, "--subject", plate / "actor.png", "--subject-mask",
                     plate / "actor_mask.png", target, "--mask", plate / "masks" / "0000.png", "-o", out, "--overwrite")
        assert result.exit_code == 2 and "is also an input" in error_line(result)
    assert digest(target) == before


def test_sequence_output_over_input_frames_is_refused(small_bundle, plate, tmp_path):
    for i in range(3):
        Image.fromarray(np.full((96, 128, 3), 40 * i, np.uint8)).save(tmp_path / f"plate.{i:04d}.png")
    before = {p.name: digest(p) for p in tmp_path.iterdir()}
    result = video(small_bundle, plate, "-o", tmp_path / "plate.%04d.png", "--overwrite",
                   source=tmp_path / "plate.%04d.png")
    assert result.exit_code == 2 and "is also an input" in error_line(result)
    assert {p.name: digest(p) for p in tmp_path.iterdir()} == before


def test_default_output_beside_the_input_and_no_overwrite(small_bundle, plate, tmp_path):
    clip = tmp_path / "shot.mkv"
    shutil.copy(plate / "in.mkv", clip)
    result = video(small_bundle, plate, "--frames", "0-2", source=clip)
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "shot.scam.mkv"
    assert out.is_file() and f"written: {out}" in result.stderr
    first = digest(out)
    again = video(small_bundle, plate, "--frames", "0-3", source=clip)
    assert again.exit_code == 2 and "--overwrite" in error_line(again)
    assert digest(out) == first
    assert video(small_bundle, plate, "--frames", "0-3", "--overwrite", source=clip).exit_code == 0
    assert digest(out) != first


@pytest.mark.parametrize("output", ["out.mkv", "seq.%04d.png"])
def test_range_past_the_end_is_an_error_and_writes_nothing(small_bundle, plate, tmp_path, output):
    result = video(small_bundle, plate, "--frames", "50-60", "-o", tmp_path / output)
    assert result.exit_code == 10
    assert f"the clip has {N} frames" in error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_frames_without_a_person_are_counted_once(small_bundle, plate, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for i in range(N):
        lab = person_labels(96, 128) if i < 6 else np.zeros((96, 128), np.uint8)
        Image.fromarray(lab).save(empty / f"{i:04d}.png")
    result = video(small_bundle, plate, "-o", tmp_path / "o.mkv", masks=empty)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "had no person" in line]
    assert warnings == [f"scam-run: warning: 4 of {N} frames had no person; they were written unchanged"]


def test_sigterm_stops_cleanly_with_143(small_bundle, shared, tmp_path):
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "scam-run"), "video", "--bundle", str(small_bundle), "--subject",
         str(shared / "data" / "ccp" / "images" / "0001.jpg"), str(shared / "data" / "video" / "pose_1.mp4"),
         "-o", str(out), "--progress", "json", "--threads", "1"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the first frame written: the run is in its loop
        if line.startswith("{"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def _altered_bundle(small_bundle, tmp_path, how):
    from scam_runtime.bundle import sha256_file
    bundle = tmp_path / "bundle"
    shutil.copytree(small_bundle, bundle)
    manifest = json.loads((bundle / "bundle.json").read_text())
    if how == "files emptied":
        manifest["files"] = {}
        with open(bundle / "generator.onnx", "r+b") as f:
            f.seek(200)
            f.write(b"\1\2\3\4")
    else:  # not ONNX, but the hash is updated to match
        (bundle / "encoder.onnx").write_bytes(b"this is not an onnx graph\n" * 40)
        manifest["files"]["encoder.onnx"] = sha256_file(bundle / "encoder.onnx")
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    return bundle


@pytest.mark.parametrize("how, message", [("files emptied", "has no sha256"),
                                          ("not onnx", "not a readable ONNX graph")])
def test_altered_bundles_are_exit_12_in_run_and_doctor(small_bundle, plate, tmp_path, how, message):
    bundle = _altered_bundle(small_bundle, tmp_path, how)
    result = video(bundle, plate, "-o", tmp_path / "o.mkv")
    assert result.exit_code == 12 and message in error_line(result)
    assert not (tmp_path / "o.mkv").exists()
    doctor = run("doctor", "--bundle", bundle, "--json")
    assert doctor.exit_code == 12
    assert message in json.loads(doctor.stdout)["bundle"]["error"]


def test_fit_refuses_to_replace_an_earlier_run(tmp_path):
    from scam_train.cli import main as train
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    (run_dir / "last.pt").write_bytes(b"earlier")
    result = CliRunner().invoke(train, ["fit", "--data", str(tmp_path), "--out", str(run_dir)])
    assert result.exit_code == 2 and "pass --resume to continue it or --overwrite" in result.stderr
    assert (run_dir / "last.pt").read_bytes() == b"earlier"
    result = CliRunner().invoke(train, ["fit", "--out", str(tmp_path / "norun"), "--resume"])
    assert result.exit_code == 2 and "no run to resume" in result.stderr


def _bomb(path):
    """A PNG that declares 14000×14000 pixels (Pillow refuses it as a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 14000, 14000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("extra, code, message", [
    (["--temporal", "ema=7"], 2, "--temporal must be per-frame, first or ema=ALPHA"),
    (["--keep", "hair"], 2, "--keep: unknown label(s) hair"),
    (["--keep", "background"], 2, "--keep background: the background always stays the frame's"),
    (["--frames", "5-2"], 2, "the last frame comes before the first"),
    (["--pix-fmt", "pal8", "--codec", "h264"], 2, "--pix-fmt pal8: not a format libx264 writes"),
    (["--subject", "{tmp}/text.npz"], 10, "text.npz: not a scam subject file"),
    (["--subject", "{tmp}/bomb.png"], 10, "bomb.png: refused, too many pixels"),
    (["--subject-mask", "{tmp}/bomb.png"], 11, "bomb.png: refused, too many pixels for a label map"),
])
def test_documented_exit_codes_of_scam_run_video(small_bundle, plate, tmp_path, extra, code, message):
    (tmp_path / "text.npz").write_text("not an archive\n")
    _bomb(tmp_path / "bomb.png")
    out = tmp_path / "out" / "o.mp4"
    out.parent.mkdir()
    result = video(small_bundle, plate, "-o", out, *[e.format(tmp=tmp_path) for e in extra])
    assert result.exit_code == code, result.stderr
    assert message in error_line(result)
    assert list(out.parent.iterdir()) == []


def test_parser_choice_is_a_usage_error(small_bundle, plate, tmp_path):
    result = run("image", "--bundle", small_bundle, "--subject", plate / "actor.png", plate / "actor.png",
                 "--parser", "sam2", "-o", tmp_path / "o.png")
    assert result.exit_code == 2 and "--parser: unknown parser 'sam2'" in error_line(result)


def test_odd_sized_plate_to_h264_gets_a_format_that_fits(small_bundle, plate, tmp_path):
    import av
    source = tmp_path / "odd.mkv"
    make_video(source, n=2, size=(97, 129), audio=False)
    result = run("video", "--bundle", small_bundle, "--subject", plate / "actor.png", "--subject-mask",
                 plate / "actor_mask.png", source, "-o", tmp_path / "odd.mp4", "--quiet")
    assert result.exit_code == 0, result.stderr
    with av.open(str(tmp_path / "odd.mp4")) as c:
        stream = c.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (129, 97)
        assert stream.codec_context.pix_fmt == "yuv444p"


def test_scam_train_codes(tmp_path):
    from scam_train.cli import main as train
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photos / "a.png")
    (photos / "b.jpg").write_text("not a photo")
    result = CliRunner().invoke(train, ["prepare", "--images", str(photos), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 3 and "b.jpg: unreadable photo" in result.stderr
    assert not (tmp_path / "ds").exists()
    result = CliRunner().invoke(train, ["fit", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                                        "--scheme", "nope", "--perceptual-weight", "0"])
    assert result.exit_code == 2 and "--scheme: unknown label scheme 'nope'" in result.stderr


def test_label_maps_of_another_size_warn_once_and_are_counted(small_bundle, plate, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    for i in range(N):
        Image.fromarray(person_labels(48, 64, shift=i // 2)).save(small / f"{i:04d}.png")
    result = video(small_bundle, plate, "-o", tmp_path / "o.mkv", masks=small)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line and "label map" in line]
    assert len(warnings) == 2, warnings
    assert "once per run" in warnings[0]
    assert warnings[1] == f"scam-run: warning: {N} of {N} label maps were not their frame's size and were resized (nearest)"


def test_a_registered_parser_is_a_parser_choice(small_bundle, plate, tmp_path):
    """How a studio plugs its own parser in: register_parser, then --parser NAME."""
    from scam_runtime import parsers

    class Box:
        def __init__(self, labels, options):
            self.labels = labels

        def __call__(self, image):
            return person_labels(*image.shape[:2]).astype(np.int32)

    parsers.register_parser("studio-box", Box)
    try:
        result = run("image", "--bundle", small_bundle, "--subject", plate / "actor.png", plate / "actor.png",
                     "--parser", "studio-box", "-o", tmp_path / "o.png", "--write-matte", tmp_path / "m.png")
        assert result.exit_code == 0, result.stderr
        assert "label maps from the studio-box parser" in result.stderr
        matte = np.asarray(Image.open(tmp_path / "m.png"))
        assert matte[100, 60] == 255 and matte[5, 5] == 0  # the box is the person
    finally:
        del parsers.PARSERS["studio-box"]


@pytest.mark.parametrize("case, code, message", [
    ("empty.mp4", 10, "empty.mp4: unreadable video (Invalid data found when processing input)"),
    ("text.mp4", 10, "text.mp4: unreadable video (Invalid data found when processing input)"),
    ("cut subject", 10, "cut.png: unreadable image"),
    ("cut label map", 11, "0003.png: unreadable"),
])
def test_broken_inputs_are_one_line_and_leave_nothing(small_bundle, plate, tmp_path, case, code, message):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n")
    data = (plate / "actor.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    masks = tmp_path / "masks"
    shutil.copytree(plate / "masks", masks)
    label_map = (masks / "0003.png").read_bytes()
    (masks / "0003.png").write_bytes(label_map[: len(label_map) // 2])
    out = tmp_path / "out" / "o.mkv"
    out.parent.mkdir()
    extra = {"empty.mp4": dict(source=tmp_path / "empty.mp4"), "text.mp4": dict(source=tmp_path / "text.mp4"),
             "cut subject": {}, "cut label map": dict(masks=masks)}[case]
    args = ["--subject", tmp_path / "cut.png"] if case == "cut subject" else []
    result = video(small_bundle, plate, "-o", out, *args, **extra)
    assert result.exit_code == code, result.stderr
    assert message in error_line(result)
    assert list(out.parent.iterdir()) == []
