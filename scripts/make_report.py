"""HTML report of a run folder (runs/<name>/report.html) and/or an index of run folders (runs/index.html).

    python scripts/make_report.py --run runs/wsdec_final [--index runs/] [--references data/densecap/val_1.json ...]
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from utils import cli
from utils.report import ReportError, render_index, render_report


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument('--run', action='append', default=[], help='run folder (repeatable)')
    parser.add_argument('--index', help='folder of runs: write <folder>/index.html')
    parser.add_argument('--references', nargs='+',
                        help='reference annotation files (default: the `references` of the metrics meta)')
    parser.add_argument('--row', help='published row id the run reproduces (default: config row_id / kind)')
    parser.add_argument('--videos', type=int, default=6, help='number of sample timelines per predictions file')
    args = parser.parse_args(argv)
    if not args.run and not args.index:
        parser.error('give --run and/or --index')
    try:
        for run in args.run:
            print(f'wrote {render_report(run, args.references, args.row, args.videos)}')
        if args.index:
            print(f'wrote {render_index(args.index)}')
    except ReportError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    cli.main(main)
