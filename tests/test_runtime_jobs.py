"""The library calls (`replace_video`, `replace_image`), the one atomic writer, and the parser
description format shared by `parser-fit` and the ONNX parser."""
import json
import sys

import av
import numpy as np
import pytest
from conftest import make_plate, make_video
from PIL import Image

from models.synthetic import person_labels
from scam_runtime import SubjectReplacer, VideoOptions, replace_image, replace_video
from scam_runtime.atomic import atomic_path, partial_path, write_image, write_json
from scam_runtime.errors import InputError, LabelError, OutputError, UsageError
from scam_runtime.jobs import encoder_threads
from scam_runtime.labels import merge_table
from scam_runtime.media import Encoding, FrameRange, VideoReader, VideoWriter
from scam_runtime.parsers import BUILTIN_MODEL, CropSpec, OnnxParser, ParserDescription

N = 4


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    d = tmp_path_factory.mktemp("jobs")
    make_plate(d, N, seed=5, audio=False)
    return d


@pytest.fixture(scope="module")
def replacer(small_bundle):
    return SubjectReplacer(small_bundle, warn=lambda m: None)


def test_replace_video_defaults_beside_the_source_and_reports(replacer, plate, tmp_path):
    clip = tmp_path / "shot.mkv"
    clip.write_bytes((plate / "in.mkv").read_bytes())
    notes = []
    report = replace_video(clip, plate / "actor.png", replacer=replacer, progress="none", note=notes.append,
                           options=VideoOptions(subject_mask=plate / "actor_mask.png", masks=str(plate / "masks"),
                                                codec="ffv1"))
    assert report.output == str(tmp_path / "shot.scam.mkv") and report.frames == N and report.skipped == 0
    with av.open(report.output) as c:
        assert sum(1 for _ in c.decode(video=0)) == N
    assert notes == []  # masks given: no parser was made
    stages = {"decode", "labels", "prepare", "encode", "mix", "generate", "composite", "write"}
    assert set(replacer.times.seconds) == set(replacer.times.cpu_seconds) == stages  # for profiling from outside
    assert replacer.times.cpu_seconds["composite"] > 0
    with pytest.raises(UsageError, match="exists; pass --overwrite"):
        replace_video(clip, plate / "actor.png", replacer=replacer, progress="none",
                      options=VideoOptions(subject_mask=plate / "actor_mask.png", masks=str(plate / "masks")))


def test_the_video_encoder_gets_one_thread_beside_cpu_inference(plate, tmp_path):
    assert encoder_threads(0, "cpu") == encoder_threads(0, "openvino") == 1
    assert encoder_threads(0, "cuda") == encoder_threads(0, "trt-engine") == 0  # the codec's own count
    assert encoder_threads(3, "cpu") == 3
    reader = VideoReader(plate / "in.mkv")
    try:
        for threads in (1, 3):
            writer = VideoWriter(tmp_path / "out.mp4", reader, Encoding(threads=threads))
            assert writer.stream.codec_context.thread_count == threads
            writer.abort()
        assert not (tmp_path / "out.mp4").exists()
    finally:
        reader.close()


def test_the_encoder_preset_reaches_x264_and_fits_only_h264_h265(plate, tmp_path):
    """x264 writes its settings into the stream: ultrafast turns CABAC off, the default keeps it."""
    reader = VideoReader(plate / "in.mkv")
    try:
        settings, frames = {}, list(reader.frames(FrameRange(0, 1)))
        for preset in (None, "ultrafast"):
            out = tmp_path / f"{preset}.mp4"
            writer = VideoWriter(out, reader, Encoding(preset=preset))
            for frame in frames:
                writer.write_image(frame, frame.image)
            writer.finish()
            settings[preset] = out.read_bytes().split(b"options: ")[1][:400]
        assert b"cabac=1" in settings[None] and b"cabac=0" in settings["ultrafast"]
        with pytest.raises(UsageError, match=r"--encoder-preset: only for --codec h264 or h265 \(the codec is prores"):
            Encoding("prores", preset="fast")
        with pytest.raises(UsageError, match="--encoder-preset quick: not a preset; choose one of ultrafast"):
            Encoding(preset="quick")
        with pytest.raises(UsageError, match="only for --codec h264 or h265"):  # before any work is done
            VideoOptions(codec="ffv1", encoder_preset="veryfast")
        assert VideoOptions(encoder_preset="fast").encoding("openvino") == Encoding(preset="fast", threads=1)
    finally:
        reader.close()


