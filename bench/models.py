"""Forward time and FLOPs of the SCAM encoder and generator, per preset, on CPU.

    python bench/models.py [--height 256 --width 170 --labels 3 --repeats 5 --threads 2]

FLOPs come from torch.utils.flop_counter (matmul/conv FLOPs, 2 per multiply-add);
times are the median of `--repeats` runs after one warm-up, batch 1, const noise.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parent))  # after the root: bench/models.py must not shadow models/
from timing import median_time  # noqa: E402
from models import PRESETS, ModelConfig, SATEncoder, SCAMGenerator, one_hot  # noqa: E402


def count_flops(fn) -> int:
    """Forward FLOPs; counted with autograd on, which FlopCounterMode's module hooks need."""
    counter = FlopCounterMode(display=False)
    with torch.enable_grad(), counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=170)
    ap.add_argument("--labels", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    labels = ["background"] + [f"label{i}" for i in range(1, args.labels)]
    print(f"# SCAM networks, {args.height}x{args.width}, {args.labels} labels, batch 1, "
          f"CPU, {args.threads} threads, torch {torch.__version__}")
    print("| preset | network | params (M) | GFLOP | forward (ms) |")
    print("|---|---|---|---|---|")
    for preset in PRESETS:
        c = ModelConfig.preset(preset, labels=labels, height=args.height, width=args.width)
        torch.manual_seed(0)
        enc, gen = SATEncoder(c).eval(), SCAMGenerator(c, noise_mode="const").eval()
        image = torch.rand(1, 3, c.height, c.width) * 2 - 1
        mask = one_hot(torch.randint(0, c.num_labels, (1, c.height, c.width)), c.num_labels)
        with torch.no_grad():
            z = enc(image, mask)
            for name, net, fn in (("encoder", enc, lambda: enc(image, mask)),
                                  ("generator", gen, lambda: gen(mask, z))):
                params = sum(p.numel() for p in net.parameters()) / 1e6
                gflop = count_flops(fn) / 1e9
                ms = median_time(fn, args.repeats) * 1e3
                print(f"| {preset} | {name} | {params:.2f} | {gflop:.1f} | {ms:.0f} |", flush=True)


if __name__ == "__main__":
    main()
