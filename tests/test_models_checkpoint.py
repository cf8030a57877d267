"""Checkpoint round trip, weights-only loading, and refusal of bad files."""
import os

import pytest
import torch

from models import (FORMAT_VERSION, CheckpointError, ModelConfig, SATEncoder, SCAMGenerator,
                    load_checkpoint, one_hot, read_checkpoint, save_checkpoint)

CONFIG = ModelConfig.preset("small", labels=["background", "face", "body"], height=128, width=128)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    enc, gen = SATEncoder(CONFIG), SCAMGenerator(CONFIG)
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.endswith("noise_strength"):
                p.uniform_(0.1, 0.5)
    return enc, gen


@pytest.fixture(scope="module")
def ckpt(nets, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, CONFIG, *nets, step=42, optimizer={"lr": torch.tensor(1e-4)})
    return path


def test_round_trip_is_exact(nets, ckpt):
    enc, gen = nets
    config, enc2, gen2 = load_checkpoint(ckpt)
    assert config == CONFIG and not enc2.training and not gen2.training
    assert gen2.noise_mode == "const"
    for a, b in ((enc, enc2), (gen, gen2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    ids = torch.randint(0, 3, (2, 128, 128), generator=torch.Generator().manual_seed(3))
    mask, image = one_hot(ids, 3), torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        ref = gen.eval()(mask, enc.eval()(image, mask), noise_mode="const")
        out = gen2(mask, enc2(image, mask))
        again = load_checkpoint(ckpt)[2](mask, enc2(image, mask))
    assert torch.equal(ref, out) and torch.equal(out, again)


def test_loads_weights_only_with_extras(ckpt):
    payload = torch.load(ckpt, weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION and payload["step"] == 42
    assert read_checkpoint(ckpt)["optimizer"]["lr"].item() == pytest.approx(1e-4)
    assert not [p for p in os.listdir(ckpt.parent) if p.endswith(".tmp")]


def test_failed_save_leaves_nothing(nets, tmp_path):
    target = tmp_path / "model.pt"
    with pytest.raises(Exception):
        save_checkpoint(target, CONFIG, *nets, bad=lambda: None)  # lambdas cannot be pickled
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(target, CONFIG, *nets, format_version=2)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(ckpt, tmp_path):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable SCAM checkpoint"):
        load_checkpoint(bad)


@pytest.mark.parametrize("content", [b"hello world\n", None])
def test_foreign_file(tmp_path, content):
    bad = tmp_path / "foreign.pt"
    if content is None:
        torch.save({"state_dict": {"w": torch.zeros(2)}}, bad)
    else:
        bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="foreign.pt: not a"):
        load_checkpoint(bad)


def test_arbitrary_pickles_are_not_executed(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"format": "scam-checkpoint", "x": CheckpointError("x")}, bad)
    with pytest.raises(CheckpointError, match="evil.pt: refused: the file holds Python objects") as info:
        read_checkpoint(bad)
    assert "weights_only" not in str(info.value)


def test_newer_version(nets, ckpt, tmp_path):
    payload = torch.load(ckpt, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    newer = tmp_path / "newer.pt"
    torch.save(payload, newer)
    with pytest.raises(CheckpointError, match="newer than this scam supports"):
        load_checkpoint(newer)


def test_weights_that_do_not_fit_config(ckpt, tmp_path):
    payload = torch.load(ckpt, weights_only=True)
    payload["config"]["latent_dim"] = 64
    payload["config"]["attn_dim"] = 64
    bad = tmp_path / "mismatch.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match=r"encoder weights do not fit the stored config \(\S+: stored "
                                              r"\(\d+(, \d+)*\), config needs \(\d+(, \d+)*\)\)"):
        load_checkpoint(bad)
