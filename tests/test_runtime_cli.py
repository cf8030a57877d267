"""scam-run end to end: video timing and audio, lossless plates, chunks, resume, errors."""
import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, make_plate
from PIL import Image

from models.synthetic import person_labels
from scam_runtime.cli import main

N = 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Synthetic lossless clip with audio, per-frame label maps, a subject and its mask."""
    d = tmp_path_factory.mktemp("clip")
    return d, make_plate(d, N, seed=1)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def video_args(bundle, clip_dir, out, *extra):
    return ["video", "--bundle", bundle, "--subject", clip_dir / "actor.png", "--subject-mask",
            clip_dir / "actor_mask.png", "--masks", clip_dir / "masks", clip_dir / "in.mkv", "-o", out,
            "--codec", "ffv1", "--quiet", *extra]


def decode(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(s)]
        return frames, s.time_base, s.average_rate


def audio_packets(path):
    with av.open(str(path)) as c:
        return [(p.pts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.size]


@pytest.fixture(scope="module")
def full_run(small_bundle, clip):
    d, _ = clip
    out = d / "out.mkv"
    result = run(*video_args(small_bundle, d, out, "--batch", "4", "--write-matte", d / "matte.%04d.png"))
    assert result.exit_code == 0, result.stderr
    return out


def test_video_keeps_timing_audio_and_plate(clip, full_run):
    d, plates = clip
    src, tb_in, rate_in = decode(d / "in.mkv")
    out, tb_out, rate_out = decode(full_run)
    assert len(out) == len(src) == N
    assert (tb_out, rate_out) == (tb_in, rate_in)
    assert [p for p, _ in out] == [p for p, _ in src]
    assert audio_packets(full_run) == audio_packets(d / "in.mkv")
    for i, (_, frame) in enumerate(out):
        matte = np.asarray(Image.open(d / f"matte.{i:04d}.png"))
        assert (matte == 0).mean() > 0.3
        assert np.array_equal(frame[matte == 0], plates[i][matte == 0]), f"plate changed in frame {i}"
        assert not np.array_equal(frame[matte == 255], plates[i][matte == 255])
    assert not list(d.glob(".*partial*"))


@pytest.mark.parametrize("batch", [1, 4])
def test_frame_range_chunks_concatenate_to_full_run(small_bundle, clip, full_run, batch):
    """Bit-identical at batch 1; with batches, ONNX Runtime's rounding may move a value by 1."""
    d, _ = clip
    full = d / "out_b4.mkv" if batch == 4 else d / "out_b1.mkv"
    if batch == 1:
        assert run(*video_args(small_bundle, d, full, "--batch", "1")).exit_code == 0
    else:
        full = full_run
    parts = []
    for i, frames in enumerate(["0-4", "5-10", "11"]):
        out = d / f"chunk{i}_b{batch}.mkv"
        assert run(*video_args(small_bundle, d, out, "--frames", frames, "--batch", batch)).exit_code == 0
        parts += decode(out)[0]
    whole = decode(full)[0]
    assert [p for p, _ in parts] == [p for p, _ in whole]
    worst = max(np.abs(a.astype(int) - b.astype(int)).max() for (_, a), (_, b) in zip(parts, whole))
    assert worst == 0 if batch == 1 else worst <= 1


def test_sequence_output_resume(small_bundle, clip):
    d, _ = clip
    pattern = d / "seq" / "out.%04d.png"
    pattern.parent.mkdir()
    assert run(*video_args(small_bundle, d, pattern)).exit_code == 0
    first = {p.name: p.stat().st_mtime_ns for p in pattern.parent.iterdir()}
    assert len(first) == N
    before = {i: np.asarray(Image.open(pattern.parent / f"out.{i:04d}.png")) for i in (3, 7)}
    for i in (3, 7):
        (pattern.parent / f"out.{i:04d}.png").unlink()
    args = [a for a in video_args(small_bundle, d, pattern, "--resume", "--progress", "json") if a != "--quiet"]
    result = run(*args)
    assert result.exit_code == 0
    again = {p.name: p.stat().st_mtime_ns for p in pattern.parent.iterdir()}
    changed = sorted(n for n in again if again[n] != first.get(n))
    assert changed == ["out.0003.png", "out.0007.png"]
    for i in (3, 7):
        assert np.array_equal(np.asarray(Image.open(pattern.parent / f"out.{i:04d}.png")), before[i])
    assert [json.loads(line)["frame"] for line in result.stderr.splitlines() if line.startswith("{")] == [3, 7]


def test_image_sequence_input(small_bundle, clip, tmp_path):
    d, plates = clip
    for i, plate in enumerate(plates[:3]):
        Image.fromarray(plate).save(tmp_path / f"plate.{i + 1001:04d}.png")
        Image.fromarray(person_labels(96, 128, shift=i)).save(tmp_path / f"mask.{i + 1001:04d}.png")
    result = run("video", "--bundle", small_bundle, "--subject", d / "actor.png", "--subject-mask",
                 d / "actor_mask.png", "--masks", tmp_path / "mask.%04d.png", tmp_path / "plate.%04d.png",
                 "-o", tmp_path / "out.%04d.png", "--frames", "1002-", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("out.*")) == ["out.1002.png", "out.1003.png"]


