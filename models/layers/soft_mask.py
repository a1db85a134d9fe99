"""Differentiable soft temporal masks and the masked-mean context (spec wsdec §3.2.3-§3.2.4).

The masks are the only path through which the caption loss reaches the segment `(c, w)`, and so the
sentence localizer, in WSDEC's cycle training.
"""
import torch

MEAN_EPS = 1e-4  # spec wsdec §3.2.4: ctx = Σ m·v / (Σ m + 1e-4)


def soft_temporal_masks(segment: torch.Tensor, length: torch.Tensor, num_steps: int,
                        scale: float = 0.1) -> dict[str, torch.Tensor]:
    """Left, centre and right soft masks of segments, in step units (spec wsdec §3.2.3).

    segment: `(N, 2)` normalised `(c, w)` (not clipped); length: `(N,)` valid steps `L`;
    returns `{'l', 'c', 'r'}`, each `(N, num_steps)`, with `c' = c·L`, `w' = w·L`, `t = 0…T-1`:
    `m_c = σ(k(t - c' + w'/2)) - σ(k(t - c' - w'/2))`, `m_l = σ(-k(t - c' + w'/2))`,
    `m_r = σ(k(t - c' - w'/2))`, `k = scale`. Padding is not masked here (see `masked_mean`).
    """
    length = length.to(segment.dtype).unsqueeze(1)
    start = segment[:, :1] * length - segment[:, 1:] * length / 2
    end = segment[:, :1] * length + segment[:, 1:] * length / 2
    t = torch.arange(num_steps, device=segment.device, dtype=segment.dtype).unsqueeze(0)
    after_start = torch.sigmoid(scale * (t - start))
    after_end = torch.sigmoid(scale * (t - end))
    return {'l': torch.sigmoid(-scale * (t - start)), 'c': after_start - after_end, 'r': after_end}


def masked_mean(values: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """`AttentionMean` under a soft mask: `Σ_t m_t·v_t / (Σ_t m_t + 1e-4)` with `m = mask·valid`.

    values `(N, T, H)`, mask `(N, T)` soft weights, valid `(N, T)` 0/1 video mask → `(N, H)`; several masks
    `(N, S, T)` at once (one batched matmul) → `(N, S, H)`.
    """
    weight = mask * valid.unsqueeze(1) if mask.dim() == 3 else (mask * valid).unsqueeze(1)
    mean = torch.bmm(weight, values) / (weight.sum(2, keepdim=True) + MEAN_EPS)
    return mean if mask.dim() == 3 else mean.squeeze(1)
