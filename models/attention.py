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
        attn = torch.softmax(logits, dim=-1)
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
