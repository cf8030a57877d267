"""The parser's training side: `parser-fit` exports a model the runtime loads,
`parser-eval` reports IoU, `prepare` turns a plain photo folder into a dataset."""
from __future__ import annotations

import json

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from scam_runtime.backend import BackendOptions, OnnxSession
from scam_runtime.parsers import CropSpec, get_parser
from scam_train.cli import main
from scam_train.data import check_pairs, find_pairs
from scam_train.parser_data import CropDataset, ParserAugment, ParserDataset
from scam_train.parser_fit import load_parser
from scam_train.schemes import load_scheme


def test_augmented_samples_cover_the_canvas_and_keep_labels(shared):
    pairs = find_pairs(shared / "data" / "ccp", None, "labels3")[:3]
    data = ParserDataset(pairs, load_scheme("bfb3"), 64, 48, ParserAugment(), seed=1)
    image, ids = data[0]
    assert image.shape == (3, 64, 48) and ids.shape == (64, 48)
    assert -1 <= float(image.min()) and float(image.max()) <= 1 and set(ids.unique().tolist()) <= {0, 1, 2}
    again = data[0]
    assert (again[0] == image).all()  # a sample is a function of (seed, epoch, index)
    data.epoch = 1
    assert not (data[0][0] == image).all()
    plain = ParserDataset(pairs, load_scheme("bfb3"), 64, 48, ParserAugment.none())[0][1]
    assert (plain > 0).any()


