"""The original way of computing WSDEC's recurrent parts: the reference that scripts/benchmark_wsdec.py times
and the tests compare against (spec wsdec §3.1, §3.2.8, §6.5): a Python loop over time steps for the encoder,
and a beam search that decodes one segment at a time with explicit hypothesis lists.
"""
import torch
from torch import nn
from torch.func import functional_call

from models.layers.gru_encoder import SequenceEncoder
from models.wsdec.caption_generator import BOS_ID, EOS_ID, CaptionGenerator


@torch.no_grad()
def encode_step_by_step(encoder: SequenceEncoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`RNNSeqEncoder` as released: one `GRUCell` step per layer per time step (eval mode, no dropout).

    Returns `outputs (B, T, H)`, `hidden_all (layers, B, T, H)` like `SequenceEncoder.forward`.
    """
    layers = list(encoder.rnn_cell)
    cells = [nn.GRUCell(gru.input_size, gru.hidden_size).to(x.device) for gru in layers]
    weights = [{name: getattr(gru, f'{name}_l0') for name in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')}
               for gru in layers]
    hidden = [x.new_zeros(x.size(0), gru.hidden_size) for gru in layers]
    steps = []
    for t in range(x.size(1)):
        inp = x[:, t]
        for k, (cell, w) in enumerate(zip(cells, weights)):
            hidden[k] = functional_call(cell, w, (inp, hidden[k]))
            inp = hidden[k]
        steps.append(torch.stack(hidden))
    hidden_all = torch.stack(steps, dim=2)
    outputs = hidden_all[-1]
    if encoder.use_residual:
        outputs = outputs + (encoder.linear(x) if hasattr(encoder, 'linear') else x)
    return outputs, hidden_all


@torch.no_grad()
def beam_search_one_by_one(cg: CaptionGenerator, video, video_length, video_mask, temp_seg, seg_gather_idx):
    """Spec §3.2.8 literally, one segment at a time: keep K `(score, tokens, hidden)` hypotheses, extend
    each live one by every word, keep the K best candidates, retire those ending in EOS. The answer is
    the best raw sum among retired hypotheses and the K final live ones (EOS appended); on ties the one
    retired at the earliest step wins, a retired one beats a live one, and within a step (or among the live
    ones) the earlier candidate rank wins (the original's backtrack, `beam_search.py`).

    Returns token lists `[BOS, …, EOS]`, one per segment.
    """
    context, hidden = cg.encode(video, video_length, video_mask, temp_seg, seg_gather_idx)
    captions = []
    for n in range(context.size(0)):
        live = [(0.0, [BOS_ID], hidden[:, n:n + 1])]
        retired = []  # (step, rank, score, tokens)
        for step in range(1, cg.max_cap_length + 1):
            candidates = []
            for score, tokens, state in live:
                words = torch.tensor([[tokens[-1]]], device=context.device)
                logp, new_state = cg.decoder(words, context[n:n + 1], state)
                candidates += [(score + lp, tokens + [w], new_state) for w, lp in enumerate(logp[0, 0].tolist())]
            candidates = sorted(candidates, key=lambda c: -c[0])[:cg.beam_size]
            retired += [(step, rank, c[0], c[1]) for rank, c in enumerate(candidates) if c[1][-1] == EOS_ID]
            live = [c for c in candidates if c[1][-1] != EOS_ID]
            if not live:
                break
        best = max(live, key=lambda c: c[0], default=None)
        best_score, best_tokens = (best[0], best[1] + [EOS_ID]) if best else (float('-inf'), None)
        for step in sorted({r[0] for r in retired}, reverse=True):
            score, tokens = max(((r[2], r[3]) for r in retired if r[0] == step), key=lambda c: c[0])
            if score >= best_score:
                best_score, best_tokens = score, tokens
        captions.append(best_tokens)
    return captions
