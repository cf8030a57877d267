"""The CPU paths side by side on one checkpoint, in one run: eager PyTorch, ONNX Runtime fp32
and int8, OpenVINO f32, bf16 and int8. Latency (batch 1) and throughput (batch N) of
encoder + generator, image agreement with ONNX Runtime fp32 on CCP val photos, and the
generator's achieved GFLOP/s against this CPU's measured matrix-multiply peak.

    python bench/cpu.py                                  # the default model (small, 128x85)
    python bench/cpu.py --preset paper --val-images 16     # random weights at 256x170: timing only

The int8 bundle is calibrated on CCP photos outside `scam_train/splits/ccp-val.txt`
(their labels3/ maps); PSNR is measured on the 95 val photos (reconstructions and swaps:
each photo's appearance in the next one's background). Random weights say nothing about
quantization error: their PSNR column is printed but is not a quality figure.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(Path(__file__).resolve().parent))  # after the root: bench/models.py must not shadow models/
from ccp import linked_split, split_names  # noqa: E402
from timing import median_time  # noqa: E402
from models import load_checkpoint, one_hot  # noqa: E402
from models.synthetic import random_checkpoint  # noqa: E402
from scam_export.bundle import ExportOptions, export_bundle  # noqa: E402
from scam_export.int8 import CalibrationSet, swap_latents  # noqa: E402
from scam_export.parity import psnr_db  # noqa: E402
from scam_runtime.backend import BackendOptions, open_session  # noqa: E402


def peak_gflops(dtype: torch.dtype, n: int = 2048) -> float:
    """This CPU's matrix-multiply rate in PyTorch (oneDNN/MKL), the roofline's ceiling."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n ** 3 / median_time(lambda: a @ b, 5) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=ROOT / "models" / "default_model.pt")
    ap.add_argument("--preset", help="random weights of this preset instead of --ckpt")
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=170)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=8, help="throughput batch")
    ap.add_argument("--calibration-images", type=int, default=48)
    ap.add_argument("--val-images", type=int, default=95, help="CCP val photos for the PSNR column")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="scam-bench-cpu-"))
    ckpt = args.ckpt
    if args.preset:
        ckpt = random_checkpoint(tmp / "model.pt", preset=args.preset, height=args.height, width=args.width)
    config, encoder, generator = load_checkpoint(ckpt)
    calibration = linked_split(split_names("ccp-train"), "labels3", tmp / "calibration")
    bundles = {"fp32": tmp / "fp32", "int8": tmp / "int8"}
    export_bundle(ckpt, bundles["fp32"], ExportOptions(max_batch=args.batch), log=lambda m: None)
    manifest = export_bundle(ckpt, bundles["int8"], ExportOptions(
        precision="int8", max_batch=args.batch, calibration=str(calibration), calibration_images=args.calibration_images),
        log=lambda m: None)
    val = CalibrationSet.load(linked_split(split_names("ccp-val"), "labels3", tmp / "val"),
                              "labels", args.val_images, config)

    def outputs(run) -> np.ndarray:
        """Reconstructions and swaps of the val photos, in batches of 8."""
        result = []
        for start in range(0, len(val.images), 8):
            x, lab = val.images[start:start + 8], val.labels[start:start + 8]
            z = run("encoder", image=x, labels=lab)
            result += [run("generator", labels=lab, latents=z),
                       run("generator", labels=lab, latents=swap_latents(z, config))]
        return np.concatenate(result)

    paths = {  # name -> (bundle, backend)
        "ORT fp32": ("fp32", BackendOptions(threads=args.threads)),
        "ORT int8": ("int8", BackendOptions(threads=args.threads)),
        "OpenVINO f32": ("fp32", BackendOptions("openvino", threads=args.threads, precision_hint="f32")),
        "OpenVINO bf16": ("fp32", BackendOptions("openvino", threads=args.threads, precision_hint="bf16")),
        "OpenVINO int8": ("int8", BackendOptions("openvino", threads=args.threads, precision_hint="f32")),
    }
    one = (val.images[:1], val.labels[:1])
    many = (val.images[:args.batch], val.labels[:args.batch])
    encoder.requires_grad_(False)
    generator.requires_grad_(False)  # FlopCounterMode's module tracker fails under no_grad
    eager_inputs = (one_hot(torch.from_numpy(one[1]).long(), config.num_labels),
                    torch.from_numpy(open_session(bundles["fp32"] / "encoder.onnx", BackendOptions()).run(
                        image=one[0], labels=one[1])))
    with FlopCounterMode(display=False) as counter:
        generator(*eager_inputs)
    gen_flops = counter.get_total_flops()  # multiply-adds count 2
    rows = {}

    @torch.no_grad()
    def eager(x: np.ndarray, lab: np.ndarray) -> None:
        mask = one_hot(torch.from_numpy(lab).long(), config.num_labels)
        generator(mask, encoder(torch.from_numpy(x), mask))

    @torch.no_grad()
    def eager_generator() -> None:
        generator(*eager_inputs)

    rows["eager PyTorch fp32"] = (median_time(lambda: eager(*one), args.repeats),
                                  median_time(lambda: eager(*many), args.repeats) / args.batch,
                                  median_time(eager_generator, args.repeats), None)
    reference = None
    for name, (bundle, backend) in paths.items():
        sessions = {g: open_session(bundles[bundle] / f"{g}.onnx", backend) for g in ("encoder", "generator")}
        out = outputs(lambda g, **inputs: sessions[g].run(**inputs))
        reference = out if reference is None else reference
        z1 = sessions["encoder"].run(image=one[0], labels=one[1])

        def step(x: np.ndarray, lab: np.ndarray) -> None:
            sessions["generator"].run(labels=lab, latents=sessions["encoder"].run(image=x, labels=lab))
        rows[name] = (median_time(lambda: step(*one), args.repeats),
                      median_time(lambda: step(*many), args.repeats) / args.batch,
                      median_time(lambda: sessions["generator"].run(labels=one[1], latents=z1), args.repeats),
                      psnr_db(out, reference))
    base = rows["ORT fp32"]
    f32_peak, bf16_peak = peak_gflops(torch.float32), peak_gflops(torch.bfloat16)
    source = f"random {args.preset} weights" if args.preset else f"{ckpt.name}"
    print(f"# {source}, {config.height}x{config.width}, {config.num_labels} labels, CPU {args.threads} threads; "
          f"int8: {manifest['int8']['quantized_nodes']} nodes quantized, kept fp32: "
          f"{', '.join(manifest['int8']['kept_fp32']) or 'none'}; generator {gen_flops / 1e9:.2f} GFLOP per image; "
          f"matmul peak here: fp32 {f32_peak:.0f}, bf16 {bf16_peak:.0f} GFLOP/s (PyTorch, 2048^3)")
    print(f"| path | batch 1 (ms) | vs ORT fp32 | vs eager | batch {args.batch} (ms/image) | vs ORT fp32 "
          "| generator (ms) | generator GFLOP/s | PSNR vs ORT fp32 (dB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (latency, per_image, gen_time, psnr) in rows.items():
        print(f"| {name} | {latency * 1e3:.1f} | {base[0] / latency:.2f} | {rows['eager PyTorch fp32'][0] / latency:.2f} "
              f"| {per_image * 1e3:.1f} | {base[1] / per_image:.2f} | {gen_time * 1e3:.1f} "
              f"| {gen_flops / gen_time / 1e9:.0f} | {'-' if psnr is None else f'{psnr:.1f}'} |")


if __name__ == "__main__":
    main()
