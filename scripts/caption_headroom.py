"""How much could captions that depend on their segment gain over one caption per video, at a submission's own
segments? (issue 14) The segment-blind baseline measures what a model's captions gain over its whole-video
caption; this measures what perfect captions would gain on the same segments, so the two together say whether a
small gap is the data's or the captioner's.

    python scripts/caption_headroom.py --submission runs/<run>/predictions/<file>.json \\
        --references data/<root>/captions/val_1.json data/<root>/captions/val_2.json --out headroom/<run>

Two submissions with the submission's segments and ground-truth sentences of the first reference file:
* `oracle_aware.json`: each segment gets the sentence of the reference event it overlaps most (tIoU);
* `oracle_blind.json`: every segment of a video gets one sentence, that of the reference event that overlaps the
  whole video [0, duration] most.
Both are scored under `--protocol` (densevid_eval, against every reference file); the script prints both scores
and `headroom` = aware - blind, and writes `headroom.json`. Ties in tIoU go to the first event. Predicted videos
that the first reference file lacks are left out of both and counted in the output.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import json

from third_party.densevid_eval import PROTOCOLS, evaluate
from third_party.densevid_eval.annotations import load_annotations
from third_party.densevid_eval.submission import SubmissionError, load_results
from third_party.densevid_eval.tiou import tiou
from utils import cli

METRICS = ('METEOR', 'CIDEr', 'Bleu_4', 'F1')


def best_event(segment, annotation) -> int:
    """Index of the reference event with the highest tIoU with `segment` (the first on a tie)."""
    overlaps = [tiou(segment, event) for event in annotation['timestamps']]
    return overlaps.index(max(overlaps))


def oracle_submissions(results: dict, captions: dict) -> tuple[dict, dict, list[str]]:
    """(aware, blind, left out): the two oracle `results` dicts at the segments of `results`, sentences from
    `captions` (validated annotations), and the predicted videos that `captions` lacks."""
    aware, blind, left_out = {}, {}, []
    for vid, entries in results.items():
        annotation = captions.get(vid)
        if annotation is None:
            left_out.append(vid)
            continue
        whole = annotation['sentences'][best_event([0.0, annotation['duration']], annotation)]
        aware[vid] = [{'sentence': annotation['sentences'][best_event(e['timestamp'], annotation)],
                       'timestamp': list(e['timestamp'])} for e in entries]
        blind[vid] = [{'sentence': whole, 'timestamp': list(e['timestamp'])} for e in entries]
    return aware, blind, left_out


def build_parser():
    parser = cli.parser(__doc__)
    parser.add_argument('--submission', required=True, help='a submission JSON {"results": {vid: [...]}}')
    parser.add_argument('--references', nargs='+', required=True,
                        help='reference files; the first one gives the oracle sentences')
    parser.add_argument('--protocol', choices=sorted(PROTOCOLS), default='wsdec', help='scoring preset')
    parser.add_argument('--out', required=True, help='folder for the two oracle submissions and headroom.json')
    cli.add_debug_flag(parser)
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    results, source, _ = load_results(args.submission)
    captions = load_annotations(args.references[0])
    aware, blind, left_out = oracle_submissions(results, captions)
    if not aware:
        raise SubmissionError(f"{source}: none of its {len(results)} videos is in {args.references[0]}")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {'submission': str(args.submission), 'references': list(args.references), 'protocol': args.protocol,
               'videos': len(aware), 'events': sum(len(v) for v in aware.values()), 'left_out_videos': left_out}
    for name, submission in (('aware', aware), ('blind', blind)):
        path = out / f'oracle_{name}.json'
        path.write_text(json.dumps({'results': submission}) + '\n')
        metrics = evaluate(str(path), list(args.references), **PROTOCOLS[args.protocol])['metrics']
        summary[name] = {k: metrics[k] for k in METRICS}
    summary['headroom'] = {k: summary['aware'][k] - summary['blind'][k] for k in METRICS}
    (out / 'headroom.json').write_text(json.dumps(summary, indent=1) + '\n')
    print(f"{summary['videos']} videos, {summary['events']} events"
          + (f", {len(left_out)} predicted videos not in {args.references[0]} left out" if left_out else ''))
    for name in ('aware', 'blind', 'headroom'):
        print(f'{name:>8}: ' + ', '.join(f'{k} {summary[name][k]:.2f}' for k in METRICS))
    return summary


if __name__ == '__main__':
    cli.main(main)
