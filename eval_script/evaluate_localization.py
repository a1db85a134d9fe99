"""Sentence localization on val_1

    python eval_script/evaluate_localization.py  R@1 and mIoU (spec wsdec §4.5); --random-baseline for random segments.:--checkpoint runs/wsdec_final/checkpoints/last.pt [--random-baseline]

The procedure and its flags: models/wsdec/evaluation.py `evaluate_localization` (`--help` describes it).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.wsdec.evaluation import evaluate_localization
from utils import cli

if __name__ == '__main__':
    cli.main(evaluate_localization)
