"""Pretrained caption generator with one random segment per video (the random-segment baseline, spec wsdec §4.4).

    python eval_script/evaluate_pretrain.py --checkpoint runs/wsdec_cg_pretrain/checkpoints/last.pt

The procedure and its flags: models/wsdec/evaluation.py `evaluate_pretrain` (`--help` describes it).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.wsdec.evaluation import evaluate_pretrain
from utils import cli

if __name__ == '__main__':
    cli.main(evaluate_pretrain)
