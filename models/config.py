"""Every hyper-parameter of the SCAM networks, in one serialisable dataclass."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

PRESETS = ("paper", "small")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of encoder, generator and discriminator.

    Defaults are the spec's (`paper`) values; `labels[0]` is always the background.
    The config is stored as plain data in checkpoints and bundles (`to_dict`).
    """

    labels: tuple[str, ...] = ("background", "face", "body")
    height: int = 256
    width: int = 256
    latents_per_label: int = 8          # k
    latents_bg: int = 8                 # k_bg
    latent_dim: int = 256               # d
    attn_dim: int = 256                 # d_attn
    heads: int = 1
    enc_blocks: int = 7                 # L_E
    enc_posemb_dim: int = 40
    enc_nf: int = 16                    # level i has enc_nf * 2**i channels
    gen_blocks: int = 6                 # L_G
    gen_nf: int = 64                    # nf
    disc_scales: int = 2
    disc_nf: int = 64
    disc_layers: int = 4
    disc_spectral_norm: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(str(n) for n in self.labels))
        if len(self.labels) < 2:
            raise ValueError("a SCAM model needs at least 2 labels (background + one)")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"duplicate label names in {self.labels}")
        for name in ("height", "width", "latents_per_label", "latents_bg", "latent_dim",
                     "attn_dim", "heads", "enc_blocks", "enc_nf", "gen_nf", "disc_scales",
                     "disc_nf", "disc_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.gen_blocks < 4:
            raise ValueError(f"gen_blocks must be at least 4, got {self.gen_blocks}")
        if self.attn_dim % self.heads:
            raise ValueError(f"attn_dim {self.attn_dim} is not divisible by heads {self.heads}")
        if self.enc_posemb_dim % 4 or self.enc_posemb_dim < 4:
            raise ValueError(f"enc_posemb_dim must be a positive multiple of 4, got {self.enc_posemb_dim}")
        if self.enc_nf % 2:
            raise ValueError(f"enc_nf must be even (level 1 has 2*enc_nf channels), got {self.enc_nf}")
        if self.gen_nf % 4:
            raise ValueError(f"gen_nf must be a multiple of 4, got {self.gen_nf}")
        h0, w0 = self.start_size
        if min(h0, w0) < 2:
            raise ValueError(
                f"{self.height}x{self.width} is too small for {self.gen_blocks} generator blocks "
                f"(start map {h0}x{w0}, needs at least 2x2)")

    @property
    def num_labels(self) -> int:
        """s: number of semantic labels, background included."""
        return len(self.labels)

    @property
    def num_latents(self) -> int:
        """m = k_bg + (s - 1) * k."""
        return self.latents_bg + (self.num_labels - 1) * self.latents_per_label

    @property
    def start_size(self) -> tuple[int, int]:
        """Generator start map (h0, w0), the reference rule with its landscape slip fixed."""
        scale = 2 ** self.gen_blocks
        if self.width <= self.height:
            w0 = self.width // scale
            return round(w0 * self.height / self.width), w0
        h0 = self.height // scale
        return h0, round(h0 * self.width / self.height)

    @classmethod
    def preset(cls, name: str, labels: Sequence[str], height: int = 256, width: int = 256,
               **overrides: Any) -> "ModelConfig":
        """`paper`: the spec's values. `small`: half the latent width (128), three quarters
        of the generator's channels (nf 48), half the discriminator's (its training speed:
        `python bench/train.py`, docs/reference-notes.md)."""
        if name == "paper":
            values: dict[str, Any] = {}
        elif name == "small":
            values = dict(latent_dim=128, attn_dim=128, gen_nf=48, disc_nf=32)
        else:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(labels=tuple(labels), height=height, width=width, **{**values, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain data (str, int, bool, list) that `torch.load(weights_only=True)` accepts."""
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)
