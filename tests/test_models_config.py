import pytest

from models import ModelConfig, latent_layout

LABELS3 = ["background", "face", "body"]


def test_paper_preset_holds_spec_values():
    c = ModelConfig.preset("paper", labels=LABELS3, height=256, width=256)
    assert (c.latents_per_label, c.latents_bg, c.latent_dim, c.attn_dim, c.heads) == (8, 8, 256, 256, 1)
    assert (c.enc_blocks, c.enc_posemb_dim, c.enc_nf, c.gen_blocks, c.gen_nf) == (7, 40, 16, 6, 64)
    assert (c.disc_scales, c.disc_nf, c.disc_layers, c.disc_spectral_norm) == (2, 64, 4, False)
    assert c.num_latents == 24


def test_small_preset_is_smaller_and_overridable():
    small = ModelConfig.preset("small", labels=LABELS3, height=256, width=170)
    assert small.latent_dim < 256 and small.gen_nf < 64
    assert ModelConfig.preset("small", labels=LABELS3, gen_nf=16).gen_nf == 16
    with pytest.raises(ValueError, match="unknown preset"):
        ModelConfig.preset("huge", labels=LABELS3)


@pytest.mark.parametrize("hw, start", [((256, 256), (4, 4)), ((256, 170), (3, 2)),
                                       ((170, 256), (2, 3)), ((512, 256), (8, 4))])
def test_start_size_follows_reference_rule(hw, start):
    assert ModelConfig(labels=LABELS3, height=hw[0], width=hw[1]).start_size == start


@pytest.mark.parametrize("kwargs, match", [
    (dict(height=128, width=85), "too small"),
    (dict(labels=["background"]), "at least 2 labels"),
    (dict(labels=["a", "a", "b"]), "duplicate"),
    (dict(attn_dim=250, heads=3), "divisible"),
    (dict(enc_posemb_dim=42), "multiple of 4"),
    (dict(gen_blocks=3), "at least 4"),
])
def test_invalid_configs_are_refused(kwargs, match):
    kwargs = {"labels": LABELS3, **kwargs}
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_dict_round_trip_and_unknown_keys():
    c = ModelConfig.preset("small", labels=LABELS3, height=256, width=170)
    assert ModelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown model config keys: bogus"):
        ModelConfig.from_dict({**c.to_dict(), "bogus": 1})


def test_latent_layout_background_first():
    c = ModelConfig(labels=LABELS3, latents_bg=5, latents_per_label=3)
    assert latent_layout(c) == {"background": slice(0, 5), "face": slice(5, 8), "body": slice(8, 11)}
    assert c.num_latents == 11
