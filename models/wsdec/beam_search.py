"""WSDEC's beam search, batched over all segments (spec wsdec §3.2.8, §6.3.9).

K beams, `max_len` decoding steps, no length normalisation. The caption returned for a segment is
the hypothesis with the highest raw summed log-probability among every hypothesis that emitted EOS
on the beam (at any step) and the K beams still alive after the last step (which get EOS appended).
Ties are broken as the original's backtrack does under current PyTorch: it walks the steps from the
last to the first and, at each step with EOS-terminated beams, takes `max` over [those beams' scores ;
the running best], which returns the first index on ties. So an EOS-terminated hypothesis wins a tie
with the running best: the one that ended at the earliest step wins, any of them beats a live beam,
and within a step (or among the live beams) the lower beam index wins.

All beams of all segments advance together: one batched decoder step per time step.
"""
from typing import Callable

import torch

StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def beam_search(step: StepFn, hidden: torch.Tensor, beam_size: int = 3, max_len: int = 20,
                bos_id: int = 0, eos_id: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the search for `N` items whose decoder starts from `hidden (layers, N, H)`.

    `step(words (N·K,), hidden (layers, N·K, H)) -> (logp (N·K, V), hidden)`; rows are item-major
    (`n·K + k`). Returns `tokens (N, max_len+2)` = `[BOS, w1…, EOS, EOS…]` (EOS after the end),
    `seq_len (N,)` counting BOS and EOS (`t+1` for EOS at step t, `max_len+2` if none), and
    `mask (N, max_len+2)` long, 1 where `position < seq_len`.
    """
    n, k = hidden.size(1), beam_size
    device = hidden.device
    hidden = hidden.repeat_interleave(k, dim=1)
    words = torch.full((n * k,), bos_id, dtype=torch.long, device=device)
    score = torch.full((n, k), float('-inf'), device=device)
    score[:, 0] = 0.0
    history = []  # per step: (words (N,K), parents (N,K), ended scores (N,K))
    for _ in range(max_len):
        logp, hidden = step(words, hidden)
        vocab = logp.size(-1)
        total = (logp.view(n, k, vocab) + score.unsqueeze(2)).view(n, k * vocab)
        value, flat = total.topk(k, dim=1)
        parent = torch.div(flat, vocab, rounding_mode='floor')  # spec §6.4: floor division
        word = flat % vocab
        ended = word == eos_id
        history.append((word, parent, value.masked_fill(~ended, float('-inf'))))
        score = value.masked_fill(ended, float('-inf'))
        rows = (parent + torch.arange(n, device=device).unsqueeze(1) * k).view(-1)
        hidden = hidden.index_select(1, rows)
        words = word.view(-1)
    return _backtrack(history, score, max_len, bos_id, eos_id)


def _select_final(history, live_score):
    """The (step, beam, is_live) of the selected hypothesis per item (step = max_len when live)."""
    best, beam = live_score.max(dim=1)
    last = len(history)
    step = torch.full_like(beam, last)
    live = torch.ones_like(beam, dtype=torch.bool)
    for t in range(last, 0, -1):  # walk back from the last step; ties go to the ended beam (first index)
        ended_best, ended_beam = history[t - 1][2].max(dim=1)
        better = ended_best >= best
        best = torch.where(better, ended_best, best)
        beam = torch.where(better, ended_beam, beam)
        step = torch.where(better, torch.full_like(step, t), step)
        live &= ~better
    return step, beam, live


def _backtrack(history, live_score, max_len, bos_id, eos_id):
    step, beam, live = _select_final(history, live_score)
    n = live_score.size(0)
    tokens = torch.full((n, max_len + 2), eos_id, dtype=torch.long, device=live_score.device)
    tokens[:, 0] = bos_id
    pointer = beam.clone()
    for t in range(max_len, 0, -1):
        word, parent, _ = history[t - 1]
        active = t <= step
        tokens[:, t] = torch.where(active, word.gather(1, pointer.unsqueeze(1)).squeeze(1), tokens[:, t])
        pointer = torch.where(active, parent.gather(1, pointer.unsqueeze(1)).squeeze(1), pointer)
    # a live beam at the last step gets EOS appended: tokens[:, max_len + 1] is already EOS
    seq_len = torch.where(live, step + 2, step + 1)
    mask = (torch.arange(max_len + 2, device=tokens.device).unsqueeze(0) < seq_len.unsqueeze(1)).long()
    return tokens, seq_len, mask
