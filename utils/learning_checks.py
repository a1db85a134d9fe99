"""Does a method beat the baselines that expose degenerate solutions? (issue 14, item 6)

For each (method row, baseline row) pair of `utils.experiments.LEARNING_CHECKS` whose runs finished, the gap in
METEOR (captions that depend on the video) and in F1 (segments), with the criterion of issue 14 stated two ways:

* *unpaired*: the gap of the means against 3 × the larger of the two rows' seed standard deviations (n − 1);
* *paired*: where both rows have exactly one value for each of at least two common seeds, the per-seed
  differences' mean against 3 × their standard deviation. The pairing is meaningful where the baseline is an
  evaluation of the same trained model (segment-blind captions, the equal split) or a variant started from it.

A verdict is one of `> 3σ` (the method leads by more than three standard deviations), `ahead` (leads, within
3σ), `level or below`, or `n/a` (fewer than two seeds: no standard deviation). Nothing here changes a number of
the tables; it reads the rows `scripts/reproduce_tables.py` builds (`seeds` per metrics file).
"""
import json
import statistics
from pathlib import Path

from utils.tables import normalise_metrics

METRICS = ('METEOR', 'F1')


def _values_by_seed(row: dict, metric: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for seed, result in zip(row['seeds'], row['metrics']):
        value = normalise_metrics(result).get(metric)
        if value is not None:
            out.setdefault(seed, []).append(value)
    return out


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def _verdict(gap: float, std: float | None) -> str:
    if std is None:
        return 'n/a'
    if gap > 3 * std:
        return '> 3σ'
    return 'ahead' if gap > 0 else 'level or below'


def compare(method: dict, baseline: dict, metric: str) -> dict | None:
    """One metric of one pair: means, stds, gap, unpaired and paired verdicts (None if a row lacks it)."""
    mine, theirs = _values_by_seed(method, metric), _values_by_seed(baseline, metric)
    if not mine or not theirs:
        return None
    a = [v for vs in mine.values() for v in vs]
    b = [v for vs in theirs.values() for v in vs]
    stds = [s for s in (_std(a), _std(b)) if s is not None]
    gap = statistics.mean(a) - statistics.mean(b)
    # a single-seed row has no std; the other row's std alone does not make the criterion
    std = max(stds) if len(a) > 1 and len(b) > 1 else None
    out = {'method': statistics.mean(a), 'method_std': _std(a), 'baseline': statistics.mean(b),
           'baseline_std': _std(b), 'n_method': len(a), 'n_baseline': len(b), 'gap': gap, 'std': std,
           'verdict': _verdict(gap, std), 'paired': None}
    common = sorted(s for s in mine if s in theirs and len(mine[s]) == 1 and len(theirs[s]) == 1)
    if len(common) >= 2:
        diffs = [mine[s][0] - theirs[s][0] for s in common]
        d_std = _std(diffs)
        out['paired'] = {'seeds': common, 'differences': diffs, 'mean': statistics.mean(diffs), 'std': d_std,
                         'verdict': _verdict(statistics.mean(diffs), d_std)}
    return out


def learning_checks(rows: list[dict], checks: dict[str, tuple[str, ...]]) -> list[dict]:
    """The pairs of `checks` ({method row id: baseline row ids}) found in `rows` (each id's first row: the
    method's own protocol), with `compare` for every metric of METRICS."""
    first: dict[str, dict] = {}
    for row in rows:
        first.setdefault(row['row_id'], row)
    out = []
    for method_id, baseline_ids in checks.items():
        if method_id not in first:
            continue
        for baseline_id in baseline_ids:
            if baseline_id not in first:
                continue
            method, baseline = first[method_id], first[baseline_id]
            out.append({'method_id': method_id, 'method': method['label'], 'baseline_id': baseline_id,
                        'baseline': baseline['label'],
                        'metrics': {m: compare(method, baseline, m) for m in METRICS}})
    return out


def _cell(c: dict | None) -> list[str]:
    if c is None:
        return ['—'] * 4

    def ms(mean, std):
        return f'{mean:.2f}' + ('' if std is None else f' ± {std:.2f}')
    paired = '—' if c['paired'] is None else (f"{ms(c['paired']['mean'], c['paired']['std'])} "
                                              f"({c['paired']['verdict']})")
    return [f"{ms(c['method'], c['method_std'])} vs {ms(c['baseline'], c['baseline_std'])}",
            f"{c['gap']:+.2f}", c['verdict'] + ('' if c['std'] is None else f" (3σ = {3 * c['std']:.2f})"), paired]


def to_markdown(checks: list[dict]) -> str:
    head = ['Method', 'Baseline']
    for m in METRICS:
        head += [f'{m} (method vs baseline)', f'Δ {m}', f'{m}: unpaired', f'{m}: paired Δ per seed']
    out = ['**Learning checks (issue 14).** Values ×100, mean ± sample std over seeds. Unpaired: the gap of the '
           'means against 3 × the larger seed std of the two rows. Paired: the mean ± std of the per-seed '
           'differences (seeds present in both rows) against 3 × their std. `> 3σ`: the method leads by more '
           'than three standard deviations; `ahead`: leads by less; `n/a`: fewer than two seeds.', '',
           '| ' + ' | '.join(head) + ' |', '|---|---|' + '---:|' * (len(head) - 2)]
    for check in checks:
        cells = [check['method'], check['baseline']]
        for m in METRICS:
            cells += _cell(check['metrics'][m])
        out.append('| ' + ' | '.join(cells) + ' |')
    if not checks:
        out.append('| (no method with a finished baseline row) |' + ' |' * (len(head) - 1))
    return '\n'.join(out) + '\n'


def write_learning_checks(rows: list[dict], checks: dict[str, tuple[str, ...]], out_dir) -> list[Path]:
    """learning_checks.{md,json} under `out_dir`; returns the paths."""
    found = learning_checks(rows, checks)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / 'learning_checks.md', out_dir / 'learning_checks.json'
    md.write_text(to_markdown(found), encoding='utf-8')
    js.write_text(json.dumps(found, indent=2, ensure_ascii=False) + '\n', encoding='utf-8')
    return [md, js]
