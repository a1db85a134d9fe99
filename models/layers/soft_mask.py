"""Differentiable soft temporal masks and the masked-mean context (spec wsdec §3.2.3-§3.2.4).

The masks are the only path through which the caption loss reaches the segment `(c, w)`, and so the
sentence localizer, in WSDEC's cycle training.
"""
import torch

MEAN_EPS = 1e-4  # spec wsdec §3.2.4: ctx = Σ m·v / (Σ m + 1e-4)


def context_mask_l(t, centre, width, scale):
    """`ContextMaskL`: `σ(-k(t - c' + w'/2))`, before the start."""
    return torch.sigmoid(-scale * (t - centre + width / 2))


def context_mask_c(t, centre, width, scale):
    """`ContextMaskC`: `σ(k(t - c' + w'/2)) - σ(k(t - c' - w'/2))`, inside the segment."""
    return torch.sigmoid(scale * (t - centre + width / 2)) - torch.sigmoid(scale * (t - centre - width / 2))


def context_mask_r(t, centre, width, scale):
    """`ContextMaskR`: `σ(k(t - c' - w'/2))`, after the end."""
    return torch.sigmoid(scale * (t - centre - width / 2))


def soft_temporal_masks(segment: torch.Tensor, length: torch.Tensor, num_steps: int,
                        scale: float = 0.1) -> dict[str, torch.Tensor]:
    """Left, centre and right soft masks of segments, in step units (spec wsdec §3.2.3).

    segment: `(N, 2)` normalised `(c, w)` (not clipped); length: `(N,)` valid steps `L`;
    returns `{'l', 'c', 'r'}`, each `(N, num_steps)`, with `c' = c·L`, `w' = w·L`, `t = 0…T-1`, `k = scale`.
    As in the original, each mask is computed on its own, with the original's operation order (no term is
    shared between the centre and right masks, so values and gradients round as the original's do; this
    matters at width 0, where the masked mean's `+1e-4` magnifies rounding). Padding is not masked here
    (see `masked_mean`).
    """
    length = length.to(segment.dtype).unsqueeze(1)
    centre, width = segment[:, :1] * length, segment[:, 1:] * length  # the original's `temp_seg * L`
    t = torch.arange(num_steps, device=segment.device, dtype=segment.dtype).unsqueeze(0)
    return {side: mask(t, centre, width, scale)
            for side, mask in (('l', context_mask_l), ('c', context_mask_c), ('r', context_mask_r))}


def masked_mean(values: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """`AttentionMean` under a soft mask: `Σ_t m_t·v_t / (Σ_t m_t + 1e-4)` with `m = mask·valid`.

    values `(N, T, H)`, mask `(N, T)` soft weights, valid `(N, T)` 0/1 video mask → `(N, H)`; several masks
    `(N, S, T)` at once (one batched matmul) → `(N, S, H)`.
    """
    weight = mask * valid.unsqueeze(1) if mask.dim() == 3 else (mask * valid).unsqueeze(1)
    mean = torch.bmm(weight, values) / (weight.sum(2, keepdim=True) + MEAN_EPS)
    return mean if mask.dim() == 3 else mean.squeeze(1)