def test_h265_writes_without_x265s_log(tmp_path, capfd):
    # not a tiny size: the libx265 in PyAV's wheel corrupts its heap on some (48 or 40 px wide)
    make_video(tmp_path / "plate.mkv", n=3, size=(96, 128), audio=False)
    reader = VideoReader(tmp_path / "plate.mkv")
    try:
        writer = VideoWriter(tmp_path / "out.mp4", reader, Encoding("h265", preset="ultrafast"), audio="none")
        for frame in reader.frames(FrameRange()):
            writer.write_image(frame, frame.image)
        writer.finish()
    finally:
        reader.close()
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "hevc" and sum(1 for _ in c.decode(video=0)) == 3
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("preset", [None, "ultrafast"])
def test_an_mkv_plate_to_mp4_keeps_its_timestamps(tmp_path, preset):
    """MP4 raises a 1/1000 time base (MKV's) to 1/16000 when it writes its header, at the
    first packet: past it, frames must still be stamped in the plate's time base (x264's
    lookahead holds 40 frames at the default preset, none at ultrafast)."""
    make_video(tmp_path / "plate.mkv", n=60, size=(32, 48), audio=False)
    reader = VideoReader(tmp_path / "plate.mkv")
    try:
        frames = list(reader.frames(FrameRange()))
        writer = VideoWriter(tmp_path / "out.mp4", reader, Encoding(preset=preset), audio="none")
        for frame in frames:
            writer.write_image(frame, frame.image)
        writer.finish()
        plate_time_base = reader.stream.time_base
    finally:
        reader.close()
    with av.open(str(tmp_path / "out.mp4")) as c:
        stream = c.streams.video[0]
        assert stream.time_base != plate_time_base  # the case this is about
        times = [f.pts * stream.time_base for f in c.decode(stream)]
    assert len(times) == 60 and times == [f.pts * plate_time_base for f in frames]


def test_a_muxer_failure_is_an_output_error_and_leaves_nothing(tmp_path):
    make_video(tmp_path / "plate.mkv", n=3, size=(32, 48), audio=False)
    reader = VideoReader(tmp_path / "plate.mkv")
    try:
        first, second, third = reader.frames(FrameRange())
        writer = VideoWriter(tmp_path / "out.mp4", reader, Encoding(preset="ultrafast"), audio="none")
        with pytest.raises(OutputError, match="out.mp4: writing failed"):  # a timestamp twice
            try:
                for frame in (first, second, second, third):
                    writer.write_image(frame, frame.image)
                writer.finish()
            finally:
                writer.abort()
    finally:
        reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plate.mkv"]


def test_replace_video_takes_an_encoded_subject_and_resumes_sequences(replacer, plate, tmp_path):
    subject = replacer.encode_subject(np.asarray(Image.open(plate / "actor.png")), person_labels(200, 120))
    pattern = str(tmp_path / "out.%04d.png")
    options = VideoOptions(masks=str(plate / "masks"), frames="0-1")
    first = replace_video(plate / "in.mkv", subject, pattern, replacer=replacer, progress="none", options=options)
    assert (first.frames, first.skipped) == (2, 0)
    again = replace_video(plate / "in.mkv", subject, pattern, replacer=replacer, progress="none",
                          options=VideoOptions(masks=str(plate / "masks"), resume=True))
    assert (again.frames, again.skipped) == (N - 2, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out.{i:04d}.png" for i in range(N)]


def test_the_subject_label_map_is_checked_once_and_named(small_bundle, plate, tmp_path):
    """A subject mask of another size: one resize warning, naming its file."""
    Image.fromarray(person_labels(100, 60)).save(tmp_path / "small_mask.png")
    warnings = []
    replacer = SubjectReplacer(small_bundle, warn=warnings.append)
    out = replace_image(plate / "actor.png", plate / "actor.png", tmp_path / "o.png", replacer=replacer,
                        subject_mask=tmp_path / "small_mask.png", mask=plate / "actor_mask.png")
    assert out.is_file()
    resized = [w for w in warnings if "resized" in w]
    assert len(resized) == 1 and resized[0].startswith(str(tmp_path / "small_mask.png")), warnings


def test_an_exr_output_of_an_8bit_image_is_composited_over_a_scene_linear_plate(replacer, plate, tmp_path):
    from scam_runtime.colour import ColourOptions
    from scam_runtime.composite import composite
    from scam_runtime.plates import read_plate as read_plate_file
    target = np.asarray(Image.open(plate / "actor.png"))
    png = replace_image(plate / "actor.png", plate / "actor.png", tmp_path / "o.png", replacer=replacer,
                        subject_mask=plate / "actor_mask.png", mask=plate / "actor_mask.png",
                        write_matte=tmp_path / "m.png", write_raw=tmp_path / "r.png")
    exr = replace_image(plate / "actor.png", plate / "actor.png", tmp_path / "o.exr", replacer=replacer,
                        subject_mask=plate / "actor_mask.png", mask=plate / "actor_mask.png")
    matte = np.asarray(Image.open(tmp_path / "m.png")).astype(np.float32) / 255
    raw = np.asarray(Image.open(tmp_path / "r.png"))
    written = read_plate_file(exr).rgb
    scene = ColourOptions().path(np.dtype(np.float16))  # the built-in config's scene_linear: ACEScg
    linear = scene.to_dtype(scene.from_display(target))
    expected = composite(linear, raw, matte, scene)
    inside = matte > 0.999
    assert np.array_equal(written[~(matte > 0)], linear[~(matte > 0)])
    assert np.abs(written[inside].astype(np.float32) - expected[inside].astype(np.float32)).max() < 1e-3
    assert png.is_file()


def test_atomic_writes_leave_the_final_name_or_nothing(tmp_path):
    target = tmp_path / "frame.0001.png"
    assert partial_path(target) == tmp_path / ".frame.0001.partial.png"
    partial_path(target).write_bytes(b"stale partial of a killed run")
    picture = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    write_image(target, picture)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.0001.png"]
    assert np.array_equal(np.asarray(Image.open(target)), picture)  # lossless at the fast zlib level
    data = target.read_bytes()
    assert data[data.index(b"IDAT") + 4:][:2] == b"\x78\x01"  # zlib header: level 1 (Pillow's default gives 78 9c)
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "report.json") as tmp:
            tmp.write_text("{half")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.0001.png"]
    with pytest.raises(OutputError, match="only the main output can be an EXR"):
        write_image(tmp_path / "m.exr", np.zeros((4, 5), np.uint8))
    folder = tmp_path / "bundle"
    for version in ("one", "two"):  # a folder replaces the folder of that name as a whole
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            write_json(tmp / "v.json", {"v": version})
    assert json.loads((folder / "v.json").read_text()) == {"v": "two"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "frame.0001.png"]


