"""Regressor-only sentence localizer of the "no classification" baseline (spec wsdec §3.4;
wsdec_state_dict.md §4): `(c, w) = sigmoid(refiner(x))` directly, no anchors, no `predictor`."""
import torch
from torch import nn

from models.wsdec.feature_mixer import LocalizerBackbone
from models.wsdec.sentence_localizer import clip_segment
from utils.segments import se2cw


class RegressorLocalizer(LocalizerBackbone):
    """Same encoders and mixer as `SentenceLocalizer`; `refiner = Linear(3H, 2)`.

    `legacy_bn_init=True` (default, spec §6.4): BatchNorm weights ~ U(0, 1) (see `FeatureMixer`).
    """

    def __init__(self, vocab_size=6000, hidden_dim=512, sent_embedding_dim=512, video_feature_dim=500,
                 rnn_layer=2, rnn_dropout=0.3, fc_dropout=0.3, video_use_residual=True,
                 sent_use_residual=False, legacy_bn_init=True):
        super().__init__(vocab_size, hidden_dim, sent_embedding_dim, video_feature_dim, rnn_layer, rnn_dropout,
                         fc_dropout, video_use_residual, sent_use_residual, legacy_bn_init)
        self.refiner = nn.Linear(3 * hidden_dim, 2)

    def forward(self, video, video_length, video_mask, sent, sent_length, sent_mask, sent_gather_idx,
                mode='forward', video_encoding=None):
        """mode 'forward' → `(None, R (N, 2), [max(c - w/2, 0), min(c + w/2, 1 - 1e-4)]·duration)` (the
        original's `segment_resolver`, the same clip as the anchor localizer); 'diff' → `R` (unclipped);
        'eval' → the clipped `(c, w)` (spec §3.4). Inputs: `mixed_features`."""
        mixed, duration = self.mixed_features(video, video_length, video_mask, sent, sent_length, sent_mask,
                                              sent_gather_idx, mode, video_encoding)
        cw = torch.sigmoid(self.refiner(mixed))
        if mode == 'diff':
            return cw
        se = clip_segment(cw)
        if mode == 'eval':
            return se2cw(se)
        return None, cw, se * duration.unsqueeze(1)