def test_parser_fit_exports_a_model_the_runtime_loads(shared, tmp_path):
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text("0001\n0002\n0003\n0004\n0005\n0006\n0007\n0008\n")
    val.write_text("0010\n0020\n")
    r = CliRunner().invoke(main, ["parser-fit", "--data", str(shared / "data" / "ccp"), "--out", str(tmp_path / "p"),
                                  "--split", str(train), "--val-split", str(val), "--height", "64", "--width", "64",
                                  "--epochs", "2", "--batch-size", "4", "--workers", "0"])
    assert r.exit_code == 0, r.output
    log = [json.loads(line) for line in (tmp_path / "p" / "parser_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2] and all(0 <= e["miou"] <= 1 for e in log)
    meta = json.loads((tmp_path / "p" / "parser.json").read_text())
    assert meta["labels"] == ["background", "face", "body"] and meta["input"]["height"] == 64
    # the ONNX file computes what the checkpoint does
    net = load_parser(tmp_path / "p" / "parser.pt")
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = net(x).softmax(1).numpy()
    got = OnnxSession(tmp_path / "p" / "parser.onnx", BackendOptions()).run(image=x.numpy())
    np.testing.assert_allclose(got, expected, atol=1e-5)
    parser = get_parser(f"onnx:{tmp_path / 'p' / 'parser.onnx'}", ("background", "face", "body"))
    labels = parser(np.zeros((50, 30, 3), np.uint8))
    assert labels.shape == (50, 30) and labels.max() <= 2


def test_parser_fit_loader_workers_see_each_epoch(shared, tmp_path):
    """The loader's workers live for the whole run; each epoch's augmentation still reaches
    them (a worker that kept the epoch it was forked in would train epoch 2 on epoch 1's
    samples): a run with one worker trains exactly as one without."""
    train = tmp_path / "train.txt"
    train.write_text("0001\n0002\n0003\n0004\n")
    logs = []
    for workers in ("0", "1"):
        out = tmp_path / f"w{workers}"
        r = CliRunner().invoke(main, ["parser-fit", "--data", str(shared / "data" / "ccp"), "--out", str(out),
                                      "--split", str(train), "--height", "32", "--width", "32", "--epochs", "3",
                                      "--batch-size", "2", "--workers", workers])
        assert r.exit_code == 0, r.output
        logs.append([json.loads(line)["loss"] for line in (out / "parser_log.jsonl").read_text().splitlines()])
    assert len(logs[0]) == 3 and logs[0] == logs[1]


def test_crop_samples_centre_on_the_face(shared):
    pairs = find_pairs(shared / "data" / "ccp", None, "labels3")[:4]
    plain = CropDataset(pairs, load_scheme("bfb3"), 40, 32, CropSpec(), ParserAugment.none())
    for _, ids in (plain[i] for i in range(len(plain))):
        face_rows = np.nonzero((ids == 1).any(1).numpy())[0]
        assert face_rows.size and face_rows.min() < 10 and face_rows.max() > 10  # head in the top of the crop
    jittered = CropDataset(pairs, load_scheme("bfb3"), 40, 32, CropSpec(), ParserAugment(), seed=2)
    assert all((jittered[i][1] == 1).any() for i in range(len(jittered)))
    assert not all((jittered[i][1] == plain[i][1]).all() for i in range(len(plain)))


def test_refiner_training_and_loading_beside_a_parser(shared, tmp_path):
    """`parser-fit --crop face` exports a refiner; a parser JSON naming it runs it."""
    import shutil
    train = tmp_path / "train.txt"
    train.write_text("0001\n0002\n0003\n0004\n0005\n0006\n0007\n0008\n")
    r = CliRunner().invoke(main, ["parser-fit", "--data", str(shared / "data" / "ccp"), "--out", str(tmp_path / "r"),
                                  "--split", str(train), "--height", "32", "--width", "32", "--epochs", "1",
                                  "--batch-size", "4", "--workers", "0", "--crop", "face", "--crop-width", "3"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "r" / "parser.json").read_text())
    assert meta["crop"] == {"label": "face", "width": 3.0, "top": 0.35} and meta["passes"] == 2
    from scam_runtime.parsers import BUILTIN_MODEL
    for suffix in (".onnx", ".json"):
        shutil.copy(BUILTIN_MODEL.with_suffix(suffix), tmp_path / f"main{suffix}")
        shutil.copy(tmp_path / "r" / f"parser{suffix}", tmp_path / f"head{suffix}")
    main_meta = json.loads((tmp_path / "main.json").read_text())
    (tmp_path / "main.json").write_text(json.dumps(main_meta | {"refine": ["head.onnx"]}))
    parser = get_parser(f"onnx:{tmp_path / 'main.onnx'}", ("background", "face", "body"))
    assert [(r.crop, r.passes) for r in parser.refiners] == [(CropSpec("face", 3.0, 0.35), 2)]
    image = np.asarray(Image.open(shared / "data" / "people" / "portrait.jpg").convert("RGB"))
    assert parser(image).shape == image.shape[:2]
    bad = CliRunner().invoke(main, ["parser-fit", "--data", str(shared / "data" / "ccp"), "--out", str(tmp_path / "x"),
                                    "--split", str(train), "--height", "32", "--width", "32", "--crop", "hat"])
    assert bad.exit_code != 0 and "--crop hat: not a label of the scheme" in bad.output
    few = CliRunner().invoke(main, ["parser-fit", "--data", str(shared / "data" / "ccp"), "--out", str(tmp_path / "y"),
                                    "--split", str(train), "--height", "32", "--width", "32", "--crop", "face",
                                    "--batch-size", "16"])
    assert few.exit_code != 0 and "only 8 training photo(s) show it (a batch needs 16)" in few.output


def test_parser_eval_reports_iou_per_label(shared, tmp_path):
    split = tmp_path / "val.txt"
    split.write_text("0010\n0020\n0030\n")
    out = tmp_path / "eval.json"
    r = CliRunner().invoke(main, ["parser-eval", "--data", str(shared / "data" / "ccp"), "--split", str(split),
                                  "-o", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())["parsers"]["builtin"]
    assert set(report["iou"]) == {"background", "face", "body"}
    assert abs(report["miou"] - float(np.mean(list(report["iou"].values())))) < 1e-4
    assert report["miou"] > 0.5  # the shipped parser on held-out photos (measured: see docs/parsing.md)
    r = CliRunner().invoke(main, ["parser-eval", "--data", str(shared / "data" / "ccp"), "--split", str(split),
                                  "--no-refine", "-o", str(out)])
    assert r.exit_code == 0 and json.loads(out.read_text())["refine"] is False


def test_prepare_labels_a_plain_photo_folder(shared, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "pose.jpg").write_bytes((shared / "data" / "people" / "pose.jpg").read_bytes())
    Image.open(shared / "data" / "people" / "portrait.jpg").save(photos / "portrait.webp")
    (photos / "notes.txt").write_text("not a photo")
    r = CliRunner().invoke(main, ["prepare", "--images", str(photos), "--out", str(tmp_path / "ds")])
    assert r.exit_code == 0, r.output
    pairs = find_pairs(tmp_path / "ds")
    assert [p.image.name for p in pairs] == ["portrait.webp", "pose.jpg"]
    check_pairs(pairs, load_scheme("bfb3"))  # sizes match, ids within the scheme
    stamp = (tmp_path / "ds" / "labels" / "pose.png").stat().st_mtime_ns
    r = CliRunner().invoke(main, ["prepare", "--images", str(photos), "--out", str(tmp_path / "ds")])
    assert r.exit_code == 0 and (tmp_path / "ds" / "labels" / "pose.png").stat().st_mtime_ns == stamp
    r = CliRunner().invoke(main, ["prepare", "--images", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 3 and "none: no photos" in r.output


def test_prepare_runs_without_torch_and_other_commands_say_what_to_install(shared, tmp_path):
    """A runtime-only install (the one mediapipe fits in) has no torch: `prepare` still labels,
    `fit` fails in one line naming what to install (exit 2)."""
    import subprocess
    import sys
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "pose.jpg").write_bytes((shared / "data" / "people" / "pose.jpg").read_bytes())
    no_torch = ("import sys; sys.modules.update(torch=None, torchvision=None); from scam_train.cli import main; "
                "main(sys.argv[1:], prog_name='scam-train')")
    r = subprocess.run([sys.executable, "-c", no_torch, "prepare", "--images", str(photos), "--out",
                        str(tmp_path / "ds"), "--parser", "builtin"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ds" / "labels" / "pose.png").is_file()
    r = subprocess.run([sys.executable, "-c", no_torch, "fit", "--data", str(tmp_path / "ds"), "--out",
                        str(tmp_path / "run")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [
        "scam-train: error: scam-train fit needs torch, which this install lacks: pip install torch==2.13.0 "
        "&& pip install 'scam[train]' (a runtime-only install runs scam-train prepare)"]


def test_parser_fit_trains_on_extra_pseudo_labelled_folders(shared, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("pose.jpg", "three_people.jpg"):
        (photos / name).write_bytes((shared / "data" / "people" / name).read_bytes())
    for keep in ("largest", "all"):
        assert CliRunner().invoke(main, ["prepare", "--images", str(photos), "--out", str(tmp_path / keep),
                                         "--parser", "builtin", "--keep", keep]).exit_code == 0
    people = {keep: (np.asarray(Image.open(tmp_path / keep / "labels" / "three_people.png")) > 0).sum()
              for keep in ("largest", "all")}
    assert people["all"] > people["largest"]  # everyone, not only the main subject
    (tmp_path / "largest").rename(tmp_path / "pseudo")
    train = tmp_path / "train.txt"
    train.write_text("0001\n0002\n")
    args = ["parser-fit", "--data", str(shared / "data" / "ccp"), "--split", str(train), "--height", "64",
            "--width", "64", "--epochs", "1", "--batch-size", "2", "--workers", "0"]
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "p"), "--extra", str(tmp_path / "pseudo")])
    assert r.exit_code == 0, r.output
    assert "4 training (2 from --extra)" in r.output
    meta = json.loads((tmp_path / "p" / "parser.json").read_text())
    assert str(tmp_path / "pseudo") in meta["trained_on"] and "4 images" in meta["trained_on"]
    (tmp_path / "bad" / "images").mkdir(parents=True)
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "q"), "--extra", str(tmp_path / "bad")])
    assert r.exit_code != 0 and "bad" in r.output and "Traceback" not in r.output
