"""The prior: the dense captions a model would give that learned only where events usually are and what is
usually said (issue 14). One fixed segment for every video, the constant (centre, width) that best fits the
training events, with the most frequent training caption. On ActivityNet, events are long and cover most of each
video, so this row belongs beside every number: a method below it has not used the video.

"Best fits" = the highest detection F1 on the training videos (the scorer's rule, spec evaluation §3.4: a
prediction is a hit at τ when its tIoU with some event is > τ; precision and recall are averaged over videos, F1
is their harmonic mean, then averaged over τ ∈ {0.3, 0.5, 0.7, 0.9}), over a grid of step 0.05 in centre and width
(fractions of the duration; the segment clipped to the video). Ties go to the first (centre, width) in grid order.
"""
from collections import Counter

import numpy as np

from utils import cli
from utils.annotations import load_annotations
from utils.evaluation import references, score, write_submission
from utils.run import Run, data_paths

TIOUS = (0.3, 0.5, 0.7, 0.9)
GRID = 0.05


def relative_events(annotations: dict) -> tuple[np.ndarray, np.ndarray]:
    """Every event as (start, end) fractions of its video's duration, clipped to [0, 1]: (E, 2), and the index of
    its video (E,), for the videos that have events."""
    spans, owner = [], []
    for i, a in enumerate(a for a in annotations.values() if a['timestamps']):
        ev = np.clip(np.asarray(a['timestamps'], dtype=np.float64).reshape(-1, 2) / a['duration'], 0, 1)
        spans.append(ev)
        owner.append(np.full(len(ev), i))
    return np.concatenate(spans), np.concatenate(owner)


def constant_segment_f1(segment, events: tuple[np.ndarray, np.ndarray], tious=TIOUS) -> float:
    """Mean over `tious` of the detection F1 of `segment` (start, end) predicted once in every video."""
    (s, e), (spans, owner) = segment, events
    inter = np.clip(np.minimum(e, spans[:, 1]) - np.maximum(s, spans[:, 0]), 0, None)
    union = np.maximum(e, spans[:, 1]) - np.minimum(s, spans[:, 0])
    iou = inter / np.where(union > 0, union, 1)
    n_videos, per_video = owner.max() + 1, np.bincount(owner)
    f1 = []
    for tau in tious:
        hits = np.bincount(owner, weights=iou > tau, minlength=n_videos)
        p, r = np.mean(hits > 0), np.mean(hits / per_video)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    return float(np.mean(f1))


def best_constant_segment(annotations: dict, grid=GRID) -> dict:
    """{'centre', 'width', 'start', 'end', 'train_f1'}: the grid's (centre, width) of highest training F1."""
    events = relative_events(annotations)
    steps = np.round(np.arange(0, 1 + grid / 2, grid), 10)
    best = None
    for centre in steps:
        for width in steps[1:]:
            start, end = float(max(centre - width / 2, 0.0)), float(min(centre + width / 2, 1.0))
            f1 = constant_segment_f1((start, end), events)
            if best is None or f1 > best['train_f1']:
                best = {'centre': float(centre), 'width': float(width), 'start': start, 'end': end, 'train_f1': f1}
    return best


def most_frequent_caption(annotations: dict) -> tuple[str, int]:
    """The training sentence said most often (exact text after stripping spaces; first seen on ties)."""
    counts = Counter(s.strip() for a in annotations.values() for s in a['sentences'])
    return counts.most_common(1)[0]


def prior_results(videos: dict, segment: dict, caption: str) -> dict:
    """The prior's submission results for `videos` ({vid: annotation with a duration})."""
    return {vid: [{'sentence': caption, 'timestamp': [round(segment['start'] * a['duration'], 2),
                                                      round(segment['end'] * a['duration'], 2)]}]
            for vid, a in videos.items()}


def prior_parser():
    """The prior baseline on val_1 of a data root (module docstring): fit the constant segment and the caption on
    its train split, predict them for every val_1 video, score under the WSDEC and ILCACM protocols."""
    parser = cli.parser(prior_parser.__doc__ + '\n\n' + __doc__)
    cli.add_common_args(parser, epochs=0, batch_size=1, seed=0, run_name='prior')
    parser.add_argument('--protocols', nargs='+', choices=('wsdec', 'ilcacm'), default=['wsdec', 'ilcacm'],
                        help='scorer protocols (third_party/densevid_eval)')
    parser.add_argument('--grid', type=float, default=GRID, help='step of the (centre, width) grid')
    return parser


def evaluate_prior(argv=None) -> dict:
    args = cli.parse(prior_parser(), argv)
    paths = data_paths(args.data_root)
    train, val = load_annotations(paths.train), load_annotations(paths.val_1)
    with Run(args, 'baseline_prior') as run:
        segment = best_constant_segment(train, args.grid)
        caption, count = most_frequent_caption(train)
        print(f"prior: segment [{segment['start']:.2f}, {segment['end']:.2f}] of every video (training F1 "
              f"{100 * segment['train_f1']:.2f}), caption {caption!r} ({count} times in {paths.train.name})")
        submission = {'version': 'VERSION 1.0', 'results': prior_results(val, segment, caption),
                      'external_data': {'used': False, 'details': 'prior: constant segment and caption',
                                        'segment': segment, 'caption': caption}}
        path = write_submission(run, 'prior_val_1', submission)
        name = 'prior_val_1'
        return score(run.metrics_dir, name, path, references(paths), protocols=tuple(args.protocols))
