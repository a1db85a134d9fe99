"""WSDEC anchor-based sentence localizer `l(V, C)` (spec wsdec §3.3; wsdec_state_dict.md §3).

15-way anchor classification (`predictor`) plus a per-anchor `(Δc, Δw)` refiner (`refiner`).
"""
import torch
from torch import nn
import torch.nn.functional as F

from models.wsdec.anchors import ANCHOR_LIST
from models.wsdec.feature_mixer import LocalizerBackbone
from utils.segments import cw2se, se2cw, segment_iou

END_CLIP = 1 - 1e-4  # spec §3.3: e = min(c + w/2, 1 - 1e-4)


def clip_segment(cw: torch.Tensor) -> torch.Tensor:
    """`(c, w)` → clipped `(s, e)`: `s = max(c - w/2, 0)`, `e = min(c + w/2, 1 - 1e-4)` (spec §3.3)."""
    s, e = cw2se(cw).unbind(-1)
    return torch.stack([s.clamp(min=0.0), e.clamp(max=END_CLIP)], dim=-1)


class SentenceLocalizer(LocalizerBackbone):
    """Anchor sentence localizer of spec wsdec §3.3 (defaults = `train_final.py`).

    Options reproducing released behaviours (spec §6.3), defaults = the original:
    * `consistent_shift=False` (spec §6.3.1): `forward_diff` (cycle training) omits the
      `-regressor_scale/2` centre shift and the clipping that `forward` (inference) applies.
      `True` applies the same shift in both (clipping stays inference-only).
    * `legacy_regression_target=True` (spec §6.3.2, §3.3 "Supervised loss"): the supervised L1 target
      is `anchor - GT` compared with the unshifted `R`. `False` compares `R - [scale/2, 0]` with
      `GT - anchor`, i.e. what the inference parametrisation needs.
    * `legacy_bn_init=True` (spec §6.4): BatchNorm weights ~ U(0, 1) (see `FeatureMixer`).

    The anchors are a non-persistent buffer: they follow `.to()` but are not in the state dict,
    like the original plain attribute (they live in the config, wsdec_state_dict.md §6).
    """

    def __init__(self, vocab_size=6000, hidden_dim=512, sent_embedding_dim=512, video_feature_dim=500,
                 rnn_layer=2, rnn_dropout=0.3, fc_dropout=0.3, regressor_scale=0.3, anchor_list=ANCHOR_LIST,
                 video_use_residual=True, sent_use_residual=False, consistent_shift=False,
                 legacy_regression_target=True, legacy_bn_init=True):
        super().__init__(vocab_size, hidden_dim, sent_embedding_dim, video_feature_dim, rnn_layer, rnn_dropout,
                         fc_dropout, video_use_residual, sent_use_residual, legacy_bn_init)
        self.register_buffer('anchor', torch.tensor(anchor_list, dtype=torch.float32), persistent=False)
        num_anchors = len(anchor_list)
        self.predictor = nn.Linear(3 * hidden_dim, num_anchors)
        self.refiner = nn.Linear(3 * hidden_dim, 2 * num_anchors)
        self.regressor_scale = regressor_scale
        self.consistent_shift = consistent_shift
        self.legacy_regression_target = legacy_regression_target

    def forward(self, video, video_length, video_mask, sent, sent_length, sent_mask, sent_gather_idx,
                mode='forward', video_encoding=None):
        """Localize each sentence `n` in video `sent_gather_idx[n]` (inputs: `mixed_features`).

        mode 'forward' → `(score (N, A) logits, R (N, A, 2) in (0, scale), [s, e]·duration (N, 2) seconds)`
        with `c = a_c + R_c - scale/2`, `w = a_w + R_w` of the argmax anchor, clipped;
        'diff' → `(c, w)` = anchor + R (differentiable w.r.t. the refiner and its inputs, not the
        classifier), unshifted and unclipped unless `consistent_shift`;
        'eval' → normalised `(c, w)` of the clipped 'forward' segment.
        """
        mixed, duration = self.mixed_features(video, video_length, video_mask, sent, sent_length, sent_mask,
                                              sent_gather_idx, mode, video_encoding)
        score = self.predictor(mixed)
        refine = torch.sigmoid(self.refiner(mixed)).view(mixed.size(0), -1, 2) * self.regressor_scale
        best = score.argmax(dim=1)  # non-differentiable; ties → lowest anchor index
        cw = self.anchor[best] + refine[torch.arange(best.numel(), device=best.device), best]
        if mode == 'diff':  # spec §3.3 "forward_diff", §6.3.1: unshifted, unclipped
            return cw - self._centre_shift() if self.consistent_shift else cw
        se = clip_segment(cw - self._centre_shift())
        if mode == 'eval':
            return se2cw(se)
        return score, refine, se * duration.unsqueeze(1)

    def _centre_shift(self):
        return torch.tensor([self.regressor_scale / 2, 0.0], device=self.anchor.device)

    def anchor_labels(self, gt_se: torch.Tensor) -> torch.Tensor:
        """`argmax_k IoU(GT, anchor_k)` for normalised GT `(s, e)` (N, 2); ties → lowest index."""
        return segment_iou(gt_se.unsqueeze(1), cw2se(self.anchor).unsqueeze(0)).argmax(dim=1)

    def build_loss(self, score, refine, gt_se, lambda_=0.1):
        """Supervised loss of `train_sl.py`: `CE(score, label) + λ·L1(R[label], target)` (spec §3.3).

        gt_se `(N, 2)`: GT segment, normalised `(s, e)`. See `legacy_regression_target`.
        """
        label = self.anchor_labels(gt_se)
        anchor = self.anchor[label]
        predicted = refine[torch.arange(label.numel(), device=label.device), label]
        if self.legacy_regression_target:
            delta = cw2se(anchor) - gt_se  # Δ = anchor_se - gt_se → [(Δs+Δe)/2, Δe-Δs]
            target = torch.stack([(delta[:, 0] + delta[:, 1]) / 2, delta[:, 1] - delta[:, 0]], dim=1)
        else:
            predicted = predicted - self._centre_shift()
            target = se2cw(gt_se) - anchor
        return F.cross_entropy(score, label) + lambda_ * F.l1_loss(predicted, target)
