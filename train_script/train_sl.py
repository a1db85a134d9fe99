"""Supervised WSDEC sentence localizer trained on the ground-truth segments (spec wsdec §3.3, §4.3).

    python train_script/train_sl.py --data-root DIR --run-name wsdec_sl

Paper defaults: 100 epochs, batch 96, SGD lr 1e-2 ×0.1 at epochs 5, 20, 50 (0.3.1 semantics), fc_dropout 0.3,
regressor_scale 0.1, loss CE(score, argmax_k IoU(GT, anchor_k)) + 0.1·L1(R[label], target) with the released
(wrong) regression target unless --fixed-regression-target (spec §6.3.2). GT segments are normalised from
their feature indices (index / L). Used by the supervised localization and two-stage baselines.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.wsdec import build_models_from_config
from utils.run import add_common_args
from utils.wsdec_training import (add_legacy_args, add_model_args, add_optim_args, checkpoint_config, fit,
                                  inference_defaults, localizer_inputs, parser_for, run_epoch, sgd, sl_config,
                                  start_run, train_loader, training_miou)

KIND = 'wsdec_sl'


def build_parser():
    parser = parser_for(__doc__)
    add_common_args(parser, epochs=100, batch_size=96, seed=233, run_name=KIND)
    add_model_args(parser, fc_dropout=0.3, regressor_scale=0.1)
    add_optim_args(parser, lr_step=(5, 20, 50))
    parser.add_argument('--lambda', dest='lambda_', type=float, default=0.1, help='weight of the L1 regression loss')
    add_legacy_args(parser, 'fixed_regression_target', 'modern_bn_init', 'zero_grad_set_to_none')
    return parser


def supervised_step(sl, optimizer, args):
    def step(batch):
        sl.train()
        score, refine, seconds = sl(*localizer_inputs(batch), mode='forward')
        length = batch.video_length[:, 0].index_select(0, batch.caption_gather_idx)
        loss = sl.build_loss(score, refine, batch.timestamp_idx / length.unsqueeze(1), args.lambda_)
        optimizer.zero_grad(set_to_none=args.zero_grad_set_to_none)
        loss.backward()
        optimizer.step()
        return {'loss': loss.detach(), 'miou': training_miou(seconds, batch)}
    return step


def main(argv=None):
    args = build_parser().parse_args(argv)
    run, data, device = start_run(args, KIND)
    models_config = {'sl': sl_config(args, len(data.vocab), data.features.dim)}
    sl = build_models_from_config(models_config)['sl'].to(device)
    optimizers = {'sl': sgd(sl.parameters(), args.lr)}
    loader = train_loader(data, args.batch_size, args)
    # evaluate_localization_sl.py: batch 8/3 = 2 (spec §4.5)
    config = checkpoint_config(run, models_config, data, inference_defaults(procedure='localization', batch_size=2))

    def epoch_fn(epoch, step, lr):
        step, means = run_epoch(run, loader, epoch, step, supervised_step(sl, optimizers['sl'], args), device,
                                max_steps=args.max_steps_per_epoch, desc=f'epoch {epoch}', scalars={'lr': lr})
        return step, means, ''
    fit(run, args, {'sl': sl}, optimizers, config, epoch_fn)


if __name__ == '__main__':
    main()
