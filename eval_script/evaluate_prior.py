"""The prior baseline (issue 14): one fixed segment for every video, the constant (centre, width) that best fits
the training events, with the most frequent training caption; scored under the WSDEC and ILCACM protocols.

    python eval_script/evaluate_prior.py --data-root DIR --run-name prior

The procedure and its flags: utils/baselines.py `evaluate_prior` (`--help` describes it).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from utils import cli
from utils.baselines import evaluate_prior

if __name__ == '__main__':
    cli.main(evaluate_prior)
