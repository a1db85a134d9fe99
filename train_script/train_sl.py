"""Supervised WSDEC sentence localizer trained on the ground-truth segments (spec wsdec §3.3, §4.3).

    python train_script/train_sl.py --data-root DIR --run-name wsdec_sl

Paper defaults: 100 epochs, batch 96, SGD lr 1e-2 ×0.1 at epochs 5, 20, 50 (0.3.1 semantics), fc_dropout 0.3,
regressor_scale 0.1, loss CE(score, argmax_k IoU(GT, anchor_k)) + 0.1·L1(R[label], target) with the released
(wrong) regression target unless --fixed-regression-target (spec §6.3.2). GT segments are normalised from
their feature indices (index / L). Used by the supervised localization and two-stage baselines.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.wsdec.config import add_legacy_args, add_model_args, add_optim_args, inference_defaults, sl_config
from models.wsdec.runs import train_single_model
from models.wsdec.steps import localizer_step
from utils import cli

KIND = 'wsdec_sl'


def build_parser():
    parser = cli.parser(__doc__)
    cli.add_common_args(parser, epochs=100, batch_size=96, seed=233, run_name=KIND)
    add_model_args(parser, fc_dropout=0.3, regressor_scale=0.1)
    add_optim_args(parser, lr_step=(5, 20, 50))
    parser.add_argument('--lambda', dest='lambda_', type=float, default=0.1, help='weight of the L1 regression loss')
    add_legacy_args(parser, 'fixed_regression_target', 'modern_bn_init', 'zero_grad_set_to_none')
    return parser


def main(argv=None):
    args = cli.parse(build_parser(), argv)
    step_of = lambda sl, optimizer: localizer_step(sl, optimizer, args.lambda_,  # noqa: E731
                                                   set_to_none=args.zero_grad_set_to_none)
    # evaluate_localization_sl.py: batch 8/3 = 2 (spec §4.5)
    train_single_model(args, KIND, 'sl', sl_config, step_of, inference_defaults(procedure='localization',
                                                                                   batch_size=2))


if __name__ == '__main__':
    cli.main(main)
