"""ILCACM's generation the naive way: the reference that scripts/benchmark_ilcacm.py times and the tests compare
against (models/ilcacm/generation.py `beam_search` must give the same tokens): one video at a time, the whole
sequence re-run at every step (no KV cache)."""
import torch

from models.ilcacm.generation import BeamSearchScorer, check_args, generation_position_ids, next_candidates


@torch.no_grad()
def beam_search_naive(model, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                      num_beams: int = 4, max_new_tokens: int, min_new_tokens: int = 0,
                      no_repeat_ngram_size: int = 4, length_penalty: float = 1.0, eos_token_id: int = 50256,
                      pad_token_id: int = 50257, early_stopping=False) -> torch.LongTensor:
    """Reference: one item at a time, no KV cache (the whole sequence is re-run every step). Same output
    contract as `beam_search`."""
    check_args(inputs_embeds, attention_mask, num_beams, max_new_tokens)
    B, T, _ = inputs_embeds.shape
    device = inputs_embeds.device
    if attention_mask is None:
        attention_mask = torch.ones(B, T, dtype=torch.long, device=device)
    outputs = []
    for b in range(B):
        prefix = inputs_embeds[b:b + 1].repeat(num_beams, 1, 1)
        prefix_mask = attention_mask[b:b + 1].long().repeat(num_beams, 1)
        scorer = BeamSearchScorer(1, num_beams, length_penalty, early_stopping, max_new_tokens, eos_token_id,
                                  pad_token_id)
        beam_scores = torch.tensor([0.0] + [-1e9] * (num_beams - 1), device=device)
        generated = torch.zeros(num_beams, 0, dtype=torch.long, device=device)
        for step in range(max_new_tokens):
            embeds = torch.cat([prefix, model.embed(generated)], dim=1)
            mask = torch.cat([prefix_mask, prefix_mask.new_ones(num_beams, step)], dim=1)
            logits = model(inputs_embeds=embeds, attention_mask=mask, position_ids=generation_position_ids(mask))
            top = next_candidates(logits[:, -1], beam_scores, generated, step, 1, num_beams, min_new_tokens,
                                   no_repeat_ngram_size, eos_token_id)
            scores, tokens, rows = scorer.process(generated.tolist(), *top, cur_len=step + 1)
            beam_scores = torch.tensor(scores, dtype=torch.float32, device=device)
            generated = torch.cat([generated[rows], torch.tensor(tokens, device=device)[:, None]], dim=1)
            if scorer.done[0]:
                break
        outputs.append(scorer.finalize(generated.tolist(), beam_scores.tolist(), device)[0])
    width = max(len(o) for o in outputs)
    out = torch.full((B, width), pad_token_id, dtype=torch.long, device=device)
    for b, o in enumerate(outputs):
        out[b, :len(o)] = o
    return out
