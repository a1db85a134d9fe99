"""Evaluate an ILCACM checkpoint under the ILCACM and WSDEC protocols (spec ilcacm §5-6).

    python eval_script/evaluate_ilcacm.py --checkpoint runs/ilcacm/checkpoints/last.pt [--data-root DIR]
    python eval_script/evaluate_ilcacm.py --checkpoint CKPT --count-mode oracle | equal-split

The procedure and its flags: models/ilcacm/evaluation.py (`--help` describes it).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.ilcacm.evaluation import evaluate
from utils import cli

if __name__ == '__main__':
    cli.main(evaluate)
