"""Two-stage baseline

    python eval_script/evaluate_twostage.py  supervised localizer + supervised caption generator (spec wsdec §1).:--sl-checkpoint runs/wsdec_sl/checkpoints/last.pt --cg-checkpoint runs/wsdec_cg/checkpoints/last.pt

The procedure and its flags: models/wsdec/evaluation.py `evaluate_twostage` (`--help` describes it).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.wsdec.evaluation import evaluate_twostage
from utils import cli

if __name__ == '__main__':
    cli.main(evaluate_twostage)
