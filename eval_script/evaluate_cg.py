"""Supervised caption generator at the ground-truth segments of val_1 (spec wsdec §4.3).

    python eval_script/evaluate_cg.py --checkpoint runs/wsdec_cg/checkpoints/last.pt

The procedure and its flags: models/wsdec/evaluation.py `evaluate_cg` (`--help` describes it).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.wsdec.evaluation import evaluate_cg
from utils import cli

if __name__ == '__main__':
    cli.main(evaluate_cg)
