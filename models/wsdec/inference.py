"""Pieces of WSDEC's dense-captioning test procedure (spec wsdec §4.4): initial segments and the
refinement filter/merge. The loop that calls the models lives in the evaluation scripts."""
import torch

from models.wsdec.anchors import anchors
from utils.segments import cw2se, se2cw, segment_hull, segment_iou

__all__ = ['anchors', 'gen_random_segments', 'refine_temporal_segments']


def gen_random_segments(n_rand: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`gen_random_ts`: `n_rand` segments `(c, w)`, `c, w ~ U[0, 1)`, not clipped (spec §4.4 step 3).

    As the original, all `n_rand` centres are drawn first, then all `n_rand` widths (so a seed gives the
    original's segments, not those of one interleaved `(n_rand, 2)` draw). `n_rand == -1` returns the 15
    anchors instead. The original drew one set per batch of videos (shared by the batch); the caller
    decides whether to call this per batch or per video.
    """
    if n_rand == -1:
        return anchors()
    if n_rand <= 0:
        raise ValueError(f"n_rand must be positive or -1 (anchors), got {n_rand}")
    centres = torch.rand(n_rand, generator=generator)
    widths = torch.rand(n_rand, generator=generator)
    return torch.stack([centres, widths], dim=1)


def _drops(iou: float, drop_iou: float | None, legacy_drop: bool) -> bool:
    if drop_iou is None:
        return False
    return iou > drop_iou if legacy_drop else iou < drop_iou


def refine_temporal_segments(S0, S1, iou_thres=0.9, drop_iou=0.2, legacy_drop=True) -> list[torch.Tensor]:
    """`refine_temporal_segment` of spec wsdec §4.4 step 4, keeping each video's segments together.

    S0, S1: per video, the initial segments and their re-localizations, normalised `(c, w)`: tensors
    `(B, P, 2)` or sequences of `(P_b, 2)`. Both are converted to `(s, e)` clipped to [0, 1]. For each
    video b and each row i in order:
    * drop rule (spec §6.3.3): with `legacy_drop=True` (released behaviour) the row is dropped if
      `IoU(S1_i, S0_i) > drop_iou`; with `legacy_drop=False` it is dropped if `IoU < drop_iou`
      (keep self-consistent proposals); `drop_iou=None` drops nothing;
    * the first kept row of a video is kept as `S1_i`;
    * else if the largest IoU with the video's kept segments is `> iou_thres`, that kept segment
      (first on ties) becomes the hull `[min s, max e]` of the two; else `S1_i` is appended.
    Returns a list with one `(K_b, 2)` tensor of kept `(c, w)` per video, in insertion order;
    `K_b = 0` when every row of the video was dropped (the video then has no prediction).
    """
    kept_per_video = []
    for s0, s1 in zip(S0, S1):
        s0, s1 = cw2se(s0, clip=True), cw2se(s1, clip=True)
        kept = []
        for old, new in zip(s0, s1):
            if _drops(float(segment_iou(new, old)), drop_iou, legacy_drop):
                continue
            if kept:
                ious = segment_iou(new.unsqueeze(0), torch.stack(kept))
                best = int(ious.argmax())
                if float(ious[best]) > iou_thres:
                    kept[best] = segment_hull(kept[best], new)
                    continue
            kept.append(new)
        kept_per_video.append(se2cw(torch.stack(kept)) if kept else s1.new_zeros(0, 2))
    return kept_per_video
