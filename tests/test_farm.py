"""The render-farm job: the Open Job Description template validates, a whole job runs
locally with `openjd run` in 3 chunks and equals a single-machine run, a killed chunk
rerun changes nothing, and `scam-run assemble` keeps the plate's timing and audio."""
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from scam_runtime.cli import main

N = 12
BIN = Path(sys.executable).parent
OPENJD = BIN / "openjd"
needs_openjd = pytest.mark.skipif(not OPENJD.exists(), reason="openjd-cli not installed (pip install -e '.[dev]')")


def _plate_from_demo(path: Path, n: int) -> None:
    """The first `n` frames of the shipped demo clip (a real dancer), lossless, with a tone."""
    from scam_runtime.demo import CLIP
    with av.open(str(CLIP)) as src, av.open(str(path), "w") as out:
        v = out.add_stream("ffv1", rate=30)
        v.width, v.height, v.pix_fmt = 256, 384, "bgr0"
        a = out.add_stream("aac", rate=16000)
        a.layout = "mono"
        for i, frame in enumerate(src.decode(video=0)):
            if i == n:
                break
            f = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24").reformat(format="bgr0")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        samples = 16000 * n // 30
        wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16000)).astype(np.float32)[None]
        for s0 in range(0, samples, 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, s0:s0 + 1024]), format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, s0
            out.mux(a.encode(af))
        out.mux(a.encode(None))


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    from scam_runtime.demo import SUBJECT
    d = tmp_path_factory.mktemp("shot")
    _plate_from_demo(d / "plate.mkv", N)
    shutil.copy(SUBJECT, d / "actor.jpg")
    return d


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def frames_of(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(s)], s.time_base, s.average_rate


def audio_packets(path):
    with av.open(str(path)) as c:
        return [(p.pts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.size]


def test_template_is_written_and_validates(tmp_path):
    result = run("farm", "openjd", "-o", tmp_path / "job")
    assert result.exit_code == 0, result.stderr
    assert run("farm", "openjd", "-o", tmp_path / "job").exit_code == 2  # no silent overwrite
    if not OPENJD.exists():
        pytest.skip("openjd-cli not installed (pip install -e '.[dev]')")
    check = subprocess.run([OPENJD, "check", tmp_path / "job" / "template.yaml"], capture_output=True, text=True)
    assert check.returncode == 0 and "passes validation" in check.stdout, check.stdout + check.stderr


@needs_openjd
def test_openjd_job_in_three_chunks_equals_one_run(small_bundle, shot, tmp_path):
    assert run("farm", "openjd", "-o", tmp_path / "job").exit_code == 0
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path)}
    out = tmp_path / "final.mkv"
    job = subprocess.run(
        [OPENJD, "run", tmp_path / "job" / "template.yaml", "--step", "Assemble", "--run-dependencies",
         "-p", f"Plate={shot / 'plate.mkv'}", "-p", f"Subject={shot / 'actor.jpg'}",
         "-p", f"OutputDir={tmp_path / 'work'}", "-p", f"Output={out}", "-p", f"FrameEnd={N - 1}",
         "-p", "ChunkSize=5", "-p", f"Bundle={small_bundle}", "-p", "Codec=ffv1", "-p", "PixFmt=bgr0",
         "-p", "Threads=1"],
        capture_output=True, text=True, env=env, timeout=600)
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-2000:]
    assert job.stdout.count("--frames 0+5") + job.stdout.count("ChunkStart(INT) = ") >= 3
    single = tmp_path / "single.mkv"
    result = run("video", "--bundle", small_bundle, "--subject", shot / "actor.jpg", shot / "plate.mkv",
                 "-o", single, "--codec", "ffv1", "--pix-fmt", "bgr0", "--quiet", "--threads", "1")
    assert result.exit_code == 0, result.stderr
    got, tb, rate = frames_of(out)
    ref, tb_ref, rate_ref = frames_of(single)
    src, tb_src, rate_src = frames_of(shot / "plate.mkv")
    assert len(got) == len(ref) == N and (tb, rate) == (tb_src, rate_src)
    assert [p for p, _ in got] == [p for p, _ in src]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, ref))
    assert not np.array_equal(got[0][1], src[0][1])  # the dancer was replaced
    assert audio_packets(out) == audio_packets(shot / "plate.mkv")


