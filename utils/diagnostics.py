"""Collapse diagnostics of a dense-captioning run (issue 14): what the predictions look like, whatever the method.

A model can score near its baselines while predicting nothing that depends on the video: one caption for every
event, the same segment in every video, masks narrower than a frame. `submission_diagnostics` measures that on a
submission against the references (stored in every metrics JSON under `diagnostics`, drawn in the run report);
the method's own measurements (video reliance, stage-1 counts, pseudo-label ties, see models/*/inference.py and
`training_log_summary`) are added beside them, and `warnings` turns all of it into plain sentences.
"""
import json
import math
import re
from collections import Counter
from pathlib import Path

BINS = 10
NARROW = 1 / 32           # an event narrower than this fraction of its video: under one of ILCACM's 32 frames
RELIANCE_FLOOR = 0.02     # nats per token: below it the captioner's loss hardly depends on which video it sees


def _normalise(sentence: str) -> str:
    return ' '.join(str(sentence).lower().replace('.', ' ').split())


def _histogram(values, lo=0.0, hi=1.0, bins=BINS) -> list[int]:
    counts = [0] * bins
    for v in values:
        counts[min(max(int((v - lo) / (hi - lo) * bins), 0), bins - 1)] += 1
    return counts


def _mean_std(values) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def submission_diagnostics(results: dict, references: dict) -> dict:
    """Caption diversity, events per video against the reference count, and the distribution of the predicted
    centres and widths (fractions of the video's duration, from `references`), of `results`
    ({vid: [{'sentence', 'timestamp'}]})."""
    sentences = [_normalise(e['sentence']) for entries in results.values() for e in entries]
    counts = Counter(sentences)
    per_video = {vid: [_normalise(e['sentence']) for e in entries] for vid, entries in results.items()}
    several = [c for c in per_video.values() if len(c) > 1]
    centres, widths, starts, ends = [], [], [], []
    for vid, entries in results.items():
        duration = references.get(vid, {}).get('duration')
        if not duration:
            continue
        for e in entries:
            s, t = (min(max(float(x) / duration, 0.0), 1.0) for x in e['timestamp'])
            centres.append((s + t) / 2)
            widths.append(t - s)
            starts.append(s)
            ends.append(t)
    scored = [vid for vid in results if vid in references]
    predicted = [len(results[v]) for v in scored]
    reference = [len(references[v]['sentences']) for v in scored]
    top, top_count = counts.most_common(1)[0] if counts else ('', 0)
    return {
        'videos': len(results), 'events': len(sentences),
        'distinct_captions': len(counts), 'distinct_fraction': len(counts) / max(len(sentences), 1),
        'top_caption': top, 'top_caption_fraction': top_count / max(len(sentences), 1),
        'one_caption_videos_fraction': sum(len(set(c)) == 1 for c in several) / max(len(several), 1),
        'single_event_videos_fraction': sum(len(c) == 1 for c in per_video.values()) / max(len(per_video), 1),
        'events_per_video': _mean_std(predicted)[0], 'reference_events_per_video': _mean_std(reference)[0],
        'centre_mean_std': _mean_std(centres), 'width_mean_std': _mean_std(widths),
        'start_mean_std': _mean_std(starts), 'end_mean_std': _mean_std(ends),
        'centre_histogram': _histogram(centres), 'width_histogram': _histogram(widths),
        'narrow_fraction': sum(w < NARROW for w in widths) / max(len(widths), 1),
    }


STATED_COUNT = re.compile(r'(\d+)\s*events?\s*:')


