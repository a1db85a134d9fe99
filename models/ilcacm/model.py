"""ILCACM: dual-mode captioner + mask generator, routing the full / positive / negative modes (spec ilcacm §3.3)
and the inference steps (spec §5).

`forward(batch, mode)` returns loss sums (`loss_sums`, weighted in losses.py) so DDP sees one call per backward.
The mask mode picks where the events come from: 'learned' (the MaskGenerator), 'uniform' (fixed tiling) or 'random'
(random segments).
"""
import torch
from torch import nn

from models.ilcacm.mask_generator import random_events, uniform_events

MASK_MODES = ('learned', 'uniform', 'random')


class ILCACM(nn.Module):
    def __init__(self, captioner, localizer, feature_dim, mask_mode='learned', seed=42):
        super().__init__()
        d_model = captioner.video_encoder.vpe.shape[1]
        # spec §3.1/§7.1: features that are not d_model wide get one Linear in front of both branches
        self.input_proj = nn.Linear(feature_dim, d_model) if feature_dim != d_model else None
        self.captioner = captioner
        self.localizer = localizer
        if mask_mode not in MASK_MODES:
            raise ValueError(f'mask mode must be one of {MASK_MODES}, got {mask_mode!r}')
        self.mask_mode = mask_mode
        self.random_segments = torch.Generator().manual_seed(seed)

    @property
    def tokenizer(self):
        return self.captioner.tokenizer

    def frames(self, video):
        return video if self.input_proj is None else self.input_proj(video)

    def events(self, frames, counts, frame_mask):
        """(EventMasks, L_div) of counts[b] events per video, sorted by centre."""
        if self.mask_mode == 'learned':
            return self.localizer(frames, counts, frame_mask)
        if self.mask_mode == 'uniform':
            centers, widths = uniform_events(counts, frames.device)
        else:
            centers, widths = random_events(counts, self.random_segments, frames.device)
        return self.localizer.build(centers, widths, list(counts), frames.shape[1])

    def prompts(self, mode, counts, device):
        return torch.tensor([self.tokenizer.prompt(mode, n) for n in counts], device=device)

    def gt_events(self, batch):
        """The ground-truth events of the batch ((c, w) of each caption, annotation order) as EventMasks (the
        video-reliance diagnostic: captions given the masks they should have)."""
        c, w = batch.timestamps[:, 0].clamp(0, 1), batch.timestamps[:, 1].clamp(1e-3, 1)
        return self.localizer.build(c, w, list(batch.num_sents), batch.video.shape[1])[0]

    def forward(self, batch, mode, events=None):
        """Loss sums of one batch in mode 'full' (stage 1), 'pos' or 'neg' (stage 2), spec §4.2-4.3; stage-2 modes
        use the model's events (mask mode) unless `events` (EventMasks) are given."""
        frames, frame_mask = self.frames(batch.video), batch.video_mask
        if mode == 'full':
            prompts = self.prompts('full', batch.num_sents, frames.device)
            return loss_sums(*self.captioner.caption_loss(frames, frame_mask, prompts, batch.dense_tokens))
        if events is None:
            events, div = self.events(frames, batch.num_sents, frame_mask)
        else:
            div = frames.new_zeros(())
        counts = torch.tensor(batch.num_sents, device=frames.device)
        per_event = frames.repeat_interleave(counts, 0)
        per_event_mask = frame_mask.repeat_interleave(counts, 0)
        masks = events.masks[..., None].to(per_event.dtype)
        if mode == 'pos':  # v ⊙ M_k -> "<MASK>1 events: " + S_k
            inputs, prompts, targets = per_event * masks, self.prompts('mask', [1] * len(masks), frames.device), \
                batch.positive_tokens
        elif mode == 'neg':  # v ⊙ (1 - M_k) -> "<MASK>{n-1} events: " + the other captions
            inputs = per_event * (1 - masks) * per_event_mask[..., None]
            prompts = self.prompts('mask', (counts - 1).repeat_interleave(counts).tolist(), frames.device)
            targets = batch.negative_tokens
        else:
            raise ValueError(f"mode must be 'full', 'pos' or 'neg', got {mode!r}")
        return {**loss_sums(*self.captioner.caption_loss(inputs, per_event_mask, prompts, targets)),
                'div': div * len(batch.num_sents)}

    # --- inference, spec §5 ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def paragraphs(self, video, video_mask, num_beams=4, max_new_tokens=128, min_new_tokens=8):
        """Full-mode paragraphs ("3 events: A man ... . He ... .") generated after [E ; <FULL>] (spec §5.1)."""
        return self.captioner.generate(self.frames(video), video_mask, [self.tokenizer.full_id],
                                       num_beams=num_beams, max_new_tokens=max_new_tokens,
                                       min_new_tokens=min_new_tokens)

    @torch.no_grad()
    def localize_and_caption(self, video, video_mask, counts, num_beams=4, max_new_tokens=32, min_new_tokens=4,
                             segment_blind=False):
        """Events (sorted (c, w), lefts/rights) and one caption per event from v ⊙ M_k with "<MASK>1 events: "
        (spec §5.2). `segment_blind` (a baseline, issue 14): every event of a video gets the caption of the whole,
        unmasked video with the same prompt."""
        frames = self.frames(video)
        events, _ = self.events(frames, counts, video_mask)
        repeat = torch.tensor(list(counts), device=frames.device)
        if segment_blind:
            inputs, masks = frames, video_mask
        else:
            inputs = frames.repeat_interleave(repeat, 0) * events.masks[..., None].to(frames.dtype)
            masks = video_mask.repeat_interleave(repeat, 0)
        captions = self.captioner.generate(inputs, masks, self.tokenizer.prompt('mask', 1), num_beams=num_beams,
                                           max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)
        captions = [c.strip() for c in captions]
        if segment_blind:
            captions = [c for c, n in zip(captions, counts) for _ in range(n)]
        return events, captions


def loss_sums(ce_seq, tokens_seq):
    """`ce_seq`: the summed CE of each sequence; `ce`, `tokens`: the batch's summed CE and target tokens."""
    return {'ce_seq': ce_seq, 'ce': ce_seq.sum(), 'tokens': tokens_seq.sum()}


def split_paragraph(text, max_captions=12):
    """Sentences of a generated paragraph (spec §5.1): the text after the first 'events:', split on '.', each piece
    stripped with '.' re-appended, at most max_captions. The generated count is ignored. Whitespace-only pieces
    (an IndexError in the released code) are dropped; an empty result becomes ['None.'] (spec §2.2)."""
    if 'events:' in text:
        text = text.split('events:')[1].strip()
    sentences = [piece.strip() + '.' for piece in text.split('.') if piece.strip()]
    return sentences[:max_captions] or ['None.']
