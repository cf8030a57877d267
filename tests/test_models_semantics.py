"""Semantic routing of SCA: pixels see only their label's latents, and vice versa."""
import torch

from models import ModelConfig, SATEncoder, SemanticCrossAttention, assignment_matrix, latent_layout, one_hot
from models.layout import expand_mask, latent_labels

CONFIG = ModelConfig(labels=("background", "face", "body", "shoes"), latents_bg=3,
                     latents_per_label=2, latent_dim=16, attn_dim=8, heads=2)
H, W, C = 6, 5, 12


def label_map(absent: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, CONFIG.num_labels, (2, H, W), generator=g)
    ids[:, 0, :CONFIG.num_labels] = torch.arange(CONFIG.num_labels)  # every label present
    if absent is not None:
        ids[ids == absent] = 0
    return ids


def pixel_mask(ids: torch.Tensor) -> torch.Tensor:
    """Latents' B×m×n mask, built with the models' own expansion."""
    return expand_mask(one_hot(ids, CONFIG.num_labels), assignment_matrix(CONFIG))


def test_expansion_is_label_membership():
    ids = label_map()
    mask = pixel_mask(ids)
    expected = (latent_labels(CONFIG)[None, :, None] == ids.flatten(1)[:, None, :]).float()
    assert torch.equal(mask, expected)


def test_pixel_output_depends_only_on_own_label_latents():
    torch.manual_seed(0)
    sca = SemanticCrossAttention(C, CONFIG.latent_dim, CONFIG.attn_dim, CONFIG.heads)
    ids = label_map()
    pixels = torch.randn(2, H * W, C)
    z = torch.randn(2, CONFIG.num_latents, CONFIG.latent_dim)
    mask_t = pixel_mask(ids).transpose(1, 2)
    base = sca(pixels, z, mask_t)
    for label, sl in enumerate(latent_layout(CONFIG).values()):
        z2 = z.clone()
        z2[:, sl] += 10 * torch.randn_like(z2[:, sl])
        out = sca(pixels, z2, mask_t)
        own = ids.flatten(1) == label
        assert torch.equal(out[~own], base[~own]), f"latents of label {label} leaked to other pixels"
        assert not torch.allclose(out[own], base[own]), f"pixels of label {label} ignore their latents"


def test_latent_update_depends_only_on_own_label_pixels():
    torch.manual_seed(1)
    sca = SemanticCrossAttention(CONFIG.latent_dim, C, CONFIG.attn_dim, CONFIG.heads)
    ids = label_map()
    pixels = torch.randn(2, H * W, C)
    z = torch.randn(2, CONFIG.num_latents, CONFIG.latent_dim)
    mask = pixel_mask(ids)
    base = sca(z, pixels, mask)
    owner = latent_labels(CONFIG)
    for label in range(CONFIG.num_labels):
        p2 = pixels.clone()
        sel = ids.flatten(1) == label
        p2[sel] += 10 * torch.randn_like(p2[sel])
        out = sca(z, p2, mask)
        assert torch.equal(out[:, owner != label], base[:, owner != label])
        assert not torch.allclose(out[:, owner == label], base[:, owner == label])


def test_latent_self_attention_is_block_diagonal():
    enc = SATEncoder(CONFIG)
    blocks = [torch.ones(CONFIG.latents_bg, CONFIG.latents_bg)] + \
             [torch.ones(CONFIG.latents_per_label, CONFIG.latents_per_label)] * (CONFIG.num_labels - 1)
    assert torch.equal(enc.block_mask[0], torch.block_diag(*blocks))
    sca = enc.blocks[0].self_attention.attention
    z = torch.randn(1, CONFIG.num_latents, CONFIG.latent_dim)
    owner = latent_labels(CONFIG)
    with torch.no_grad():
        base = sca(z, z, enc.block_mask)
        z2 = z.clone()
        z2[:, owner == 2] += 5
        out = sca(z2, z2, enc.block_mask)
    assert torch.equal(out[:, owner != 2], base[:, owner != 2])


def test_absent_label_latents_attend_uniformly():
    """Reference behaviour: a fully masked row gets -1e4 everywhere, i.e. uniform attention."""
    torch.manual_seed(2)
    sca = SemanticCrossAttention(CONFIG.latent_dim, C, CONFIG.attn_dim, CONFIG.heads)
    ids = label_map(absent=2)
    pixels = torch.randn(2, H * W, C)
    z = torch.randn(2, CONFIG.num_latents, CONFIG.latent_dim)
    mask = pixel_mask(ids)
    absent = latent_labels(CONFIG) == 2
    assert mask[:, absent].sum() == 0
    with torch.no_grad():
        out = sca(z, pixels, mask)
        uniform = sca.out(sca.v(pixels).mean(dim=1, keepdim=True)).expand(-1, int(absent.sum()), -1)
    torch.testing.assert_close(out[:, absent], uniform, rtol=1e-5, atol=1e-5)
