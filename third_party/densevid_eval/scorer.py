"""``evaluate``: the dense video captioning protocol of densevid_eval, stamped (spec evaluation §3, §5)."""
import time

from .dense import CAPTION_METRICS, TOOLKIT_COMMITS, GarbageReference, gt_video_ids, scored_video_ids, score_dense
from .meteor import Meteor, java_executable
from .reference_impl import score_dense_reference
from .soda import IMPLEMENTATION as SODA_IMPLEMENTATION, soda_c
from .submission import (SubmissionError, cap_proposals, load_references, load_results, submission_warnings)

SUITE_VERSION = '0.1.0'
DEFAULT_TIOUS = (0.3, 0.5, 0.7, 0.9)
DEFAULT_GARBAGE_SEED = 0  # 2021 toolkit: the official random garbage is unseeded; here it is seeded and stamped

# Named protocols (spec evaluation §1.4, wsdec §5, ilcacm §6); every other option keeps its default
PROTOCOLS = {
    'wsdec': {'toolkit': '2018', 'missing': 'zero', 'soda': False},
    'ilcacm': {'toolkit': '2021', 'missing': 'skip', 'soda': True},
}
DETECTION_METRICS = ('Recall', 'Precision', 'F1')


def _f1(precision, recall):
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _summarise(per_tiou_fractions, tious):
    """Percent values per tIoU and averaged over tIoUs (official: 100 * sum / len), plus both F1 conventions."""
    per_tiou = {}
    for t, scores in zip(tious, per_tiou_fractions):
        row = {m: 100 * scores[m] for m in CAPTION_METRICS + ('Recall', 'Precision')}
        row['F1'] = _f1(row['Precision'], row['Recall'])
        per_tiou[f'{t:g}'] = row
    metrics = {m: 100 * sum(s[m] for s in per_tiou_fractions) / float(len(tious))
               for m in CAPTION_METRICS + ('Recall', 'Precision')}
    metrics['F1'] = _f1(metrics['Precision'], metrics['Recall'])  # spec evaluation §3.4: paper convention
    metrics['F1_mean_tiou'] = sum(r['F1'] for r in per_tiou.values()) / len(tious)  # ILCACM code's F1 key
    return metrics, per_tiou


def _garbage_meta(toolkit, seed):
    if toolkit == '2018':
        return {'rule': "literal 'abc123!@#' (densevid_eval deba7d7)", 'seed': None}
    return {'rule': 'random lower-case string of 10-20 characters (densevid_eval 9d4045a), Python random',
            'seed': seed}


def evaluate(submission, references, *, tious=DEFAULT_TIOUS, max_proposals=1000, toolkit='2018',
             missing='zero', soda=False, seed=None, fast=True, meteor=None):
    """Score a dense-captioning submission (dict or JSON path) against reference files (paths or dicts).

    Returns ``{'metrics': {...percent...}, 'per_tiou': {'0.3': {...}, ...}, 'meta': {...}}``.
    ``fast=False`` runs the official per-video loop (``reference_impl``) instead of the batched path;
    ``meteor``: an open ``Meteor`` to reuse (else one is started and closed here).
    """
    started = time.time()
    if toolkit not in TOOLKIT_COMMITS:
        raise ValueError(f"toolkit must be '2018' or '2021', got {toolkit!r}")
    seed = (DEFAULT_GARBAGE_SEED if seed is None else seed) if toolkit == '2021' else None
    results, source, data = load_results(submission)
    refs, ref_meta = load_references(references)
    warnings = submission_warnings(data, results, refs, max_proposals)
    predictions = cap_proposals(results, max_proposals)
    vids = scored_video_ids(refs, predictions, missing)
    if not vids:
        raise SubmissionError(f"{source}: none of its {len(results)} videos is in the references "
                              f"{[m['path'] for m in ref_meta]}; nothing to score with --missing skip")
    java_executable()  # after the input checks, so that bad input is reported even without Java
    garbage = GarbageReference(toolkit, seed)

    own_meteor = meteor is None and (fast or soda)  # the official loop runs pycocoevalcap's own Meteor
    meteor = Meteor() if own_meteor else meteor
    try:
        if fast:
            fractions = score_dense(predictions, refs, vids, tious, garbage, meteor)
        else:
            fractions = score_dense_reference(predictions, refs, vids, tious, garbage)
        soda_result = soda_c(results, refs, [m['path'] for m in ref_meta], meteor) if soda else None
    finally:
        if own_meteor:
            meteor.close()

    metrics, per_tiou = _summarise(fractions, tious)
    metrics['SODA_c'] = soda_result['SODA_c'] if soda else None
    gt_vids = gt_video_ids(refs)
    predicted = sum(v in predictions for v in gt_vids)
    meta = {
        'kind': 'dense_captioning',
        'scale': 'percent (x100)',
        'submission': source,
        'toolkit': toolkit,
        'toolkit_commit': TOOLKIT_COMMITS[toolkit],
        'garbage': _garbage_meta(toolkit, seed),
        'missing_policy': missing,
        'references': ref_meta,
        'n_videos_in_references': len(gt_vids),
        'n_videos_predicted': predicted,
        'n_videos_scored': len(vids),
        'n_videos_missing': len(gt_vids) - predicted,
        'n_videos_skipped': len(gt_vids) - len(vids),
        'tious': list(tious),
        'max_proposals': max_proposals,
        'f1_conventions': {'F1': 'harmonic mean of the tIoU-averaged Precision and Recall (paper convention)',
                           'F1_mean_tiou': "mean over tIoUs of F1(tIoU) (ILCACM code's 'F1' key)"},
        'soda': {'computed': bool(soda), 'implementation': SODA_IMPLEMENTATION,
                 'convention': 'mean per-video F, one run per reference file, then the mean over the files',
                 **({k: soda_result[k] for k in ('per_reference', 'videos_past_upstream_recursion_limit')}
                    if soda else {})},
        'java_tools': {'meteor': 'meteor-1.5.jar -l en -norm (pycocoevalcap 1.2)',
                       'tokenizer': 'stanford-corenlp-3.4.1 PTBTokenizer -preserveLines -lowerCase',
                       'official': True},
        'implementation': 'batched' if fast else 'official per-video loop',
        'suite_version': SUITE_VERSION,
        'warnings': warnings,
        'elapsed_s': round(time.time() - started, 2),
    }
    return {'metrics': metrics, 'per_tiou': per_tiou, 'meta': meta}
