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
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(Path(__file__).resolve().parent))  # after the root: bench/models.py must not shadow models/
from timing import median_time

from models import PRESETS
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
    args = ap.parse_args()
    overrides = {k: int(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU {args.threads} threads"
    print(f"# scam-train step, {args.height}x{args.width}, 3 labels, batch {args.batch}, {where}, "
          f"torch {torch.__version__}{', overrides ' + str(overrides) if overrides else ''}")
    print("| preset | attention | precision | step (s) | images/s | vs first row |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        vgg = Path(tmp) / "vgg19.pth"
        torch.save({f"features.{k}": v for k, v in vgg19_features().state_dict().items()}, vgg)
        split = Path(tmp) / "split.txt"
        split.write_text("\n".join(p.stem for p in sorted((Path(args.data) / "labels3").glob("*.png"))[:8]))
        for preset in args.presets:
            baseline = None
            for attention, precision in ((a, p) for a in args.attentions for p in args.precisions):
                cfg = TrainConfig(attention=attention, data=args.data, out=str(Path(tmp) / "run"), split=str(split),
                                  labels_dir="labels3", preset=preset, model=overrides, height=args.height,
                                  width=args.width, batch_size=args.batch, precision=precision, vgg_weights=str(vgg),
                                  device=args.device, workers=0)
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
                print(f"| {preset} | {attention} | {precision} | {seconds:.2f} | {args.batch / seconds:.2f} | "
                      f"{baseline / seconds:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
