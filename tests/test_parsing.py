"""Human parsers of the runtime (no torch here): connected regions, the ONNX backend on a
tiny model built in the test, temporal smoothing, and the shipped/mediapipe backends on
the `../shared/data/people` photos against their person masks."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from scam_runtime.colour import ColourOptions
from scam_runtime.errors import LabelError, UsageError
from scam_runtime.labels import read_image
from scam_runtime.parsers import (
    CropSpec,
    ParserOptions,
    argmax_labels,
    crop_padded,
    get_parser,
    person_regions,
    select_people,
)

LABELS = ("background", "face", "body")


def test_person_regions_match_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    for shape, density in (((40, 31), 0.5), ((64, 64), 0.6), ((7, 90), 0.3), ((1, 1), 1.0)):
        mask = rng.random(shape) < density
        ours, count = person_regions(mask)
        ref, ref_count = ndimage.label(mask)  # 4-connectivity by default
        assert count == ref_count
        # same partition: a bijection between our ids and scipy's
        pairs = set(zip(ours[mask].tolist(), ref[mask].tolist()))
        assert len(pairs) == count and (ours[~mask] == 0).all()


def test_select_people_keeps_the_largest_or_every_big_region():
    labels = np.zeros((20, 30), np.int32)
    labels[2:15, 2:10] = 2
    labels[2:5, 4:8] = 1      # face on the big person
    labels[3:8, 20:24] = 2    # a second, smaller person
    labels[18, 28] = 1        # a speck
    largest = select_people(labels, "largest", 0.01)
    assert (largest[2:15, 2:10] == labels[2:15, 2:10]).all() and largest[:, 15:].max() == 0
    every = select_people(labels, "all", 0.01)
    assert (every[3:8, 20:24] == 2).all() and every[18, 28] == 0


def _tiny_parser(folder: Path, merge: dict | None = None, labels=("bg", "skin", "hair", "cloth"),
                 name: str = "tiny", extra: dict | None = None, bias=(5, 0, 0, 0)) -> Path:
    """A 1×1 conv: red → skin, green → hair, blue → cloth, dark → bg (logits, input in [0, 1]);
    `bias` shifts the labels' logits, `extra` goes into its JSON."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    weight = np.zeros((4, 3, 1, 1), np.float32)
    weight[1, 0] = weight[2, 1] = weight[3, 2] = 10.0
    bias = np.array(bias, np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixels", "w", "b"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, 32, 24])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 4, 32, 24])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / f"{name}.onnx"
    onnx.save(model, path)
    meta = {"labels": list(labels), "input": {"height": 32, "width": 24, "range": [0, 1], "fit": "letterbox"},
            "output": {"kind": "logits"}, **(extra or {})}
    if merge is not None:
        meta["merge"] = merge
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


MERGE = {"face": ["skin", "hair"], "body": ["cloth"]}


def _scene(h: int = 96, w: int = 72) -> np.ndarray:
    """A red head on a blue body (one person) and a small green blob apart from them."""
    image = np.zeros((h, w, 3), np.uint8)
    image[10:30, 20:44, 0] = 255
    image[30:90, 14:50, 2] = 255
    image[60:72, 60:70, 1] = 255
    return image


def test_onnx_parser_merges_labels_and_keeps_the_largest_person(tmp_path):
    model = _tiny_parser(tmp_path, MERGE)
    labels = get_parser(f"onnx:{model}", LABELS)(_scene())
    assert labels.shape == (96, 72) and labels.dtype == np.int32
    assert (labels[14:26, 24:40] == 1).all() and (labels[36:84, 18:46] == 2).all()
    assert (labels[62:70, 62:68] == 0).all() and labels[0:8].max() == 0  # other blob dropped, dark = background
    every = get_parser(f"onnx:{model}", LABELS, ParserOptions(keep="all"))(_scene())
    assert (every[62:70, 62:68] == 1).all()  # green → hair → face, kept with keep="all"


def test_crop_box_and_padded_crop():
    mask = np.zeros((100, 80), bool)
    mask[10:30, 30:50] = True  # a 20×20 region
    # pixel rows 10..29 and columns 30..49: 2nd/98th percentiles 10 and 29, size 19; width
    # 2.5 * 19 = 47.5 -> 48, height 48 * 1.25 = 60, top 10 - 0.5 * 19 -> 0, centre 39.5
    assert CropSpec("face", width=2.5, top=0.5).box(mask, aspect=1.25) == (16, 0, 64, 60)
    assert CropSpec().box(np.zeros((5, 5), bool), 1.0) is None
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    crop = crop_padded(image, (-2, -1, 3, 6))  # off the top-left and the bottom
    assert crop.shape == (7, 5, 3) and (crop[0] == 0).all() and (crop[:, :2] == 0).all()
    assert np.array_equal(crop[1:5, 2:5], image[:, :3]) and (crop[5:] == 0).all()


def _refined(tmp_path: Path, keep: str = "largest", smoothing: float = 0.0):
    """A main parser naming a refiner that calls everything 'cloth' (→ body) in its crop."""
    _tiny_parser(tmp_path, MERGE, name="head", bias=(0, 0, 0, 50),
                 extra={"crop": {"label": "face", "width": 2.0, "top": 0.5}})
    main = _tiny_parser(tmp_path, MERGE, extra={"refine": ["head.onnx"]})
    return (get_parser(f"onnx:{main}", LABELS, ParserOptions(keep=keep, smoothing=smoothing)),
            get_parser(f"onnx:{main}", LABELS, ParserOptions(keep=keep, refine=False)))


def test_refiner_relabels_the_person_in_its_crop_only(tmp_path):
    refined, plain = _refined(tmp_path)
    first = plain(_scene())
    box = CropSpec("face", 2.0, 0.5).box(first == 1, 32 / 24)
    got = refined(_scene())
    inside = np.zeros(first.shape, bool)
    inside[max(box[1], 0):box[3], max(box[0], 0):box[2]] = True
    assert (inside & (first == 0)).any() and (inside & (first == 1)).any() and (~inside & (first != 0)).any()
    # in the crop, the person (its outline unchanged) is what the refiner says: all body here
    assert np.array_equal(got[inside], np.where(first[inside] == 0, 0, 2))
    assert np.array_equal(got[~inside], first[~inside])


def test_refiner_runs_once_per_kept_person(tmp_path):
    refined, plain = _refined(tmp_path, keep="all")
    scene = np.concatenate([_scene(), _scene()], axis=1)  # two people, each with a red head
    first, got = plain(scene), refined(scene)
    assert (first[:, :72] == 1).any() and (first[:, 72:] == 1).any()
    assert not (got == 1).any()  # both heads' crops became body


def test_refiner_smooths_in_frame_coordinates(tmp_path):
    refined, _ = _refined(tmp_path, smoothing=0.25)
    refiner = refined.refiners[0]
    a, b = np.zeros((3, 4, 5), np.float32), np.ones((3, 4, 5), np.float32)
    where = (slice(2, 6), slice(1, 6))
    assert np.array_equal(refiner._smooth(a, where, (10, 10)), a)  # nothing seen there yet
    np.testing.assert_allclose(refiner._smooth(b, where, (10, 10)), 0.75)
    moved = refiner._smooth(b, (slice(4, 8), slice(1, 6)), (10, 10))  # half overlaps the last crop
    np.testing.assert_allclose(moved[:, :2], 0.75 * 1 + 0.25 * 0.75)
    np.testing.assert_allclose(moved[:, 2:], 1.0)
    refined.reset()
    assert np.array_equal(refiner._smooth(a, where, (10, 10)), a)


def test_refiner_without_a_crop_is_an_error(tmp_path):
    _tiny_parser(tmp_path, MERGE, name="head")
    main = _tiny_parser(tmp_path, MERGE, extra={"refine": ["head.onnx"]})
    with pytest.raises(LabelError, match="has no 'crop'"):
        get_parser(f"onnx:{main}", LABELS)


@pytest.mark.parametrize("shape", [(97, 31, 3), (31, 97, 3), (50, 50), (50, 50, 1), (40, 33, 4)])
def test_onnx_parser_takes_odd_sizes_greyscale_and_rgba(tmp_path, shape):
    parser = get_parser(f"onnx:{_tiny_parser(tmp_path, MERGE)}", LABELS)
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    labels = parser(image)
    assert labels.shape == shape[:2] and set(np.unique(labels)) <= {0, 1, 2}


def test_onnx_parser_description_errors(tmp_path):
    model = _tiny_parser(tmp_path)  # labels bg/skin/... and no merge map: they do not name the bundle's
    with pytest.raises(LabelError, match=r"tiny.json: parser labels .* not in the bundle's labels"):
        get_parser(f"onnx:{model}", LABELS)
    model = _tiny_parser(tmp_path, {"hands": ["skin"]})
    with pytest.raises(LabelError, match="tiny.json: merge target 'hands'"):
        get_parser(f"onnx:{model}", LABELS)
    model.with_suffix(".json").unlink()
    with pytest.raises(LabelError, match="tiny.json: parser description not found"):
        get_parser(f"onnx:{model}", LABELS)
    with pytest.raises(LabelError, match="nothing.onnx: parser model not found"):
        get_parser(f"onnx:{tmp_path / 'nothing.onnx'}", LABELS)
    with pytest.raises(UsageError, match="unknown parser 'magic'"):
        get_parser("magic", LABELS)


def test_label_smoothing_carries_the_previous_frames(tmp_path):
    model = _tiny_parser(tmp_path, MERGE)
    first = _scene()
    second = first.copy()
    second[30:90, 14:50] = [255, 0, 0]  # the body turns red: face probabilities there now
    smooth = get_parser(f"onnx:{model}", LABELS, ParserOptions(smoothing=0.9))
    plain = get_parser(f"onnx:{model}", LABELS)
    smooth(first)
    assert (plain(second)[40:80, 20:44] == 1).all()
    assert (smooth(second)[40:80, 20:44] == 2).all()  # 0.9 of the last frame's body still wins
    smooth.reset()
    assert (smooth(second)[40:80, 20:44] == 1).all()
    with pytest.raises(LabelError, match="smoothing"):
        ParserOptions(smoothing=1.0)


def _bench_parsing():
    """bench/parsing.py, whose person-IoU measurement the floors below come from."""
    spec = importlib.util.spec_from_file_location("bench_parsing", ROOT / "bench" / "parsing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _person_ious(shared: Path, backend: str) -> dict[str, float]:
    bench = _bench_parsing()
    for photo, _, keep in bench.PEOPLE:  # any size in, the same size out, ids within the scheme
        image = read_image(shared / "data" / "people" / photo)
        labels = get_parser(backend, LABELS, ParserOptions(keep=keep))(image)
        assert labels.shape == image.shape[:2] and set(np.unique(labels)) <= {0, 1, 2}
    return bench.person_ious(shared / "data" / "people", backend)


# person IoU floors: the value `python bench/parsing.py` measured, minus a margin
BUILTIN_FLOORS = {"pose.jpg": 0.42, "portrait.jpg": 0.62, "three_people.jpg": 0.24}  # measured .484 .691 .298
MEDIAPIPE_FLOORS = {"pose.jpg": 0.90, "portrait.jpg": 0.90, "three_people.jpg": 0.85}  # measured .955 .957 .912


def test_builtin_parser_on_people_photos(shared):
    ious = _person_ious(shared, "builtin")
    assert all(ious[k] >= BUILTIN_FLOORS[k] for k in ious), ious


def test_mediapipe_parser_on_people_photos(shared):
    pytest.importorskip("mediapipe", reason="mediapipe extra not installed (the README's install adds it)")
    ious = _person_ious(shared, "mediapipe")
    assert all(ious[k] >= MEDIAPIPE_FLOORS[k] for k in ious), ious


def test_mediapipe_parser_keeps_its_native_logs_quiet(shared):
    """mediapipe's C++ threads print INFO/WARNING lines when its graphs start; a run's stderr
    shows scam's own lines only."""
    pytest.importorskip("mediapipe", reason="mediapipe extra not installed (the README's install adds it)")
    code = f"""
import numpy as np
from PIL import Image
from scam_runtime.parsers import get_parser
parser = get_parser("mediapipe", ("background", "face", "body"))
image = np.asarray(Image.open({str(shared / "data" / "people" / "pose.jpg")!r}).convert("RGB"))
assert parser(image).any() and parser(image[:, ::-1].copy()).any()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_mediapipe_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import fails as when not installed
    with pytest.raises(UsageError, match=r"pip install 'scam\[mediapipe\]'"):
        get_parser("mediapipe", LABELS)


def test_argmax_labels_matches_numpy_including_ties():
    rng = np.random.default_rng(3)
    probs = rng.integers(0, 3, (4, 33, 21)).astype(np.float32)  # many ties: the first label wins, as in numpy
    assert (argmax_labels(probs) == probs.argmax(0)).all()


def test_float_frames_are_scene_linear(shared):
    """A float frame is parsed through its sRGB encoding, like SubjectReplacer's float frames
    (in the OCIO config's scene_linear: ACEScg in the built-in one)."""
    photo = read_image(shared / "data" / "people" / "portrait.jpg")
    parser = get_parser("builtin", LABELS, ParserOptions(refine=False))
    scene = ColourOptions().path(np.dtype(np.float32))
    assert np.array_equal(parser(scene.from_display(photo)), parser(photo))
