"""The CPU paths side by side on one checkpoint, in one run: eager PyTorch (dense and folded
attention), ONNX Runtime fp32 (dense graphs, and the exporter's folded ones) and int8,
OpenVINO f32, bf16 and int8. Latency (batch 1) and throughput (batch N) of encoder +
generator, image agreement with ONNX Runtime fp32 on CCP val photos, and the generator's
achieved GFLOP/s against this CPU's measured matrix-multiply peak (FLOPs of the path run:
the folded path does a fraction of the dense path's).

    python bench/cpu.py                                  # the default model (small, 128x85)
    python bench/cpu.py --preset paper --val-images 16     # random weights at 256x170: timing only

The int8 bundle is calibrated on CCP photos outside `scam_train/splits/ccp-val.txt`
(their labels3/ maps); PSNR is measured on the 95 val photos (reconstructions and swaps:
each photo's appearance in the next one's background). Random weights say nothing about
quantization error: their PSNR column is printed but is not a quality figure. Batch-1
timings are medians over `--repeats` rounds in which every path runs once (interleaved,
after a warm-up round), so a slow spell of the machine falls on all paths alike; batch N is
the median of `--repeats` runs, one path at a time (all of them at once do not fit in
memory at `paper` size).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(Path(__file__).resolve().parent))  # after the root: bench/models.py must not shadow models/
from ccp import linked_split, split_names  # noqa: E402
from timing import median_time  # noqa: E402
from models import ATTENTION_PATHS, load_checkpoint, one_hot  # noqa: E402
from models.synthetic import random_checkpoint  # noqa: E402
from scam_export.bundle import ExportOptions, export_bundle  # noqa: E402
from scam_export.int8 import CalibrationSet, swap_latents  # noqa: E402
from scam_export.parity import psnr_db  # noqa: E402
from scam_runtime.backend import BackendOptions, open_session  # noqa: E402


def peak_gflops(tmp: Path, threads: int) -> dict[str, float]:
    """This CPU's matrix-product rate, the roofline's ceiling: the best of PyTorch, ONNX
    Runtime and OpenVINO on 1024³ and 2048³ products, per precision (on this AMD CPU
    PyTorch's fp32 product runs at about 60 % of ONNX Runtime's, OpenVINO's bf16 at 75 % of
    PyTorch's, so no single library gives the peak)."""
    best = {"fp32": 0.0, "bf16": 0.0}
    for n in (1024, 2048):
        flop = 2 * n ** 3
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        graph = onnx.helper.make_graph(
            [onnx.helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
            [onnx.helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [n, n])],
            [onnx.helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [n, n])],
            [onnx.numpy_helper.from_array(b, "b")])
        path = tmp / f"matmul{n}.onnx"
        onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]), str(path))
        runs = {"fp32": [lambda s=open_session(path, BackendOptions(threads=threads)): s.run(a=a),
                         lambda s=open_session(path, BackendOptions("openvino", threads=threads,
                                                                    precision_hint="f32")): s.run(a=a)],
                "bf16": [lambda s=open_session(path, BackendOptions("openvino", threads=threads,
                                                                    precision_hint="bf16")): s.run(a=a)]}
        for dtype, torch_dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            ta, tb = torch.from_numpy(a).to(torch_dtype), torch.from_numpy(b).to(torch_dtype)
            for run in [lambda: ta @ tb, *runs[dtype]]:
                best[dtype] = max(best[dtype], flop / median_time(run, 5) / 1e9)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=ROOT / "models" / "default_model.pt")
    ap.add_argument("--preset", help="random weights of this preset instead of --ckpt")
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=170)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=11, help="timed rounds")
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
    bundles = {"fp32": tmp / "fp32", "int8": tmp / "int8", "dense": tmp / "dense"}
    export_bundle(ckpt, bundles["fp32"], ExportOptions(max_batch=args.batch), log=lambda m: None)
    export_bundle(ckpt, bundles["dense"], ExportOptions(max_batch=args.batch, attention="dense"), log=lambda m: None)
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
        "ORT fp32, dense graphs": ("dense", BackendOptions(threads=args.threads)),
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
    flops = {}  # attention path -> generator FLOPs per image, multiply-adds counting 2
    for path in ATTENTION_PATHS:
        generator.attention_path = path
        with FlopCounterMode(display=False) as counter:
            generator(*eager_inputs)
        flops[path] = counter.get_total_flops()
    outs = {}  # name -> outputs on the val photos (ONNX paths)
    attention = {"eager PyTorch fp32": "dense", "eager PyTorch fp32, folded": "folded"}
    attention.update({name: "dense" if bundle == "dense" else "folded" for name, (bundle, _) in paths.items()})

    def calls(name: str) -> tuple:
        """`(encoder + generator at batch 1, at batch N, generator alone at batch 1)` as calls,
        then an ONNX path's sessions."""
        if name not in paths:
            path = attention[name]

            @torch.no_grad()
            def eager_step(x: np.ndarray, lab: np.ndarray) -> None:
                encoder.attention_path = generator.attention_path = path
                mask = one_hot(torch.from_numpy(lab).long(), config.num_labels)
                generator(mask, encoder(torch.from_numpy(x), mask))

            @torch.no_grad()
            def eager_generator() -> None:
                generator.attention_path = path
                generator(*eager_inputs)
            return lambda: eager_step(*one), lambda: eager_step(*many), eager_generator
        bundle, backend = paths[name]
        sessions = {g: open_session(bundles[bundle] / f"{g}.onnx", backend) for g in ("encoder", "generator")}
        z1 = sessions["encoder"].run(image=one[0], labels=one[1])

        def step(x: np.ndarray, lab: np.ndarray) -> None:
            sessions["generator"].run(labels=lab, latents=sessions["encoder"].run(image=x, labels=lab))
        return (lambda: step(*one), lambda: step(*many),
                lambda: sessions["generator"].run(labels=one[1], latents=z1), sessions)

    # Throughput and image agreement, one path at a time: the batch-N memory of every path
    # at once does not fit in 24 GB at `paper` size.
    per_image = {}
    for name in attention:
        path_calls = calls(name)
        if name in paths:
            outs[name] = outputs(lambda g, **inputs: path_calls[3][g].run(**inputs))
        per_image[name] = median_time(path_calls[1], args.repeats) / args.batch
        path_calls = None  # this path's sessions go before the next path's open
    # Latency in interleaved rounds, every path once per round (fresh batch-1 sessions), so
    # that this VM's slow spells (timings drift by tens of percent over minutes here) fall
    # on all paths alike.
    latency_calls = {name: calls(name) for name in attention}
    samples = {name: ([], []) for name in attention}
    for round_ in range(args.repeats + 1):
        for name, (one_call, _, generator_call, *_) in latency_calls.items():
            for call, times in zip((one_call, generator_call), samples[name]):
                start = time.perf_counter()
                call()
                if round_:  # round 0 warms up
                    times.append(time.perf_counter() - start)
    rows = {name: (statistics.median(one_), per_image[name], statistics.median(gen), outs.get(name),
                   flops[attention[name]])
            for name, (one_, gen) in samples.items()}
    reference = outs["ORT fp32"]
    base = rows["ORT fp32"]
    peak = peak_gflops(tmp, args.threads)
    source = f"random {args.preset} weights" if args.preset else f"{ckpt.name}"
    print(f"# {source}, {config.height}x{config.width}, {config.num_labels} labels, CPU {args.threads} threads; "
          f"int8: {manifest['int8']['quantized_nodes']} nodes quantized, kept fp32: "
          f"{', '.join(manifest['int8']['kept_fp32']) or 'none'}; generator GFLOP per image: "
          f"{flops['dense'] / 1e9:.2f} dense, {flops['folded'] / 1e9:.2f} folded; "
          f"matrix-product peak here: fp32 {peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s "
          "(best of PyTorch, ONNX Runtime, OpenVINO at 1024^3 and 2048^3)")
    print(f"| path | batch 1 (ms) | vs ORT fp32 | vs eager | batch {args.batch} (ms/image) | vs ORT fp32 "
          "| generator (ms) | generator GFLOP/s | PSNR vs ORT fp32 (dB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (latency, per_image, gen_time, out, gen_flops) in rows.items():
        psnr = "-" if out is None else f"{psnr_db(out, reference):.1f}"
        print(f"| {name} | {latency * 1e3:.1f} | {base[0] / latency:.2f} | {rows['eager PyTorch fp32'][0] / latency:.2f} "
              f"| {per_image * 1e3:.1f} | {base[1] / per_image:.2f} | {gen_time * 1e3:.1f} "
              f"| {gen_flops / gen_time / 1e9:.0f} | {psnr} |")


if __name__ == "__main__":
    main()
