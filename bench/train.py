"""Training throughput of the real training step, per preset, precision and attention path.

    python bench/train.py [--height 256 --width 170 --batch 2 --repeats 3 --threads 2]
    python bench/train.py --presets small --precisions fp32 --device cuda --batch 16
    python bench/train.py --presets small --set latent_dim=256 --set attn_dim=256 --set gen_nf=32
    python bench/train.py --presets small --height 128 --width 85 --batch 8 --precisions fp32 --attentions dense folded

One step is `Trainer.train_step` as `scam-train fit` runs it: encoder + generator
forward, hinge + L1 + VGG19 perceptual losses (a random-weight VGG19 file: the cost is
the same as ImageNet weights), AdamW update, then the discriminator step on real and fake
with its update; on real CCP photos (`../shared/data/ccp`, labels3). Images/s = batch /
median step time after one warm-up step. The baseline is each preset's first row in the
same run (the first attention path, the first precision): the last column is each row's
speed relative to it. The data loader is not
timed (it runs in worker processes during training).

    python bench/train.py --presets small --height 128 --width 85 --set gen_blocks=5 --set gen_nf=32 \
        --precisions fp32 --batch 16 --objective recon --ops

`--objective recon` is the default model's since version 3 (squared error, person pixels
weighted 4, no GAN, no perceptual network, EMA 0.999). `--ops` adds how many ATen
operations one step runs (leaf calls in the profiler: forward; forward + backward; the
whole step with the optimiser and EMA): on a GPU each that does work is a kernel launch,
whatever the batch, which may be what bounds small steps there (docs/performance.md).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(Path(__file__).resolve().parent))  # after the root: bench/models.py must not shadow models/
from timing import median_time

from models import PRESETS, one_hot
from scam_train.config import TrainConfig
from scam_train.trainer import Trainer
from scam_train.vgg import vgg19_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ccp"))
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=170)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--attentions", nargs="+", default=["folded"], choices=["dense", "folded"])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override an integer field of the preset (repeatable), to measure variants")
    ap.add_argument("--objective", choices=["spec", "recon"], default="spec",
                    help="spec: hinge GAN + L1 + VGG19; recon: the default model's (see above)")
    ap.add_argument("--ops", action="store_true", help="also count the ATen operations of one step")
    args = ap.parse_args()
    overrides = {k: int(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU {args.threads} threads"
    print(f"# scam-train step, {args.height}x{args.width}, 3 labels, batch {args.batch}, {where}, "
          f"torch {torch.__version__}{', overrides ' + str(overrides) if overrides else ''}")
    ops_head = " ops forward / + backward / step |" if args.ops else ""
    print(f"| preset | attention | precision | step (s) | images/s | vs first row |{ops_head}")
    print("|---|---|---|---|---|---|" + "---|" * args.ops)
    objective = (dict(adversarial_weight=0.0, perceptual_weight=0.0, reconstruction="mse", person_weight=4.0,
                      ema_decay=0.999) if args.objective == "recon" else {})
    with tempfile.TemporaryDirectory() as tmp:
        vgg = Path(tmp) / "vgg19.pth"
        torch.save({f"features.{k}": v for k, v in vgg19_features().state_dict().items()}, vgg)
        split = Path(tmp) / "split.txt"
        photos = sorted((Path(args.data) / "labels3").glob("*.png"))[:max(8, args.batch)]  # a batch's worth
        split.write_text("\n".join(p.stem for p in photos))
        for preset in args.presets:
            baseline = None
            for attention, precision in ((a, p) for a in args.attentions for p in args.precisions):
                cfg = TrainConfig(attention=attention, data=args.data, out=str(Path(tmp) / "run"), split=str(split),
                                  labels_dir="labels3", preset=preset, model=overrides, height=args.height,
                                  width=args.width, batch_size=args.batch, precision=precision, vgg_weights=str(vgg),
                                  device=args.device, workers=0, **objective)
                trainer = Trainer(cfg, note=lambda m: None)
                batch = [trainer.dataset[i] for i in range(args.batch)]
                image = torch.stack([b[0] for b in batch])
                ids = torch.stack([b[1] for b in batch])

                def step() -> None:
                    trainer.train_step(image, ids)
                    if trainer.device.type == "cuda":
                        torch.cuda.synchronize()

                seconds = median_time(step, args.repeats)
                baseline = baseline or seconds
                ops = " {} / {} / {} |".format(*op_counts(trainer, image, ids)) if args.ops else ""
                print(f"| {preset} | {attention} | {precision} | {seconds:.2f} | {args.batch / seconds:.2f} | "
                      f"{baseline / seconds:.2f}x |{ops}", flush=True)


def op_counts(trainer: Trainer, image: torch.Tensor, ids: torch.Tensor) -> tuple[int, int, int]:
    """Leaf ATen calls of the autoencoder's forward, of forward + backward, and of a whole step."""
    mask = one_hot(ids.to(trainer.device), trainer.model_config.num_labels)
    image = image.to(trainer.device)

    def count(fn) -> int:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        return sum(1 for e in prof.events() if e.name.startswith("aten::") and not e.cpu_children)

    return (count(lambda: trainer.ae(image, mask)), count(lambda: trainer.ae(image, mask).mean().backward()),
            count(lambda: trainer.train_step(image, ids)))


if __name__ == "__main__":
    main()
