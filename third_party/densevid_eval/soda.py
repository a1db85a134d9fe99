"""SODA_c: story-level caption score under an order-preserving alignment (spec evaluation §3.5).

Written from the specification (the upstream code's licence forbids copying it). Per reference file, per
video in both the file and the submission (in the file's order): sort predictions and golds by start time
(stable), PTB-tokenize them with the reference's calls (``tokenize_runs``), build
``C = IoU ⊙ METEOR`` (sentence-level METEOR with the gold in the hypothesis slot, as upstream), find the
maximum-weight order-preserving matching by dynamic programming, and score F = 2PR/(P+R) with
P = score / n_pred, R = score / n_gold. SODA_c = mean per-video F of a file, then the mean over the files.
No proposal cap. The DP is iterative, so it has no recursion limit (the upstream recursion overflows at
roughly 990 predictions + golds; ILCACM's copy then scores the video 0; such videos are counted).
"""
import numpy as np

from .meteor import ptb_tokenize_lists
from .text import remove_nonascii
from .tiou import tiou_matrix

IMPLEMENTATION = ("wsdvc re-implementation of SODA_c from spec evaluation §3.5 (upstream fujiso/SODA behaviour "
                  "as vendored by ILCACM: METEOR gold-as-hypothesis, tIoU 0.0, no proposal cap; PTB-tokenized per "
                  "reference file, one call for the predictions and one for the golds, videos in file order, "
                  "each video's sorted by start; iterative DP)")
UPSTREAM_RECURSION_LIMIT = 990  # predictions + golds at which the upstream recursive DP overflows (§3.5)


def dp_alignment(C):
    """Maximum total weight of an order-preserving matching of rows to columns of ``C`` (§3.5 step 5)."""
    n_g, n_p = len(C), len(C[0])
    D = [[0.0] * n_p for _ in range(n_g)]
    for i in range(n_g):
        for j in range(n_p):
            if i == 0 and j == 0:
                D[i][j] = C[0][0]
            elif i == 0:
                D[i][j] = max(D[0][j - 1], C[0][j])
            elif j == 0:
                D[i][j] = max(D[i - 1][0], C[i][0])
            else:
                D[i][j] = max(D[i - 1][j], D[i][j - 1], D[i - 1][j - 1] + C[i][j])
    return D[-1][-1]


def video_prf(ious, meteor_scores):
    """(P, R, F) of one video from its (n_gold, n_pred) IoU and METEOR matrices (§3.5 steps 4-6)."""
    n_g, n_p = ious.shape
    if n_p == 0:
        return 0.0, 0.0, 0.0
    score = dp_alignment((ious * meteor_scores).tolist())
    precision, recall = score / n_p, score / n_g
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f


class _Video:
    """Sorted golds and predictions of one (reference file, video), and their tokens once tokenized."""

    def __init__(self, entries, annotation):
        preds = sorted(entries, key=lambda e: e['timestamp'][0])
        order = sorted(range(len(annotation['timestamps'])), key=lambda j: annotation['timestamps'][j][0])
        self.pred_sentences = [e['sentence'] for e in preds]
        self.gold_sentences = [annotation['sentences'][j] for j in order]
        self.ious = tiou_matrix([e['timestamp'] for e in preds],
                                [annotation['timestamps'][j] for j in order]).T.reshape(len(order), len(preds))
        self.pred_tokens = self.gold_tokens = None


def tokenize_runs(runs):
    """Set every video's ``pred_tokens`` and ``gold_tokens`` (spec evaluation §3.5 step 2 and "Details"), with
    the PTB calls of the reference's preprocessing: per reference file, one call with the predictions of its
    videos (video after video, each video's sorted by start time) and one with their golds (sorted likewise),
    non-ASCII characters removed first. A line's tokens depend on the line after it (``a capital T.`` keeps
    its period unless the next line starts with a capital, ``meteor.ptb_tokenize``), so each call holds
    exactly these lines in this order. Videos follow the reference file's order (the reference iterates a
    ``set``, whose order moves with ``PYTHONHASHSEED``; README.md in this folder). The calls run concurrently."""
    lists = []
    for run in runs:
        lists += [[remove_nonascii(s) for v in run for s in v.pred_sentences],
                  [remove_nonascii(s) for v in run for s in v.gold_sentences]]
    tokenized = iter(ptb_tokenize_lists(lists))
    for run in runs:
        preds, golds = iter(next(tokenized)), iter(next(tokenized))
        for v in run:
            v.pred_tokens = [next(preds) for _ in v.pred_sentences]
            v.gold_tokens = [next(golds) for _ in v.gold_sentences]


def soda_c(results, references, labels, meteor):
    """SODA_c (percent) over ``references`` (one SODA run per file, then the mean), with per-file details."""
    runs = [[_Video(results[vid], ref[vid]) for vid in ref if vid in results] for ref in references]
    tokenize_runs(runs)
    pairs = list(dict.fromkeys((g, p) for run in runs for v in run for g in v.gold_tokens for p in v.pred_tokens))
    pair_score = dict(zip(pairs, meteor.score_pairs([g for g, _ in pairs], [[p] for _, p in pairs])))

    per_reference = []
    for label, run in zip(labels, runs):
        prf = []
        for v in run:
            S = np.array([[pair_score[(g, p)] for p in v.pred_tokens] for g in v.gold_tokens]).reshape(v.ious.shape)
            prf.append(video_prf(v.ious, S))
        means = np.mean(prf, axis=0) * 100 if prf else np.zeros(3)
        per_reference.append({'reference': label, 'precision': float(means[0]), 'recall': float(means[1]),
                              'f1': float(means[2]), 'n_videos': len(run)})
    return {
        'SODA_c': float(np.mean([r['f1'] for r in per_reference])),
        'per_reference': per_reference,
        'videos_past_upstream_recursion_limit': sum(
            len(v.pred_sentences) + len(v.gold_sentences) >= UPSTREAM_RECURSION_LIMIT for run in runs for v in run),
    }
