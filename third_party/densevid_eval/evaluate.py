"""CLI of the scorer: ``python third_party/densevid_eval/evaluate.py -s SUBMISSION [-r REF ...] [...]``."""
import pathlib
import sys

sys.path[0] = str(pathlib.Path(__file__).resolve().parents[2])  # the repository root, not this folder

from third_party.densevid_eval.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
