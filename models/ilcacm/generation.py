"""Beam search from an `inputs_embeds` prefix, equal to transformers 4.44 `generate(num_beams=..., do_sample=False)`
for decoder-only models (spec ilcacm §5.1, §5.3, §11).

Semantics reproduced (HF `_beam_search` + `BeamSearchScorer` + `BeamHypotheses`):
* the prefix is repeated `num_beams` times; initial beam scores are [0, -1e9, ...] per item;
* each step: log-softmax over the whole vocabulary, then the processors without renormalising (no-repeat-n-gram
  over the *generated* ids only, eos = -inf while fewer than `min_new_tokens` ids exist), plus the beam score;
  top 2*num_beams over beams x vocabulary;
* an eos candidate ranked < num_beams finishes a hypothesis scored `sum_logprobs / generated_len**length_penalty`
  (eos counted in the length, not stored); other eos candidates are ignored; non-eos candidates fill the beams;
* an item is done when it holds num_beams hypotheses and, with `early_stopping=False`, the worst of them is
  >= best candidate score / cur_len**length_penalty (`True`: at once; `"never"`: uses max_length when
  length_penalty > 0); finished items are stepped with `pad_token_id`;
* at `max_new_tokens` the open beams are added as hypotheses; the best one is returned, followed by eos when it
  fits, right-padded with `pad_token_id` to `min(longest + 1, max_new_tokens)`.
Position ids are `cumsum(attention_mask) - 1` (1 where masked), as GPT-2's `prepare_inputs_for_generation`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class BeamHypotheses:
    """The n-best finished hypotheses of one item (HF `BeamHypotheses`, same tie-breaking)."""

    def __init__(self, num_beams: int, length_penalty: float, early_stopping, max_length: int):
        self.num_beams = num_beams
        self.length_penalty = length_penalty
        self.early_stopping = early_stopping
        self.max_length = max_length
        self.beams: list[tuple[float, list[int]]] = []
        self.worst_score = 1e9

    def add(self, hyp: list[int], sum_logprobs: float, generated_len: int) -> None:
        score = sum_logprobs / (generated_len ** self.length_penalty)
        if len(self.beams) < self.num_beams or score > self.worst_score:
            self.beams.append((score, hyp))
            if len(self.beams) > self.num_beams:
                ranked = sorted((s, idx) for idx, (s, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float, cur_len: int) -> bool:
        if len(self.beams) < self.num_beams:
            return False
        if self.early_stopping is True:
            return True
        length = self.max_length if (self.early_stopping == "never" and self.length_penalty > 0) else cur_len
        return self.worst_score >= best_sum_logprobs / length ** self.length_penalty

    def best(self) -> list[int]:
        return sorted(self.beams, key=lambda b: b[0])[-1][1]


def generation_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """GPT-2 `prepare_inputs_for_generation`: cumsum(mask) - 1, set to 1 at masked positions."""
    position_ids = attention_mask.long().cumsum(-1) - 1
    return position_ids.masked_fill(attention_mask == 0, 1)


def no_repeat_ngram_mask(generated: torch.Tensor, ngram_size: int, vocab_size: int) -> torch.Tensor:
    """(R, vocab) bool: tokens that would repeat an n-gram already present in each row of `generated` (R, L)."""
    rows, length = generated.shape
    banned = torch.zeros(rows, vocab_size, dtype=torch.bool, device=generated.device)
    if ngram_size <= 0 or length < ngram_size:  # HF: no complete n-gram yet
        return banned
    ngrams = generated.unfold(1, ngram_size, 1)                          # (R, L-n+1, n)
    prefix = generated[:, length - ngram_size + 1:]                      # the last n-1 tokens
    hits = (ngrams[:, :, :-1] == prefix[:, None, :]).all(-1)             # (R, L-n+1)
    row_idx, win_idx = hits.nonzero(as_tuple=True)
    banned[row_idx, ngrams[row_idx, win_idx, -1]] = True
    return banned


class BeamSearchScorer:
    """Per-item beam bookkeeping of HF's `BeamSearchScorer.process` / `finalize`."""

    def __init__(self, batch_size, num_beams, length_penalty, early_stopping, max_new_tokens, eos_token_id,
                 pad_token_id):
        self.num_beams = num_beams
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.max_new_tokens = max_new_tokens
        self.hyps = [BeamHypotheses(num_beams, length_penalty, early_stopping, max_new_tokens)
                     for _ in range(batch_size)]
        self.done = [False] * batch_size

    def process(self, generated: list[list[int]], top_scores, top_tokens, top_beams, cur_len: int):
        """One step. `top_*` are (B, 2*num_beams) lists (scores, token ids, beam index within the item).
        Returns the next beam scores, tokens and source rows, each a list of B*num_beams."""
        k = self.num_beams
        scores, tokens, rows = [], [], []
        for b, hyps in enumerate(self.hyps):
            if self.done[b]:
                scores += [0.0] * k
                tokens += [self.pad_token_id] * k
                rows += [b * k] * k
                continue
            n_kept = 0
            for rank, (score, token, beam) in enumerate(zip(top_scores[b], top_tokens[b], top_beams[b])):
                row = b * k + beam
                if token == self.eos_token_id:
                    if rank < k:
                        hyps.add(list(generated[row]), score, generated_len=cur_len)
                else:
                    scores.append(score)
                    tokens.append(token)
                    rows.append(row)
                    n_kept += 1
                if n_kept == k:
                    break
            self.done[b] = hyps.is_done(max(top_scores[b]), cur_len)
        return scores, tokens, rows

    def finalize(self, generated: list[list[int]], beam_scores: list[float], device) -> torch.Tensor:
        k = self.num_beams
        for b, hyps in enumerate(self.hyps):
            if not self.done[b]:
                for row in range(b * k, (b + 1) * k):
                    hyps.add(list(generated[row]), beam_scores[row], generated_len=len(generated[row]))
        best = [hyps.best() for hyps in self.hyps]
        width = min(max(len(h) for h in best) + 1, self.max_new_tokens)
        out = torch.full((len(best), width), self.pad_token_id, dtype=torch.long)
        for b, hyp in enumerate(best):
            out[b, :len(hyp)] = torch.tensor(hyp, dtype=torch.long)
            if len(hyp) < width:
                out[b, len(hyp)] = self.eos_token_id
        return out.to(device)


