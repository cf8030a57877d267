"""The training loop: reconstruction with the spec's losses, on one CPU, one GPU, or many
processes under `torchrun` (DistributedDataParallel, NCCL on GPU, gloo on CPU).

Rank 0 writes logs, samples and checkpoints. A checkpoint holds everything a resumed run
needs (weights, optimisers, scaler, EMA, step, every rank's RNG state); the data order and
augmentation are functions of (seed, epoch, index), so `N` steps straight equal `N/2`,
resume, `N/2`. The checkpoint's `encoder`/`generator` are the EMA weights when EMA is on:
the file is exactly what `scam-export --ckpt` takes.
"""
from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from models import (
    PatchGANDiscriminator,
    SATEncoder,
    SCAMGenerator,
    one_hot,
    read_checkpoint,
    save_checkpoint,
)
from models.checkpoint import CheckpointError
from scam_runtime.atomic import write_image, write_json

from .config import TrainConfig
from .data import (
    AugmentedDataset,
    Augment,
    CombinedDataset,
    PairDataset,
    ResumableSampler,
    check_pairs,
    find_pairs,
)
from .errors import ConfigError
from .inception import InceptionPerceptual
from .losses import feature_matching, hinge_d, hinge_g, person_weights, reconstruction
from .pack import PackedDataset, is_pack
from .runlog import Progress, RunLog
from .schemes import LabelScheme, load_scheme
from .vgg import VGGPerceptual
from .visual import sample_grid


class Autoencoder(nn.Module):
    """Encoder + generator as one module: one DDP wrapper, one optimiser, one EMA."""

    def __init__(self, encoder: SATEncoder, generator: SCAMGenerator) -> None:
        super().__init__()
        self.encoder, self.generator = encoder, generator

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.generator(mask, self.encoder(image, mask))


