"""Dense-captioning scores of densevid_eval, batched (spec evaluation §3.3, §3.4).

Same numbers as the official per-video loop (``reference_impl.py``), computed faster:
* tIoUs are computed once per (video, reference file) with numpy and thresholded per tIoU;
* the PTB tokenizer reads the official lists (per tIoU, predictions and references) in concurrent processes;
* every distinct (hypothesis, reference) pair gets its METEOR statistics once (one pipelined Java process,
  running while Python computes BLEU/ROUGE-L/CIDEr-D, bit-identical to pycocoevalcap's classes with
  per-sentence caches, ``coco_metrics.py``), and every distinct list of a video's pairs is scored once,
  however many tIoUs share it; METEOR's aggregate of a list is computed from the summed statistics in
  Python exactly as the jar's ``EVAL`` request does (``meteor.aggregate_stats``).
Items keep the official order (tIoU, video, prediction, reference file, GT caption), so pooled statistics and
the seeded random garbage strings are the same as the official loop's.
"""
import random
import string
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from utils.text import remove_nonascii

from .coco_metrics import CachedCocoMetrics
from .meteor import MeteorStats, aggregate_stats, ptb_tokenize_lists
from .tiou import tiou_matrix

CAPTION_METRICS = ('Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr')
GARBAGE_2018 = 'abc123!@#'  # densevid_eval deba7d7 (spec evaluation §3.3 step 3)
TOOLKIT_COMMITS = {'2018': 'deba7d7', '2021': '9d4045a'}


def random_garbage(rng):
    """densevid_eval 9d4045a: ``random_string(random.randint(10, 20))`` of lower-case letters."""
    length = rng.randint(10, 20)
    return ''.join(rng.choice(string.ascii_lowercase) for _ in range(length))


class GarbageReference:
    """The reference paired with a prediction that overlaps no GT caption (spec evaluation §3.3 step 3)."""

    def __init__(self, toolkit, seed):
        if toolkit not in TOOLKIT_COMMITS:
            raise ValueError(f"toolkit must be one of {sorted(TOOLKIT_COMMITS)}, got {toolkit!r}")
        self.toolkit = toolkit
        self.rng = random.Random(seed)

    def __call__(self):
        return GARBAGE_2018 if self.toolkit == '2018' else random_garbage(self.rng)


def gt_video_ids(references):
    """Union of the reference files' video ids, in file order (the official iterates over this union)."""
    return list(dict.fromkeys(vid for ref in references for vid in ref))


def scored_video_ids(references, predictions, missing):
    """spec evaluation §1.4: 'zero' scores every GT video, 'skip' only those with a key in the submission."""
    if missing not in ('zero', 'skip'):
        raise ValueError(f"missing must be 'zero' or 'skip', got {missing!r}")
    vids = gt_video_ids(references)
    return vids if missing == 'zero' else [v for v in vids if v in predictions]


class VideoOverlaps:
    """One video's predictions and, per reference file holding it, the tIoU matrix and GT sentences."""

    def __init__(self, entries, references, vid):
        self.predicted = entries is not None
        entries = entries or []
        self.sentences = [e['sentence'] for e in entries]
        preds = [e['timestamp'] for e in entries]
        self.files = [(tiou_matrix(preds, ref[vid]['timestamps']), ref[vid]['sentences'])
                      for ref in references if vid in ref]

    def caption_pairs(self, tiou, garbage):
        """(prediction, reference) items at ``tiou``: every GT with IoU >= tiou, else garbage (§3.3 steps 2-3)."""
        items = []
        for i, sentence in enumerate(self.sentences):
            matched = False
            for ious, gt_sentences in self.files:
                for j in np.flatnonzero(ious[i] >= tiou):
                    items.append((sentence, gt_sentences[j]))
                    matched = True
            if not matched:
                items.append((sentence, garbage()))
        return items

    def precision_recall(self, tiou):
        """Best P and best R over the reference files, detection with IoU > tiou (spec evaluation §3.4)."""
        best_precision = best_recall = 0
        for ious, _ in self.files:
            covered = ious > tiou
            if self.predicted:
                best_precision = max(best_precision, float(covered.any(axis=1).sum()) / max(len(self.sentences), 1))
            best_recall = max(best_recall, float(covered.any(axis=0).sum()) / covered.shape[1])
        return best_precision, best_recall


