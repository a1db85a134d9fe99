"""ILCACM's configuration: the flags of train_script/train_ilcacm.py and eval_script/evaluate_ilcacm.py with the
paper's defaults (spec ilcacm §3-§5), and the defaults that depend on other flags (`resolve_model_args`).

Decoders (spec ilcacm §7): `gpt2` + `--gpt2 DIR` loads a Hugging Face distilgpt2 folder (vocabulary resized to
50,260, spec §3.7); `gpt2` + `--gpt2-init random` is a randomly initialised GPT-2 of the chosen size over the BPE of
`--bpe-dir`; `word` is the from-scratch word-level prefix LM of §7.4 (a GPT-2-shaped Transformer over a word
vocabulary built from the training captions). `auto` (default) picks the pretrained GPT-2 when `--gpt2` exists and
the word decoder otherwise, so a fresh machine without weights still runs. Relative folders are taken from the
working directory when they exist there, else from the repository root (defaults are written relative to it).
"""
import argparse
import warnings
from pathlib import Path

from models.ilcacm.losses import LOSS_SETS
from models.ilcacm.mask_generator import MASK_SHAPES
from models.ilcacm.model import MASK_MODES

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_GPT2 = 'data/distilgpt2'
SHARED_BPE = '../shared/data/gpt2_bpe'           # the GPT-2 BPE files beside the repository, where present
DATASET_FRAMES = {'activitynet': 32, 'youcook2': 100}  # spec ilcacm §8.4 (SBS App. A)
COUNT_MODES = ('paragraph', 'oracle', 'equal-split')
INFERENCE_FLAGS = ('count_mode', 'num_beams', 'eval_batch_size', 'paragraphs', 'segment_blind')
# Flags that stage 1, the model built for it and the stage-1 paragraphs do not read (--num-beams and
# --eval-batch-size do: they generate the paragraphs): runs differing only in these share stage 1
STAGE2_ONLY = ('loss', 'no_diversity', 'diversity_warmup', 'single_step', 'mask_shape', 'mask_mode', 'tau', 'gamma',
               'count_mode', 'paragraphs', 'skip_eval', 'segment_blind')


class DecoderSetupError(ValueError):
    """The requested decoder cannot be built (missing weights or BPE files)."""


