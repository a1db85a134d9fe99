"""WSDEC test-time procedures on collated batches (spec wsdec §4.4, §4.5): dense captioning from initial
segments, sentence localization, the random baselines, captioning at GT segments, submissions, and the
aggregation of the random-initialisation robustness study (spec wsdec §1, `run_random_test.sh`).

Every function takes the models, a `WSDECBatch` and plain options, and returns per-video entry lists
`{vid: [{'sentence', 'timestamp': [s, e] seconds, ...}]}`; nothing here reads files or parses flags.
Models must be in eval mode: the caption generator then runs beam search (no `sent` is passed).
"""
import math
from dataclasses import asdict, dataclass, fields

import torch

from models.wsdec.inference import gen_random_segments, refine_temporal_segments
from utils.segments import cw2se, se2cw


@dataclass
class InferenceOptions:
    """The dense-captioning test procedure (spec wsdec §4.4); defaults = `eval_script/evaluate.py` as released."""
    n_rand: int = 15                          # initial segments per video; -1 = the 15 anchors
    rand_seed: int = 233                      # seed of the torch.Generator drawing them
    per_video_random_segments: bool = False   # spec §6.3.5: legacy = one draw shared by the batch
    refine_round: int = 1                     # localize → filter/merge → re-caption rounds
    iou_thres: float = 0.9                    # hull merge above this IoU
    drop_iou: float = 0.2                     # spec §6.3.3 drop rule threshold
    legacy_drop: bool = True                  # drop if IoU(new, old) > drop_iou (released); else if < drop_iou
    legacy_shuffled_eval: bool = False        # spec §6.3.6: shuffle=True, drop_last=True loader

    @classmethod
    def names(cls) -> tuple:
        return tuple(f.name for f in fields(cls))


def resolve_options(stored: dict | None, cli: dict, base: InferenceOptions | None = None):
    """Options from the script's defaults `base`, then the checkpoint's `config['inference']` (`stored`),
    then the command line (`cli`: name → value, None = not given). Returns `(options, overridden)` where
    `overridden` maps each option the command line changed to `(previous value, new value)`."""
    values = asdict(base or InferenceOptions())
    values.update({k: v for k, v in (stored or {}).items() if k in values})
    overridden = {}
    for name, value in cli.items():
        if value is not None and name in values:
            if value != values[name]:
                overridden[name] = (values[name], value)
            values[name] = value
    return InferenceOptions(**values), overridden


def initial_segments(n_videos: int, n_rand: int, generator: torch.Generator, per_video: bool) -> torch.Tensor:
    """`(B, P, 2)` initial `(c, w)` (spec §4.4 step 3): `n_rand` draws of U[0,1)² shared by the B videos
    (legacy) or drawn per video; `n_rand = -1` gives the 15 anchors to every video."""
    if per_video and n_rand != -1:
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


def gt_segments(batch) -> torch.Tensor:
    """GT segments as normalised `(c, w)`: `se2cw([s_idx, e_idx]) / L` (spec §4.3, supervised CG)."""
    length = batch.video_length[:, 0].index_select(0, batch.caption_gather_idx)
    return se2cw(batch.timestamp_idx / length.unsqueeze(1))


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


def dense_captioning(cg, sl, batches, options: InferenceOptions, vocab, device) -> dict:
    """Spec wsdec §4.4 over all batches; initial segments from one generator seeded with `rand_seed`,
    drawn per batch in loader order (shared by its videos, or per video with `per_video_random_segments`)."""
    generator = torch.Generator().manual_seed(options.rand_seed)

    def step(batch):
        S0 = initial_segments(len(batch.keys), options.n_rand, generator, options.per_video_random_segments)
        return dense_captions(cg, sl, batch, S0, options, vocab)

    return predict(batches, step, device)


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