def next_candidates(logits, beam_scores, generated, step, batch_size, num_beams, min_new_tokens,
                     no_repeat_ngram_size, eos_token_id):
    """Log-probs -> processors -> + beam score -> top 2*num_beams over beams x vocabulary (as lists)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    vocab_size = log_probs.size(-1)
    banned = no_repeat_ngram_mask(generated, no_repeat_ngram_size, vocab_size)
    if step < min_new_tokens:
        banned[:, eos_token_id] = True
    log_probs = log_probs.masked_fill(banned, float("-inf"))
    scores = (log_probs + beam_scores[:, None]).view(batch_size, num_beams * vocab_size)
    top_scores, top_ids = torch.topk(scores, 2 * num_beams, dim=1, largest=True, sorted=True)
    return (top_scores.tolist(), (top_ids % vocab_size).tolist(),
            torch.div(top_ids, vocab_size, rounding_mode="floor").tolist())


def check_args(inputs_embeds, attention_mask, num_beams, max_new_tokens):
    if inputs_embeds.dim() != 3:
        raise ValueError(f"beam_search: inputs_embeds must be (B, T, D), got {tuple(inputs_embeds.shape)}")
    if attention_mask is not None and attention_mask.shape != inputs_embeds.shape[:2]:
        raise ValueError(f"beam_search: attention_mask {tuple(attention_mask.shape)} does not match "
                         f"inputs_embeds {tuple(inputs_embeds.shape[:2])}")
    if num_beams < 2:
        raise ValueError(f"beam_search: num_beams must be >= 2, got {num_beams}")
    if max_new_tokens < 1:
        raise ValueError(f"beam_search: max_new_tokens must be >= 1, got {max_new_tokens}")


@torch.no_grad()
def beam_search(model, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                num_beams: int = 4, max_new_tokens: int, min_new_tokens: int = 0, no_repeat_ngram_size: int = 4,
                length_penalty: float = 1.0, eos_token_id: int = 50256, pad_token_id: int = 50257,
                early_stopping=False) -> torch.LongTensor:
    """Batched beam search with a KV cache. inputs_embeds (B, T, D), attention_mask (B, T) of 1/0.
    Returns only the new tokens, (B, L) with L <= max_new_tokens (see the module docstring)."""
    check_args(inputs_embeds, attention_mask, num_beams, max_new_tokens)
    B, T, _ = inputs_embeds.shape
    device = inputs_embeds.device
    if attention_mask is None:
        attention_mask = torch.ones(B, T, dtype=torch.long, device=device)
    mask = attention_mask.long().repeat_interleave(num_beams, dim=0)
    logits, past = model(inputs_embeds=inputs_embeds.repeat_interleave(num_beams, dim=0), attention_mask=mask,
                         position_ids=generation_position_ids(mask), use_cache=True, last_logits_only=True)
    scorer = BeamSearchScorer(B, num_beams, length_penalty, early_stopping, max_new_tokens, eos_token_id,
                              pad_token_id)
    beam_scores = torch.zeros(B, num_beams, device=device)
    beam_scores[:, 1:] = -1e9
    beam_scores = beam_scores.view(-1)
    generated = torch.zeros(B * num_beams, 0, dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        top = next_candidates(logits[:, -1], beam_scores, generated, step, B, num_beams, min_new_tokens,
                               no_repeat_ngram_size, eos_token_id)
        scores, tokens, rows = scorer.process(generated.tolist(), *top, cur_len=step + 1)
        rows_t = torch.tensor(rows, device=device)
        tokens_t = torch.tensor(tokens, device=device)
        beam_scores = torch.tensor(scores, dtype=torch.float32, device=device)
        generated = torch.cat([generated[rows_t], tokens_t[:, None]], dim=1)
        if all(scorer.done) or step + 1 == max_new_tokens:
            break
        past = tuple((k[rows_t], v[rows_t]) for k, v in past)
        mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)
        logits, past = model(input_ids=tokens_t[:, None], attention_mask=mask,
                             position_ids=generation_position_ids(mask)[:, -1:], past_key_values=past,
                             use_cache=True, last_logits_only=True)
    return scorer.finalize(generated.tolist(), beam_scores.tolist(), device)
