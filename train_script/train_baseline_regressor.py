"""WS-DEC "no classification" baseline: cycle training with the regressor-only localizer (spec wsdec §3.4, §4.3).

    python train_script/train_baseline_regressor.py --data-root DIR --run-name wsdec_noclass \
        --checkpoint_cg runs/wsdec_cg_pretrain/checkpoints/last.pt

Paper defaults: 100 epochs (not lowered to 25 like train_final), batch 31, every epoch a CG phase:
S = sigmoid(Linear) + U(-0.01, 0.01); L_cap + mean((l(V, Ĉ) - sg(S))²)/100; localizer gradients clipped at 5;
one SGD optimiser [SL @lr, CG @lr], lr 1e-2 ×0.1 at epochs 1, 2, 20 (0.3.1 semantics). No METEOR, no Java.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from utils.run import add_common_args
from utils.wsdec_training import (DENSE_INFERENCE, PHASE_ID, add_checkpoint_cg_arg, add_legacy_args, add_model_args,
                                  add_optim_args, checkpoint_config, cycle_step, fit, inference_defaults, parser_for,
                                  run_epoch, sgd, start_cycle_run, train_loader)

KIND = 'wsdec_noclass'


def build_parser():
    parser = parser_for(__doc__)
    add_common_args(parser, epochs=100, batch_size=31, seed=233, run_name=KIND)
    add_checkpoint_cg_arg(parser)
    add_model_args(parser, fc_dropout=0.3)
    add_optim_args(parser, lr_step=(1, 2, 20), grad_clip=5.0)
    add_legacy_args(parser, 'modern_bn_init', 'zero_grad_set_to_none')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    run, data, device, models, models_config = start_cycle_run(args, KIND, 'regressor')
    cg, sl = models['cg'], models['sl']
    optimizers = {'cycle': sgd([{'name': 'sl', 'params': list(sl.parameters())},
                                {'name': 'cg', 'params': list(cg.parameters())}], args.lr)}
    loader = train_loader(data, args.batch_size, args)
    config = checkpoint_config(run, models_config, data, inference_defaults(**DENSE_INFERENCE))

    def epoch_fn(epoch, step, lr):
        def fn(batch):
            return cycle_step(cg, sl, batch, optimizers['cycle'], grad_clip=args.grad_clip,
                              set_to_none=args.zero_grad_set_to_none)
        step, means = run_epoch(run, loader, epoch, step, fn, device, max_steps=args.max_steps_per_epoch,
                                desc=f'epoch {epoch}', scalars={'lr': lr, 'phase': PHASE_ID['cg']})
        return step, means, ''
    fit(run, args, models, optimizers, config, epoch_fn)


if __name__ == '__main__':
    main()
