"""Human parsers of the runtime (no torch here): connected regions, the ONNX backend on a
tiny model built in the test, temporal smoothing, and the shipped/mediapipe backends on
the `../shared/data/people` photos against their person masks."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from scam_runtime.errors import LabelError
from scam_runtime.labels import read_image
from scam_runtime.parsing import (
    ParserOptions,
    argmax_labels,
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
                 batch: str | int = "n") -> Path:
    """A 1×1 conv: red → skin, green → hair, blue → cloth, dark → bg (logits, input in [0, 1])."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    weight = np.zeros((4, 3, 1, 1), np.float32)
    weight[1, 0] = weight[2, 1] = weight[3, 2] = 10.0
    bias = np.array([5, 0, 0, 0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixels", "w", "b"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 3, 32, 24])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4, 32, 24])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "tiny.onnx"
    onnx.save(model, path)
    meta = {"labels": list(labels), "input": {"height": 32, "width": 24, "range": [0, 1], "fit": "letterbox"},
            "output": {"kind": "logits"}}
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


@pytest.mark.parametrize("batch", ["n", 1])
def test_flip_averaging_maps_the_mirror_back(tmp_path, batch):
    """A per-pixel model gives the same probabilities mirrored and mirrored back: flip changes
    nothing unless the halves are misaligned (dynamic batch: one run of 2; batch 1: two runs)."""
    model = _tiny_parser(tmp_path, MERGE, batch=batch)
    image = _scene()
    image[:, :36] //= 2  # not symmetric
    plain = get_parser(f"onnx:{model}", LABELS)
    flip = get_parser(f"onnx:{model}", LABELS, ParserOptions(flip=True))
    assert flip.batch_of_two == (batch == "n")
    np.testing.assert_allclose(flip.probabilities(image)[0], plain.probabilities(image)[0], atol=1e-6)
    assert np.array_equal(flip(image), plain(image))


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
    with pytest.raises(LabelError, match="unknown parser 'magic'"):
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
    pytest.importorskip("mediapipe", reason="mediapipe extra not installed (it needs a runtime-only environment: "
                                            "mediapipe 0.10.14 pins protobuf<5, onnx and tensorboard need >=6)")
    ious = _person_ious(shared, "mediapipe")
    assert all(ious[k] >= MEDIAPIPE_FLOORS[k] for k in ious), ious


def test_mediapipe_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import fails as when not installed
    with pytest.raises(LabelError, match=r"pip install 'scam\[mediapipe\]'"):
        get_parser("mediapipe", LABELS)


def test_argmax_labels_matches_numpy_including_ties():
    rng = np.random.default_rng(3)
    probs = rng.integers(0, 3, (4, 33, 21)).astype(np.float32)  # many ties: the first label wins, as in numpy
    assert (argmax_labels(probs) == probs.argmax(0)).all()
