"""WSDEC caption generator `g(V, S)` (spec wsdec §3.2; state dict: wsdec_state_dict.md §2).

Video GRU encoder → soft temporal masks of the segment → mean contexts [left, centre, right] →
2-layer GRU decoder initialised from the encoder state at the segment end.
"""
import torch
from torch import nn
import torch.nn.functional as F

from models.layers.fused_gru import FusedGRU
from models.layers.gru_encoder import SequenceEncoder, select_rows
from models.layers.soft_mask import masked_mean, soft_temporal_masks
from models.wsdec.beam_search import beam_search

BOS_ID, EOS_ID = 0, 1
END_CLIP = 1 - 1e-4  # spec §3.2.2: e = min(c + w/2, 1 - 1e-4)
CONTEXT_ORDER = {'clr': ('l', 'c', 'r'), 'c': ('c',)}  # spec §3.2.4: concatenated as [l, c, r]


class CaptionGeneratorConfigError(ValueError):
    """An unsupported caption-generator option (names the option and the supported values)."""


def end_step(segment: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Decoder-initialisation step `floor(min(c + w/2, 1 - 1e-4)·L)` (spec §3.2.2), non-differentiable.

    The original truncates with `.long()`; the result is clamped to `[0, L-1]` so that segments far
    outside the video (never produced by the released procedures) cannot index out of range.
    """
    end = torch.clamp(segment[:, 0] + segment[:, 1] / 2, max=END_CLIP).detach()
    step = (end * length.to(end.dtype)).long()
    return torch.minimum(step.clamp(min=0), length.long() - 1)


class RNNSeqDecoder(nn.Module):
    """Caption decoder: `rnn_cell` GRU over `[emb(w_i) ; context]`, `output_layer` + log-softmax.

    Parameter names follow the original `decoder.*` keys; the decoder is a regular multi-layer
    `nn.GRU` (`FusedGRU`: a faster CPU training pass) because teacher forcing runs it over the whole
    caption in one call (spec §6.5).
    """

    def __init__(self, vocab_size, hidden_dim, context_dim, num_layers, dropout):
        super().__init__()
        self.rnn_cell = FusedGRU(hidden_dim + context_dim, hidden_dim, num_layers, batch_first=True,
                                 dropout=dropout)
        self.embedding = nn.Embedding(vocab_size, hidden_dim)
        self.output_layer = nn.Linear(hidden_dim, vocab_size)

    def forward(self, words, context, hidden):
        """words `(N, S)`, context `(N, C)`, hidden `(layers, N, H)` → logp `(N, S, V)`, hidden."""
        emb = self.embedding(words)
        inputs = torch.cat([emb, context.unsqueeze(1).expand(-1, emb.size(1), -1)], dim=2)
        outputs, hidden = self.rnn_cell(inputs, hidden)
        return F.log_softmax(self.output_layer(outputs), dim=-1), hidden


class CaptionGenerator(nn.Module):
    """`CaptionGenerator` of spec wsdec §3.2 (defaults = every training script's values).

    Only `attention_type_cg='mean'` (the released configuration) is implemented; `context_type` is
    'clr' (1536-d context) or 'c' (512-d); the broken 'cl' (spec §3.2.4, §6.1) is refused.
    The word embedding has `hidden_dim` columns (spec §3.2.5), so `sent_embedding_dim` must equal it.
    """

    def __init__(self, vocab_size=6000, hidden_dim=512, sent_embedding_dim=512, video_feature_dim=500,
                 rnn_layer=2, rnn_dropout=0.3, context_type='clr', softmask_scale=0.1,
                 video_use_residual=True, max_cap_length=20, beam_size=3):
        super().__init__()
        if context_type not in CONTEXT_ORDER:
            raise CaptionGeneratorConfigError(
                f"context_type={context_type!r} is not supported; use one of {sorted(CONTEXT_ORDER)} "
                f"('cl' is broken in the original, spec wsdec §3.2.4)")
        if sent_embedding_dim != hidden_dim:
            raise CaptionGeneratorConfigError(
                f"sent_embedding_dim ({sent_embedding_dim}) must equal hidden_dim ({hidden_dim}): the "
                f"decoder input width is hidden + hidden·|context| (spec wsdec §3.2.5)")
        self.context_type = context_type
        self.softmask_scale = softmask_scale
        self.max_cap_length = max_cap_length
        self.beam_size = beam_size
        self.video_encoder = SequenceEncoder(video_feature_dim, hidden_dim, rnn_layer, rnn_dropout,
                                             use_residual=video_use_residual)
        self.decoder = RNNSeqDecoder(vocab_size, hidden_dim, hidden_dim * len(context_type), rnn_layer,
                                     rnn_dropout)

    def encode(self, video, video_length, video_mask, temp_seg, seg_gather_idx):
        """Per segment: the context `(N, H·|ctx|)` and the decoder's initial hidden `(layers, N, H)`.

        video `(B, T, D)`, video_length `(B, 2)` = [L, duration], video_mask `(B, T, 1)` or `(B, T)`,
        temp_seg `(N, 2)` normalised `(c, w)`, seg_gather_idx `(N,)` video row of each segment.
        """
        outputs, states = self.video_encoder.encode(video, video_length[:, 0])
        outputs = select_rows(outputs, seg_gather_idx)
        length = video_length[:, 0].index_select(0, seg_gather_idx)
        valid = select_rows(video_mask.reshape(video_mask.size(0), -1), seg_gather_idx).to(outputs.dtype)
        masks = soft_temporal_masks(temp_seg, length, outputs.size(1), self.softmask_scale)
        sides = torch.stack([masks[side] for side in CONTEXT_ORDER[self.context_type]], dim=1)
        context = masked_mean(outputs, sides, valid).flatten(1)  # [left ; centre ; right]
        hidden = states.at(end_step(temp_seg, length), seg_gather_idx)
        return context, hidden

    def forward(self, video, video_length, video_mask, temp_seg, seg_gather_idx, sent=None):
        """Teacher forcing when `sent (N, Lc)` is given, else beam search (spec §3.2.6, §3.2.8).

        Teacher forcing returns `logp (N, Lc, V)` (row 0 = zeros, the BOS position) and
        `pred (N, Lc)` = [BOS, greedy token at each step]. Beam search returns
        `tokens (N, max_cap_length+2)`, `seq_len (N,)`, `mask (N, max_cap_length+2)` (long).
        The original chose by train/eval mode; scripts here pass `sent` only when training.
        """
        context, hidden = self.encode(video, video_length, video_mask, temp_seg, seg_gather_idx)
        if sent is None:
            return self.beam_search(context, hidden)
        logp, _ = self.decoder(sent[:, :-1], context, hidden)
        logp = torch.cat([logp.new_zeros(logp.size(0), 1, logp.size(2)), logp], dim=1)
        pred = torch.cat([sent[:, :1], logp[:, 1:].argmax(-1)], dim=1)
        return logp, pred

    def beam_search(self, context, hidden):
        """Beam search from precomputed contexts and initial hidden states (one batched step per time)."""
        context = context.repeat_interleave(self.beam_size, dim=0)

        def step(words, state):
            logp, state = self.decoder(words.unsqueeze(1), context, state)
            return logp.squeeze(1), state

        return beam_search(step, hidden, self.beam_size, self.max_cap_length, BOS_ID, EOS_ID)


def caption_loss(logp: torch.Tensor, sent: torch.Tensor, sent_mask: torch.Tensor) -> torch.Tensor:
    """`-Σ_{n,t} logp[n, t, w_nt]·mask[n, t] / N`: summed over tokens, divided by the number of
    sentences, not tokens (spec wsdec §3.2.7, §6.3.8). `sent_mask` is `(N, Lc)` or `(N, Lc, 1)`."""
    token_logp = logp.gather(2, sent.unsqueeze(2)).squeeze(2)
    mask = sent_mask.reshape(token_logp.shape).to(token_logp.dtype)
    return -(token_logp * mask).sum() / logp.size(0)
