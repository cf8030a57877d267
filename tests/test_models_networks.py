"""Shapes, parameter counts, gradients and noise modes of the SCAM networks."""
import pytest
import torch

from models import ModelConfig, PatchGANDiscriminator, SATEncoder, SCAMGenerator, one_hot


def labels(n):
    return ["background"] + [f"label{i}" for i in range(1, n)]


def random_batch(config, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = config.height, config.width
    image = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    ids = torch.randint(0, config.num_labels, (batch, h, w), generator=g)
    return image, one_hot(ids, config.num_labels)


@pytest.mark.parametrize("preset", ["paper", "small"])
@pytest.mark.parametrize("hw", [(128, 128), (256, 170), (128, 192)])
@pytest.mark.parametrize("n_labels", [2, 3, 19])
def test_shapes(preset, hw, n_labels):
    c = ModelConfig.preset(preset, labels=labels(n_labels), height=hw[0], width=hw[1])
    enc, gen = SATEncoder(c).eval(), SCAMGenerator(c, noise_mode="const").eval()
    image, mask = random_batch(c, 2)
    with torch.no_grad():
        z = enc(image, mask)
        out = gen(mask, z)
    assert z.shape == (2, c.num_latents, c.latent_dim)
    assert out.shape == (2, 3, *hw)
    assert out.abs().max() <= 1 and torch.isfinite(out).all()


@pytest.mark.parametrize("n_labels, enc_params, gen_params", [
    (3, 12_301_632, 78_991_186), (19, 14_169_408, 80_711_506)])
def test_paper_parameter_counts_equal_reference(n_labels, enc_params, gen_params):
    c = ModelConfig.preset("paper", labels=labels(n_labels), height=256, width=256)
    assert sum(p.numel() for p in SATEncoder(c).parameters()) == enc_params
    assert sum(p.numel() for p in SCAMGenerator(c).parameters()) == gen_params


def test_wrong_inputs_are_refused():
    c = ModelConfig.preset("small", labels=labels(3), height=128, width=128)
    enc, gen = SATEncoder(c), SCAMGenerator(c)
    image, mask = random_batch(c, 1)
    with pytest.raises(ValueError, match="one-hot B×3×H×W"):
        enc(image, mask[:, :2])
    with pytest.raises(ValueError, match="image must be B×3×128×128"):
        enc(image[:, :1], mask)
    with pytest.raises(ValueError, match="latents must be"):
        gen(mask, torch.zeros(1, c.num_latents + 1, c.latent_dim))
    with pytest.raises(ValueError, match="must be \\(128, 128\\)"):
        gen(mask[..., :64], torch.zeros(1, c.num_latents, c.latent_dim))
    with pytest.raises(ValueError, match="noise_mode"):
        gen(mask, torch.zeros(1, c.num_latents, c.latent_dim), noise_mode="loud")
    with pytest.raises(ValueError, match="label ids"):
        one_hot(torch.tensor([[[0, 3]]]), 3)


def test_backward_reaches_every_parameter():
    c = ModelConfig.preset("small", labels=labels(3), height=128, width=128)
    enc, gen, disc = SATEncoder(c), SCAMGenerator(c), PatchGANDiscriminator(c)
    image, mask = random_batch(c, 2)
    fake = gen(mask, enc(image, mask))
    loss = (fake - image).abs().mean() + sum(f.mean() for scale in disc(fake, mask) for f in scale)
    loss.backward()
    for net in (enc, gen, disc):
        for name, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{type(net).__name__}.{name} gets no gradient"


def _noisy_generator(c):
    gen = SCAMGenerator(c).eval()
    with torch.no_grad():  # noise strengths start at 0; make the noise visible
        for name, p in gen.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    return gen


def test_noise_modes():
    c = ModelConfig.preset("small", labels=labels(3), height=128, width=128)
    gen = _noisy_generator(c)
    _, mask = random_batch(c, 2)
    z = torch.randn(2, c.num_latents, c.latent_dim)
    with torch.no_grad():
        const = [gen(mask, z, noise_mode="const") for _ in range(2)]
        random = [gen(mask, z, noise_mode="random") for _ in range(2)]
        none = gen(mask, z, noise_mode="none")
        gen.noise_mode = "const"
        default = gen(mask, z)
    assert torch.equal(const[0], const[1]) and torch.equal(const[0], default)
    assert not torch.equal(random[0], random[1])
    assert not torch.equal(const[0], none)
    torch.manual_seed(7)
    a = gen(mask, z, noise_mode="random")
    torch.manual_seed(7)
    assert torch.equal(a, gen(mask, z, noise_mode="random"))
    # every noisy layer keeps a buffer at its own map size, batch-independent
    shapes = {tuple(b.shape) for n, b in gen.named_buffers() if n.endswith("noise_const")}
    assert (1, 1, 128, 128) in shapes and (1, 1, 2, 2) in shapes


def test_discriminator_two_scales_with_features():
    c = ModelConfig.preset("paper", labels=labels(3), height=256, width=170)
    disc = PatchGANDiscriminator(c)
    image, mask = random_batch(c, 2)
    with torch.no_grad():
        out = disc(image, mask)
    assert len(out) == 2 and all(len(scale) == 5 for scale in out)
    assert [f.shape[1] for f in out[0]] == [64, 128, 256, 512, 1]
    assert out[0][-1].shape == (2, 1, 35, 25) and out[1][-1].shape == (2, 1, 19, 14)
    sn = PatchGANDiscriminator(ModelConfig.preset("paper", labels=labels(3), disc_spectral_norm=True))
    assert sum("parametrizations" in n for n, _ in sn.named_parameters()) == 2 * 3


def test_nearest_resize_equals_interpolate():
    """The constant-index resize the networks use is F.interpolate's legacy nearest, bit for bit,
    including ratios where float rounding moves a source row (14 → 20, 120 → 256)."""
    from models.layout import NearestResize
    pairs = [((120, 80), (256, 170)), ((14, 7), (20, 9)), ((256, 170), (15, 10)), ((255, 171), (128, 86)),
             ((3, 2), (256, 170)), ((64, 64), (64, 32))]
    resize = NearestResize(pairs)
    for src, dst in pairs:
        x = torch.randn(2, 3, *src)
        assert torch.equal(resize(x, dst), torch.nn.functional.interpolate(x, size=dst, mode="nearest"))
