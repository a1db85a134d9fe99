"""Video/sentence encoders and cross-attention feature mixer shared by both WSDEC localizers
(spec wsdec §3.3 "Encoders" … "Feature mixer", §3.4; state dict: wsdec_state_dict.md §3-§4)."""
import torch
from torch import nn

from models.layers.attention import BilinearAttention
from models.layers.gru_encoder import SequenceEncoder, layer_major, select_rows

MODES = ('forward', 'diff', 'eval')  # what a localizer's forward returns, see its docstring


class FeatureMixer(nn.Module):
    """`FeatureMixerType0`: cross attention, then `[fc([t;v]) ; t⊙v ; t+v]` and a 2-layer combiner.

    `legacy_bn_init=True` (default, spec §6.4 "BatchNorm1d weight init U(0,1)"): BatchNorm weights
    are drawn from U(0, 1) as in PyTorch ≤ 1.1, which the released models were trained with;
    `False` keeps the modern init (weight 1).
    """

    def __init__(self, hidden_dim=512, rnn_layer=2, fc_dropout=0.0, legacy_bn_init=True):
        super().__init__()
        query_dim = hidden_dim * rnn_layer
        width = 3 * hidden_dim
        self.video_attention = BilinearAttention(hidden_dim, query_dim)
        self.text_attention = BilinearAttention(hidden_dim, query_dim)
        self.text_batch_norm = nn.BatchNorm1d(hidden_dim)
        self.video_batch_norm = nn.BatchNorm1d(hidden_dim)
        self.fc = nn.Linear(2 * hidden_dim, hidden_dim)
        self.combiner = nn.Sequential(
            nn.Linear(width, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(fc_dropout),
            nn.Linear(width, width, bias=False), nn.BatchNorm1d(width), nn.ReLU())
        if legacy_bn_init:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm1d):
                    nn.init.uniform_(module.weight, 0.0, 1.0)

    def forward(self, video_out, video_valid, video_last, text_out, text_valid, text_last):
        """Encoder outputs `(N, T, H)`, 0/1 masks `(N, T)`, last states `(N, layers·H)` → `(N, 3H)`.

        The text context attends over the sentence with the video's last state as query, the video
        context over the video with the sentence's last state (spec §3.3 "Cross attention").
        """
        t = self.text_batch_norm(self.text_attention(text_out, video_last, text_valid))
        v = self.video_batch_norm(self.video_attention(video_out, text_last, video_valid))
        return self.combiner(torch.cat([self.fc(torch.cat([t, v], dim=1)), t * v, t + v], dim=1))


class LocalizerBackbone(nn.Module):
    """Everything the two localizers share: encoders, word embedding and feature mixer.

    Subclasses add their heads (`predictor`/`refiner`) after these modules, keeping the original
    key order: `video_encoder, sent_embedding, text_encoder, feature_mixer, [predictor,] refiner`.
    """

    def __init__(self, vocab_size=6000, hidden_dim=512, sent_embedding_dim=512, video_feature_dim=500,
                 rnn_layer=2, rnn_dropout=0.3, fc_dropout=0.3, video_use_residual=True,
                 sent_use_residual=False, legacy_bn_init=True):
        super().__init__()
        self.video_encoder = SequenceEncoder(video_feature_dim, hidden_dim, rnn_layer, rnn_dropout,
                                             use_residual=video_use_residual)
        self.sent_embedding = nn.Embedding(vocab_size, sent_embedding_dim)
        self.text_encoder = SequenceEncoder(sent_embedding_dim, hidden_dim, rnn_layer, rnn_dropout,
                                            use_residual=sent_use_residual)
        self.feature_mixer = FeatureMixer(hidden_dim, rnn_layer, fc_dropout, legacy_bn_init)

    def mixed_features(self, video, video_length, video_mask, sent, sent_length, sent_mask, sent_gather_idx,
                       mode='forward', video_encoding=None):
        """The `(N, 3H)` joint feature of each sentence with its video, and each row's duration (s).

        video `(B, T, D)`, video_length `(B, 2)` = [L, duration], video_mask `(B, T[, 1])`,
        sent `(N, Ls)` ids incl. BOS/EOS, sent_length `(N,)` incl. BOS/EOS, sent_mask `(N, Ls[, 1])`
        (3-D float in training, 2-D long from beam search: both accepted), sent_gather_idx `(N,)`;
        `mode` is the caller's forward mode, checked here; `video_encoding`: `self.video_encoder.encode(video, L)`
        when the caller has it already (see `encode_video_twice`).
        """
        if mode not in MODES:
            raise ValueError(f"{type(self).__name__}: mode={mode!r}, expected one of {MODES}")
        video_out, video_states = (self.video_encoder.encode(video, video_length[:, 0]) if video_encoding is None
                                   else video_encoding)
        video_length_rows = video_length[:, 0].index_select(0, sent_gather_idx).long()
        video_last = layer_major(video_states.at(video_length_rows - 1, sent_gather_idx))  # spec §3.3: state at L-1
        video_out = select_rows(video_out, sent_gather_idx)
        video_valid = select_rows(video_mask.reshape(video_mask.size(0), -1), sent_gather_idx)
        text_out, text_states = self.text_encoder.encode(self.sent_embedding(sent), sent_length)
        text_last = layer_major(text_states.at(sent_length.long() - 1))  # the state at EOS
        text_valid = sent_mask.reshape(sent.shape)
        mixed = self.feature_mixer(video_out, video_valid, video_last, text_out, text_valid, text_last)
        return mixed, video_length[:, 1].index_select(0, sent_gather_idx)

    def encode_video_twice(self, video, video_length):
        """Two video encodings for two forward calls on the same videos (the cycle step localizes twice, spec
        wsdec §4.2): as two `video_encoder.encode(video, L)` calls, each with its own dropout masks, but the first GRU
        layer, whose input has no dropout, runs once and the second runs once over both calls' rows. Pass each
        to `forward(..., video_encoding=...)`."""
        return self.video_encoder.encode_twice(video, video_length[:, 0])

    def forward_diff(self, *inputs):
        """`forward(..., mode='diff')`: the cycle-training segment `(c, w)` (N, 2), differentiable."""
        return self(*inputs, mode='diff')

    def forward_eval(self, *inputs):
        """`forward(..., mode='eval')`: the clipped, normalised `(c, w)` (N, 2) used at inference."""
        return self(*inputs, mode='eval')
