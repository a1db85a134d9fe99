"""WS-DEC final model: cycle training of the sentence localizer and the caption generator (spec wsdec §4.2).
With --regressor-scale 0 it is the "no regression" baseline (spec §4.3; kind wsdec_noregress).

    python train_script/train_cg_pretrain.py --data-root DIR --run-name wsdec_cg_pretrain
    python train_script/train_final.py --data-root DIR --run-name wsdec_final \
        --checkpoint-cg runs/wsdec_cg_pretrain/checkpoints/last.pt

Paper defaults: 25 epochs; phase = SL if epoch % 5 == 0 else CG; lr 1e-2 ×0.1 at epochs 1, 2, 20 (0.3.1
semantics: 1e-2, 1e-3, 1e-4 (epochs 2-19), 1e-5 (20-24)); SGD momentum 0.8, wd 1e-4.
* CG phase (batch 32): S = l_diff(V, C) + U(-0.01, 0.01); L_cap(g(V, S, C)) + mean((l_diff(V, Ĉ) - sg(S))²)/100;
  localizer gradients clipped at 5; optimiser groups [SL refiner @lr, SL rest @lr/10, CG @lr].
* SL phase (batch 6): CG frozen in eval mode captions the 15 anchors by beam search; METEOR 1.5 against the
  GT sentence gives the label (first argmax); CE on the localizer's anchor scores, all SL parameters @lr.
Needs Java for METEOR (SL phases). The SL is randomly initialised; the CG comes from --checkpoint-cg.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.wsdec.config import (DENSE_INFERENCE, add_checkpoint_cg_arg, add_legacy_args, add_model_args,
                                 add_optim_args, inference_defaults)
from models.wsdec.runs import checkpoint_config, epoch_batches, epoch_lr, fit_wsdec, start_cycle_training, \
    train_loader
from models.wsdec.steps import (PHASE_ID, TIE_RULES, MeteorPseudoLabelScorer, classification_step,
                                cycle_parameter_groups, cycle_step, epoch_schedule, phase_at_epoch, sgd)
from utils import cli
from utils.cli import add_flag
from utils.engine import EpochPlan, TrainState


def build_parser():
    parser = cli.parser(__doc__)
    cli.add_common_args(parser, epochs=25, batch_size=32, seed=233, run_name='wsdec_final')
    add_checkpoint_cg_arg(parser)
    add_model_args(parser, fc_dropout=0.3, regressor_scale=0.3)
    add_optim_args(parser, lr_step=(1, 2, 20), grad_clip=5.0)
    g = parser.add_argument_group('cycle training (spec wsdec §4.2)')
    add_flag(g, '--sl-batch-size', '--sl_batch_size', type=int, default=6,
             help="batch of the SL (METEOR-labelled) phases; --batch-size is the CG phases'")
    add_flag(g, '--alter-step', '--alter_step', type=int, default=5,
             help='SL phase when epoch %% alter_step == 0, CG phase otherwise')
    g.add_argument('--pseudo-label-ties', choices=TIE_RULES, default='first',
                   help='METEOR ties of the SL-phase pseudo-labels: the first anchor (released), one of the tied '
                        'anchors at random (the initial commit), or left out of the loss (issue 14)')
    add_legacy_args(parser, 'consistent_shift', 'modern_bn_init', 'zero_grad_set_to_none')
    return parser


def main(argv=None):
    args = cli.parse(build_parser(), argv)
    kind = 'wsdec_noregress' if args.regressor_scale == 0 else 'wsdec_final'
    run, data, device, models, models_config = start_cycle_training(args, kind, 'anchor')
    scorer = MeteorPseudoLabelScorer()
    with run:
        cg, sl, none = models['cg'], models['sl'], args.zero_grad_set_to_none
        optimizers = {'sl': sgd(sl.parameters(), args.lr), 'cycle': sgd(cycle_parameter_groups(sl, cg, args.lr),
                                                                        args.lr)}
        state = TrainState(models, optimizers, {n: epoch_schedule(o, args.lr_step) for n, o in optimizers.items()},
                           epoch_schedulers=True)
        loaders = {'cg': train_loader(data, args.batch_size, args), 'sl': train_loader(data, args.sl_batch_size, args)}
        steps = {'sl': lambda b: classification_step(sl, cg, b, optimizers['sl'], data.vocab, scorer, set_to_none=none,
                                                     ties=args.pseudo_label_ties),
                 'cg': lambda b: cycle_step(cg, sl, b, optimizers['cycle'], grad_clip=args.grad_clip, set_to_none=none)}
        config = checkpoint_config(run, models_config, data, inference_defaults(**DENSE_INFERENCE))

        def plan(epoch):
            phase = phase_at_epoch(epoch, args.alter_step)
            end = (lambda: {'meteor_seconds': scorer.seconds}) if phase == 'sl' else None
            return EpochPlan(epoch_batches(loaders[phase], epoch, device), steps[phase],
                             f'epoch {epoch} ({phase.upper()} phase)', len(loaders[phase]),
                             {'lr': epoch_lr(args, epoch), 'phase': PHASE_ID[phase]},
                             max_steps=args.max_steps_per_epoch, label=f' ({phase.upper()} phase)', end=end)
        try:
            fit_wsdec(run, args, data, state, config, plan)
        finally:
            scorer.close()


if __name__ == '__main__':
    cli.main(main)
