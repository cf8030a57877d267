"""Shared fixtures: the `../shared` folder beside the repository, small configs."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT.parent / "shared").resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    """`../shared` from the repo root; CI has it, so its absence is an error, not a skip."""
    if not (SHARED / "spec").is_dir():
        pytest.fail(f"{SHARED} not found: clone the project beside its shared/ folder")
    return SHARED


def make_checkpoint(path: Path, preset: str = "small", labels=("background", "face", "body"),
                    height: int = 128, width: int = 128, seed: int = 0, **overrides) -> Path:
    """A random-weight checkpoint whose noise is switched on (strengths start at 0)."""
    import torch

    from models import ModelConfig, SATEncoder, SCAMGenerator, save_checkpoint
    torch.manual_seed(seed)
    config = ModelConfig.preset(preset, labels=list(labels), height=height, width=width, **overrides)
    encoder, generator = SATEncoder(config), SCAMGenerator(config)
    with torch.no_grad():
        for name, p in generator.named_parameters():
            if name.endswith("noise_strength"):
                p.uniform_(0.05, 0.3)
    return save_checkpoint(path, config, encoder, generator)


TINY = dict(latent_dim=32, attn_dim=32, latents_per_label=2, latents_bg=2, gen_blocks=4, gen_nf=8,
            enc_nf=4, enc_blocks=3, enc_posemb_dim=8)
"""A config that exports in seconds, for error paths."""


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory) -> Path:
    """fp32 bundle of a random-weight `small` model at 128×128 (label-sparse generator)."""
    from scam_export.bundle import ExportOptions, export_bundle
    folder = tmp_path_factory.mktemp("small_bundle")
    ckpt = make_checkpoint(folder / "model.pt")
    return export_bundle(ckpt, folder / "model.bundle", ExportOptions(), log=lambda m: None) and folder / "model.bundle"
