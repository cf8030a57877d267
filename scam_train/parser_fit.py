"""Training of the built-in human parser (`scam-train parser-fit`) and its export to the
ONNX file + JSON that `scam_runtime`'s `builtin` parser (or `onnx:PATH`) loads."""
from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import ParserNet, ParserNetConfig
from scam_runtime.atomic import atomic_path, write_json
from scam_runtime.parsers import CropSpec, ParserDescription

from .data import ResumableSampler, check_pairs, find_pairs
from .errors import ConfigError
from .parser_data import CropDataset, ParserAugment, ParserDataset
from .schemes import load_scheme


@dataclass(frozen=True)
class ParserTrainConfig:
    data: str
    out: str
    labels_dir: str = "labels3"
    scheme: str = "bfb3"
    split: str | None = None          # training names (folder or list file); None: all but `val_split`
    val_split: str | None = None      # held-out names for the per-epoch mIoU
    extra: tuple[str, ...] = ()       # more training folders (`prepare` layout: images/ + labels/ in
    #                                   this scheme's ids), e.g. photos pseudo-labelled by a teacher parser
    height: int = ParserNetConfig.height
    width: int = ParserNetConfig.width
    widths: tuple[int, ...] = ParserNetConfig.widths  # network channels per stride
    zoom: tuple[float, float] = ParserAugment.scale  # augmentation: zoom range of the photo
    backdrop: float = ParserAugment.backdrop           # augmentation: probability of a photo behind
    crowd: float = ParserAugment.crowd                 # augmentation: probability of more people in front
    crop: str | None = None           # train a refiner on crops around this label (e.g. face)
    crop_width: float = CropSpec.width
    crop_top: float = CropSpec.top
    passes: int = 2                   # refiner runs per frame (written to its JSON for the runtime)
    epochs: int = 40
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    workers: int = 2
    precision: str = "fp32"           # or bf16 (autocast: faster only on CPUs with native bf16, docs/parsing.md)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch size must be at least 1")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be fp32 or bf16, got {self.precision!r}")


