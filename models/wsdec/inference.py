"""WSDEC test-time procedures (spec wsdec §4.4, §4.5): initial segments (random or anchors), the refinement
filter/merge, dense captioning, sentence localization, the random baselines, captioning at GT segments,
submissions, and the aggregation of the random-initialisation robustness study (spec wsdec §1,
`run_random_test.sh`).

The procedures take the models, a `WSDECBatch` and plain options, and return per-video entry lists
`{vid: [{'sentence', 'timestamp': [s, e] seconds, ...}]}`; nothing here reads files or parses flags.
Models must be in eval mode: the caption generator then runs beam search (no `sent` is passed).
"""
import math

import torch

from models.wsdec.anchors import anchors
from models.wsdec.config import InferenceOptions
from models.wsdec.steps import gt_segments
from utils.segments import cw2se, se2cw, segment_hull, segment_iou


def gen_random_segments(n_rand: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`gen_random_ts`: `n_rand` segments `(c, w)`, `c, w ~ U[0, 1)`, not clipped (spec §4.4 step 3).

    As the original, all `n_rand` centres are drawn first, then all `n_rand` widths (so a seed gives the
    original's segments, not those of one interleaved `(n_rand, 2)` draw). `n_rand == -1` returns the 15
    anchors instead. The original drew one set per batch of videos (shared by the batch); the caller
    decides whether to call this per batch or per video.
    """
    if n_rand == -1:
        return anchors()
    if n_rand <= 0:
        raise ValueError(f"n_rand must be positive or -1 (anchors), got {n_rand}")
    centres = torch.rand(n_rand, generator=generator)
    widths = torch.rand(n_rand, generator=generator)
    return torch.stack([centres, widths], dim=1)


def _drops(iou: float, drop_iou: float | None, legacy_drop: bool) -> bool:
    if drop_iou is None:
        return False
    return iou > drop_iou if legacy_drop else iou < drop_iou


def refine_temporal_segments(S0, S1, iou_thres=0.9, drop_iou=0.2, legacy_drop=True) -> list[torch.Tensor]:
    """`refine_temporal_segment` of spec wsdec §4.4 step 4, keeping each video's segments together.

    S0, S1: per video, the initial segments and their re-localizations, normalised `(c, w)`: tensors
    `(B, P, 2)` or sequences of `(P_b, 2)`. Both are converted to `(s, e)` clipped to [0, 1]. For each
    video b and each row i in order:
    * drop rule (spec §6.3.3): with `legacy_drop=True` (released behaviour) the row is dropped if
      `IoU(S1_i, S0_i) > drop_iou`; with `legacy_drop=False` it is dropped if `IoU < drop_iou`
      (keep self-consistent proposals); `drop_iou=None` drops nothing;
    * the first kept row of a video is kept as `S1_i`;
    * else if the largest IoU with the video's kept segments is `> iou_thres`, that kept segment
      (first on ties) becomes the hull `[min s, max e]` of the two; else `S1_i` is appended.
    Returns a list with one `(K_b, 2)` tensor of kept `(c, w)` per video, in insertion order;
    `K_b = 0` when every row of the video was dropped (the video then has no prediction).
    """
    kept_per_video = []
    for s0, s1 in zip(S0, S1):
        s0, s1 = cw2se(s0, clip=True), cw2se(s1, clip=True)
        kept = []
        for old, new in zip(s0, s1):
            if _drops(float(segment_iou(new, old)), drop_iou, legacy_drop):
                continue
            if kept:
                ious = segment_iou(new.unsqueeze(0), torch.stack(kept))
                best = int(ious.argmax())
                if float(ious[best]) > iou_thres:
                    kept[best] = segment_hull(kept[best], new)
                    continue
            kept.append(new)
        kept_per_video.append(se2cw(torch.stack(kept)) if kept else s1.new_zeros(0, 2))
    return kept_per_video


def initial_segments(n_videos: int, n_rand: int, generator: torch.Generator, per_video: bool,
                     anchor_list: torch.Tensor | None = None) -> torch.Tensor:
    """`(B, P, 2)` initial `(c, w)` (spec §4.4 step 3): `n_rand` draws of U[0,1)² shared by the B videos
    (legacy) or drawn per video; `n_rand = -1` gives every video the anchors: `anchor_list` (the checkpoint's,
    as the original reads `params['anchor_list']`), else the 15 built-in ones."""
    if n_rand == -1:
        return (anchors() if anchor_list is None else anchor_list).unsqueeze(0).expand(n_videos, -1, -1)
    if per_video:
        return torch.stack([gen_random_segments(n_rand, generator) for _ in range(n_videos)])
    return gen_random_segments(n_rand, generator).unsqueeze(0).expand(n_videos, -1, -1)


def flatten_segments(per_video) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-video `(P_b, 2)` segments → `(N, 2)` rows in video order and their video index `(N,)`."""
    per_video = list(per_video)
    counts = torch.tensor([len(s) for s in per_video], dtype=torch.long)
    gather = torch.arange(len(per_video)).repeat_interleave(counts)
    return torch.cat([s.reshape(-1, 2) for s in per_video]), gather


def caption_segments(cg, batch, segments: torch.Tensor, gather: torch.Tensor):
    """Beam-search captions `(tokens, seq_len, mask)` of `segments (N, 2)` in videos `gather (N,)`."""
    return cg(batch.video, batch.video_length, batch.video_mask, segments.to(batch.video.device),
              gather.to(batch.video.device))


def localize(sl, batch, sent, sent_length, sent_mask, gather) -> torch.Tensor:
    """Clipped normalised `(c, w)` `(N, 2)` of each sentence in its video (`forward_eval`, spec §3.3)."""
    return sl(batch.video, batch.video_length, batch.video_mask, sent, sent_length, sent_mask,
              gather.to(batch.video.device), mode='eval')


def to_seconds(segments: torch.Tensor, durations: torch.Tensor) -> list:
    """Normalised `(c, w)` `(N, 2)` → `[[s, e], ...]` seconds, clipped to [0, duration] (spec §4.4 step 6)."""
    se = cw2se(segments.float().cpu(), clip=True) * durations.float().cpu().unsqueeze(1)
    return se.tolist()


def _entries(batch, gather, segments, tokens, vocab) -> dict:
    """`{vid: [{'sentence', 'timestamp'}]}` of captioned segments, in row order."""
    gather = gather.cpu()
    durations = batch.video_length[:, 1].cpu()[gather]
    out = {}
    for b, timestamp, ids in zip(gather.tolist(), to_seconds(segments, durations), tokens.cpu()):
        out.setdefault(batch.keys[b], []).append({'sentence': vocab.decode(ids), 'timestamp': timestamp})
    return out


def dense_captions(cg, sl, batch, S0: torch.Tensor, options: InferenceOptions, vocab) -> dict:
    """Spec wsdec §4.4 steps 3-6 for one batch from initial segments `S0 (B, P, 2)`.

    Caption S0; then `refine_round` times: localize the captions, filter/merge against the previous
    segments (`refine_temporal_segments`: drop rule, hull merge above `iou_thres`), re-caption the kept
    segments. A video whose rows are all dropped gets no entry (scored 0, as released); no ranking, no NMS.
    """
    per_video = [s.to(batch.video.device) for s in S0]
    segments, gather = flatten_segments(per_video)
    tokens, seq_len, mask = caption_segments(cg, batch, segments, gather)
    for _ in range(options.refine_round):
        S1 = localize(sl, batch, tokens, seq_len, mask, gather)
        S1 = S1.split(torch.bincount(gather, minlength=len(per_video)).tolist())
        per_video = refine_temporal_segments(per_video, S1, options.iou_thres, options.drop_iou,
                                             options.legacy_drop)
        segments, gather = flatten_segments(per_video)
        if len(segments) == 0:  # every row of the batch dropped (the original crashed here)
            return {}
        tokens, seq_len, mask = caption_segments(cg, batch, segments, gather)
    return _entries(batch, gather, segments, tokens, vocab)


def _first_sentence_rows(batch) -> list:
    """Index of the first sentence row of each video of the batch."""
    gather = batch.caption_gather_idx.cpu().tolist()
    return [gather.index(b) for b in range(len(batch.keys))]


def pretrain_random_captions(cg, batch, generator: torch.Generator, vocab) -> dict:
    """Pretrained-CG baseline (spec §4.4 end): one random `(c, w) ~ U[0,1)²` per video, one caption.

    `gt_sentence`/`gt_timestamp` are the video's first sentence row in the batch (with a `mode='sample'`
    dataset: the random GT sentence, as the original); the timestamp is the true GT (spec §6.1 bug fixed).
    """
    gather = torch.arange(len(batch.keys))
    segments = torch.rand(len(gather), 2, generator=generator)  # evaluate_pretrain.py's draw, not gen_random_ts
    tokens = caption_segments(cg, batch, segments, gather)[0]
    entries = _entries(batch, gather, segments, tokens, vocab)
    for b, row in enumerate(_first_sentence_rows(batch)):
        entry = entries[batch.keys[b]][0]
        entry['gt_sentence'] = vocab.decode(batch.caption[row])
        entry['gt_timestamp'] = batch.raw_timestamp[row].tolist()
    return entries


def localization_entries(batch, segments: torch.Tensor, vocab) -> dict:
    """Sentence-localization entries (spec §4.5): `sentence` (GT, rtranslated), `timestamp` (the
    localized segment, seconds) and `gt_timestamp` (raw GT seconds), one per sentence row."""
    gather = batch.caption_gather_idx.cpu()
    durations = batch.video_length[:, 1].cpu()[gather]
    out = {}
    for n, (b, timestamp) in enumerate(zip(gather.tolist(), to_seconds(segments, durations))):
        out.setdefault(batch.keys[b], []).append({'sentence': vocab.decode(batch.caption[n]), 'timestamp': timestamp,
                                                  'gt_timestamp': batch.raw_timestamp[n].tolist()})
    return out


def localize_sentences(sl, batch, vocab) -> dict:
    """Every GT sentence of the batch → a segment with the localizer (spec §4.5)."""
    segments = localize(sl, batch, batch.caption, batch.caption_length, batch.caption_mask, batch.caption_gather_idx)
    return localization_entries(batch, segments, vocab)


def random_localization(batch, generator: torch.Generator, vocab) -> dict:
    """Random baseline (spec §4.5): one `(c, w) ~ U[0,1)²` per GT sentence row of the batch."""
    segments = torch.rand(len(batch.caption), 2, generator=generator)
    return localization_entries(batch, segments, vocab)


def caption_gt_segments(cg, batch, vocab) -> dict:
    """Supervised-CG evaluation (spec §4.3): one caption per GT segment, written with the GT timestamp."""
    gather = batch.caption_gather_idx
    tokens = caption_segments(cg, batch, gt_segments(batch), gather)[0].cpu()
    out = {}
    for n, b in enumerate(gather.cpu().tolist()):
        out.setdefault(batch.keys[b], []).append({'sentence': vocab.decode(tokens[n]),
                                                  'timestamp': batch.raw_timestamp[n].tolist(),
                                                  'gt_sentence': vocab.decode(batch.caption[n])})
    return out


@torch.no_grad()
def predict(batches, step, device) -> dict:
    """Run `step(batch) -> {vid: entries}` over collated batches moved to `device`; merge the results."""
    results = {}
    for batch in batches:
        results.update(step(batch.to(device)))
    return results


def dense_captioning(cg, sl, batches, options: InferenceOptions, vocab, device, anchor_list=None) -> dict:
    """Spec wsdec §4.4 over all batches; initial segments from one generator seeded with `rand_seed`,
    drawn per batch in loader order (shared by its videos, or per video with `per_video_random_segments`)."""
    generator = torch.Generator().manual_seed(options.rand_seed)

    def step(batch):
        S0 = initial_segments(len(batch.keys), options.n_rand, generator, options.per_video_random_segments,
                              anchor_list)
        return dense_captions(cg, sl, batch, S0, options, vocab)

    return predict(batches, step, device)


def whole_video_captions(cg, batch, vocab) -> dict:
    """`{vid: [entry]}` of the caption generator on the whole video, (c, w) = (0.5, 1.0) (the pretraining
    segment, spec §4.1), one per video of the batch."""
    gather = torch.arange(len(batch.keys))
    segments = torch.tensor([[0.5, 1.0]]).expand(len(gather), 2)
    return _entries(batch, gather, segments, caption_segments(cg, batch, segments, gather)[0], vocab)


def segment_blind(results: dict, whole: dict) -> dict:
    """The segment-blind baseline (issue 14): every predicted event keeps its segment but gets its video's
    whole-video caption (`whole`: whole_video_captions), so only the captions' dependence on the segment differs."""
    return {vid: [{**e, 'sentence': whole[vid][0]['sentence']} for e in entries] for vid, entries in results.items()}


def build_submission(results: dict, params: dict | None = None, details: str = 'provided C3D feature') -> dict:
    """The densevid_eval submission of spec evaluation §3.1 (WSDEC's `external_data`)."""
    return {'version': 'V0', 'results': results, 'external_data': {'used': True, 'details': details},
            'params': params or {}}


def aggregate_runs(runs: list) -> dict:
    """Robustness study table: `runs` = `[{'n_rand', 'seed', 'metrics': {name: value}}]` →
    `{n_rand: {metric: {'mean', 'std', 'n', 'values'}}}`. `std` is the sample standard deviation
    (n − 1 in the denominator); None for a single seed. Metrics whose value is None are left out."""
    table = {}
    for run in runs:
        per_metric = table.setdefault(run['n_rand'], {})
        for name, value in run['metrics'].items():
            if value is not None:
                per_metric.setdefault(name, []).append(float(value))
    return {n: {name: _mean_std(values) for name, values in per_metric.items()} for n, per_metric in table.items()}


def _mean_std(values: list) -> dict:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return {'mean': mean, 'std': std, 'n': len(values), 'values': values}


def random_test_markdown(table: dict, metrics: list) -> str:
    """The aggregated table as Markdown: one row per n_rand, `mean ± std` per metric."""
    lines = ['| n_rand | seeds | ' + ' | '.join(metrics) + ' |', '|' + '---|' * (len(metrics) + 2)]
    for n_rand, per_metric in sorted(table.items()):
        cells = []
        for name in metrics:
            cell = per_metric.get(name)
            cells.append('–' if cell is None else f"{cell['mean']:.2f}"
                         + ('' if cell['std'] is None else f" ± {cell['std']:.2f}"))
        n = max((c['n'] for c in per_metric.values()), default=0)
        lines.append(f'| {n_rand} | {n} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------ diagnostics
def _other_videos(batch):
    """The batch with every sentence row's video replaced by the next video of the batch (None for one video)."""
    b = batch.video.size(0)
    if b < 2:
        return None
    order = torch.roll(torch.arange(b, device=batch.video.device), 1)
    return batch.video[order], batch.video_length[order], batch.video_mask[order]


@torch.no_grad()
def video_reliance(cg, batches, device, segment_of=gt_segments) -> dict:
    """Does the caption generator read the video? Its teacher-forced caption loss (nats per token) on held-out
    videos at `segment_of(batch)` (default the GT segments), given their own features, an all-zero video and
    another video's features (the next video of the batch; batches of one video are left out of that mean).
    Equal losses mean the captioner ignores the video (issue 14); `reliance` = other - own."""
    cg.eval()
    totals = {'own': [0.0, 0.0], 'zero': [0.0, 0.0], 'other': [0.0, 0.0]}
    for batch in batches:
        batch = batch.to(device)
        mask = batch.caption_mask.reshape(batch.caption.shape).to(batch.video.dtype)
        tokens = float(mask[:, 1:].sum())
        segments = segment_of(batch)
        inputs = {'own': (batch.video, batch.video_length, batch.video_mask),
                  'zero': (torch.zeros_like(batch.video), batch.video_length, batch.video_mask),
                  'other': _other_videos(batch)}
        for name, video in inputs.items():
            if video is None:
                continue
            logp, _ = cg(*video, segments, batch.caption_gather_idx, sent=batch.caption)
            totals[name][0] += float(-(logp.gather(2, batch.caption.unsqueeze(2)).squeeze(2) * mask).sum())
            totals[name][1] += tokens
    out = {f'nll_{name}': (s / n if n else None) for name, (s, n) in totals.items()}
    out['reliance'] = None if out['nll_other'] is None else out['nll_other'] - out['nll_own']
    return out
