"""End-to-end subject replacement: per-stage time, end-to-end fps, against the
pure-inference fps of the same graphs and against PyTorch eager of the same checkpoint.

    python bench/runtime.py [--presets small paper] [--frames 60] [--batch 1]
    python bench/runtime.py --ckpt models/default_model.pt --providers cpu openvino --threads 1 2 --batch 1 8
    python bench/runtime.py ... --encoder-preset veryfast   # x264's speed against file size
    python bench/runtime.py --providers trt-engine --precision fp16   # GPU: engines built first

Every combination of `--providers`, `--threads` and `--batch` runs on the same bundle, label
maps and frames, in `--rounds` interleaved rounds (each combination once per round: this VM's
speed drifts over minutes); a row's end-to-end fps is its median. Sessions are created, and
compiled for the batch size, before the timing (OpenVINO compiles per batch size). The
summary compares each provider's best combination, and each combination at equal settings,
with the first provider's (ONNX Runtime's CPU provider by default).

Input: ../shared/data/video/pose_1.mp4 (576×576, 30 fps) with per-frame label maps made by
the built-in parser before the timed runs and read back from PNG files during them (what
`scam-run video --masks DIR` does: the matte and blend cost depends on the person's
extent, so the maps must look like real ones), random-weight checkpoints exported at
256×170 (the fit letterboxes the square frame), or `--ckpt` at its own resolution; int8
bundles are calibrated on the ccp-train photos (labels3). Output: H.264 at crf 18 (the
default encoder threads: one beside CPU inference; x264's preset: medium unless
`--encoder-preset`). Stage cells are wall ms per frame summed over the streaming run
(reader, network and writer threads overlap) with, in brackets, the CPU ms of the thread
that ran them (a network stage's brackets miss the runtime's other pool threads);
"pure inference" runs the two graphs alone on the same model inputs (batch 1).
On a GPU provider the eager baseline runs on CUDA too (fp32).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(Path(__file__).resolve().parent))  # after the root: bench/models.py must not shadow models/
from ccp import linked_split, split_names  # noqa: E402
from models import load_checkpoint, one_hot  # noqa: E402
from models.synthetic import person_labels, random_checkpoint  # noqa: E402
from scam_export.bundle import ExportOptions, export_bundle  # noqa: E402
from scam_export.trt import build_engines  # noqa: E402
from scam_runtime.backend import PROVIDER_CHOICES, BackendOptions  # noqa: E402
from scam_runtime.geometry import Fit  # noqa: E402
from scam_runtime.jobs import CPU_PROVIDERS, VideoOptions, replace_video  # noqa: E402
from scam_runtime.labels import MaskFiles, read_labels  # noqa: E402
from scam_runtime.media import ENCODER_PRESETS, FrameRange, VideoReader  # noqa: E402
from scam_runtime.parsers import ParserOptions, get_parser  # noqa: E402
from scam_runtime.replacer import SubjectReplacer  # noqa: E402

STAGES = ("decode", "labels", "prepare", "encode", "mix", "generate", "composite", "write")


def write_label_maps(video: Path, frames: FrameRange, folder: Path, threads: int) -> MaskFiles:
    """The built-in parser's label map of every frame, as 8-bit PNGs in `folder`."""
    folder.mkdir()
    parser = get_parser("builtin", ("background", "face", "body"), ParserOptions(backend=BackendOptions(threads=threads)))
    reader = VideoReader(video)
    for frame in reader.frames(frames):
        Image.fromarray(parser(frame.image).astype(np.uint8)).save(folder / f"{frame.number:04d}.png")
    reader.close()
    return MaskFiles(str(folder / "%04d.png"))


