"""Dense-captioning scores of densevid_eval, batched (spec evaluation §3.3, §3.4).

Same numbers as the official per-video loop (``reference_impl.py``), computed faster:
* tIoUs are computed once per (video, reference file) and thresholded per tIoU;
* the PTB tokenizer reads the official lists (per tIoU, predictions and references) in concurrent processes;
* every distinct (hypothesis, reference) pair gets its METEOR statistics once (one pipelined Java process,
  running while a lower-priority child process computes BLEU/ROUGE-L/CIDEr-D, bit-identical to
  pycocoevalcap's classes with per-sentence caches, ``coco_metrics.py``); the pairs of a hypothesis with
  the 2018 garbage reference, which METEOR cannot match, get statistics derived from the hypothesis' other
  pairs (``GARBAGE_2018_TOKENIZED``); every distinct list of a video's pairs is scored once,
  however many tIoUs share it; METEOR's aggregate of a list is computed from the summed statistics in
  Python exactly as the jar's ``EVAL`` request does (``meteor.aggregate_groups``).
Items keep the official order within each video (tIoU, then prediction, reference file, GT caption); the videos
follow the reference files' order, where the official tool iterates a ``set`` (``gt_video_ids``). Per-video
scores do not depend on the video order, but two things do: a line's PTB tokens can depend on the next line,
which at a video boundary belongs to the next video, and the 2021 random garbage strings are drawn in item
order. With a fixed order the same input always gives the same numbers; the official tool's can move with
``PYTHONHASHSEED`` (README.md in this folder).
"""
import multiprocessing
import os
import random
import string
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .coco_metrics import CachedCocoMetrics
from .meteor import aggregate_groups, ptb_tokenize_lists, stats_matrix
from .text import remove_nonascii
from .tiou import tiou

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
    """Union of the reference files' video ids in file order: the first file's ids, then the new ids of the next.

    The official ``get_gt_vid_ids`` builds the same union as a ``set`` and iterates it, in an order that follows
    string hashing (it changes with ``PYTHONHASHSEED``); this deterministic order is a deliberate choice.
    """
    return list(dict.fromkeys(vid for ref in references for vid in ref))


def scored_video_ids(references, predictions, missing):
    """spec evaluation §1.4: 'zero' scores every GT video, 'skip' only those with a key in the submission."""
    if missing not in ('zero', 'skip'):
        raise ValueError(f"missing must be 'zero' or 'skip', got {missing!r}")
    vids = gt_video_ids(references)
    return vids if missing == 'zero' else [v for v in vids if v in predictions]


class VideoOverlaps:
    """One video's predictions and, per reference file holding it, the tIoU rows (one list per prediction,
    plain Python floats: a video has a handful of segments, too few for numpy to pay) and GT sentences."""

    def __init__(self, entries, references, vid):
        self.predicted = entries is not None
        entries = entries or []
        self.sentences = [e['sentence'] for e in entries]
        preds = [e['timestamp'] for e in entries]
        self.files = []
        for ref in references:
            if vid in ref:
                gts = ref[vid]['timestamps']
                self.files.append(([[tiou(p, g) for g in gts] for p in preds], len(gts), ref[vid]['sentences']))

    def caption_pairs(self, tiou_threshold, garbage):
        """(prediction, reference) items at the threshold: every GT with IoU >= it, else garbage (§3.3 steps 2-3)."""
        items = []
        for i, sentence in enumerate(self.sentences):
            matched = False
            for ious, _, gt_sentences in self.files:
                for j, iou in enumerate(ious[i]):
                    if iou >= tiou_threshold:
                        items.append((sentence, gt_sentences[j]))
                        matched = True
            if not matched:
                items.append((sentence, garbage()))
        return items

    def precision_recall(self, tiou_threshold):
        """Best P and best R over the reference files, detection with IoU > threshold (spec evaluation §3.4)."""
        best_precision = best_recall = 0
        for ious, n_gt, _ in self.files:
            if self.predicted:
                hits = sum(any(iou > tiou_threshold for iou in row) for row in ious)
                best_precision = max(best_precision, float(hits) / max(len(self.sentences), 1))
            covered = sum(any(row[j] > tiou_threshold for row in ious) for j in range(n_gt))
            best_recall = max(best_recall, float(covered) / n_gt)
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


