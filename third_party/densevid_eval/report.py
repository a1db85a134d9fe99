"""Printing and saving results, always with the protocol stamp next to the numbers (spec evaluation §5)."""
import json
import os
from pathlib import Path


def _stamp(meta):
    if meta.get('kind') == 'sentence_localization':
        return [f"sentence localization: {meta['n_sentences']} sentences in {meta['n_videos']} videos; "
                f"R@1 = {meta['r_at_1']}; mIoU = {meta['miou']}"]
    refs = ', '.join(f"{r['path']} ({r['n_videos']} videos)" for r in meta['references'])
    lines = [
        f"toolkit {meta['toolkit']} ({meta['toolkit_commit']}), garbage {meta['garbage']['rule']}"
        + (f", seed {meta['garbage']['seed']}" if meta['garbage']['seed'] is not None else ''),
        f"missing videos: {meta['missing_policy']}; videos scored {meta['n_videos_scored']} of "
        f"{meta['n_videos_in_references']} in references ({meta['n_videos_predicted']} predicted, "
        f"{meta['n_videos_skipped']} skipped)",
        f"references: {refs}",
        f"tIoUs {meta['tious']}, at most {meta['max_proposals']} proposals per video; values x100",
    ]
    if meta['soda']['computed']:
        per_file = ', '.join(f"{r['reference']}: {r['f1']:.4f}" for r in meta['soda']['per_reference'])
        lines.append(f"SODA_c: mean over reference files ({per_file})")
    odd = {k: v for k, v in meta['warnings'].items() if v}
    if odd:
        lines.append('warnings: ' + ', '.join(f'{k}={v}' for k, v in odd.items()))
    return lines


def format_table(result):
    """A printable table of ``evaluate`` / ``evaluate_localization`` output, with the protocol stamp."""
    metrics = result['metrics']
    width = max(len(k) for k in metrics)
    lines = ['-' * 72]
    per_tiou = result.get('per_tiou', {})
    if per_tiou:
        names = list(next(iter(per_tiou.values())))
        lines.append('tIoU    ' + ' '.join(f'{n:>9}' for n in names))
        for t, row in per_tiou.items():
            lines.append(f'{t:<7} ' + ' '.join(f'{row[n]:9.4f}' for n in names))
        lines.append('-' * 72)
        lines.append('Average across all tIoUs')
    for k, v in metrics.items():
        lines.append(f'| {k:<{width}}: ' + ('not computed' if v is None else f'{v:.4f}'))
    lines.append('-' * 72)
    lines += _stamp(result['meta'])
    return '\n'.join(lines)


def save_result(result, path):
    """Write ``result`` as indented JSON, atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=2)
        f.write('\n')
    os.replace(tmp, path)
