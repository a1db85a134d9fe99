"""Dual-mode captioner: VideoEncoder prefix + GPT-2-shaped decoder used as a prefix LM (spec ilcacm §3.2-3.3).

One causal sequence per caption: [T video embeddings ; prompt ; target]. The prompt "<FULL>{n} events: " or
"<MASK>{n} events: " selects the mode; the count and "events: " tokens are supervised like the target.
"""
import torch
import torch.nn.functional as F
from torch import nn

from models.ilcacm.generation import beam_search

IGNORE = -100


def caption_labels(ids, pad_id):
    """Labels of the positions from the mode token onward: ids[:, 1:] with pad -> -100 (spec §3.2.6; the T video
    slots and the mode token itself are never targets)."""
    labels = ids[:, 1:].clone()
    labels[labels == pad_id] = IGNORE
    return labels


class Captioner(nn.Module):
    def __init__(self, video_encoder, gpt2_model, tokenizer):
        super().__init__()
        self.video_encoder = video_encoder
        self.gpt2_model = gpt2_model
        self.tokenizer = tokenizer

    def caption_loss(self, frames, frame_mask, prompts, targets):
        """Summed token cross-entropy and number of target tokens of each sequence, two (N,) tensors, of `prompts`
        (N, P) + `targets` (N, L) read after the frames (N, T, D) (spec §3.2 steps 2-7); the loss groups weight
        them (losses.py).

        The LM head runs on the supervised positions only: HF computes logits at every position and ignores the
        -100 labels, which is the same sum, but the frame, padding and last positions are most of a padded batch
        (stage-2 negatives are padded to the longest paragraph), and their logits alone filled an H100."""
        pad = self.tokenizer.pad_id
        ids = torch.cat([prompts, targets], dim=1)
        embeds = torch.cat([self.video_encoder(frames, frame_mask), self.gpt2_model.embed(ids)], dim=1)
        attention = torch.cat([frame_mask, torch.ones_like(prompts, dtype=torch.bool), targets != pad], dim=1)
        hidden, _ = self.gpt2_model.hidden_states(inputs_embeds=embeds, attention_mask=attention)
        num_frames = frames.shape[1]
        hidden = hidden[:, num_frames:num_frames + ids.shape[1] - 1]  # positions predicting ids[:, 1:]
        labels = caption_labels(ids, pad)
        supervised = labels != IGNORE
        logits = self.gpt2_model.lm_head(hidden[supervised])
        per_token = F.cross_entropy(logits.float(), labels[supervised], reduction='none')
        sequence = supervised.nonzero()[:, 0]  # row of each supervised token, in the order of hidden[supervised]
        ce = per_token.new_zeros(ids.shape[0]).index_add(0, sequence, per_token)
        return ce, supervised.sum(1)

    @torch.no_grad()
    def generate(self, frames, frame_mask, prompt, *, max_new_tokens, min_new_tokens, num_beams=4,
                 no_repeat_ngram_size=4):
        """Beam-search continuations of `prompt` (a list of ids shared by all N sequences) -> N strings."""
        n = frames.shape[0]
        prompt_ids = torch.tensor(prompt, device=frames.device).expand(n, -1)
        embeds = torch.cat([self.video_encoder(frames, frame_mask), self.gpt2_model.embed(prompt_ids)], dim=1)
        attention = torch.cat([frame_mask, torch.ones_like(prompt_ids, dtype=torch.bool)], dim=1)
        out = beam_search(self.gpt2_model, embeds, attention, num_beams=num_beams, max_new_tokens=max_new_tokens,
                          min_new_tokens=min_new_tokens, no_repeat_ngram_size=no_repeat_ngram_size,
                          eos_token_id=self.tokenizer.eos_id, pad_token_id=self.tokenizer.pad_id)
        return [self.tokenizer.decode(ids) for ids in out.tolist()]