def test_image_and_encode_subject(small_bundle, clip, tmp_path):
    d, plates = clip
    Image.fromarray(plates[0]).save(tmp_path / "target.png")
    Image.fromarray(person_labels(96, 128)).save(tmp_path / "target_mask.png")
    assert run("encode-subject", d / "actor.png", "--subject-mask", d / "actor_mask.png", "--bundle",
               small_bundle, "-o", tmp_path / "actor.npz").exit_code == 0
    for subject, out in ((d / "actor.png", "from_image.png"), (tmp_path / "actor.npz", "from_npz.png")):
        result = run("image", "--bundle", small_bundle, "--subject", subject, "--subject-mask", d / "actor_mask.png",
                     tmp_path / "target.png", "--mask", tmp_path / "target_mask.png", "-o", tmp_path / out,
                     "--write-matte", tmp_path / f"matte_{out}")
        assert result.exit_code == 0, result.stderr
    from_image = np.asarray(Image.open(tmp_path / "from_image.png"))
    from_npz = np.asarray(Image.open(tmp_path / "from_npz.png"))
    matte = np.asarray(Image.open(tmp_path / "matte_from_image.png"))
    assert from_image.shape == (96, 128, 3) and np.array_equal(from_image, from_npz)
    assert np.array_equal(from_image[matte == 0], plates[0][matte == 0])