def detection_scores(videos, tious):
    """{'Precision': [P(tau)...], 'Recall': [R(tau)...]} as fractions, means over the scored videos."""
    out = {'Precision': [], 'Recall': []}
    for tiou in tious:
        pr = [v.precision_recall(tiou) for v in videos]
        out['Precision'].append(sum(p for p, _ in pr) / len(pr))
        out['Recall'].append(sum(r for _, r in pr) / len(pr))
    return out


def average_over_videos(per_video):
    """Official averaging: ``np.mean`` over videos (Bleu as rows of 4, the others as scalars)."""
    bleu = np.mean([s[0] for s in per_video], axis=0)
    out = {f'Bleu_{n + 1}': float(bleu[n]) for n in range(4)}
    for k, name in ((1, 'METEOR'), (2, 'ROUGE_L'), (3, 'CIDEr')):
        out[name] = float(np.mean([s[k] for s in per_video]))
    return out


def tokenize_like_official(pairs_by_tiou):
    """Tokenized items, per tIoU and video. As the official tool, each tIoU's predictions and references are
    tokenized as two lists in item order (a line's tokens can depend on the next line, ``meteor.ptb_tokenize``);
    the eight lists run as concurrent Java processes."""
    lists = []
    for per_video in pairs_by_tiou:
        flat = [pair for items in per_video for pair in items]
        lists += [[remove_nonascii(h) for h, _ in flat], [remove_nonascii(r) for _, r in flat]]
    tokenized = ptb_tokenize_lists(lists)
    out = []
    for t, per_video in enumerate(pairs_by_tiou):
        hyps, refs = iter(tokenized[2 * t]), iter(tokenized[2 * t + 1])
        out.append([tuple((next(hyps), next(refs)) for _ in items) for items in per_video])
    return out


def caption_scores(pairs_by_tiou, meteor):
    """Per-tIoU caption metrics (fractions) from ``pairs_by_tiou[t] = [items of each scored video]``."""
    tokenized = tokenize_like_official(pairs_by_tiou)
    groups = {}  # distinct tuple of tokenized items -> index (a video's list is often the same at several tIoUs)
    keyed = []
    for per_video in tokenized:
        keys = []
        for key in per_video:
            if key:
                groups.setdefault(key, len(groups))
            keys.append(key)
        keyed.append(keys)
    group_list = list(groups)

    # the METEOR statistics come from the Java process (another core) while this thread computes the rest
    distinct_pairs = list(dict.fromkeys(p for key in group_list for p in key))
    with ThreadPoolExecutor(max_workers=1) as pool:
        stats_lines = pool.submit(meteor.stats, [h for h, _ in distinct_pairs], [[r] for _, r in distinct_pairs])
        coco = CachedCocoMetrics()
        coco_scores = [coco.scores(key) for key in group_list]
        stats = dict(zip(distinct_pairs, map(MeteorStats.parse, stats_lines.result())))
    group_scores = [(bleu, aggregate_stats([stats[p] for p in key]), rouge, cider)
                    for key, (bleu, rouge, cider) in zip(group_list, coco_scores)]

    zero = ([0] * 4, 0, 0, 0)  # a video with no items scores 0 (spec evaluation §3.3 step 6)
    return [average_over_videos([group_scores[groups[k]] if k else zero for k in keys]) for keys in keyed]


def score_dense(predictions, references, vids, tious, garbage, meteor):
    """Per-tIoU fractions of the 7 caption metrics and P/R over ``vids`` (official procedure, batched)."""
    videos = [VideoOverlaps(predictions.get(vid), references, vid) for vid in vids]
    pairs_by_tiou = [[v.caption_pairs(t, garbage) for v in videos] for t in tious]
    per_tiou = caption_scores(pairs_by_tiou, meteor)
    detection = detection_scores(videos, tious)
    for k, scores in enumerate(per_tiou):
        scores['Recall'] = detection['Recall'][k]
        scores['Precision'] = detection['Precision'][k]
    return per_tiou
