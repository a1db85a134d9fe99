"""Build the ILCACM tokenizer and model from the resolved config (flags in `add_model_args`).

Decoders (spec ilcacm §7): `gpt2` + `--gpt2 DIR` loads a Hugging Face distilgpt2 folder (vocabulary resized to
50,260, spec §3.7); `gpt2` + `--gpt2-init random` is a randomly initialised GPT-2 of the chosen size over the BPE of
`--bpe-dir`; `word` is the from-scratch word-level prefix LM of §7.4 (a GPT-2-shaped Transformer over a word
vocabulary built from the training captions). `auto` (default) picks the pretrained GPT-2 when `--gpt2` exists and
the word decoder otherwise, so a fresh machine without weights still runs. The architecture actually built is
recorded in the config (`decoder_arch`) so that an evaluation rebuilds it from the checkpoint alone.
"""
import warnings
from pathlib import Path

from models.ilcacm.captioner import Captioner
from models.ilcacm.gpt2 import GPT2
from models.ilcacm.mask_generator import MASK_SHAPES, MaskGenerator
from models.ilcacm.model import ILCACM, MASK_MODES
from models.ilcacm.text_decoder import BPECaptionTokenizer, tokenizer_from_state
from models.ilcacm.video_encoder import VideoEncoder
from models.ilcacm.word_decoder import WordTokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_BPE = REPO_ROOT.parent / 'shared' / 'data' / 'gpt2_bpe'
DEFAULT_GPT2 = REPO_ROOT / 'data' / 'distilgpt2'
DATASET_FRAMES = {'activitynet': 32, 'youcook2': 100}  # spec ilcacm §8.4 (SBS App. A)


class DecoderSetupError(ValueError):
    """The requested decoder cannot be built (missing weights or BPE files)."""


def add_model_args(parser):
    g = parser.add_argument_group('model (spec ilcacm §3)')
    g.add_argument('--dataset', choices=tuple(DATASET_FRAMES), default='activitynet',
                   help='dataset presets: frames 32 (ActivityNet) or 100 (YouCook2)')
    g.add_argument('--max-frames', type=int, default=None, help='frames per video (default: the dataset preset)')
    g.add_argument('--max-captions', type=int, default=12)
    g.add_argument('--max-tokens', type=int, default=1024)
    g.add_argument('--decoder', choices=('auto', 'gpt2', 'word'), default='auto')
    g.add_argument('--gpt2', default=str(DEFAULT_GPT2), help='Hugging Face distilgpt2 folder (pretrained init)')
    g.add_argument('--gpt2-init', choices=('pretrained', 'random'), default='pretrained')
    g.add_argument('--gpt2-layers', type=int, default=6)
    g.add_argument('--gpt2-dim', type=int, default=768)
    g.add_argument('--gpt2-heads', type=int, default=12)
    g.add_argument('--bpe-dir', default=None, help='vocab.json + merges.txt for --gpt2-init random '
                   '(default: the --gpt2 folder if it has them, else ../shared/data/gpt2_bpe)')
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


def resolve_model_args(args):
    """Fill the defaults that depend on other flags (frames, decoder kind, BPE folder); modifies `args`."""
    if args.max_frames is None:
        args.max_frames = DATASET_FRAMES[args.dataset]
    gpt2_dir = Path(args.gpt2)
    if args.decoder == 'auto':
        pretrained = args.gpt2_init == 'pretrained' and (gpt2_dir / 'config.json').is_file()
        args.decoder = 'gpt2' if pretrained or args.gpt2_init == 'random' else 'word'
        if args.decoder == 'word':
            warnings.warn(f'--decoder auto: no GPT-2 weights in {gpt2_dir}; using the word-level decoder trained '
                          'from scratch (spec §7.4). Pass --gpt2 DIR for the paper setting.', stacklevel=2)
    if args.decoder == 'gpt2' and args.gpt2_init == 'pretrained' and not (gpt2_dir / 'config.json').is_file():
        raise DecoderSetupError(f'--gpt2 {gpt2_dir}: no config.json; put the Hugging Face distilgpt2 files there, '
                                'or use --gpt2-init random / --decoder word')
    if args.decoder == 'gpt2' and args.bpe_dir is None:
        args.bpe_dir = str(gpt2_dir if (gpt2_dir / 'vocab.json').is_file() else SHARED_BPE)
    if args.decoder == 'gpt2' and not (Path(args.bpe_dir) / 'merges.txt').is_file():
        raise DecoderSetupError(f'--bpe-dir {args.bpe_dir}: no vocab.json/merges.txt; use --decoder word')
    return args


def build_tokenizer(config, train_sentences=()):
    if config['decoder'] == 'word':
        return WordTokenizer.build(train_sentences, config['word_min_count'])
    return BPECaptionTokenizer(config['bpe_dir'])


def build_model(config, tokenizer, feature_dim, arch=None, pretrained=True):
    """ILCACM of `config`. `arch` (a recorded `decoder_arch`) rebuilds the decoder shape without weights
    (evaluation, conversion); otherwise a pretrained GPT-2 is loaded when the config asks for one."""
    p = config['dropout']
    dropouts = {'resid_pdrop': p, 'embd_pdrop': p, 'attn_pdrop': p}
    if arch is None and config['decoder'] == 'gpt2' and config['gpt2_init'] == 'pretrained' and pretrained:
        gpt2 = GPT2.from_pretrained(config['gpt2'], vocab_size=len(tokenizer))  # dropout 0.1 from config.json
    else:
        arch = arch or {'n_layer': config['gpt2_layers'], 'n_head': config['gpt2_heads'],
                        'n_embd': config['gpt2_dim'], 'vocab_size': len(tokenizer), 'n_positions': 1024}
        gpt2 = GPT2.from_config(**arch, **dropouts)
    d_model = gpt2.config.n_embd
    encoder = VideoEncoder(d_model, config['enc_heads'], config['enc_ff'], config['enc_layers'],
                           config['max_frames'], p)
    localizer = MaskGenerator(d_model, config['enc_heads'], config['mask_ff'], 1, config['max_frames'],
                              config['num_queries'], p, config['tau'], config['gamma'], config['mask_shape'])
    return ILCACM(Captioner(encoder, gpt2, tokenizer), localizer, feature_dim, config['mask_mode'], config['seed'])


def model_arch(model):
    """The recorded decoder shape of a built model (stored in checkpoints as `decoder_arch`)."""
    c = model.captioner.gpt2_model.config
    return {'n_layer': c.n_layer, 'n_head': c.n_head, 'n_embd': c.n_embd, 'vocab_size': c.vocab_size,
            'n_positions': c.n_positions}


def model_from_checkpoint(state):
    """(model, tokenizer) rebuilt from a suite checkpoint (config, tokenizer, decoder_arch, feature_dim)."""
    config = state['config']
    tokenizer = tokenizer_from_state(state['tokenizer'])
    model = build_model(config, tokenizer, state['feature_dim'], arch=state['decoder_arch'])
    model.load_state_dict(state['model'])
    return model, tokenizer
