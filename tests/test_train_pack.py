"""Packed training sets (what a lent GPU trains on), the person-region and swap figures of
`evaluate`, and the one-call GPU script, run here on the CPU."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT

from models import read_checkpoint
from scam_train.cli import main
from scam_train.data import PairDataset, check_pairs, find_pairs
from scam_train.errors import ConfigError, DataError
from scam_train.pack import PackedDataset, PackSpec, write_pack
from scam_train.region_metrics import colour_misses, mean_colour_fill, swap_colours
from scam_train.schemes import load_scheme


@pytest.fixture(scope="module")
def splits(shared, tmp_path_factory):
    folder = tmp_path_factory.mktemp("splits")
    names = (ROOT / "scam_train" / "splits" / "ccp-train.txt").read_text().split()
    val = (ROOT / "scam_train" / "splits" / "ccp-val-a.txt").read_text().split()
    (folder / "train.txt").write_text("\n".join(names[:6]) + "\n")
    (folder / "val.txt").write_text("\n".join(val[:4]) + "\n")
    return folder


@pytest.fixture(scope="module")
def packs(shared, splits, tmp_path_factory):
    """ccp-train.npz (6 photos) and ccp-val-a.npz (4) at the default model's 128×85."""
    folder = tmp_path_factory.mktemp("packs")
    for name, split in (("ccp-train", "train"), ("ccp-val-a", "val")):
        r = CliRunner().invoke(main, ["pack", "--data", str(shared / "data" / "ccp"), "--labels-dir", "labels3",
                                      "--split", str(splits / f"{split}.txt"), "--height", "128", "--width", "85",
                                      "-o", str(folder / f"{name}.npz")])
        assert r.exit_code == 0, r.output
    return folder


def test_a_pack_holds_exactly_what_the_folder_feeds_the_network(shared, splits, packs):
    pairs = find_pairs(shared / "data" / "ccp", str(splits / "val.txt"), "labels3")
    folder = PairDataset(pairs, check_pairs(pairs, load_scheme("bfb3")), 128, 85)
    packed = PackedDataset(packs / "ccp-val-a.npz")
    assert len(packed) == 4 and packed.names == [p.image.stem for p in pairs]
    assert packed.scheme.labels == ("background", "face", "body")
    for i in range(4):
        for a, b in zip(folder.load(i), packed.load(i)):
            assert a.dtype == b.dtype and np.array_equal(a, b)


def test_pack_refuses_what_it_should(shared, splits, packs, tmp_path):
    spec = PackSpec(str(shared / "data" / "ccp"), 128, 85, labels_dir="labels3", split=str(splits / "val.txt"))
    with pytest.raises(ConfigError, match="exists"):
        write_pack(spec, packs / "ccp-val-a.npz")
    with pytest.raises(ConfigError, match=r"\.npz"):
        write_pack(spec, tmp_path / "pack.zip")
    with pytest.raises(ConfigError, match="packed at 128x85 .* the run is 64x48"):
        PackedDataset(packs / "ccp-val-a.npz").check(64, 48, "letterbox")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz: not a packed set"):
        PackedDataset(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="none.npz: no such packed set"):
        PackedDataset(tmp_path / "none.npz")
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.npz"]  # nothing half-written


