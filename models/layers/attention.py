"""Scaled bilinear attention over a sequence (`AttentionType0`, spec wsdec §3.3)."""
import math

import torch
from torch import nn


class BilinearAttention(nn.Module):
    """`score_i = ⟨W f_i, q⟩ / sqrt(query_dim)`, masked softmax over time, `ctx = Σ α_i f_i`.

    `W = Linear(feature_dim, query_dim, bias=False)` is stored as `linear` (original key name).
    The score is computed as `⟨f_i, Wᵀq⟩`, the same number associated the other way: the original
    projects every step's feature (N·T rows through W), this projects the query once per row (N rows),
    which removes W's matmuls over the whole sequence from the step and from its backward.
    """

    def __init__(self, feature_dim: int, query_dim: int):
        super().__init__()
        self.linear = nn.Linear(feature_dim, query_dim, bias=False)
        self.scale = 1.0 / math.sqrt(query_dim)

    def forward(self, features: torch.Tensor, query: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features `(N, T, F)`, query `(N, Q)`, mask `(N, T)` (nonzero = valid) → context `(N, F)`."""
        score = torch.bmm(features, (query @ self.linear.weight).unsqueeze(2)).squeeze(2) * self.scale
        score = score.masked_fill(mask == 0, float('-inf'))
        return torch.einsum('nt,ntf->nf', torch.softmax(score, dim=1), features)
