"""Semantic cross attention (SCA) and the SAT operation built on it."""
from __future__ import annotations

import math

import torch
from torch import nn

MASKED_LOGIT = -1e4
"""Logit given to masked pairs (the reference's value; unlike -1e9 it survives fp16)."""

ATTENTION_PATHS = ("dense", "folded")
"""How the networks attend between latents and maps: `dense` is the reference's form (every
pixel projected to `d_attn`); `folded` computes the same function with the projections
folded onto the latents (`latents_attend_pixels`, `pixels_attend_latents`)."""


class SemanticCrossAttention(nn.Module):
    """`X_to` tokens attend `X_from` tokens where `mask` (B×to×from, 1 = allowed) says so.

    A row with no allowed token gets -1e4 everywhere and so attends uniformly, exactly as
    the reference does: trained weights expect that for labels absent from an image.
    """

    def __init__(self, to_dim: int, from_dim: int, attn_dim: int, heads: int) -> None:
        super().__init__()
        if attn_dim % heads:
            raise ValueError(f"attn_dim {attn_dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = math.sqrt(attn_dim // heads)
        self.q = nn.Linear(to_dim, attn_dim)
        self.k = nn.Linear(from_dim, attn_dim)
        self.v = nn.Linear(from_dim, attn_dim)
        self.out = nn.Linear(attn_dim, to_dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.reshape(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, x_to: torch.Tensor, x_from: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self._split(self.q(x_to)), self._split(self.k(x_from)), self._split(self.v(x_from))
        logits = torch.matmul(q, k.transpose(-1, -2)) / self.scale
        if mask is not None:
            logits = logits.masked_fill(mask.unsqueeze(1) == 0, MASKED_LOGIT)
        attn = torch.softmax(logits.float(), dim=-1).to(v.dtype)  # fp32 softmax in fp16/bf16 too
        out = torch.matmul(attn, v).transpose(1, 2).flatten(2)
        return self.out(out)


class SATBlock(nn.Module):
    """SAT operation: `X = LN1(SCA(X, Y) + X); X = LN2(FFN(X) + X)`.

    The LayerNorms normalise over tokens × width jointly (reference), so the number of
    `X` tokens is part of the layer's shape.
    """

    def __init__(self, dim: int, num_tokens: int, from_dim: int, attn_dim: int, heads: int) -> None:
        super().__init__()
        self.attention = SemanticCrossAttention(dim, from_dim, attn_dim, heads)
        self.ln1 = nn.LayerNorm((num_tokens, dim))
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.LeakyReLU(0.2),
                                 nn.Linear(dim, dim), nn.LeakyReLU(0.2))
        self.ln2 = nn.LayerNorm((num_tokens, dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._residuals(x, self.attention(x, y, mask))

    def from_pixels(self, x: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`forward(x, pixels.flatten(2).transpose(1, 2), mask)` for a channel-first map
        `B×C×n`, through `latents_attend_pixels`."""
        return self._residuals(x, latents_attend_pixels(self.attention, x, pixels, mask))

    def _residuals(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        x = self.ln1(attended + x)
        return self.ln2(self.ffn(x) + x)


def _per_head(linear: nn.Linear, heads: int) -> torch.Tensor:
    """A projection's weight `(h·a)×C` as `h×a×C`, in `_split`'s head order."""
    return linear.weight.view(heads, -1, linear.in_features)


def latents_attend_pixels(sca: SemanticCrossAttention, latents: torch.Tensor, pixels: torch.Tensor,
                          mask: torch.Tensor) -> torch.Tensor:
    """`sca(latents, pixels.transpose(1, 2), mask)` for channel-first pixels `B×C×n` and
    `mask` `B×m×n`, with the pixel-side projections folded onto the m latents.

    `q·(W_k x + b_k) = (W_kᵀq)·x + q·b_k`, and as each latent's weights sum to 1 (a fully
    masked row is uniform), `Σ a_p (W_v x_p + b_v) = W_v (Σ a_p x_p) + b_v`: the map is
    never projected to `d_attn` (`n·C·d_attn` multiply-adds twice, most of the reference's
    work at high resolution); only `m·n·C` twice remain.
    """
    h = sca.heads
    q = sca._split(sca.q(latents))                                            # B×h×m×a
    qk = torch.matmul(q, _per_head(sca.k, h))                                 # B×h×m×C
    qb = torch.matmul(q, sca.k.bias.view(h, -1, 1))                           # B×h×m×1
    logits = (torch.matmul(qk, pixels.unsqueeze(1)) + qb) / sca.scale         # B×h×m×n
    logits = logits.masked_fill(mask.unsqueeze(1) == 0, MASKED_LOGIT)
    attn = torch.softmax(logits.float(), dim=-1).to(pixels.dtype)
    pooled = torch.matmul(attn, pixels.transpose(1, 2).unsqueeze(1))          # B×h×m×C
    values = torch.matmul(pooled, _per_head(sca.v, h).transpose(1, 2)) + sca.v.bias.view(h, 1, -1)
    return sca.out(values.transpose(1, 2).flatten(2))


def pixels_attend_latents(sca: SemanticCrossAttention, pixels: torch.Tensor, latents: torch.Tensor,
                          mask: torch.Tensor, then_weight: torch.Tensor, then_bias: torch.Tensor) -> torch.Tensor:
    """`T(sca(pixels.transpose(1, 2), latents, mask.transpose(1, 2)))` channel-first, for
    the linear map `T(y) = then_weight·y + then_bias`: `B×C'×n` for pixels `B×C×n` and
    `mask` `B×m×n`, with every projection folded onto the m latents.

    `(W_q x + b_q)·k_j = (W_qᵀk_j)·x + b_q·k_j`, and with each pixel's weights summing to
    1, `T(W_o Σ a_j v_j + b_o) = Σ a_j (W_T W_o v_j) + W_T b_o + b_T`: per pixel only
    `m·C` and `m·C'` products remain (the reference's per-pixel `C×d_attn` projections and
    `T`'s `C×C'` are gone), all of them plain matrix products.
    """
    h = sca.heads
    k = sca._split(sca.k(latents))                                            # B×h×m×a
    v = sca._split(sca.v(latents))
    p = torch.matmul(k, _per_head(sca.q, h))                                  # B×h×m×C
    pb = torch.matmul(k, sca.q.bias.view(h, -1, 1))                           # B×h×m×1
    logits = (torch.matmul(p, pixels.unsqueeze(1)) + pb) / sca.scale          # B×h×m×n
    logits = logits.masked_fill(mask.unsqueeze(1) == 0, MASKED_LOGIT)
    attn = torch.softmax(logits.float(), dim=2).to(pixels.dtype)              # over the latents
    w_out = torch.matmul(then_weight, sca.out.weight).view(-1, h, sca.out.in_features // h)  # C'×h×a
    u = torch.matmul(w_out.transpose(0, 1).unsqueeze(0), v.transpose(-1, -2))  # B×h×C'×m
    u = u.transpose(1, 2).flatten(2)                                          # B×C'×(h·m)
    bias = torch.matmul(then_weight, sca.out.bias) + then_bias
    return torch.matmul(u, attn.flatten(1, 2)) + bias.view(1, -1, 1)         # heads summed in the product