def test_mean_colour_fill_and_swap_colours_by_hand():
    image = np.array([[[10, 20, 30], [30, 40, 50], [200, 0, 0]]], np.uint8)
    ids = np.array([[1, 1, 0]])
    assert mean_colour_fill(image, ids).tolist() == [[[20, 30, 40], [20, 30, 40], [200, 0, 0]]]
    # two 1×2 images, labels background | body; image 1 is red-bodied, image 0 blue-bodied
    rgb = torch.tensor([[0.0, 0.0, 255.0], [255.0, 0.0, 0.0]])
    images = torch.zeros(2, 3, 1, 2)
    images[:, :, 0, 1] = rgb / 127.5 - 1
    ids_t = torch.tensor([[[0, 1]], [[0, 1]]])
    swaps = images.roll(1, dims=0)           # a perfect swap: each body takes its subject's colour
    labels = ("background", "body")
    perfect = swap_colours(images, ids_t, swaps, labels)
    assert perfect["swap_colour_error"] == pytest.approx(0, abs=1e-3)
    assert perfect["swap_colour_baseline"] == pytest.approx(255 * 2 ** 0.5, abs=0.01)
    ignored = swap_colours(images, ids_t, images, labels)  # a swap that kept the target's colours
    assert ignored["swap_colour_error"] == pytest.approx(ignored["swap_colour_baseline"])
    # a label the target lacks is left out, not counted as a miss
    subject, target = np.full((1, 2, 3), 100.0), np.full((1, 2, 3), 40.0)
    rows = colour_misses(subject, np.array([[1, 2]]), target + 3, target, np.array([[2, 2]]),
                         ("background", "face", "body"))
    assert rows == [("body", pytest.approx(57 * 3 ** 0.5), pytest.approx(60 * 3 ** 0.5))]


def test_fit_and_evaluate_on_packs_and_photo_figures(shared, splits, packs, tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["fit", "--data", str(packs / "ccp-train.npz"), "--out", str(run), "--height", "128",
                                  "--width", "85", "--model", "gen_blocks=5", "--model", "gen_nf=32",
                                  "--init", str(ROOT / "models" / "default_model.pt"), "--perceptual-weight", "0",
                                  "--adversarial-weight", "0", "--person-weight", "4", "--batch-size", "2",
                                  "--workers", "0", "--max-steps", "1", "--progress", "none"])
    assert r.exit_code == 0, r.output
    assert "initialised encoder, generator and discriminator" in r.output
    assert read_checkpoint(run / "last.pt")["step"] == 1
    wrong = CliRunner().invoke(main, ["fit", "--data", str(packs / "ccp-train.npz"), "--out", str(tmp_path / "w"),
                                      "--height", "64", "--width", "48", "--perceptual-weight", "0", "--max-steps", "1"])
    assert wrong.exit_code == 2 and "pack again with scam-train pack" in wrong.output
    ckpt = ROOT / "models" / "default_model.pt"
    r = CliRunner().invoke(main, ["evaluate", "--ckpt", str(ckpt), "--data", str(packs / "ccp-val-a.npz"), "--no-fid",
                                  "-o", str(tmp_path / "pack.json"), "--grid", str(tmp_path / "pack.png")])
    assert r.exit_code == 0, r.output
    packed = json.loads((tmp_path / "pack.json").read_text())
    assert "photo_person_psnr_db" not in packed  # a pack has no photos
    r = CliRunner().invoke(main, ["evaluate", "--ckpt", str(ckpt), "--data", str(shared / "data" / "ccp"),
                                  "--labels-dir", "labels3", "--split", str(splits / "val.txt"), "--no-fid",
                                  "-o", str(tmp_path / "photos.json"), "--grid", str(tmp_path / "photos.png")])
    assert r.exit_code == 0, r.output
    photos = json.loads((tmp_path / "photos.json").read_text())
    for key in ("psnr_db", "person_psnr_db", "person_ssim", "swap_colour_error"):
        assert photos[key] == pytest.approx(packed[key], abs=1e-3), key  # the same canvases
    assert photos["floor_person_psnr_db"] < photos["ceiling_person_psnr_db"]
    assert photos["photo_person_psnr_db"] < photos["ceiling_person_psnr_db"]
    assert photos["floor_psnr_db"] < photos["ceiling_psnr_db"]
    assert set(photos["swap_colour_error_by_label"]) == {"face", "body"}


