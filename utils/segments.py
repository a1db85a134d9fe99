"""Temporal segment maths shared by models and scripts (spec wsdec §3.3, §4.4, utils/helper_function.py).

Segments are tensors whose last dimension holds two numbers: `(c, w)` = centre/width or `(s, e)` =
start/end, normalised to the video length unless a caller says otherwise.
"""
import torch

DELTA = 1e-4  # spec wsdec conventions: DELTA = 1e-4 (IoU denominator, end clip)


def cw2se(cw: torch.Tensor, clip: bool = False) -> torch.Tensor:
    """`(c, w)` → `(s, e) = (c - w/2, c + w/2)`; with `clip`, both are clamped to [0, 1] (spec §4.4)."""
    c, w = cw.unbind(-1)
    se = torch.stack([c - w / 2, c + w / 2], dim=-1)
    return se.clamp(0.0, 1.0) if clip else se


def se2cw(se: torch.Tensor) -> torch.Tensor:
    """`(s, e)` → `(c, w) = ((s + e)/2, e - s)`."""
    s, e = se.unbind(-1)
    return torch.stack([(s + e) / 2, e - s], dim=-1)


def segment_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of `(s, e)` segments, broadcast over leading dimensions (spec wsdec §3.3, §4.4).

    As in the original: `union = max(e) - min(s)` (the hull, not the true union) and the
    denominator carries `+1e-4`, so disjoint segments get 0 and identical ones slightly < 1.
    """
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    union = torch.maximum(a[..., 1], b[..., 1]) - torch.minimum(a[..., 0], b[..., 0])
    return inter / (union + DELTA)


def segment_hull(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`[min s, max e]` of two `(s, e)` segments (the merge of spec wsdec §4.4)."""
    return torch.stack([torch.minimum(a[..., 0], b[..., 0]), torch.maximum(a[..., 1], b[..., 1])], dim=-1)