@needs_openjd
def test_openjd_assemble_passes_the_encoder_preset(shot, tmp_path):
    """The Assemble step alone, on the plate's frames as PNG: EncoderPreset reaches x264
    (ultrafast turns CABAC off; the default keeps it on)."""
    assert run("farm", "openjd", "-o", tmp_path / "job").exit_code == 0
    frames = tmp_path / "work" / "frames"
    frames.mkdir(parents=True)
    for i, (_, rgb) in enumerate(frames_of(shot / "plate.mkv")[0]):
        Image.fromarray(rgb).save(frames / f"frame.{i:06d}.png")
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path)}
    options = {}
    for preset in ("", "ultrafast"):
        out = tmp_path / f"final{preset}.mp4"
        job = subprocess.run(
            [OPENJD, "run", tmp_path / "job" / "template.yaml", "--step", "Assemble",
             "-p", f"Plate={shot / 'plate.mkv'}", "-p", f"Subject={shot / 'actor.jpg'}",
             "-p", f"OutputDir={tmp_path / 'work'}", "-p", f"Output={out}", "-p", f"FrameEnd={N - 1}",
             "-p", "Codec=h264", "-p", f"EncoderPreset={preset}"],
            capture_output=True, text=True, env=env, timeout=300)
        assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-2000:]
        options[preset] = out.read_bytes().split(b"options: ")[1][:400]
    assert b"cabac=1" in options[""] and b"cabac=0" in options["ultrafast"]


def test_killed_chunk_rerun_changes_nothing(small_bundle, shot, tmp_path):
    pattern = tmp_path / "frames" / "frame.%06d.png"
    pattern.parent.mkdir()
    args = [str(BIN / "scam-run"), "video", str(shot / "plate.mkv"), "--bundle", str(small_bundle),
            "--subject", str(shot / "actor.jpg"), "--frames", "0+8", "-o", str(pattern), "--resume",
            "--progress", "json", "--threads", "1"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # one frame written, the chunk is under way
        if line.startswith("{"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    partial = sorted(p.name for p in pattern.parent.iterdir())
    assert 1 <= len(partial) < 8 and not any(n.startswith(".") for n in partial)
    kept = {n: (pattern.parent / n).read_bytes() for n in partial}
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in pattern.parent.iterdir()) == [f"frame.{i:06d}.png" for i in range(8)]
    assert all((pattern.parent / n).read_bytes() == b for n, b in kept.items())
    clean = tmp_path / "clean" / "frame.%06d.png"
    clean.parent.mkdir()
    assert subprocess.run(args[:args.index("-o") + 1] + [str(clean)] + args[args.index("-o") + 2:],
                          capture_output=True, timeout=120).returncode == 0
    assert all((pattern.parent / p.name).read_bytes() == p.read_bytes() for p in clean.parent.iterdir())


def test_assemble_needs_every_frame(shot, tmp_path):
    for i in range(N):
        if i != 4:
            Image.fromarray(np.full((384, 256, 3), i * 10, np.uint8)).save(tmp_path / f"f.{i:04d}.png")
    result = run("assemble", tmp_path / "f.%04d.png", "--like", shot / "plate.mkv", "-o", tmp_path / "o.mkv")
    assert result.exit_code == 10 and "frame 4 is missing" in result.stderr
    assert not (tmp_path / "o.mkv").exists()
    shutil.copy(tmp_path / "f.0003.png", tmp_path / "f.0004.png")
    result = run("assemble", tmp_path / "f.%04d.png", "--like", shot / "plate.mkv", "-o", tmp_path / "o.mkv",
                 "--codec", "ffv1", "--pix-fmt", "bgr0")
    assert result.exit_code == 0, result.stderr
    got, _, _ = frames_of(tmp_path / "o.mkv")
    assert len(got) == N and np.array_equal(got[7][1], np.full((384, 256, 3), 70, np.uint8))
    assert audio_packets(tmp_path / "o.mkv") == audio_packets(shot / "plate.mkv")