def test_fit_takes_extra_sets_after_its_data(shared, splits, packs, tmp_path):
    """`--extra`: more pairs (a pack or a labelled folder) in one dataset, checked like --data."""
    from scam_train.config import TrainConfig
    from scam_train.trainer import _open_data
    folder = shared / "data" / "ccp"
    cfg = TrainConfig(data=str(packs / "ccp-train.npz"), out=str(tmp_path / "r"), height=128, width=85,
                      extra=(str(packs / "ccp-val-a.npz"),))
    notes: list[str] = []
    combined = _open_data(cfg, notes.append)
    assert len(combined) == 10 and notes == [f"6 pairs from {cfg.data}, 4 from {cfg.extra[0]}"]
    for i, j in ((0, 0), (6, 0), (9, 3)):  # the extra's pairs come after --data's, unchanged
        part = PackedDataset(packs / ("ccp-train.npz" if i < 6 else "ccp-val-a.npz"))
        assert all(np.array_equal(a, b) for a, b in zip(combined.load(i), part.load(j)))
    pseudo = tmp_path / "pseudo"  # prepare's layout: labels in labels/
    (pseudo / "images").mkdir(parents=True)
    (pseudo / "labels").mkdir()
    for name in (folder / "images").glob("0001.*"):
        (pseudo / "images" / name.name).write_bytes(name.read_bytes())
    (pseudo / "labels" / "0001.png").write_bytes((folder / "labels3" / "0001.png").read_bytes())
    r = CliRunner().invoke(main, ["fit", "--data", str(packs / "ccp-train.npz"), "--extra", str(pseudo), "--out",
                                  str(tmp_path / "run"), "--height", "128", "--width", "85", "--model", "gen_blocks=5",
                                  "--model", "gen_nf=32", "--perceptual-weight", "0", "--adversarial-weight", "0",
                                  "--batch-size", "7", "--workers", "0", "--max-steps", "1", "--progress", "none"])
    assert r.exit_code == 0, r.output
    assert f"6 pairs from {packs / 'ccp-train.npz'}, 1 from {pseudo}" in r.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["extra"] == [str(pseudo)]
    (pseudo / "labels" / "0001.png").unlink()
    r = CliRunner().invoke(main, ["fit", "--data", str(packs / "ccp-train.npz"), "--extra", str(pseudo), "--out",
                                  str(tmp_path / "bad"), "--height", "128", "--width", "85", "--perceptual-weight", "0",
                                  "--max-steps", "1"])
    assert r.exit_code != 0 and str(pseudo) in r.output and "Traceback" not in r.output
    assert not (tmp_path / "bad" / "last.pt").exists()


def test_the_gpu_lease_script_runs_on_the_cpu(packs, tmp_path):
    """The documented one-call command, with a few seconds a variant (the real call: minutes)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "RUNS": str(tmp_path / "runs"), "BATCH": "2", "WORKERS": "0",
           "PYTHONPATH": str(ROOT), "PROBE_MINUTES": "0.02", "PROBE_BATCHES": "4", "LOG_EVERY": "1"}
    done = subprocess.run(["bash", "scam_train/gpu_lease.sh", "0.02", str(packs), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    best = done.stdout.split("best on ccp-val-a: ")[1].split(";")[0]
    assert best in ("recon", "scratch", "scratch-pw1")
    parts = sorted(out.glob(f"{best}.pt.part*"))
    assert len(parts) == 3 and all(p.stat().st_size <= 15_000_000 for p in parts)
    joined = tmp_path / "best.pt"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    payload = read_checkpoint(joined)
    assert {"encoder", "generator", "discriminator"} <= set(payload) and "opt_g" not in payload
    for run in ("recon", "scratch", "scratch-pw1"):
        report = json.loads((tmp_path / "runs" / run / "eval_a.json").read_text())
        assert report["images"] == 4 and report["person_psnr_db"] > 0
        assert f"{run}: ccp-val-a person PSNR" in done.stderr
    assert json.loads((tmp_path / "runs" / "scratch-pw1" / "config.json").read_text())["person_weight"] == 1
    assert json.loads((tmp_path / "runs" / "probe-b4" / "config.json").read_text())["batch_size"] == 4
    for run in ("probe-b4", "recon", "scratch", "scratch-pw1"):
        assert re.search(rf"^{run}: [0-9.]+ images/s", done.stderr, re.M), done.stderr[-3000:]
