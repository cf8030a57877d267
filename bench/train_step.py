"""Training-step throughput on CPU per preset: the measurement behind the `small` preset.

    python bench/train_step.py [--height 256 --width 170 --batch 2 --repeats 3 --threads 2]
    python bench/train_step.py --presets small --set latent_dim=256 --set attn_dim=256 --set gen_nf=16

One step = encoder + generator forward, L1 + hinge generator loss backward, then the
discriminator on real and detached fake with the hinge loss backward (no optimiser
update, no VGG), fp32, random data. Images/s = batch / median step time.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parent))  # after the root: bench/models.py must not shadow models/
from timing import median_time  # noqa: E402

from models import PRESETS, ModelConfig, PatchGANDiscriminator, SATEncoder, SCAMGenerator, one_hot  # noqa: E402
from scam_train.losses import hinge_d, hinge_g, l1  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=170)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override an integer field of the preset (repeatable), to measure variants")
    args = ap.parse_args()
    overrides = {k: int(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    torch.set_num_threads(args.threads)
    labels = ["background", "face", "body"]
    print(f"# training step, {args.height}x{args.width}, 3 labels, batch {args.batch}, fp32, "
          f"CPU {args.threads} threads{', overrides ' + str(overrides) if overrides else ''}")
    print("| preset | params enc+gen (M) | step (s) | images/s |")
    print("|---|---|---|---|")
    for preset in args.presets:
        c = ModelConfig.preset(preset, labels=labels, height=args.height, width=args.width, **overrides)
        torch.manual_seed(0)
        enc, gen, disc = SATEncoder(c), SCAMGenerator(c), PatchGANDiscriminator(c)
        image = torch.rand(args.batch, 3, c.height, c.width) * 2 - 1
        mask = one_hot(torch.randint(0, 3, (args.batch, c.height, c.width)), 3)

        def step() -> None:
            fake = gen(mask, enc(image, mask))
            (10 * l1(fake, image) + hinge_g(disc(fake, mask))).backward()
            hinge_d(disc(image, mask), disc(fake.detach(), mask)).backward()

        seconds = median_time(step, args.repeats)
        params = sum(p.numel() for net in (enc, gen) for p in net.parameters()) / 1e6
        print(f"| {preset} | {params:.1f} | {seconds:.2f} | {args.batch / seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
