"""ILCACM inference (spec ilcacm §5): stage-1 paragraphs (they fix the event counts, §5.1), the event counts of each
count mode, the masks of the mask generator and one "<MASK>1 events: " caption per mask, timestamps
clamp(c ± w/2) × duration (§5.2). Under torchrun every process takes its share of the videos (rank, rank + N, ...)
and the results are gathered in the dataset's order.

Count modes (baselines, `--count-mode`): 'paragraph' (default, spec §5.1), 'oracle' (the ground-truth count, capped
at --max-captions), 'equal-split' (stage 1 only: the paragraph's sentences on equal-width consecutive segments).
"""
import dataclasses

import torch
from torch.utils.data import DataLoader

from models.ilcacm.model import split_paragraph
from utils.distributed import all_gather_object, get_rank, get_world_size
from utils.ilcacm_data import make_collate
from utils.run import autocast


def shard_batches(dataset, batch_size, tokenizer):
    """This process's share (videos rank, rank + N, ...) of `dataset`, in order, as collated batches."""
    indices = list(range(get_rank(), len(dataset), get_world_size()))
    subset = torch.utils.data.Subset(dataset, indices)
    return DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=make_collate(tokenizer))


def gathered(per_process):
    """Merge the dicts produced by every process (video order of the dataset is restored by the caller)."""
    merged = {}
    for part in all_gather_object(per_process):
        merged.update(part)
    return merged


@torch.no_grad()
def generate_paragraphs(model, dataset, device, args):
    """Stage-1 paragraphs of every video: {vid: {'paragraph', 'sentences', 'duration'}} (spec §4.1.6, §5.1)."""
    model.eval()
    out = {}
    for batch in shard_batches(dataset, args.eval_batch_size, model.tokenizer):
        batch = batch.to(device)
        with autocast(device):
            texts = model.paragraphs(batch.video, batch.video_mask, num_beams=args.num_beams)
        for vid, duration, text in zip(batch.vids, batch.durations.tolist(), texts):
            out[vid] = {'paragraph': text, 'sentences': split_paragraph(text, args.max_captions),
                        'duration': duration}
    merged = gathered(out)
    return {vid: merged[vid] for vid in dataset.vids}


def event_counts(batch, paragraphs, count_mode):
    if count_mode == 'oracle':
        return list(batch.num_sents)
    return [len(paragraphs[vid]['sentences']) for vid in batch.vids]


@torch.no_grad()
def predict(model, dataset, paragraphs, device, args):
    """{vid: [{'sentence', 'timestamp'}]} of every video of `dataset` (spec §5.2)."""
    model.eval()
    results = {}
    for batch in shard_batches(dataset, args.eval_batch_size, model.tokenizer):
        if args.count_mode == 'equal-split':  # stage-1-only baseline: paragraph sentences on equal segments
            for vid, duration in zip(batch.vids, batch.durations.tolist()):
                sentences = paragraphs[vid]['sentences']
                n = len(sentences)
                results[vid] = [{'sentence': s, 'timestamp': [round(k / n * duration, 2),
                                                              round((k + 1) / n * duration, 2)]}
                                for k, s in enumerate(sentences)]
            continue
        batch = batch.to(device)
        counts = event_counts(batch, paragraphs, args.count_mode)
        with autocast(device):
            events, captions = model.localize_and_caption(batch.video, batch.video_mask, counts,
                                                          num_beams=args.num_beams,
                                                          segment_blind=getattr(args, 'segment_blind', False))
        lefts, rights = events.lefts.float().tolist(), events.rights.float().tolist()
        start = 0
        for vid, duration, n in zip(batch.vids, batch.durations.tolist(), counts):
            results[vid] = [{'sentence': captions[i], 'timestamp': [round(lefts[i] * duration, 2),
                                                                    round(rights[i] * duration, 2)]}
                            for i in range(start, start + n)]
            start += n
    merged = gathered(results)
    return {vid: merged[vid] for vid in dataset.vids}


@torch.no_grad()
def video_reliance(model, dataset, device, args) -> dict:
    """Does the captioner read the video? Its teacher-forced loss (nats per token, the prompt's count tokens
    included) on held-out videos given their own features, an all-zero video and another video's features (the next
    video of the batch; one-video batches are left out of that mean): full mode (the paragraph) and positive masked
    mode at the ground-truth event masks. Equal losses mean the captioner ignores the video (issue 14);
    `reliance_*` = other - own."""
    model.eval()
    totals = {}
    for batch in shard_batches(dataset, args.eval_batch_size, model.tokenizer):
        batch = batch.to(device)
        n = batch.video.shape[0]
        videos = {'own': batch.video, 'zero': torch.zeros_like(batch.video),
                  'other': batch.video[torch.roll(torch.arange(n, device=device), 1)] if n > 1 else None}
        for mode in ('full', 'pos'):
            for name, video in videos.items():
                if video is None:
                    continue
                variant = dataclasses.replace(batch, video=video)
                with autocast(device):
                    sums = model(variant, mode, events=model.gt_events(variant) if mode == 'pos' else None)
                total = totals.setdefault(f'{mode}_{name}', [0.0, 0.0])
                total[0] += float(sums['ce'])
                total[1] += float(sums['tokens'])
    merged = {}
    for part in all_gather_object(totals):
        for key, (ce, tokens) in part.items():
            merged.setdefault(key, [0.0, 0.0])
            merged[key][0] += ce
            merged[key][1] += tokens
    out = {f'nll_{key}': ce / tokens for key, (ce, tokens) in merged.items() if tokens}
    for mode in ('full', 'pos'):
        if f'nll_{mode}_other' in out:
            out[f'reliance_{mode}'] = out[f'nll_{mode}_other'] - out[f'nll_{mode}_own']
    return out