def resolve_path(path) -> Path:
    """A flag's folder: absolute, or relative to the working directory if it exists there, else to the repository."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return REPO_ROOT / path


def add_model_args(parser):
    g = parser.add_argument_group('model (spec ilcacm §3)')
    g.add_argument('--dataset', choices=tuple(DATASET_FRAMES), default='activitynet',
                   help='dataset presets: frames 32 (ActivityNet) or 100 (YouCook2)')
    g.add_argument('--max-frames', type=int, default=None, help='frames per video (default None: the dataset preset)')
    g.add_argument('--max-captions', type=int, default=12)
    g.add_argument('--max-tokens', type=int, default=1024)
    g.add_argument('--decoder', choices=('auto', 'gpt2', 'word'), default='auto')
    g.add_argument('--gpt2', default=DEFAULT_GPT2, help='Hugging Face distilgpt2 folder (pretrained init)')
    g.add_argument('--gpt2-init', choices=('pretrained', 'random'), default='pretrained')
    g.add_argument('--gpt2-layers', type=int, default=6)
    g.add_argument('--gpt2-dim', type=int, default=768)
    g.add_argument('--gpt2-heads', type=int, default=12)
    g.add_argument('--bpe-dir', default=None, help='vocab.json + merges.txt for --gpt2-init random '
                   f'(default None: the --gpt2 folder if it has them, else {SHARED_BPE})')
    g.add_argument('--word-min-count', type=int, default=5, help='word decoder: keep words seen this often')
    g.add_argument('--enc-layers', type=int, default=6)
    g.add_argument('--enc-heads', type=int, default=12)
    g.add_argument('--enc-ff', type=int, default=2048)
    g.add_argument('--mask-ff', type=int, default=1024)
    g.add_argument('--num-queries', type=int, default=16)
    g.add_argument('--dropout', type=float, default=0.1)
    g.add_argument('--tau', type=float, default=2.0)
    g.add_argument('--gamma', type=float, default=0.8)
    g.add_argument('--mask-shape', choices=MASK_SHAPES, default='gaussian')
    g.add_argument('--mask-mode', choices=MASK_MODES, default='learned',
                   help='learned masks, fixed uniform masks, or random segments (baselines)')
    return parser


def add_training_args(parser):
    g = parser.add_argument_group('training (spec ilcacm §4)')
    for alias in ('--total-epochs', '--total_epochs'):  # the original's spellings of --epochs, hidden
        g.add_argument(alias, dest='epochs', type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    g.add_argument('--cap-epochs', type=int, default=10, help='stage-1 (full-mode) epochs')
    g.add_argument('--grad-accum', type=int, default=1, help='micro-batches per update (--batch-size stays global)')
    g.add_argument('--loss-groups', type=int, default=8,
                   help='caption losses: the mean of the token means of this many groups of consecutive videos of '
                        'the global batch (the original: 8 processes x 8 videos, each its own token mean); 1: one '
                        'token mean over the whole batch')
    g.add_argument('--lr', type=float, default=1e-4)
    g.add_argument('--betas', type=float, nargs=2, default=(0.9, 0.99))
    g.add_argument('--weight-decay', type=float, default=0.01, help='applied to every parameter (spec §8.1.11)')
    g.add_argument('--warmup', type=float, default=0.05, help='warm-up fraction of all updates')
    g.add_argument('--clip', type=float, default=1.0, help='gradient-norm clipping per optimiser step (0: off)')
    g.add_argument('--single-step', action='store_true',
                   help='stage 2: one step on grad(L_pos + L_neg + 2 L_div) instead of two clipped steps')
    g.add_argument('--loss', choices=tuple(LOSS_SETS), default='pos+neg', help='stage-2 losses')
    g.add_argument('--no-diversity', action='store_true', help='drop L_div from the stage-2 losses')
    g.add_argument('--diversity-warmup', type=int, default=0, metavar='EPOCHS',
                   help='leave L_div out of the first EPOCHS epochs of stage 2 (issue 14: the fix for the masks that '
                        'shrink while the captioner does not read the video; 0 = the original)')
    g.add_argument('--features', default=None, help='feature folder (.npy per video) or .hdf5 '
                   '(default None: the data root\'s features/clip)')
    g.add_argument('--skip-eval', action='store_true', help='do not evaluate after training')
    g.add_argument('--stage1-from', default=None, metavar='RUN_OR_CKPT',
                   help='start at stage 2 from the stage-1 checkpoint of another run (its folder, its '
                        'checkpoints/stage1.pt, or any checkpoint beside it) trained with the same flags but for '
                        f'the stage-2-only ones ({", ".join("--" + k.replace("_", "-") for k in STAGE2_ONLY)}); '
                        'the result equals training this run from scratch')
    return parser


def add_inference_args(parser):
    g = parser.add_argument_group('inference (spec ilcacm §5)')
    g.add_argument('--count-mode', choices=COUNT_MODES, default='paragraph',
                   help="event counts: the stage-1 paragraph's sentences (the original), the ground truth "
                        "('oracle'), or the paragraph's sentences on equal segments ('equal-split', stage 1 only)")
    g.add_argument('--num-beams', type=int, default=4)
    g.add_argument('--eval-batch-size', type=int, default=64,
                   help='videos per generation batch and process (the original: 8 per process on 8 GPUs); the '
                        'generated tokens do not depend on it in fp32')
    g.add_argument('--segment-blind', action='store_true',
                   help="baseline (issue 14): keep the model's events, caption each with the caption of the whole, "
                        "unmasked video")
    g.add_argument('--paragraphs', default=None,
                   help='stage-1 paragraphs JSON {vid: {"sentences": [...]}} (default None: the ones in the '
                        'checkpoint)')
    return parser


def training_parser(doc=None):
    """Every flag of train_script/train_ilcacm.py (also read by the checkpoint converter for its defaults)."""
    from utils import cli
    parser = cli.parser(doc)
    cli.add_common_args(parser, epochs=20, batch_size=64, seed=42, run_name='ilcacm')
    add_training_args(parser)
    add_model_args(parser)
    return add_inference_args(parser)


def resolve_model_args(args):
    """Fill the defaults that depend on other flags (frames, decoder kind, BPE folder); modifies `args`."""
    if args.max_frames is None:
        args.max_frames = DATASET_FRAMES[args.dataset]
    gpt2_dir = resolve_path(args.gpt2)
    if args.decoder == 'auto':
        pretrained = args.gpt2_init == 'pretrained' and (gpt2_dir / 'config.json').is_file()
        args.decoder = 'gpt2' if pretrained or args.gpt2_init == 'random' else 'word'
        if args.decoder == 'word':
            warnings.warn(f'--decoder auto: no GPT-2 weights in {args.gpt2}; using the word-level decoder trained '
                          'from scratch (spec §7.4). Pass --gpt2 DIR for the paper setting.', stacklevel=2)
    if args.decoder == 'gpt2' and args.gpt2_init == 'pretrained' and not (gpt2_dir / 'config.json').is_file():
        raise DecoderSetupError(f'--gpt2 {args.gpt2}: no config.json; put the Hugging Face distilgpt2 files there, '
                                'or use --gpt2-init random / --decoder word')
    if args.decoder == 'gpt2' and args.bpe_dir is None:
        args.bpe_dir = args.gpt2 if (gpt2_dir / 'vocab.json').is_file() else SHARED_BPE
    if args.decoder == 'gpt2' and not (resolve_path(args.bpe_dir) / 'merges.txt').is_file():
        raise DecoderSetupError(f'--bpe-dir {args.bpe_dir}: no vocab.json/merges.txt; use --decoder word')
    return args
