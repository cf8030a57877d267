"""Semantic cross attention (SCA) and the SAT operation built on it."""
from __future__ import annotations

import math

import torch
from torch import nn

MASKED_LOGIT = -1e4
"""Logit given to masked pairs (the reference's value; unlike -1e9 it survives fp16)."""


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
        x = self.ln1(self.attention(x, y, mask) + x)
        return self.ln2(self.ffn(x) + x)


def label_sparse_attention(sca: SemanticCrossAttention, pixels: torch.Tensor, latents: torch.Tensor,
                           pixel_labels: torch.Tensor, group: int) -> torch.Tensor:
    """`sca(pixels, latents, mask)` where each pixel may attend only the `group` latents of its
    own label (latents stored label by label, `group` each): O(n·k) instead of O(n·m).

    The projections are folded onto the latent side (`q·k_j = x·(W_qᵀk_j) + b_q·k_j` and
    `W_o Σ a_j v_j = Σ a_j (W_o v_j)`), so per pixel only `k·heads` dot products of the
    map's width remain; each pixel gathers its label's rows. Equal to the dense masked path
    up to float rounding: there, the other labels' logits are -1e4 and weigh exactly 0.
    """
    b, n, c = pixels.shape
    h = sca.heads
    a = sca.q.out_features // h
    s = latents.shape[1] // group
    k = sca._split(sca.k(latents))                                   # B×h×m×a
    v = sca._split(sca.v(latents))
    w_q = sca.q.weight.view(h, a, c)
    p = torch.matmul(k, w_q)                                         # B×h×m×C
    bias = (k * sca.q.bias.view(1, h, 1, a)).sum(-1)                 # B×h×m
    u = torch.matmul(v, sca.out.weight.view(c, h, a).permute(1, 2, 0))  # B×h×m×C

    def by_label(t: torch.Tensor) -> torch.Tensor:                  # B×h×m×… -> (B·s)×(k·h)×…
        t = t.reshape(b, h, s, group, -1).permute(0, 2, 3, 1, 4)
        return t.reshape(b * s, group * h, t.shape[-1])

    rows = (pixel_labels + torch.arange(b, device=pixels.device).view(b, 1) * s).reshape(-1)
    p_pix = by_label(p).index_select(0, rows).view(b, n, group * h, c)
    bias_pix = by_label(bias.unsqueeze(-1)).index_select(0, rows).view(b, n, group * h)
    logits = (torch.matmul(p_pix, pixels.unsqueeze(-1)).squeeze(-1) + bias_pix) / sca.scale
    attn = torch.softmax(logits.view(b, n, group, h).float(), dim=2).to(u.dtype).view(b, n, 1, group * h)
    u_pix = by_label(u).index_select(0, rows).view(b, n, group * h, c)
    return torch.matmul(attn, u_pix).squeeze(2) + sca.out.bias
