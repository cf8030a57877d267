"""A failing stage never hangs a job: each stage of the video pipeline fails in turn (an
exception, a full disk, a broken clip, SIGTERM while it is busy), on the CLI in its own
process and through `replace_video`; each case bounds its wait, so a hang fails the case
and not the suite, and checks the exit code, the one line, the time to exit and the disk."""
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, make_plate
from faults import FAULT_AT, install

from scam_runtime import VideoOptions, replace_video
from scam_runtime.errors import InputError, OutputError, StageError

N = 8
EXIT_S = 10.0   # a failing run ends this long after its fault at most (the runs here take ~1 s)
HANG_S = 60.0   # a run still going after this is a hang


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    d = tmp_path_factory.mktemp("plate")
    make_plate(d, N, seed=5)
    return d


def _args(bundle, plate, out, *extra):
    return ["video", "--bundle", str(bundle), "--subject", str(plate / "actor.png"), "--subject-mask",
            str(plate / "actor_mask.png"), "--masks", str(plate / "masks"), str(plate / "in.mkv"),
            "-o", str(out), "--codec", "ffv1", "--threads", "1", *extra]


def _cli(stage, mode, marker, args):
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "faults.py"), stage, mode, str(marker), *args],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("scam-run: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# stage: (exit code, what the one line says, extra options)
RAISE = {
    "decode": (10, f"in.mkv: decoding failed after frame {FAULT_AT - 1} (injected decoder fault)", ()),
    "labels": (15, f"frame {FAULT_AT}: the labels failed (injected parser fault)", ()),
    "prepare": (15, f"frame {FAULT_AT}: preparing failed (injected: out of memory)", ()),
    "networks": (15, f"frame {FAULT_AT}: the networks failed (injected session fault with a second line)", ()),
    "composite": (15, f"frame {FAULT_AT}: compositing failed (injected compositing fault)", ()),
    "write": (14, f"out.mkv: frame {FAULT_AT}: writing failed ([Errno 28] No space left on device)", ()),
    "matte": (14, f"m.{FAULT_AT:04d}.png: cannot write ([Errno 5] Input/output error)", ("--write-matte",)),
    "audio": (14, "out.mkv: writing failed ([Errno 28] No space left on device)", ()),
    "encoder": (14, "out.mkv: finishing failed (injected encoder fault)", ()),
}


@pytest.mark.parametrize("stage", RAISE)
def test_cli_a_failing_stage_ends_the_job_with_its_code(small_bundle, plate, tmp_path, stage):
    code, message, extra = RAISE[stage]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = _args(small_bundle, plate, out_dir / "out.mkv")
    if extra:
        args += [extra[0], str(out_dir / "m.%04d.png")]
    proc = _cli(stage, "raise", tmp_path / "fault", args)
    try:
        _, err = proc.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{stage}: still running after {HANG_S} s")
    exit_after = time.time() - (tmp_path / "fault").stat().st_mtime  # the marker: touched at the fault
    assert proc.returncode == code, err
    line = _error_line(err)
    assert line.endswith(message), line
    assert exit_after < EXIT_S
    # no video under its name, no partial file; a matte sequence keeps the frames written
    kept = [f"m.{i:04d}.png" for i in range(FAULT_AT)] if stage == "matte" else []
    assert _left(out_dir) == kept


BUSY = ["decode", "labels", "networks", "composite", "write"]


@pytest.mark.parametrize("stage", BUSY)
def test_cli_sigterm_while_a_stage_is_busy(small_bundle, plate, tmp_path, stage):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    marker = tmp_path / "busy"
    proc = _cli(stage, "busy", marker, _args(small_bundle, plate, out_dir / "out.mkv"))
    deadline = time.monotonic() + HANG_S
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{stage}: still running {HANG_S} s after SIGTERM")
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in _error_line(err)
    assert time.monotonic() - signalled < EXIT_S
    assert _left(out_dir) == []


def _bounded(call):
    """Run `call` in a thread; its exception, or a failure if it is still running after HANG_S."""
    box = {}

    def target():
        try:
            call()
        except BaseException as exc:
            box["error"] = exc
    runner = threading.Thread(target=target, name="test-runner", daemon=True)
    runner.start()
    runner.join(HANG_S)
    assert not runner.is_alive(), "replace_video still running: a hang"
    return box.get("error")


LIBRARY = {"decode": InputError, "labels": StageError, "networks": StageError, "composite": StageError,
           "write": OutputError, "audio": OutputError}


@pytest.mark.parametrize("stage", LIBRARY)
def test_library_the_error_reaches_the_caller_and_no_thread_stays(small_bundle, plate, tmp_path, monkeypatch,
                                                                   stage):
    from scam_runtime import SubjectReplacer
    replacer = SubjectReplacer(small_bundle)
    install(stage, "raise", monkeypatch.setattr)
    before = set(threading.enumerate())
    out = tmp_path / "out.mkv"
    error = _bounded(lambda: replace_video(
        plate / "in.mkv", plate / "actor.png", out, replacer=replacer, progress="none",
        options=VideoOptions(subject_mask=plate / "actor_mask.png", masks=str(plate / "masks"), codec="ffv1")))
    assert isinstance(error, LIBRARY[stage]), error
    assert set(threading.enumerate()) == before
    assert _left(tmp_path) == []


def test_a_full_disk_mid_sequence_keeps_the_frames_written_and_resume_finishes(small_bundle, plate, tmp_path,
                                                                               monkeypatch):
    from scam_runtime import SubjectReplacer
    replacer = SubjectReplacer(small_bundle)
    options = VideoOptions(subject_mask=plate / "actor_mask.png", masks=str(plate / "masks"))
    pattern = str(tmp_path / "o.%04d.png")
    with monkeypatch.context() as m:
        install("matte", "raise", m.setattr)  # the PNG writer: here the sequence's own frames
        error = _bounded(lambda: replace_video(plate / "in.mkv", plate / "actor.png", pattern, replacer=replacer,
                                               progress="none", options=options))
    assert isinstance(error, OutputError) and "No space left" not in str(error) and "Errno 5" in str(error)
    assert _left(tmp_path) == [f"o.{i:04d}.png" for i in range(FAULT_AT)]
    report = replace_video(plate / "in.mkv", plate / "actor.png", pattern, replacer=replacer, progress="none",
                           options=VideoOptions(subject_mask=plate / "actor_mask.png", masks=str(plate / "masks"),
                                                resume=True))
    assert (report.frames, report.skipped) == (N - FAULT_AT, FAULT_AT)
    assert len(_left(tmp_path)) == N


@pytest.fixture(scope="module")
def silent_plate(tmp_path_factory):
    d = tmp_path_factory.mktemp("silent")
    make_plate(d, N, seed=5, audio=False)
    return d


def test_cli_a_clip_cut_short_is_exit_10_or_said_where_audio_may_outlast_it(small_bundle, plate, silent_plate,
                                                                            tmp_path):
    """Matroska keeps no frame count: a clip cut or corrupted mid-stream (FFmpeg's demuxer
    drops what follows the damage) shows as fewer frames than the duration says. Without
    audio that duration is the video's: exit 10, the output gone. With audio (which can
    outlast the video) it is a warning, the frames decoded written."""
    def run(clip: Path, out: Path) -> subprocess.CompletedProcess:
        args = _args(small_bundle, plate, out)
        args[args.index(str(plate / "in.mkv"))] = str(clip)
        return subprocess.run([str(Path(sys.executable).parent / "scam-run"), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=HANG_S)

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    data = (silent_plate / "in.mkv").read_bytes()
    corrupt = bytearray(data)
    middle = len(data) // 2
    corrupt[middle: middle + 2000] = bytes(range(256)) * 7 + bytes(208)
    (tmp_path / "corrupt.mkv").write_bytes(bytes(corrupt))
    (tmp_path / "cut.mkv").write_bytes(data[: int(len(data) * 0.6)])
    for name in ("corrupt", "cut"):
        proc = run(tmp_path / f"{name}.mkv", out_dir / f"{name}.out.mkv")
        assert proc.returncode == 10, proc.stderr
        said = re.search(rf"{name}\.mkv: ends after (\d) frames where its duration says about (\d+) "
                         r"\(truncated or corrupt\?\)$", _error_line(proc.stderr))
        assert said and 0 < int(said[1]) < N <= int(said[2]) <= N + 1, proc.stderr
    assert _left(out_dir) == []

    data = (plate / "in.mkv").read_bytes()
    (tmp_path / "truncated.mkv").write_bytes(data[: int(len(data) * 0.6)])
    proc = run(tmp_path / "truncated.mkv", out_dir / "truncated.out.mkv")
    assert proc.returncode == 0, proc.stderr
    assert ("truncated.mkv: ended after 4 frames where its duration says about 9 (truncated, or audio longer "
            "than the video?); 4 frames written") in proc.stderr
    assert _left(out_dir) == ["truncated.out.mkv"]


def test_output_folders_are_checked_before_any_work(small_bundle, plate, tmp_path):
    for option in ("--write-matte", "--write-labels", "--write-raw"):
        proc = subprocess.run([str(Path(sys.executable).parent / "scam-run"),
                               *_args(small_bundle, plate, tmp_path / "o.mkv", option, str(tmp_path / "nodir" / "m.%04d.png"))],
                              cwd=ROOT, capture_output=True, text=True, timeout=HANG_S)
        assert proc.returncode == 14, proc.stderr
        assert _error_line(proc.stderr) == f"scam-run: error: {tmp_path / 'nodir'}: the folder of {option} does not exist"
        assert "label maps from" not in proc.stderr  # before the subject was even encoded
    assert _left(tmp_path) == []


def test_a_truncated_mp4_with_its_frame_count_is_exit_10(small_bundle, plate, tmp_path):
    """An MP4 written for streaming (`faststart`: its index first) still says how many frames
    it has when its end is cut off: a shorter clip is an error, not a shorter output."""
    import av
    clip = tmp_path / "full.mp4"
    with av.open(str(plate / "in.mkv")) as src, av.open(str(clip), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for frame in src.decode(video=0):
            dst.mux(stream.encode(frame.reformat(format="yuv420p")))
        dst.mux(stream.encode(None))
    data = clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.7)])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = _args(small_bundle, plate, out_dir / "o.mkv")
    args[args.index(str(plate / "in.mkv"))] = str(tmp_path / "cut.mp4")
    proc = subprocess.run([str(Path(sys.executable).parent / "scam-run"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=HANG_S)
    assert proc.returncode == 10, proc.stderr
    assert "cut.mp4: ends after" in _error_line(proc.stderr) and f"its header says {N}" in proc.stderr
    assert _left(out_dir) == []
