"""WSDEC's configuration: the flags of its scripts with the paper's defaults, the model configs stored in
checkpoints, and the inference defaults (spec wsdec §3, §4).

Legacy behaviours (faithful by default, DESIGN.md principle 1; the corrected behaviour is one flag away):

| flag | default | spec | effect when given |
|---|---|---|---|
| `--consistent-shift` | off (original) | wsdec §6.3.1 | `forward_diff` of the cycle training applies the −regressor_scale/2 centre shift that inference applies (train_final) |
| `--fixed-regression-target` | off (original) | wsdec §6.3.2 | supervised SL L1 compares `R − scale/2` with `GT − anchor` instead of `R` with `anchor − GT` (train_sl) |
| `--modern-bn-init` | off (original) | wsdec §6.4 | BatchNorm weights start at 1 (PyTorch ≥ 1.2) instead of U(0, 1) (train_final, train_baseline_regressor, train_sl) |
| `--zero-grad-set-to-none` | off (original) | wsdec §6.4, §4.2 | `zero_grad(set_to_none=True)`: parameters without a gradient in a phase skip weight decay and momentum (all five) |

Labels take the first maximum of the METEOR scores (spec §4.2, §6.3.7); train_final's `--pseudo-label-ties`
offers the initial commit's uniform random tie-break (removed by the authors) and leaving tied rows out (issue 14).

Port decisions: the model's vocabulary size is the vocabulary's (6000 on ActivityNet, spec §2.3); one
process only (the cycle step calls the localizer twice per iteration); float32 on every device.
"""
from dataclasses import asdict, dataclass, fields

from models.wsdec.anchors import ANCHOR_LIST
from utils.cli import add_flag

MOMENTUM, WEIGHT_DECAY = 0.8, 1e-4      # spec §4 "Common to all scripts"
CYCLE_NOISE = 0.01                      # spec §4.2 CG phase step 1: ε ~ U(−0.01, 0.01)²
RECONSTRUCTION_WEIGHT = 1 / 100         # spec §4.2 CG phase step 4
VIDEO_SAMPLE_RATE = 2                   # spec §2.2
LEGACY_FLAGS = {
    'consistent_shift': ('--consistent-shift', 'spec wsdec §6.3.1: apply the -regressor_scale/2 centre shift in '
                         'forward_diff too (the original omits it in training only)'),
    'fixed_regression_target': ('--fixed-regression-target', 'spec wsdec §6.3.2: supervised L1 target GT - anchor '
                                'against R - scale/2 (the original uses anchor - GT against R)'),
    'modern_bn_init': ('--modern-bn-init', 'spec wsdec §6.4: BatchNorm weights start at 1 instead of U(0, 1)'),
    'zero_grad_set_to_none': ('--zero-grad-set-to-none', 'spec wsdec §6.4: zero_grad(set_to_none=True); the '
                              'original zeroes gradients, so parameters without one still get weight decay '
                              'and momentum'),
}


# ------------------------------------------------------------------------------------------------ flags
def add_model_args(parser, *, fc_dropout=None, regressor_scale=None):
    """Model-size flags (defaults: every script's, spec §3) and the localizer's per-script values."""
    g = parser.add_argument_group('model (spec wsdec §3)')
    add_flag(g, '--hidden-dim', '--hidden_dim', type=int, default=512)
    add_flag(g, '--embedding-dim', '--sent_embedding_dim', type=int, default=None,
             help='word embedding size (default None: --hidden-dim; the caption generator needs them equal)')
    add_flag(g, '--rnn-dropout', '--rnn_dropout', type=float, default=0.3)
    add_flag(g, '--max-cap-length', '--max_cap_length', type=int, default=20)
    g.add_argument('--vocab', default=None,
                   help='vocabulary file (JSON or the original pickle); default: build it from the train captions '
                        '(spec §2.3) and store it in the run folder')
    add_flag(g, '--vocab-size', '--vocab_size', type=int, default=6000, help='vocabulary size limit when building it')
    if fc_dropout is not None:
        add_flag(g, '--fc-dropout', '--fc_dropout', type=float, default=fc_dropout)
    if regressor_scale is not None:
        add_flag(g, '--regressor-scale', '--regressor_scale', type=float, default=regressor_scale,
                 help='refiner range; 0 is the "no regression" ablation (spec §4.3)')
    return g


def add_optim_args(parser, *, lr_step, grad_clip=None):
    """SGD(momentum 0.8, wd 1e-4), lr 1e-2 decayed ×0.1 at `lr_step` with 0.3.1 semantics (spec §4)."""
    g = parser.add_argument_group('optimisation (spec wsdec §4)')
    g.add_argument('--lr', type=float, default=1e-2)
    add_flag(g, '--lr-step', '--lr_step', type=int, nargs='+', default=list(lr_step),
             help='epochs (0-based) at which the lr is multiplied by 0.1')
    if grad_clip is not None:
        add_flag(g, '--grad-clip', '--grad_clip', type=float, default=grad_clip,
                 help='max gradient norm of the localizer parameters in cycle (CG-phase) steps')
    g.add_argument('--max-steps-per-epoch', type=int, default=None, help='quick runs: stop each epoch early')
    g.add_argument('--limit-videos', type=int, default=None, help='quick runs: use the first N training videos')
    return g