def test_parser_description_round_trips_and_feeds_the_onnx_parser(tmp_path):
    builtin = ParserDescription.load(BUILTIN_MODEL.with_suffix(".json"))
    assert builtin.refine == ("builtin_face.onnx",) and builtin.extra["trained_on"]
    face = ParserDescription.load(BUILTIN_MODEL.with_name("builtin_face.json"))
    assert face.crop == CropSpec("face", 2.6, 0.35) and face.passes == 2
    for description in (builtin, face):
        description.write(tmp_path / "d.json")
        assert ParserDescription.load(tmp_path / "d.json") == description
    # a copy of the built-in model under a merge map: its labels land where the map says
    (tmp_path / "p.onnx").write_bytes(BUILTIN_MODEL.read_bytes())
    ParserDescription(("bg", "head", "rest"), builtin.height, builtin.width,
                      merge={"face": ["head"], "body": ["rest"]}).write(tmp_path / "p.json")
    parser = OnnxParser(tmp_path / "p.onnx", ("background", "face", "body"))
    assert parser.lut.tolist() == [0, 1, 2]
    (tmp_path / "p.json").write_text(json.dumps({"labels": ["a"], "input": {"height": "x"}}))
    with pytest.raises(LabelError, match="p.json: not a parser description"):
        OnnxParser(tmp_path / "p.onnx", ("background", "face", "body"))


def test_one_merge_rule_for_parsers_and_training_schemes():
    from scam_train.schemes import parse_scheme
    source = ["bg", "hair", "skin", "coat", "shoe"]
    merge = {"face": ["hair", "skin"], "body": ["coat"]}
    scheme = parse_scheme({"labels": ["background", "face", "body"], "source_labels": source, "merge": merge,
                           "default": "background"}, "t")
    assert scheme.lut.tolist() == merge_table(source, ("background", "face", "body"), merge, "background").tolist()
    assert scheme.lut.tolist() == [0, 1, 1, 2, 0]
    assert merge_table(source, ("background", "face", "body"), merge).tolist() == [-1, 1, 1, 2, -1]


def test_option_help_shows_the_dataclass_defaults():
    from click.testing import CliRunner

    from scam_export.cli import main as export_main
    from scam_export.options import ExportOptions
    from scam_train.cli import main as train_main
    from scam_train.config import TrainConfig
    from scam_train.parser_fit import ParserTrainConfig
    def help_of(main, *args):
        return " ".join(CliRunner().invoke(main, [*args, "--help"]).output.split())

    fit_help = help_of(train_main, "fit")
    assert f"[default: {TrainConfig.max_steps}]" in fit_help and f"[default: {TrainConfig.lr}]" in fit_help
    parser_help = help_of(train_main, "parser-fit")
    assert f"[default: {ParserTrainConfig.epochs}]" in parser_help and "[default: 24,48,64,128,192]" in parser_help
    assert f"[default: {ExportOptions.opset};" in help_of(export_main)


def test_importing_the_atomic_writer_loads_neither_pyav_nor_onnxruntime():
    """Training writes checkpoints through scam_runtime.atomic: that must stay cheap."""
    import subprocess
    code = "import sys, scam_runtime.atomic; print(sorted({'av', 'onnxruntime'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# EXIF orientation k: the transpose that stores an upright picture so that a viewer turns it back