@pytest.mark.parametrize("case, code, message", [
    ("missing input", 10, "no such file"),
    ("no video stream", 10, "no video stream"),
    ("missing masks", 11, "no such mask folder"),
    ("mask count", 11, "only 1 label map(s), but the input has more frames"),
    ("bad label ids", 11, "label ids must lie in 0..2"),
    ("corrupt bundle", 12, "sha256 does not match"),
    ("provider", 13, "'cuda' is not available"),
    ("engines", 13, "TensorRT"),
    ("unwritable output", 14, "the folder of -o does not exist"),
])
def test_errors_are_one_line_with_distinct_codes(small_bundle, clip, tmp_path, case, code, message):
    import shutil
    d, _ = clip
    bundle, source, masks, out, extra = small_bundle, d / "in.mkv", d / "masks", tmp_path / "out.mkv", []
    if case == "missing input":
        source = tmp_path / "nope.mp4"
    elif case == "no video stream":
        source = tmp_path / "audio.m4a"
        with av.open(str(source), "w") as c:
            a = c.add_stream("aac", rate=16000)
            a.layout = "mono"
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate = 16000
            c.mux(a.encode(f))
            c.mux(a.encode(None))
    elif case == "missing masks":
        masks = tmp_path / "nomasks"
    elif case == "mask count":
        masks = tmp_path / "fewmasks"
        masks.mkdir()
        Image.fromarray(person_labels(96, 128)).save(masks / "0000.png")
    elif case == "bad label ids":
        masks = tmp_path / "badmasks"
        masks.mkdir()
        for i in range(N):
            Image.fromarray(person_labels(96, 128) * 3).save(masks / f"{i:04d}.png")
    elif case == "corrupt bundle":
        bundle = tmp_path / "bundle"
        shutil.copytree(small_bundle, bundle)
        with open(bundle / "encoder.onnx", "r+b") as f:
            f.seek(100)
            f.write(b"\0\0\0\0")
    elif case == "provider":
        if "cuda" in __import__("scam_runtime.backend").backend.available_providers():
            pytest.skip("CUDA available")
        extra = ["--provider", "cuda"]
    elif case == "engines":
        if importlib.util.find_spec("tensorrt"):
            pytest.skip("TensorRT installed")
        extra = ["--provider", "trt-engine"]
    elif case == "unwritable output":
        out = tmp_path / "missing_dir" / "out.mkv"
    args = ["video", "--bundle", bundle, "--subject", d / "actor.png", "--subject-mask", d / "actor_mask.png",
            "--masks", masks, source, "-o", out, "--quiet", *extra]
    result = run(*args)
    assert result.exit_code == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("scam-run: error:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_extra_outputs_need_a_pattern(small_bundle, clip, tmp_path):
    d, _ = clip
    result = run(*video_args(small_bundle, d, tmp_path / "o.mkv", "--write-matte", tmp_path / "matte.png"))
    assert result.exit_code == 2 and "--write-matte needs an 8-bit image-sequence pattern" in result.stderr
    assert not (tmp_path / "o.mkv").exists()


def test_an_encoder_preset_without_x264_or_x265_is_a_usage_error(small_bundle, clip, tmp_path):
    d, _ = clip
    result = run(*video_args(small_bundle, d, tmp_path / "o.mov", "--codec", "prores", "--encoder-preset", "fast"))
    assert result.exit_code == 2 and "only for --codec h264 or h265 (the codec is prores)" in result.stderr
    assert not (tmp_path / "o.mov").exists() and not list(tmp_path.glob(".*partial*"))


def test_runtime_never_imports_torch(small_bundle, clip, tmp_path):
    d, _ = clip
    code = f"""
import sys
from click.testing import CliRunner
from scam_runtime.cli import main
r = CliRunner().invoke(main, ["video", "--bundle", {str(small_bundle)!r}, "--subject", {str(d / 'actor.png')!r},
    "--subject-mask", {str(d / 'actor_mask.png')!r}, "--masks", {str(d / 'masks')!r}, {str(d / 'in.mkv')!r},
    "-o", {str(tmp_path / 'o.mkv')!r}, "--frames", "0-1", "--quiet"])
assert r.exit_code == 0, r.output
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("TORCH_MODULES", loaded)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "TORCH_MODULES []" in result.stdout


def _import_graph(package: Path) -> dict[str, set[str]]:
    """Each module of `package` and the modules (not packages: a package's `__init__` is
    loaded before its modules, so edges to it cannot deadlock) of it that it imports at
    module level; imports inside functions run later."""
    def name(path: Path) -> str:
        parts = path.relative_to(package.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    packages = {name(p) for p in package.rglob("__init__.py")}
    modules = {name(p): p for p in package.rglob("*.py")}
    graph = {}
    for module, path in modules.items():
        base = module if module in packages else module.rpartition(".")[0]
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.level:
                root = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                target = f"{root}.{node.module}" if node.module else root
                deps |= {target} | {f"{target}.{a.name}" for a in node.names}
        graph[module] = {d for d in deps if d in modules and d not in packages and d != module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph`, or None."""
    def walk(path: list[str]) -> list[str] | None:
        for dep in sorted(graph[path[-1]]):
            if dep == path[0]:
                return path + [dep]
            if dep not in path and (found := walk(path + [dep])):
                return found
        return None

    return next((c for m in sorted(graph) if (c := walk([m]))), None)


def test_runtime_modules_import_no_cycle():
    graph = _import_graph(ROOT / "scam_runtime")
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    graph["scam_runtime.openvino_session"].add("scam_runtime.backend")  # as it was: the check sees that
    assert _cycle(graph) == ["scam_runtime.backend", "scam_runtime.openvino_session", "scam_runtime.backend"]


def test_real_clip_pose_1(small_bundle, shared, tmp_path):
    """The shared 576×576 clip, label maps made here (a bright/dark split is not a person
    parser: it only gives the runtime real frames, sizes and timing to carry)."""
    source = shared / "data" / "video" / "pose_1.mp4"
    masks = tmp_path / "masks"
    masks.mkdir()
    with av.open(str(source)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == 40:  # the first 40 of 120 frames: real sizes and timing, a third of the time
                break
            grey = f.to_ndarray(format="gray")
            lab = np.where(grey < np.percentile(grey, 30), 2, 0).astype(np.uint8)
            lab[:80][lab[:80] == 2] = 1
            Image.fromarray(lab).save(masks / f"{i:04d}.png")
    actor = tmp_path / "actor.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (256, 170, 3), dtype=np.uint8)).save(actor)
    Image.fromarray(person_labels(256, 170)).save(tmp_path / "actor_mask.png")
    out = tmp_path / "out.mp4"
    result = run("video", "--bundle", small_bundle, "--subject", actor, "--subject-mask", tmp_path / "actor_mask.png",
                 "--masks", masks, source, "-o", out, "--batch", "4", "--frames", "0-39", "--quiet")
    assert result.exit_code == 0, result.stderr
    src, tb_in, rate_in = decode(source)
    got, tb_out, rate_out = decode(out)
    assert len(src) == 120 and len(got) == 40 and rate_out == rate_in
    assert [p * tb_out for p, _ in got] == [p * tb_in for p, _ in src[:40]]
    assert got[0][1].shape == (576, 576, 3)


def test_video_needs_only_a_subject_photo(small_bundle, shared, tmp_path):
    """No label maps at all: the built-in parser labels the subject photo and every frame."""
    source = shared / "data" / "video" / "pose_1.mp4"
    out, labels = tmp_path / "out.mkv", tmp_path / "labels.%04d.png"
    result = run("video", "--bundle", small_bundle, "--subject", shared / "data" / "ccp" / "images" / "0001.jpg",
                 source, "-o", out, "--frames", "0-5", "--label-smoothing", "0.5", "--codec", "ffv1",
                 "--write-labels", labels, "--quiet")
    assert result.exit_code == 0, result.stderr
    assert len(decode(out)[0]) == 6
    maps = [np.asarray(Image.open(str(labels) % i)) for i in range(6)]
    assert all(m.shape == (576, 576) and m.max() <= 2 for m in maps)
    person = [(m > 0).mean() for m in maps]
    assert all(0.02 < p < 0.6 for p in person), person  # one person, not the whole frame, not nothing