def ramped_ema(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """AveragedModel's update with the decay ramped over its n updates, min(decay, (1 + n) / (10 + n))
    (TensorFlow's ExponentialMovingAverage with num_updates): at a fixed 0.999 a run of 1,400 steps
    from random weights still averages in a quarter (0.999^1400) of its first, random weights,
    which cost it 1.3 dB on ccp-val-a (docs/model-card.md); ramped, it reaches 0.999 after
    about 9,000 updates and averages over roughly the last tenth of the run until then."""
    @torch.no_grad()
    def update(ema: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        d = min(decay, (1 + float(n)) / (10 + float(n)))
        if torch.is_floating_point(ema[0]):
            torch._foreach_lerp_(ema, current, 1 - d)
        else:  # integer buffers (the resize index tables) are copied, not averaged
            torch._foreach_copy_(ema, current)
    return update


def _open_data(cfg: TrainConfig, note: Callable[[str], None]) -> AugmentedDataset:
    """The training pairs: a packed set (`--data FILE.npz`) or a data folder (checked up front),
    and the `--extra` sets after it (packs, or folders whose label maps are in `labels/`)."""
    augment = Augment(cfg.flip, cfg.jitter, cfg.zoom)
    scheme = load_scheme(cfg.scheme)  # a bad name is a usage error before any data is looked at
    if is_pack(cfg.data) and cfg.split is not None:
        raise ConfigError(f"{cfg.data}: a packed set is already one split; pack another instead of --split")
    parts = [_open_set(cfg, scheme, cfg.data, cfg.split, cfg.labels_dir, note)]
    parts += [_open_set(cfg, scheme, extra, None, "labels", note) for extra in cfg.extra]
    if cfg.extra:
        note(f"{len(parts[0])} pairs from {cfg.data}, "
             + ", ".join(f"{len(p)} from {e}" for p, e in zip(parts[1:], cfg.extra)))
    return CombinedDataset(parts, augment, cfg.seed)


def _open_set(cfg: TrainConfig, scheme: LabelScheme, data: str, split: str | None, labels_dir: str,
              note: Callable[[str], None]) -> AugmentedDataset:
    """One training set, unaugmented: a pack made for this run's size, or a checked folder."""
    if is_pack(data):
        dataset = PackedDataset(data)
        dataset.check(cfg.height, cfg.width, cfg.fit)
        if dataset.scheme.name != scheme.name:
            raise ConfigError(f"{data}: packed with scheme {dataset.scheme.name}, the run's is {scheme.name}")
        return dataset
    pairs = find_pairs(data, split, labels_dir)
    return PairDataset(pairs, check_pairs(pairs, scheme, note), cfg.height, cfg.width, cfg.fit)


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) reached a step boundary; a checkpoint was saved."""

    def __init__(self, step: int, path: Path) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved to {path} (continue with --resume)")
        self.step, self.path = step, path


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device (use bf16 on CPU)")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _perceptual_loss(cfg: TrainConfig) -> nn.Module | None:
    """The configured perceptual network (frozen), or None when its weight is 0."""
    if cfg.perceptual_weight <= 0:
        return None
    if cfg.perceptual == "inception":
        return InceptionPerceptual(cfg.inception_weights)
    return VGGPerceptual(cfg.vgg_weights)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, note: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = _pick_device(cfg.device, local_rank)
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.main = self.rank == 0
        self.note = note if self.main else (lambda m: None)
        if cfg.batch_size % self.world:
            raise ConfigError(f"batch size {cfg.batch_size} does not split over {self.world} processes")
        self.out = Path(cfg.out)
        self.amp = _autocast_dtype(cfg.precision, self.device)
        # first: a missing weights file fails before the data scan (and torch.manual_seed below resets RNG)
        self.perceptual = _perceptual_loss(cfg)
        if self.perceptual is not None:
            self.perceptual.to(self.device)

        self.dataset = _open_data(cfg, self.note)
        self.scheme = self.dataset.scheme
        self.model_config = cfg.model_config(self.scheme)
        self.local_batch = cfg.batch_size // self.world
        self.sampler = ResumableSampler(self.dataset, num_replicas=self.world, rank=self.rank,
                                        shuffle=True, seed=cfg.seed, drop_last=True)
        self.batches_per_epoch = len(self.sampler) // self.local_batch
        if self.batches_per_epoch == 0:
            raise ConfigError(f"{cfg.data}: {len(self.dataset)} pairs cannot fill one batch of {cfg.batch_size}")

        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        c = self.model_config
        self.ae = Autoencoder(SATEncoder(c, attention_path=cfg.attention),
                              SCAMGenerator(c, noise_mode="random", attention_path=cfg.attention)).to(self.device)
        self.disc = PatchGANDiscriminator(c).to(self.device)
        self.opt_g = torch.optim.AdamW(self.ae.parameters(), cfg.lr, cfg.betas, weight_decay=cfg.weight_decay)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), cfg.lr_d, cfg.betas, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.ema = (AveragedModel(self.ae, multi_avg_fn=ramped_ema(cfg.ema_decay), use_buffers=True)
                    if cfg.ema_decay > 0 else None)
        self.step = 0
        if resume:
            self._resume()
        else:
            if cfg.init:
                self._init_from(Path(cfg.init))
            torch.manual_seed(cfg.seed + 1000 * self.rank)  # noise draws differ between ranks
        self.first_step = self.step  # the learning-rate warm-up counts from here
        ddp = dict(device_ids=[self.device.index]) if self.device.type == "cuda" else {}
        self.ae_ddp = DDP(self.ae, **ddp) if self.world > 1 else self.ae
        self.disc_ddp = DDP(self.disc, **ddp) if self.world > 1 else self.disc
        self.stop_requested = False

    # -- one step -------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None)

    def train_step(self, image: torch.Tensor, ids: torch.Tensor, lr_factor: float = 1.0) -> dict[str, float]:
        """Generator (encoder included) step, then discriminator step, as in the reference;
        before `gan_start` (or at adversarial weight 0) the reconstruction losses alone."""
        cfg = self.cfg
        gan = cfg.gan_active(self.step)
        for opt, lr in ((self.opt_g, cfg.lr), (self.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * lr_factor
        image, ids = image.to(self.device, non_blocking=True), ids.to(self.device, non_blocking=True)
        mask = one_hot(ids, self.model_config.num_labels)
        self.disc.requires_grad_(False)
        with self._autocast():
            fake = self.ae_ddp(image, mask)
            weight = person_weights(ids, cfg.person_weight)
            losses = {cfg.reconstruction: reconstruction(fake.float(), image, weight, cfg.reconstruction)}
            total = cfg.l1_weight * losses[cfg.reconstruction]
            if self.perceptual is not None:
                losses[cfg.perceptual] = self.perceptual(fake.float(), image)
                total = total + cfg.perceptual_weight * losses[cfg.perceptual]
            if gan:
                d_fake = self.disc(fake, mask)  # unwrapped: D takes no gradient here
                losses["g_gan"] = hinge_g(d_fake)
                total = total + cfg.adversarial_weight * losses["g_gan"]
                if cfg.fm_weight > 0:
                    with torch.no_grad():
                        d_real = self.disc(image, mask)
                    losses["fm"] = feature_matching(d_real, d_fake)
                    total = total + cfg.fm_weight * losses["fm"]
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self._clip(self.opt_g, self.ae)
        self.scaler.step(self.opt_g)
        if self.ema is not None:
            self.ema.update_parameters(self.ae)
        if gan:
            losses["d"] = self._discriminator_step(image, fake.detach(), mask)
        self.scaler.update()
        self.step += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.disc.requires_grad_(True)
        with self._autocast():
            both = self.disc_ddp(torch.cat([real, fake]), torch.cat([mask, mask]))
            b = real.shape[0]
            loss = hinge_d([[t[:b] for t in s] for s in both], [[t[b:] for t in s] for s in both])
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._clip(self.opt_d, self.disc)
        self.scaler.step(self.opt_d)
        return loss

    def _clip(self, opt: torch.optim.Optimizer, net: nn.Module) -> None:
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), self.cfg.grad_clip)

    def lr_factor(self, elapsed_s: float) -> float:
        """The schedule's multiplier of both learning rates: a linear warm-up over the first
        `warmup_steps` of this invocation, then constant or cosine to 0 at the run's end
        (`max_steps`, or with `max_minutes` the end of this invocation's budget)."""
        cfg = self.cfg
        done = self.step - self.first_step
        warm = min(1.0, (done + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        if cfg.lr_schedule == "constant":
            return warm
        progress = elapsed_s / (60 * cfg.max_minutes) if cfg.max_minutes else self.step / cfg.max_steps
        return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    # -- the loop ---------------------------------------------------------------------------
    def fit(self) -> Path:
        """Train to `max_steps` (or `max_minutes`); returns `RUN/last.pt`. Raises
        `Interrupted` on Ctrl-C."""
        cfg = self.cfg
        started = time.monotonic()
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "samples").mkdir(exist_ok=True)
            write_json(self.out / "config.json", cfg.to_dict())
            self.note(f"{len(self.dataset)} pairs, labels {', '.join(self.scheme.labels)}; "
                      f"{cfg.preset} {cfg.height}x{cfg.width}, batch {cfg.batch_size} over {self.world} "
                      f"process{'es' * (self.world > 1)} on {self.device.type}, "
                      f"{'fp32' if self.amp is None else str(self.amp).removeprefix('torch.')}")
        log = RunLog(self.out, self.note) if self.main else None
        progress = Progress(cfg.max_steps, self.step, cfg.progress, budget_s=60 * cfg.max_minutes) if self.main else None
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        fixed = self._fixed_batch()
        # the loader's own generator: making an iterator must not draw from the global RNG
        loader = DataLoader(self.dataset, self.local_batch, sampler=self.sampler, drop_last=True,
                            num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
                            pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed))
        try:
            while self.step < cfg.max_steps:
                epoch, offset = divmod(self.step, self.batches_per_epoch)
                self.sampler.set_epoch(epoch)
                self.sampler.skip = offset * self.local_batch
                t0 = time.perf_counter()
                batches = iter(loader)
                while True:
                    try:
                        image, ids = next(batches)
                    except StopIteration:
                        break
                    except RuntimeError:  # a loader worker killed by the same Ctrl-C
                        if self.stop_requested:
                            raise Interrupted(self.step, self.save(self.out / "last.pt")) from None
                        raise
                    losses = self.train_step(image, ids, self.lr_factor(time.monotonic() - started))
                    rate = cfg.batch_size / (time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    interrupted, time_up = self._should_stop(time.monotonic() - started)
                    if interrupted:
                        raise Interrupted(self.step, self.save(self.out / "last.pt"))
                    if self.main:
                        progress.update(self.step, rate, losses)
                        if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                            log.scalars(self.step, {**{f"loss/{k}": v for k, v in losses.items()},
                                                    "images_per_s": rate, "epoch": epoch})
                        if self.step % cfg.sample_every == 0 or self.step == cfg.max_steps:
                            self._sample(fixed, log)
                    self._checkpoints()
                    if time_up:
                        self.note(f"\n{cfg.max_minutes:g}-minute budget spent at step {self.step}")
                        if self.main:
                            self._sample(fixed, log)
                        return self.save(self.out / "last.pt")
                    if self.step >= cfg.max_steps:
                        break
            return self.out / "last.pt"
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if progress is not None:
                progress.close()
            if log is not None:
                log.close()

    def _request_stop(self, signum, frame) -> None:
        self.stop_requested = True

    def _should_stop(self, elapsed_s: float) -> tuple[bool, bool]:
        """(Ctrl-C or SIGTERM seen, wall-clock budget spent); every rank stops at the same
        step (the flags are all-reduced)."""
        time_up = bool(self.cfg.max_minutes) and elapsed_s >= 60 * self.cfg.max_minutes
        if self.world == 1:
            return self.stop_requested, time_up
        flags = torch.tensor([float(self.stop_requested), float(time_up)], device=self.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return bool(flags[0].item()), bool(flags[1].item())

    def _checkpoints(self) -> None:
        cfg, step = self.cfg, self.step
        save_last = step % cfg.checkpoint_every == 0 or step == cfg.max_steps
        snapshot = cfg.snapshot_every and step % cfg.snapshot_every == 0
        if save_last or snapshot:
            path = self.save(self.out / "last.pt")
            kept = self.out / f"step_{step:07d}.pt"
            if snapshot and self.main:
                kept.unlink(missing_ok=True)
                os.link(path, kept)  # a hard link: last.pt is replaced by rename, the snapshot stays

    # -- samples ----------------------------------------------------------------------------
    def _fixed_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first images of the data (unaugmented): the same grid rows all run long."""
        n = min(4, len(self.dataset))
        loaded = [self.dataset.load(i) for i in range(n)]
        return (torch.stack([torch.from_numpy(a) for a, _ in loaded]),
                torch.stack([torch.from_numpy(b) for _, b in loaded]))

    @torch.no_grad()
    def _sample(self, fixed: tuple[torch.Tensor, torch.Tensor], log: RunLog) -> None:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices):  # the noise drawn here must not shift training's stream
            self._sample_grid(fixed, log)

    def _sample_grid(self, fixed: tuple[torch.Tensor, torch.Tensor], log: RunLog) -> None:
        net = self.ema.module if self.ema is not None else self.ae
        image, ids = (t.to(self.device) for t in fixed)
        mask = one_hot(ids, self.model_config.num_labels)
        was_training = net.training
        net.eval()
        z = net.encoder(image, mask)
        recon = net.generator(mask, z)
        swap = net.generator(mask, z.roll(1, dims=0))
        net.train(was_training)
        picture = sample_grid(image, ids, recon, swap, self.model_config.num_labels)
        write_image(self.out / "samples" / f"step_{self.step:07d}.png", picture)
        log.image(self.step, "samples", picture)

    # -- checkpoints ------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Every rank takes part (RNG states are gathered); rank 0 writes."""
        rng = [torch.get_rng_state()] + ([torch.cuda.get_rng_state(self.device)] if self.device.type == "cuda" else [])
        states = [None] * self.world
        if self.world > 1:
            dist.all_gather_object(states, [s.cpu() for s in rng])
        else:
            states = [rng]
        if self.main:
            export = self.ema.module if self.ema is not None else self.ae
            extra = dict(discriminator=self.disc.state_dict(), opt_g=self.opt_g.state_dict(),
                         opt_d=self.opt_d.state_dict(), scaler=self.scaler.state_dict(), step=self.step,
                         rng=states, train_config=self.cfg.to_dict(),
                         scheme={"name": self.scheme.name, "labels": list(self.scheme.labels)})
            if self.ema is not None:
                extra.update(ema=self.ema.state_dict(), train_encoder=self.ae.encoder.state_dict(),
                             train_generator=self.ae.generator.state_dict())
            save_checkpoint(path, self.model_config, export.encoder, export.generator, **extra)
        if self.world > 1:
            dist.barrier()
        return path

    def _init_from(self, path: Path) -> None:
        """Continuing a model: encoder, generator and (when the file has one) discriminator from
        `path` (same model config, or one trained at another size); optimiser moments, step and
        schedule start afresh.

        Every weight is a convolution, a projection or a latent, whatever the image size (the
        positional tables are computed for each map size on coordinates in [-1, 1]); only the
        generator's constant noise maps have the size of its layers, so a model trained at one
        size starts one at another with fresh draws of those."""
        payload = read_checkpoint(path, map_location="cpu")
        theirs, ours = payload["config"], self.model_config.to_dict()
        size = ("height", "width")
        if {k: v for k, v in theirs.items() if k not in size} != {k: v for k, v in ours.items() if k not in size}:
            raise ConfigError(f"{path}: its model config differs from this run's; use the same preset, "
                              f"labels and --model settings")
        generator = payload["generator"]
        resized = [theirs[k] for k in size] != [ours[k] for k in size]
        if resized:
            own = self.ae.generator.state_dict()
            generator = {k: own[k] if k.endswith("noise_const") and v.shape != own[k].shape else v
                         for k, v in generator.items()}
        self.ae.encoder.load_state_dict(payload["encoder"])
        self.ae.generator.load_state_dict(generator)
        if self.ema is not None:
            self.ema.module.load_state_dict(self.ae.state_dict())
        if isinstance(payload.get("discriminator"), dict):
            self.disc.load_state_dict(payload["discriminator"])
        moved = (f" (trained at {theirs['height']}x{theirs['width']}: its weights carry over to "
                 f"{ours['height']}x{ours['width']}, the constant noise maps are drawn anew)") if resized else ""
        self.note(f"initialised encoder, generator{' and discriminator' * ('discriminator' in payload)} "
                  f"from {path}{moved}")

    def _resume(self) -> None:
        path = self.out / "last.pt"
        payload = read_checkpoint(path, map_location="cpu")
        if "opt_g" not in payload:
            raise CheckpointError(f"{path}: has no training state (an exported or converted checkpoint)")
        if payload["config"] != self.model_config.to_dict():
            raise ConfigError(f"{path}: its model config differs from this run's; resume with the same settings")
        ema = payload.get("ema")
        if (ema is None) != (self.ema is None):
            raise ConfigError(f"{path}: EMA was {'on' if ema is not None else 'off'} in that run; keep ema_decay")
        self.ae.encoder.load_state_dict(payload.get("train_encoder", payload["encoder"]))
        self.ae.generator.load_state_dict(payload.get("train_generator", payload["generator"]))
        self.disc.load_state_dict(payload["discriminator"])
        self.opt_g.load_state_dict(payload["opt_g"])
        self.opt_d.load_state_dict(payload["opt_d"])
        self.scaler.load_state_dict(payload["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(ema)
        self.step = int(payload["step"])
        states = payload["rng"]
        if len(states) == self.world:
            torch.set_rng_state(states[self.rank][0])
            if self.device.type == "cuda" and len(states[self.rank]) > 1:
                torch.cuda.set_rng_state(states[self.rank][1], self.device)
        else:  # another process count: a fresh, still reproducible stream per rank
            torch.manual_seed(self.cfg.seed + 1000 * self.rank + self.step)
        self.note(f"resumed {path} at step {self.step} (epoch {self.step // self.batches_per_epoch})")