STORE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
         5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
         8: Image.Transpose.ROTATE_270}


def save_oriented(upright: Image.Image, path, orientation: int) -> None:
    """A JPEG as a phone writes it: pixels stored turned, the EXIF tag saying how to show them."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    upright.transpose(STORE[orientation]).save(path, quality=100, exif=exif)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_photos_are_read_upright_whatever_their_exif_orientation(tmp_path, orientation):
    from scam_runtime.labels import read_image
    upright = np.zeros((48, 32, 3), np.uint8)
    upright[:16, :8] = (255, 0, 0)          # a red corner top left, a green bar at the bottom
    upright[40:, :] = (0, 255, 0)
    save_oriented(Image.fromarray(upright), tmp_path / "p.jpg", orientation)
    read = read_image(tmp_path / "p.jpg")
    assert read.shape == upright.shape
    assert np.abs(read.astype(int) - upright).mean() < 4  # JPEG's error; any wrong turn is about 60


def test_a_sideways_phone_photo_comes_out_upright(replacer, plate, tmp_path):
    actor = Image.open(plate / "actor.png")
    save_oriented(actor, tmp_path / "phone.jpg", 6)
    notes = []
    out = replace_image(tmp_path / "phone.jpg", tmp_path / "phone.jpg", tmp_path / "o.png", replacer=replacer,
                        subject_mask=plate / "actor_mask.png", mask=plate / "actor_mask.png", note=notes.append)
    assert Image.open(out).size == actor.size and not [n for n in notes if "EXIF" in n]
    # a label map made on the stored pixels: those are used, and said
    Image.open(plate / "actor_mask.png").transpose(STORE[6]).save(tmp_path / "stored_mask.png")
    out = replace_image(tmp_path / "phone.jpg", tmp_path / "phone.jpg", tmp_path / "s.png", replacer=replacer,
                        subject_mask=tmp_path / "stored_mask.png", mask=tmp_path / "stored_mask.png",
                        note=notes.append)
    assert Image.open(out).size == actor.size[::-1]
    assert any("fits the pixels as stored" in n and "orientation 6" in n for n in notes), notes


def test_a_phone_clip_with_a_display_rotation_is_processed_and_written_upright(replacer, plate, tmp_path):
    """Stored 128×96 with the display matrix a phone held upright writes (a quarter turn
    clockwise to show): parser, networks and output all see the 96×128 upright picture."""
    clip = tmp_path / "phone.mp4"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=12)
        s.width, s.height, s.pix_fmt, s.options = 128, 96, "yuv444p", {"qp": "0"}
        s.set_display_rotation(-90)  # tkhd matrix (0 1 / -1 0): shown turned a quarter clockwise
        for i in range(N):
            img = np.full((96, 128, 3), 40, np.uint8)
            img[:16, :24] = 250      # a bright block at the stored top left
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for packet in s.encode(f):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    reader = VideoReader(clip)
    first = next(reader.frames(FrameRange())).image
    reader.close()
    assert reader.size == (96, 128) and first.shape == (128, 96, 3)
    assert first[:24, -16:].mean() > 200 and first[-24:, :16].mean() < 100  # now at the top right
    (tmp_path / "masks").mkdir()
    for i in range(N):
        Image.fromarray(person_labels(128, 96, shift=i)).save(tmp_path / "masks" / f"{i:04d}.png")
    report = replace_video(clip, plate / "actor.png", tmp_path / "out.mp4", replacer=replacer, progress="none",
                           options=VideoOptions(subject_mask=plate / "actor_mask.png", masks=str(tmp_path / "masks")))
    assert report.frames == N
    with av.open(report.output) as c:
        out = next(c.decode(video=0))
    assert (out.width, out.height, out.rotation) == (96, 128, 0)  # upright pixels, no matrix to apply
    assert out.to_ndarray(format="rgb24")[:16, -16:].mean() > 200


def test_a_clip_rotated_other_than_a_quarter_turn_is_refused(replacer, plate, tmp_path):
    clip = tmp_path / "tilted.mp4"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=12)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.set_display_rotation(45)
        for i in range(2):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 90, np.uint8), format="rgb24")
            f.pts = i
            for packet in s.encode(f):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    with av.open(str(clip)) as c:
        assert round(next(c.decode(video=0)).rotation) % 90  # the file says 45 degrees (its sign is PyAV's)
    with pytest.raises(InputError, match=r"tilted\.mp4: displayed rotated by -?45 degrees; only quarter turns"):
        replace_video(clip, plate / "actor.png", tmp_path / "out.mp4", replacer=replacer, progress="none",
                      options=VideoOptions(subject_mask=plate / "actor_mask.png"))
    assert not (tmp_path / "out.mp4").exists()