# The 2018 garbage reference as the PTB tokenizer leaves it. METEOR (-norm) reads it as the 4 tokens
# ``abc123 ! @ #`` (ref length 4, no function word), and none of its matchers can relate them to a word that
# contains none of these strings: exact and stem matches need the same token or stem (English Snowball stems
# only shorten or respell suffixes), and no entry of its WordNet synonym files or of paraphrase-en.gz contains
# '!', '@', '#' or 'abc123' (checked in the files of pycocoevalcap 1.2). So the statistics of (hypothesis,
# garbage) have no match: [test_len, 4, test_function_words, 0, 0 x 19], where the hypothesis' own counts
# are those METEOR reports for it in any other pair. About a fifth of the METEOR lines of a val_1 evaluation
# are such pairs; ``tests/test_scorer_java.py`` checks the derived lines against the jar's.
GARBAGE_2018_TOKENIZED = 'abc123!@#'
GARBAGE_2018_METEOR_TOKENS = ('abc123', '!', '@', '#')


def _cannot_match_garbage(hyp):
    """No garbage token can appear in METEOR's reading of ``hyp`` ('&' excluded too: its normaliser decodes
    HTML entities)."""
    lowered = hyp.lower()
    return '&' not in lowered and not any(token in lowered for token in GARBAGE_2018_METEOR_TOKENS)


def split_garbage_pairs(pairs):
    """(pairs for METEOR, pairs whose statistics are derived): the second are (hypothesis, 2018 garbage) pairs
    whose hypothesis cannot match the garbage and also occurs in a pair METEOR scores."""
    scored_hyps = {h for h, r in pairs if r != GARBAGE_2018_TOKENIZED}
    to_java, derived = [], []
    for pair in pairs:
        hyp, ref = pair
        if ref == GARBAGE_2018_TOKENIZED and hyp in scored_hyps and _cannot_match_garbage(hyp):
            derived.append(pair)
        else:
            to_java.append(pair)
    if derived and not any(r == GARBAGE_2018_TOKENIZED and _cannot_match_garbage(h) for h, r in to_java):
        to_java.append(derived.pop())  # one garbage pair goes to METEOR: its answer gives the reference counts
    return to_java, derived


def complete_garbage_stats(matrix, to_java, derived, meteor):
    """Append the derived pairs' statistics (see ``GARBAGE_2018_TOKENIZED``) to METEOR's ``matrix`` of
    ``to_java``; returns the matrix and its pairs. If METEOR's own garbage line ever shows a match, the derived
    pairs are scored by METEOR instead (never expected; a safety net for a different METEOR build)."""
    if not derived:
        return matrix, to_java
    rows = {pair: i for i, pair in enumerate(to_java)}
    probe = next(matrix[rows[p]] for p in to_java if p[1] == GARBAGE_2018_TOKENIZED and _cannot_match_garbage(p[0]))
    if probe[4:].any():
        extra = stats_matrix(meteor.stats([h for h, _ in derived], [[r] for _, r in derived]))
        return np.concatenate([matrix, extra]), to_java + derived
    hyp_row = {}
    for i, (hyp, _) in enumerate(to_java):
        hyp_row.setdefault(hyp, i)
    extra = np.zeros((len(derived), matrix.shape[1]))
    source = matrix[[hyp_row[h] for h, _ in derived]]
    extra[:, 0], extra[:, 2] = source[:, 0], source[:, 2]  # the hypothesis' length and function words
    extra[:, 1], extra[:, 3] = probe[1], probe[3]  # the garbage's
    return np.concatenate([matrix, extra]), to_java + derived