def paragraph_diagnostics(paragraphs: dict) -> dict:
    """ILCACM's stage-1 paragraphs ({vid: {'paragraph', 'sentences'}}): the count the paragraph states ("3 events:")
    against the number of sentences its split gives (which fixes the event count, spec ilcacm §5.1)."""
    stated, split = [], []
    for p in paragraphs.values():
        match = STATED_COUNT.search(p.get('paragraph', ''))
        if match:
            stated.append(int(match.group(1)))
            split.append(len(p['sentences']))
    texts = Counter(_normalise(p.get('paragraph', '')) for p in paragraphs.values())
    return {'paragraphs': len(paragraphs), 'distinct_paragraphs': len(texts),
            'stated_count_mean': _mean_std(stated)[0], 'split_count_mean': _mean_std(split)[0],
            'stated_equals_split_fraction': sum(a == b for a, b in zip(stated, split)) / max(len(stated), 1),
            'single_sentence_fraction': sum(len(p['sentences']) == 1 for p in paragraphs.values())
            / max(len(paragraphs), 1)}


def training_log_summary(log_path, names=('label_tied', 'label_zero', 'div')) -> dict:
    """Means over the training steps that logged them (pseudo-label ties, diversity loss): all steps, the first
    and the last epoch that has them."""
    path = Path(log_path)
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = {}
    for name in names:
        values = [(r.get('epoch', 0), r[name]) for r in rows if name in r]
        if not values:
            continue
        epochs = sorted({e for e, _ in values})
        out[f'train_{name}_mean'] = _mean_std([v for _, v in values])[0]
        out[f'train_{name}_first_epoch'] = _mean_std([v for e, v in values if e == epochs[0]])[0]
        out[f'train_{name}_last_epoch'] = _mean_std([v for e, v in values if e == epochs[-1]])[0]
    return out


def warnings(diagnostics: dict) -> list[str]:
    """Plain-language signs that a run has collapsed (empty when it looks healthy)."""
    d, out = diagnostics, []
    if d.get('events') and d['top_caption_fraction'] > 0.5:
        out.append(f"one caption for {100 * d['top_caption_fraction']:.0f}% of the events ({d['top_caption']!r}; "
                   f"{d['distinct_captions']} distinct captions for {d['events']} events)")
    elif d.get('events', 0) >= 20 and d['distinct_fraction'] < 0.05:
        out.append(f"only {d['distinct_captions']} distinct captions for {d['events']} events")
    if d.get('one_caption_videos_fraction', 0) > 0.8:
        out.append(f"in {100 * d['one_caption_videos_fraction']:.0f}% of the videos with several events, every "
                   f"event has the same caption")
    if d.get('narrow_fraction', 0) > 0.5:
        out.append(f"{100 * d['narrow_fraction']:.0f}% of the events are narrower than 1/32 of their video "
                   f"(under one frame of 32)")
    centre, width = d.get('centre_mean_std', (None, None)), d.get('width_mean_std', (None, None))
    if d.get('videos', 0) >= 5 and centre[1] is not None and centre[1] < 0.03 and width[1] < 0.03:
        out.append(f"nearly the same segment everywhere (centre {centre[0]:.2f} ± {centre[1]:.2f}, width "
                   f"{width[0]:.2f} ± {width[1]:.2f} of the video)")
    if d.get('events_per_video') and d.get('reference_events_per_video') and \
            not 0.5 <= d['events_per_video'] / d['reference_events_per_video'] <= 2:
        out.append(f"{d['events_per_video']:.2f} predicted events per video against "
                   f"{d['reference_events_per_video']:.2f} in the references")
    for key in sorted(k for k in d if k.startswith('reliance')):
        if d[key] is not None and d[key] < RELIANCE_FLOOR:
            out.append(f"the captioner hardly reads the video: its loss with another video's features is only "
                       f"{d[key]:.3f} nats/token above its loss with the video's own ({key})")
    if d.get('stated_equals_split_fraction') is not None and d.get('paragraphs') and \
            d['stated_equals_split_fraction'] < 0.5:
        out.append(f"stage-1 paragraphs: the split gives the stated event count in only "
                   f"{100 * d['stated_equals_split_fraction']:.0f}% of the videos")
    if d.get('train_label_tied_mean') is not None and d['train_label_tied_mean'] > 0.5:
        out.append(f"{100 * d['train_label_tied_mean']:.0f}% of the SL-phase pseudo-labels were decided by a tie "
                   f"(the captioner gave several anchors the same caption; ties go to anchor 0)")
    return out
