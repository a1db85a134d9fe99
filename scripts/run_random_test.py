"""Robustness of WSDEC's dense-captioning test procedure to the number of random initial segments and the seed
(spec wsdec §1, `scripts/run_random_test.sh`): n_rand ∈ {10, 15, 20} × seeds {233, 346, 581, 910, 191}.

    python scripts/run_random_test.py --checkpoint runs/wsdec_final/checkpoints/last.pt [--n-rand 10 15 20]
        [--seeds 233 346 581 910 191]

The procedure and its flags: models/wsdec/evaluation.py `random_test` (`--help` describes it).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.wsdec.evaluation import random_test
from utils import cli

if __name__ == '__main__':
    cli.main(random_test)
