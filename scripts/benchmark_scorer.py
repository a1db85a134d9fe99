"""Benchmark of the scorer: batched path vs the official per-video loop on real val_1 (spec evaluation §3).

Builds a deterministic synthetic submission for ActivityNet Captions val_1 (about 4 predictions per video:
jittered GT segments with sentences of other videos, plus some segments that overlap nothing), scores it
against val_1 + val_2 with both implementations under the 2018 protocol, checks that every number agrees,
and reports wall times and peak memory: the peak of this process and its children summed while each path runs
(sampled from /proc every 0.1 s), and the getrusage maxima.

  python scripts/benchmark_scorer.py [--quick] [-o OUT.json]     (--quick: the first 200 videos)
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import json
import os
import random
import resource
import threading
import time

from utils import cli
from third_party.densevid_eval import evaluate

DATA = pathlib.Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'activitynet_captions'
QUICK_VIDEOS = 200
TOLERANCE = 1e-9  # percent units; the two paths are expected to agree exactly


def synthetic_submission(annotations, n_videos=None, seed=0):
    """A plausible submission: per video ~4 predictions (jittered GT segments, random-segment distractors)."""
    rng = random.Random(seed)
    vids = list(annotations)[:n_videos]
    sentences = [s for v in vids for s in annotations[v]['sentences']]
    results = {}
    for vid in vids:
        ann = annotations[vid]
        duration = ann['duration']
        preds = []
        for start, end in ann['timestamps']:
            length = max(end - start, 0.1)
            s = max(0.0, start + rng.uniform(-0.3, 0.3) * length)
            e = min(duration, max(s + 0.1, end + rng.uniform(-0.3, 0.3) * length))
            preds.append({'sentence': rng.choice(sentences), 'timestamp': [round(s, 2), round(e, 2)]})
        if rng.random() < 0.5:
            s = rng.uniform(0, duration)
            e = min(duration, s + 2)
            preds.append({'sentence': rng.choice(sentences), 'timestamp': [round(s, 2), round(e, 2)]})
        results[vid] = preds
    return {'version': 'VERSION 1.0', 'results': results,
            'external_data': {'used': False, 'details': 'synthetic benchmark submission'}}


def peak_rss_mb():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {'self_mb': own / 1024, 'children_max_mb': children / 1024, 'sum_mb': (own + children) / 1024}


class TreeMemorySampler:
    """Peak of the summed resident memory of this process and all its descendants (Java processes, the
    metrics worker), sampled every ``interval`` seconds from /proc; None where /proc is unavailable."""

    def __init__(self, interval=0.1):
        self.interval, self.peak_mb = interval, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if pathlib.Path('/proc/self/status').exists():
            self.peak_mb = 0.0
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @staticmethod
    def _tree_rss_mb():
        children = {}
        for stat in pathlib.Path('/proc').glob('[0-9]*/stat'):
            try:
                fields = stat.read_text().rsplit(')', 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        total, todo = 0, [os.getpid()]
        while todo:
            pid = todo.pop()
            todo += children.get(pid, [])
            try:
                status = pathlib.Path(f'/proc/{pid}/status').read_text()
            except OSError:
                continue
            if 'VmRSS:' in status:
                total += int(status.split('VmRSS:')[1].split()[0])
        return total / 1024

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self._tree_rss_mb())


def max_difference(a, b):
    rows = [(a['metrics'], b['metrics'])] + [(a['per_tiou'][t], b['per_tiou'][t]) for t in a['per_tiou']]
    return max(abs(x[k] - y[k]) for x, y in rows for k in x if x[k] is not None)


def run(quick: bool) -> dict:
    """Time batched vs official loop; ``{'skipped': reason}`` when the real annotations are absent."""
    val_1, val_2 = DATA / 'val_1.json', DATA / 'val_2.json'
    if not (val_1.is_file() and val_2.is_file()):
        return {'skipped': f'ActivityNet Captions annotations not found under {DATA.resolve()}'}
    annotations = json.loads(val_1.read_text())
    submission = synthetic_submission(annotations, QUICK_VIDEOS if quick else None)
    references = [val_1, val_2]
    if quick:  # restrict the references to the same videos so the subset is a complete protocol
        keep = set(submission['results'])
        references = [{v: a for v, a in json.loads(p.read_text()).items() if v in keep} for p in references]

    timings, results, tree_peak = {}, {}, {}
    for name, fast in (('batched', True), ('official_loop', False)):
        with TreeMemorySampler() as sampler:
            start = time.time()
            results[name] = evaluate(submission, references, toolkit='2018', missing='zero', fast=fast)
            timings[name] = time.time() - start
        tree_peak[name] = sampler.peak_mb
    diff = max_difference(results['batched'], results['official_loop'])
    return {
        'mode': 'quick' if quick else 'full',
        'n_videos': len(submission['results']),
        'n_predictions': sum(len(p) for p in submission['results'].values()),
        'seconds': {k: round(v, 2) for k, v in timings.items()},
        'speedup': round(timings['official_loop'] / timings['batched'], 2),
        'max_abs_difference_percent': diff,
        'identical': diff <= TOLERANCE,
        'metrics': results['batched']['metrics'],
        'peak_rss': peak_rss_mb(),
        'peak_process_tree_mb': {k: None if v is None else round(v, 1) for k, v in tree_peak.items()},
    }


def main():
    parser = cli.parser(__doc__)
    parser.add_argument('--quick', action='store_true', help=f'first {QUICK_VIDEOS} videos of val_1 only')
    parser.add_argument('-o', '--output', help='also write the report as JSON')
    args = parser.parse_args()
    report = run(args.quick)
    print(json.dumps(report, indent=2))
    if args.output:
        pathlib.Path(args.output).write_text(json.dumps(report, indent=2) + '\n')
    return 0 if report.get('skipped') or report['identical'] else 1


if __name__ == '__main__':
    sys.exit(main())
