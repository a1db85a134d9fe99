"""Sentence localization: R@1 at tIoU thresholds and mean IoU (spec evaluation §3.6, wsdec §5.3).

Entries carry ``timestamp`` (the localized segment) and ``gt_timestamp`` (the GT segment of the sentence).
R@1 at tau = #entries with IoU > tau (strict) / #entries, a micro-average over all sentences, as WSDEC's
``densevid_eval_localization.py``; mIoU = the per-sentence mean IoU (WSDEC only logged a per-batch mean with
another IoU formula). Both use densevid's IoU (union capped at len1 + len2).
"""
import numpy as np

from .submission import SubmissionError, load_results
from .tiou import tiou_elementwise

DEFAULT_TIOUS = (0.1, 0.3, 0.5, 0.7, 0.9)


def evaluate_localization(submission, tious=DEFAULT_TIOUS):
    """``{'metrics': {'R@1_0.1': .., 'mIoU': ..} (percent), 'meta': {...}}`` of a localization submission."""
    results, source, _ = load_results(submission, segment_fields=('timestamp', 'gt_timestamp'),
                                      need_sentence=False)
    entries = [e for per_video in results.values() for e in per_video]
    if not entries:
        raise SubmissionError(f"{source}: no entries to score")
    ious = tiou_elementwise([e['timestamp'] for e in entries], [e['gt_timestamp'] for e in entries])
    metrics = {f'R@1_{t:g}': 100.0 * float(np.sum(ious > t)) / len(entries) for t in tious}
    metrics['mIoU'] = 100.0 * float(np.mean(ious))
    meta = {
        'kind': 'sentence_localization',
        'scale': 'percent (x100)',
        'submission': source,
        'n_sentences': len(entries),
        'n_videos': len(results),
        'tious': list(tious),
        'r_at_1': 'micro-average over sentences, IoU > tau (strict), densevid IoU (spec evaluation §3.6)',
        'miou': 'per-sentence mean of the densevid IoU (not WSDEC\'s per-batch log-line mean)',
    }
    return {'metrics': metrics, 'meta': meta}
