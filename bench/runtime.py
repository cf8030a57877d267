"""End-to-end subject replacement: per-stage time, end-to-end fps, against the
pure-inference fps of the same graphs and against PyTorch eager of the same checkpoint.

    python bench/runtime.py [--presets small paper] [--frames 60] [--batch 1]
    python bench/runtime.py --provider trt-engine --precision fp16   # GPU: engines built first
    python bench/runtime.py --ckpt models/default_model.pt --precision int8 --provider openvino

On a GPU provider the eager baseline runs on CUDA too (fp32).

Input: ../shared/data/video/pose_1.mp4 (576×576, 30 fps) with per-frame label maps made by
the built-in parser before the timed run and read back from PNG files during it (what
`scam-run video --masks DIR` does: the matte and blend cost depends on the person's
extent, so the maps must look like real ones), random-weight checkpoints exported at
256×170 (the fit letterboxes the square frame), or `--ckpt` at its own resolution; int8
bundles are calibrated on the ccp-train photos (labels3). Output: H.264.
Stage seconds are summed over the streaming run, whose threads overlap decode, inference
and encode; "pure inference" runs the two graphs alone on the same model inputs.
"""
from __future__ import annotations

import argparse
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
from scam_runtime.jobs import VideoOptions, replace_video  # noqa: E402
from scam_runtime.labels import MaskFiles, read_labels  # noqa: E402
from scam_runtime.media import FrameRange, VideoReader  # noqa: E402
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
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--provider", choices=PROVIDER_CHOICES, default="cpu")
    ap.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32")
    ap.add_argument("--precision-hint", choices=["auto", "bf16", "f32"], default="auto", help="openvino")
    ap.add_argument("--ckpt", type=Path, help="this checkpoint instead of random-weight presets")
    ap.add_argument("--video", type=Path, default=ROOT.parent / "shared" / "data" / "video" / "pose_1.mp4")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="scam-bench-runtime-"))
    frames = FrameRange(0, args.frames - 1)
    masks = write_label_maps(args.video, frames, tmp / "masks", args.threads)
    rows = []
    calibration = linked_split(split_names("ccp-train"), "labels3", tmp / "calibration")
    for preset in [args.ckpt.stem] if args.ckpt else args.presets:
        ckpt = args.ckpt or random_checkpoint(tmp / f"{preset}.pt", preset=preset, height=256, width=170)
        bundle = tmp / f"{preset}.bundle"
        export_bundle(ckpt, bundle, ExportOptions(precision=args.precision, max_batch=max(8, args.batch),
                                                  calibration=str(calibration) if args.precision == "int8" else None),
                      log=lambda m: None)
        if args.provider == "trt-engine":
            build_engines(bundle, log=lambda m: None)
        replacer = SubjectReplacer(bundle, backend=BackendOptions(args.provider, threads=args.threads,
                                                                  precision_hint=args.precision_hint),
                                   warn=lambda m: None)
        rng = np.random.default_rng(0)
        h, w = replacer.bundle.height, replacer.bundle.width
        subject = replacer.encode_subject(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), person_labels(h, w))
        replacer.times.seconds.clear()
        start = time.perf_counter()
        n = replace_video(args.video, subject, tmp / f"{preset}.mp4", replacer=replacer, progress="none",
                          options=VideoOptions(masks=masks.spec, frames=f"0-{args.frames - 1}", batch=args.batch,
                                               audio="none")).frames
        wall = time.perf_counter() - start
        stages = dict(replacer.times.seconds)

        # pure inference and eager on the same model inputs
        reader = VideoReader(args.video)
        inputs = []
        for frame in reader.frames(frames):
            fit = Fit.compute(frame.image.shape[:2], (replacer.bundle.height, replacer.bundle.width))
            labels = fit.labels_to_model(read_labels(masks.path(frame.index, frame.number)))
            inputs.append((fit.image_to_model(frame.image)[None], labels[None]))
        reader.close()
        _, enc, gen = load_checkpoint(ckpt)
        device = torch.device("cpu" if args.provider in ("cpu", "openvino") else "cuda")
        enc, gen = enc.to(device), gen.to(device)

        def graphs(x: np.ndarray, lab: np.ndarray) -> None:
            replacer.generator.run(labels=lab, latents=replacer.encoder.run(image=x, labels=lab))

        @torch.no_grad()
        def eager_step(x: np.ndarray, lab: np.ndarray) -> None:
            mask = one_hot(torch.from_numpy(lab).long().to(device), len(replacer.bundle.labels))
            gen(mask, enc(torch.from_numpy(x).to(device), mask)).cpu()

        pure, eager = (fps_of(step, inputs) for step in (graphs, eager_step))
        rows.append((preset, n, wall, stages, pure, eager))

    print(f"# {args.video.name}, {args.frames} frames, batch {args.batch}, provider {args.provider} "
          f"(CPU {args.threads} threads), bundles at {replacer.bundle.height}x{replacer.bundle.width} {args.precision} "
          f"({replacer.bundle.manifest['attention_path']} attention; eager: the checkpoint's dense form), H.264 out")
    print("| preset | " + " | ".join(f"{s} (ms/frame)" for s in STAGES) + " | end-to-end fps | pure inference fps "
          "| e2e / pure | eager fps | ORT / eager |")
    print("|---" * (len(STAGES) + 6) + "|")
    for preset, n, wall, stages, pure, eager in rows:
        cells = " | ".join(f"{stages.get(s, 0.0) / n * 1e3:.1f}" for s in STAGES)
        e2e = n / wall
        print(f"| {preset} | {cells} | {e2e:.2f} | {pure:.2f} | {e2e / pure:.0%} | {eager:.2f} | {pure / eager:.2f} |")


if __name__ == "__main__":
    main()
