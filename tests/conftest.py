"""Shared fixtures: the `../shared` folder beside the repository, small configs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT.parent / "shared").resolve()

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    # `-n N` runs N processes: each gets its share of the cores (inherited by the CLIs the tests
    # start). OpenMP's spinning threads, two per process on a 2-core machine, made small training tests ~15x slower.
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


@pytest.fixture(scope="session")
def shared() -> Path:
    """`../shared` from the repo root; CI has it, so its absence is an error, not a skip."""
    if not (SHARED / "spec").is_dir():
        pytest.fail(f"{SHARED} not found: clone the project beside its shared/ folder")
    return SHARED


TINY = dict(latent_dim=32, attn_dim=32, latents_per_label=2, latents_bg=2, gen_blocks=4, gen_nf=8,
            enc_nf=4, enc_blocks=3, enc_posemb_dim=8)
"""A config that exports in seconds, for error paths."""


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory) -> Path:
    """fp32 bundle of a random-weight `small` model at 128×128 (folded attention)."""
    from scam_export.bundle import ExportOptions, export_bundle
    folder = tmp_path_factory.mktemp("small_bundle")
    from models.synthetic import random_checkpoint
    ckpt = random_checkpoint(folder / "model.pt")
    return export_bundle(ckpt, folder / "model.bundle", ExportOptions(), log=lambda m: None) and folder / "model.bundle"


def make_video(path: Path, n: int = 12, size: tuple[int, int] = (96, 128), fps: int = 12,
               audio: bool = True) -> list:
    """A lossless (FFV1, RGB) synthetic clip with an AAC track; returns its RGB frames."""
    import av
    import numpy as np
    h, w = size
    frames = []
    with av.open(str(path), "w") as c:
        v = c.add_stream("ffv1", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "bgr0"
        a = c.add_stream("aac", rate=16000) if audio else None
        if a is not None:
            a.layout = "mono"
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (i * 20) % 255
            img[..., 1] = (np.arange(w)[None] * 2) % 255
            img[..., 2] = (np.arange(h)[:, None] * 2) % 255
            img[h // 4: 3 * h // 4, w // 3 + i: 2 * w // 3 + i] = 200
            frames.append(img)
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="bgr0")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        if a is not None:
            samples = int(16000 * n / fps)
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16000)).astype(np.float32)[None]
            for s0 in range(0, samples, 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, s0:s0 + 1024]), format="fltp", layout="mono")
                af.sample_rate, af.pts = 16000, s0
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return frames


def make_plate(folder: Path, n: int, seed: int, audio: bool = True) -> list:
    """`in.mkv` (`make_video`), its label maps `masks/NNNN.png` (the person moving right),
    a subject `actor.png` and its label map `actor_mask.png`; returns the clip's frames."""
    import numpy as np
    from PIL import Image

    from models.synthetic import person_labels
    frames = make_video(folder / "in.mkv", n=n, audio=audio)
    (folder / "masks").mkdir()
    for i in range(n):
        Image.fromarray(person_labels(96, 128, shift=i)).save(folder / "masks" / f"{i:04d}.png")
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (200, 120, 3), dtype=np.uint8)).save(folder / "actor.png")
    Image.fromarray(person_labels(200, 120)).save(folder / "actor_mask.png")
    return frames


def tensorrt_gpu_reason() -> str | None:
    """Why TensorRT engines cannot be built or run here, or None on a GPU machine with TensorRT."""
    from scam_runtime.backend import ProviderUnavailable
    from scam_runtime.engines import current_device, tensorrt_module
    try:
        tensorrt_module()
        current_device()
    except ProviderUnavailable as exc:
        return f"TensorRT engines cannot run here: {exc}"
    return None