def iou_counts(pred: np.ndarray, truth: np.ndarray, num_labels: int) -> np.ndarray:
    """Per-label (intersection, union) pixel counts, summed over a dataset for its IoU."""
    counts = np.zeros((num_labels, 2), np.int64)
    for c in range(num_labels):
        p, t = pred == c, truth == c
        counts[c] = (p & t).sum(), (p | t).sum()
    return counts


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − mean soft Dice over labels: lifts small labels (the face) that cross-entropy underweights."""
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * onehot).sum((0, 2, 3))
    total = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return 1 - ((2 * inter + 1) / (total + 1)).mean()


class ParserGraph(nn.Module):
    """What ships: [-1, 1] image → per-label probabilities (softmax inside the graph)."""

    def __init__(self, net: ParserNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image).softmax(1)


def export_parser(net: ParserNet, onnx_path: Path, crop: CropSpec | None, passes: int, extra: dict) -> None:
    """ONNX (dynamo exporter, dynamic batch, opset 18, one file) + the JSON the runtime reads
    beside it; both renamed into place once complete."""
    import onnx
    c = net.config
    batch = torch.export.Dim("batch", min=1, max=64)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)  # torchvision ops
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(ParserGraph(net).eval(), (torch.zeros(2, 3, c.height, c.width),), dynamo=True,
                                    opset_version=18, input_names=["image"], output_names=["probs"],
                                    dynamic_shapes=({0: batch},), optimize=True, verbose=False)
    with atomic_path(onnx_path) as tmp:
        onnx.save_model(program.model_proto, str(tmp), save_as_external_data=False)
    ParserDescription(tuple(c.labels), c.height, c.width, crop=crop, passes=passes if crop else 1,
                      extra=extra).write(onnx_path.with_suffix(".json"))


def save_parser(path: Path, net: ParserNet, extra: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": "scam-parser", "config": net.config.to_dict(), "state_dict": net.state_dict(), **extra},
                   tmp)


def load_parser(path: Path) -> ParserNet:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != "scam-parser":
        raise ConfigError(f"{path}: not a scam parser checkpoint")
    net = ParserNet(ParserNetConfig.from_dict(payload["config"]))
    net.load_state_dict(payload["state_dict"])
    return net.eval()


@torch.no_grad()
def evaluate_canvas(net: ParserNet, data: ParserDataset, batch_size: int = 16) -> np.ndarray:
    """IoU counts on the canvas (letterboxed, unaugmented): the cheap per-epoch check."""
    net.eval()
    counts = 0
    for start in range(0, len(data), batch_size):
        items = [data[i] for i in range(start, min(start + batch_size, len(data)))]
        pred = net(torch.stack([x for x, _ in items])).argmax(1).numpy()
        counts = counts + iou_counts(pred, torch.stack([y for _, y in items]).numpy(), len(net.config.labels))
    return counts


def fit_parser(cfg: ParserTrainConfig, note: Callable[[str], None] = print) -> dict:
    """Train, keep the epoch with the best validation mIoU (a refiner: its label's IoU), export
    it; returns its metrics."""
    out = Path(cfg.out)
    scheme = load_scheme(cfg.scheme)
    train_pairs = find_pairs(cfg.data, cfg.split, cfg.labels_dir)
    val_pairs = find_pairs(cfg.data, cfg.val_split, cfg.labels_dir) if cfg.val_split else []
    if cfg.split is None and val_pairs:
        held = {p.image.stem for p in val_pairs}
        train_pairs = [p for p in train_pairs if p.image.stem not in held]
    extra_pairs = [p for folder in cfg.extra for p in find_pairs(folder, None, "labels")]
    scheme = check_pairs(train_pairs + val_pairs, scheme)
    if extra_pairs:
        check_pairs(extra_pairs, scheme)
        train_pairs = train_pairs + extra_pairs
    try:
        net_config = ParserNetConfig(labels=tuple(scheme.labels), height=cfg.height, width=cfg.width,
                                     widths=tuple(cfg.widths))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    note(f"loading {len(train_pairs)} training ({len(extra_pairs)} from --extra) and {len(val_pairs)} "
         "validation pairs...")
    augment = ParserAugment(scale=tuple(cfg.zoom), backdrop=cfg.backdrop, crowd=cfg.crowd)
    crop = None
    if cfg.crop is not None:
        if cfg.crop not in scheme.labels:
            raise ConfigError(f"--crop {cfg.crop}: not a label of the scheme ({', '.join(scheme.labels)})")
        crop = CropSpec(cfg.crop, cfg.crop_width, cfg.crop_top)
        train = CropDataset(train_pairs, scheme, cfg.height, cfg.width, crop, augment, cfg.seed)
        if len(train) < cfg.batch_size:
            raise ConfigError(f"--crop {cfg.crop}: only {len(train)} training photo(s) show it "
                              f"(a batch needs {cfg.batch_size})")
        val = CropDataset(val_pairs, scheme, cfg.height, cfg.width, crop, ParserAugment.none()) if val_pairs else None
    else:
        train = ParserDataset(train_pairs, scheme, cfg.height, cfg.width, augment, cfg.seed)
        val = ParserDataset(val_pairs, scheme, cfg.height, cfg.width, ParserAugment.none()) if val_pairs else None
    torch.manual_seed(cfg.seed)
    net = ParserNet(net_config)
    opt = torch.optim.AdamW(net.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * (len(train) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=0.1)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "parser_config.json", asdict(cfg))
    # a refiner is there for its label (the face): its epoch is chosen on that label's IoU
    key = f"iou_{cfg.crop}" if cfg.crop is not None else "miou"
    best: dict = {key: -math.inf}
    # one loader for the whole run: its workers outlive an epoch (no fork stall per epoch);
    # its own generator, so that making an iterator draws nothing from the global RNG
    sampler = ResumableSampler(train, num_replicas=1, rank=0, shuffle=True, seed=cfg.seed, drop_last=True)
    loader = torch.utils.data.DataLoader(train, cfg.batch_size, sampler=sampler, drop_last=True,
                                         num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        net.train()
        t0, total = time.perf_counter(), 0.0
        for image, ids in loader:
            with torch.autocast("cpu", torch.bfloat16, enabled=cfg.precision == "bf16"):
                logits = net(image).float()
            loss = F.cross_entropy(logits, ids) + soft_dice_loss(logits, ids)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        rate = len(loader) * cfg.batch_size / (time.perf_counter() - t0)
        metrics = {"epoch": epoch + 1, "loss": total / len(loader), "images_per_s": round(rate, 1)}
        if val is not None:
            counts = evaluate_canvas(net, val)
            iou = counts[:, 0] / np.maximum(counts[:, 1], 1)
            metrics.update(miou=float(iou.mean()), **{f"iou_{n}": float(v) for n, v in zip(net_config.labels, iou)})
        note(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))
        with open(out / "parser_log.jsonl", "a") as log:
            log.write(json.dumps(metrics) + "\n")
        if val is None or metrics[key] >= best[key]:
            best = metrics
            save_parser(out / "parser.pt", net, {"metrics": metrics})
    net = load_parser(out / "parser.pt")
    export_parser(net, out / "parser.onnx", crop, cfg.passes,
                  {"trained_on": f"{cfg.data} ({cfg.labels_dir})" + "".join(f" + {e}" for e in cfg.extra)
                   + f", {len(train)} images", "validation": best})
    note(f"best epoch {best['epoch']}: {out / 'parser.pt'}, exported {out / 'parser.onnx'}")
    return best