def fps_of(step: Callable[[np.ndarray, np.ndarray], None], inputs: list) -> float:
    """Frames per second of `step` over `inputs`, after one warm-up call (CUDA init, autotuning)."""
    step(*inputs[0])
    start = time.perf_counter()
    for x, lab in inputs:
        step(x, lab)
    return len(inputs) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["small", "paper"])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--providers", nargs="+", choices=PROVIDER_CHOICES, default=["cpu"])
    ap.add_argument("--threads", nargs="+", type=int, default=[2])
    ap.add_argument("--batch", nargs="+", type=int, default=[1])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32")
    ap.add_argument("--precision-hint", choices=["auto", "bf16", "f32"], default="auto", help="openvino")
    ap.add_argument("--ckpt", type=Path, help="this checkpoint instead of random-weight presets")
    ap.add_argument("--encoder-preset", choices=ENCODER_PRESETS, help="x264's (default: its own, medium)")
    ap.add_argument("--video", type=Path, default=ROOT.parent / "shared" / "data" / "video" / "pose_1.mp4")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scam-bench-runtime-"))
    frames = FrameRange(0, args.frames - 1)
    masks = write_label_maps(args.video, frames, tmp / "masks", max(args.threads))
    calibration = linked_split(split_names("ccp-train"), "labels3", tmp / "calibration")
    combos = [(p, t, b) for p in args.providers for t in args.threads for b in args.batch]
    for preset in [args.ckpt.stem] if args.ckpt else args.presets:
        ckpt = args.ckpt or random_checkpoint(tmp / f"{preset}.pt", preset=preset, height=256, width=170)
        bundle = tmp / f"{preset}.bundle"
        export_bundle(ckpt, bundle, ExportOptions(precision=args.precision, max_batch=max(8, *args.batch),
                                                  calibration=str(calibration) if args.precision == "int8" else None),
                      log=lambda m: None)
        if "trt-engine" in args.providers:
            build_engines(bundle, log=lambda m: None)
        runs = {}
        for provider, threads, batch in combos:
            replacer = SubjectReplacer(bundle, backend=BackendOptions(provider, threads=threads,
                                                                      precision_hint=args.precision_hint),
                                       warn=lambda m: None)
            rng = np.random.default_rng(0)
            h, w = replacer.bundle.height, replacer.bundle.width
            subject = replacer.encode_subject(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), person_labels(h, w))
            replacer.expect_batch(batch)
            replacer.times.clear()
            runs[provider, threads, batch] = (replacer, subject, [])
        for r in range(args.rounds):
            for (provider, threads, batch), (replacer, subject, fps) in runs.items():
                start = time.perf_counter()
                n = replace_video(args.video, subject, tmp / "out.mp4", replacer=replacer, progress="none",
                                  options=VideoOptions(masks=masks.spec, frames=f"0-{args.frames - 1}", batch=batch,
                                                       audio="none", overwrite=True,
                                                       encoder_preset=args.encoder_preset)).frames
                fps.append(n / (time.perf_counter() - start))
                print(f"round {r + 1}/{args.rounds}: {provider}, {threads} threads, batch {batch}: {fps[-1]:.2f} fps",
                      file=sys.stderr, flush=True)

        # pure inference and eager on the same model inputs, per provider and thread count
        reader = VideoReader(args.video)
        inputs = []
        model_hw = (replacer.bundle.height, replacer.bundle.width)
        for frame in reader.frames(frames):
            fit = Fit.compute(frame.image.shape[:2], model_hw)
            labels = fit.labels_to_model(read_labels(masks.path(frame.index, frame.number)))
            inputs.append((fit.image_to_model(frame.image)[None], labels[None]))
        reader.close()
        _, enc, gen = load_checkpoint(ckpt)
        pure, eager = {}, {}
        for provider, threads, batch in combos:
            if (provider, threads) in pure:
                continue
            replacer = runs[provider, threads, batch][0]
            torch.set_num_threads(threads)
            device = torch.device("cpu" if provider in CPU_PROVIDERS else "cuda")
            enc, gen = enc.to(device), gen.to(device)

            def graphs(x: np.ndarray, lab: np.ndarray) -> None:
                replacer.generator.run(labels=lab, latents=replacer.encoder.run(image=x, labels=lab))

            @torch.no_grad()
            def eager_step(x: np.ndarray, lab: np.ndarray) -> None:
                mask = one_hot(torch.from_numpy(lab).long().to(device), len(replacer.bundle.labels))
                gen(mask, enc(torch.from_numpy(x).to(device), mask)).cpu()

            pure[provider, threads] = fps_of(graphs, inputs)
            eager[provider, threads] = fps_of(eager_step, inputs)

        print(f"# {preset}: {args.video.name}, {args.frames} frames, median of {args.rounds} interleaved rounds, "
              f"bundle at {model_hw[0]}x{model_hw[1]} {args.precision} "
              f"({replacer.bundle.manifest['attention_path']} attention; eager: the checkpoint's dense form), H.264 out "
              f"(x264 preset {args.encoder_preset or 'medium'})")
        print("| provider | threads | batch | " + " | ".join(f"{s} (ms/frame)" for s in STAGES)
              + " | end-to-end fps | pure inference fps | e2e / pure | eager fps | backend / eager |")
        print("|---" * (len(STAGES) + 8) + "|")
        e2e = {}
        for (provider, threads, batch), (replacer, _, fps) in runs.items():
            frames_run = args.frames * args.rounds
            wall, cpu = replacer.times.seconds, replacer.times.cpu_seconds
            cells = " | ".join(f"{wall.get(s, 0.0) / frames_run * 1e3:.1f} ({cpu.get(s, 0.0) / frames_run * 1e3:.1f})"
                               for s in STAGES)
            e2e[provider, threads, batch] = statistics.median(fps)
            p = pure[provider, threads]
            print(f"| {provider} | {threads} | {batch} | {cells} | {e2e[provider, threads, batch]:.2f} | {p:.2f} | "
                  f"{e2e[provider, threads, batch] / p:.0%} | {eager[provider, threads]:.2f} | "
                  f"{p / eager[provider, threads]:.2f} |")
        base = args.providers[0]
        best = {p: max((c for c in e2e if c[0] == p), key=e2e.get) for p in args.providers}
        for provider in args.providers[1:]:
            same = ", ".join(f"{e2e[c] / e2e[(base, *c[1:])]:.2f}x ({c[1]} threads, batch {c[2]})"
                             for c in e2e if c[0] == provider)
            print(f"\n{provider} against {base}, end to end: best against best "
                  f"{e2e[best[provider]] / e2e[best[base]]:.2f}x ({e2e[best[provider]]:.2f} fps at {best[provider][1]} "
                  f"threads, batch {best[provider][2]}; {e2e[best[base]]:.2f} fps at {best[base][1]} threads, batch "
                  f"{best[base][2]}); at equal settings {same}")


if __name__ == "__main__":
    main()
