"""Command line of the scorer; ``evaluate.py`` in this folder runs ``main`` (spec evaluation §3.1).

Official defaults: references data/densecap/val_1.json and val_2.json, tIoUs 0.3 0.5 0.7 0.9, 1000 proposals
per video, toolkit 2018, missing videos scored 0. Every metric is always computed (no ``-v`` needed).
"""
import argparse
import sys

from .annotations import AnnotationError
from .localization import DEFAULT_TIOUS as LOCALIZATION_TIOUS, evaluate_localization
from .meteor import JavaNotFoundError, JavaToolError
from .report import format_table, save_result
from .scorer import DEFAULT_TIOUS, PROTOCOLS, evaluate

DEFAULT_REFERENCES = ['data/densecap/val_1.json', 'data/densecap/val_2.json']


def build_parser():
    p = argparse.ArgumentParser(description='Dense video captioning scorer (densevid_eval 2018/2021, SODA_c, '
                                            'sentence localization).')
    p.add_argument('-s', '--submission', required=True, help='submission JSON {"results": {vid: [...]}}')
    p.add_argument('-r', '--references', nargs='+', default=DEFAULT_REFERENCES, help='reference JSON files')
    p.add_argument('--tious', type=float, nargs='+', default=None,
                   help=f'tIoU thresholds (default {list(DEFAULT_TIOUS)}; with --localization '
                        f'{list(LOCALIZATION_TIOUS)})')
    p.add_argument('-ppv', '--max-proposals-per-video', dest='max_proposals', type=int, default=1000)
    p.add_argument('--protocol', choices=sorted(PROTOCOLS),
                   help='preset: wsdec = --toolkit 2018 --missing zero; ilcacm = --toolkit 2021 --missing skip '
                        '--soda (explicit flags win)')
    p.add_argument('--toolkit', choices=['2018', '2021'], default=None,
                   help="garbage reference: 2018 'abc123!@#' (default), 2021 random string")
    p.add_argument('--missing', choices=['zero', 'skip'], default=None,
                   help='GT videos without predictions: zero (official, default) or skip (ILCACM)')
    p.add_argument('--seed', type=int, default=None, help='seed of the 2021 random garbage strings (default 0)')
    p.add_argument('--soda', action='store_true', default=None, help='also compute SODA_c')
    p.add_argument('--localization', action='store_true',
                   help='sentence localization: R@1 and mIoU from timestamp/gt_timestamp entries')
    p.add_argument('-o', '--output', help='write the result JSON here')
    p.add_argument('-v', '--verbose', action='store_true', help='accepted for compatibility (always verbose)')
    return p


def _options(args):
    """Protocol preset, then explicit flags, then the official defaults."""
    options = {'toolkit': '2018', 'missing': 'zero', 'soda': False}
    options.update(PROTOCOLS.get(args.protocol, {}))
    for key in options:
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    return options


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.localization:
            result = evaluate_localization(args.submission, tious=tuple(args.tious or LOCALIZATION_TIOUS))
        else:
            result = evaluate(args.submission, args.references, tious=tuple(args.tious or DEFAULT_TIOUS),
                              max_proposals=args.max_proposals, seed=args.seed, **_options(args))
    except (ValueError, AnnotationError, JavaNotFoundError, JavaToolError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(format_table(result))
    if args.output:
        save_result(result, args.output)
        print(f'saved {args.output}')
    return 0