def coco_scores_of(groups):
    """(BLEU-1..4, ROUGE-L, CIDEr-D) of each group of items."""
    coco = CachedCocoMetrics()
    return [coco.scores(key) for key in groups]


class LowPriorityWorker:
    """``fn(*args)`` in a forked child process at a lower CPU priority (``os.nice(NICENESS)``); ``result()``
    returns its value. The scorer's critical path is the METEOR process: the Python metrics run beside it
    without slowing it down (and without sharing this process' GIL with the thread feeding METEOR). Off Linux
    (no ``fork``, or ``fork`` unsafe with the libraries loaded) and inside a daemonic process (which may not
    have children), ``fn`` runs in this process when ``result()`` is called."""
    NICENESS = 10

    def __init__(self, fn, *args):
        self._call = (fn, args)
        self._proc = None
        if self.available():
            ctx = multiprocessing.get_context('fork')
            self._receive, send = ctx.Pipe(duplex=False)
            self._proc = ctx.Process(target=self._child, args=(send, fn, args), daemon=True)
            self._proc.start()
            send.close()

    @staticmethod
    def available():
        return (sys.platform.startswith('linux') and 'fork' in multiprocessing.get_all_start_methods()
                and not multiprocessing.current_process().daemon)

    @classmethod
    def _child(cls, send, fn, args):
        try:
            os.nice(cls.NICENESS)
        except OSError:
            pass
        try:
            send.send((True, fn(*args)))
        except BaseException as err:  # reported by the parent
            send.send((False, f"{type(err).__name__}: {err}"))

    def close(self):
        """Stop the child if it is still running (an error elsewhere ended the scoring early)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join()

    def result(self):
        if self._proc is None:
            fn, args = self._call
            return fn(*args)
        try:
            ok, value = self._receive.recv()
        except EOFError:
            ok, value = False, f"worker process ended without an answer (exit code {self._proc.exitcode})"
        finally:
            self._proc.join()
            self._receive.close()
        if not ok:
            raise RuntimeError(f"scoring worker failed: {value}")
        return value


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
    to_java, derived = split_garbage_pairs(distinct_pairs)
    coco = LowPriorityWorker(coco_scores_of, group_list)  # forked before the METEOR thread starts
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            stats_lines = pool.submit(meteor.stats, [h for h, _ in to_java], [[r] for _, r in to_java])
            coco_scores = coco.result()
            matrix = stats_matrix(stats_lines.result())
    finally:
        coco.close()
    matrix, to_java = complete_garbage_stats(matrix, to_java, derived, meteor)
    row = {pair: i for i, pair in enumerate(to_java)}
    meteor_scores = aggregate_groups(matrix, [[row[p] for p in key] for key in group_list])
    group_scores = [(bleu, meteor_score, rouge, cider)
                    for (bleu, rouge, cider), meteor_score in zip(coco_scores, meteor_scores)]

    zero = ([0] * 4, 0, 0, 0)  # a video with no items scores 0 (spec evaluation §3.3 step 6)
    return [average_over_videos([group_scores[groups[k]] if k else zero for k in keys]) for keys in keyed]


def score_dense(predictions, references, vids, tious, garbage, meteor):
    """Per-tIoU fractions of the 7 caption metrics and P/R over ``vids`` (official procedure, batched)."""
    videos = [VideoOverlaps(predictions.get(vid), references, vid) for vid in vids]
    pairs_by_tiou = [[v.caption_pairs(t, garbage) for v in videos] for t in tious]
    detection = detection_scores(videos, tious)
    per_tiou = caption_scores(pairs_by_tiou, meteor)
    for k, scores in enumerate(per_tiou):
        scores['Recall'] = detection['Recall'][k]
        scores['Precision'] = detection['Precision'][k]
    return per_tiou