def add_legacy_args(parser, *names):
    """The legacy flags `names` (keys of LEGACY_FLAGS), default = the original behaviour."""
    g = parser.add_argument_group('legacy behaviours (default: as released; see models/wsdec/config.py)')
    for name in names:
        flag, text = LEGACY_FLAGS[name]
        g.add_argument(flag, dest=name, action='store_true', help=text)
    return g


def add_checkpoint_cg_arg(parser):
    add_flag(parser, '--checkpoint-cg', '--checkpoint_cg', required=True, default=None,
             help='pretrained caption generator (train_cg_pretrain.py checkpoint or a converted one)')


# ------------------------------------------------------------------------------------- model configs
def embedding_dim(args):
    return args.hidden_dim if args.embedding_dim is None else args.embedding_dim


def cg_config(args, vocab_size: int, video_feature_dim: int) -> dict:
    """CaptionGenerator keyword arguments (spec §3.2; build_models_from_config layout)."""
    return {'vocab_size': vocab_size, 'hidden_dim': args.hidden_dim, 'sent_embedding_dim': embedding_dim(args),
            'video_feature_dim': video_feature_dim, 'rnn_layer': 2, 'rnn_dropout': args.rnn_dropout,
            'context_type': 'clr', 'softmask_scale': 0.1, 'video_use_residual': True,
            'max_cap_length': args.max_cap_length}


def sl_config(args, vocab_size: int, video_feature_dim: int, kind='anchor') -> dict:
    """Localizer keyword arguments plus `type` (spec §3.3-3.4); legacy options from the flags."""
    config = {'type': kind, 'vocab_size': vocab_size, 'hidden_dim': args.hidden_dim,
              'sent_embedding_dim': embedding_dim(args), 'video_feature_dim': video_feature_dim, 'rnn_layer': 2,
              'rnn_dropout': args.rnn_dropout, 'fc_dropout': args.fc_dropout, 'video_use_residual': True,
              'sent_use_residual': False, 'legacy_bn_init': not args.modern_bn_init}
    if kind == 'anchor':
        config.update(regressor_scale=args.regressor_scale, anchor_list=[list(a) for a in ANCHOR_LIST],
                      consistent_shift=getattr(args, 'consistent_shift', False),
                      legacy_regression_target=not getattr(args, 'fixed_regression_target', False))
    return config


# ------------------------------------------------------------------------------------ inference defaults
@dataclass
class InferenceOptions:
    """The dense-captioning test procedure (spec wsdec §4.4); defaults = `eval_script/evaluate.py` as released."""
    n_rand: int = 15                          # initial segments per video; -1 = the 15 anchors
    rand_seed: int = 233                      # seed of the torch.Generator drawing them
    per_video_random_segments: bool = False   # spec §6.3.5: legacy = one draw shared by the batch
    refine_round: int = 1                     # localize → filter/merge → re-caption rounds
    iou_thres: float = 0.9                    # hull merge above this IoU
    drop_iou: float = 0.2                     # spec §6.3.3 drop rule threshold
    legacy_drop: bool = True                  # drop if IoU(new, old) > drop_iou (released); else if < drop_iou
    legacy_shuffled_eval: bool = False        # spec §6.3.6: shuffle=True, drop_last=True loader

    @classmethod
    def names(cls) -> tuple:
        return tuple(f.name for f in fields(cls))


def resolve_options(stored: dict | None, cli: dict, base: InferenceOptions | None = None):
    """Options from the script's defaults `base`, then the checkpoint's `config['inference']` (`stored`),
    then the command line (`cli`: name → value, None = not given). Returns `(options, overridden)` where
    `overridden` maps each option the command line changed to `(previous value, new value)`. (The original
    let the checkpoint's params override the command line silently, spec §4.4 step 1; here the command line
    wins and says so: a deliberate difference, README "Faithful by default".)"""
    values = asdict(base or InferenceOptions())
    values.update({k: v for k, v in (stored or {}).items() if k in values})
    overridden = {}
    for name, value in cli.items():
        if value is not None and name in values:
            if value != values[name]:
                overridden[name] = (values[name], value)
            values[name] = value
    return InferenceOptions(**values), overridden


def inference_defaults(**extra) -> dict:
    """What the evaluation scripts need besides the models (spec §4.4-4.5); `extra` per experiment."""
    return {'video_sample_rate': VIDEO_SAMPLE_RATE, 'beam_size': 3, **extra}


DENSE_INFERENCE = dict(procedure='dense', n_rand=15, rand_seed=233, refine_round=1, iou_thres=0.9, drop_iou=0.2,
                       legacy_drop=True, batch_size=8)  # spec §4.4
