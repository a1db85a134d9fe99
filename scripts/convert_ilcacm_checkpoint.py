"""Convert the authors' ILCACM state dict (`outputs/stage_2/model.safetensors` or a `pytorch_model.bin`, key names
in spec ilcacm_state_dict.md) into a checkpoint of this suite, evaluable with eval_script/evaluate_ilcacm.py.

    python scripts/convert_ilcacm_checkpoint.py --input model.safetensors --output runs/authors/checkpoints/stage_2.pt \
        [--paragraphs ActivityNet-1.3pred_dense_captions.json] [--bpe-dir DIR]

The suite's module names are the authors' (`captioner.gpt2_model.transformer.*` in Hugging Face GPT-2 layout,
`captioner.video_encoder.*`, `localizer.*`), so conversion = reading the file, restoring the tied
`lm_head.weight` when the file omits it, casting fp16/bf16 to fp32, inferring the sizes from the shapes, and
checking every key. Head counts cannot be read from shapes: `--gpt2-heads` / `--enc-heads` (default 12).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import json
import re

import torch

from models.ilcacm.config import SHARED_BPE, training_parser
from models.ilcacm.factory import build_model, build_tokenizer, model_arch
from models.ilcacm.steps import KIND
from utils import cli
from utils.checkpoint import save_checkpoint
from utils.run import CHECKPOINT_FORMAT, run_config
from utils.weights import CheckpointFormatError, load_safetensors, load_strict

GPT2 = 'captioner.gpt2_model.'


class ConversionError(ValueError):
    """The input is not an ILCACM state dict of the expected layout."""


def read_state_dict(path):
    path = pathlib.Path(path)
    if path.suffix == '.safetensors':
        state = load_safetensors(path)
    else:
        state = torch.load(path, map_location='cpu', weights_only=True)
    state = {k.removeprefix('module.'): v for k, v in state.items()}  # DDP-saved files
    if f'{GPT2}transformer.wte.weight' not in state:
        raise ConversionError(f'{path}: no {GPT2}transformer.wte.weight; not an ILCACM model state dict')
    if f'{GPT2}lm_head.weight' not in state:  # tied to wte; safetensors stores shared tensors once
        state[f'{GPT2}lm_head.weight'] = state[f'{GPT2}transformer.wte.weight']
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def count_layers(state, prefix):
    pattern = re.compile(re.escape(prefix) + r'(\d+)\.')
    return 1 + max(int(m.group(1)) for k in state if (m := pattern.match(k)))


def inferred_config(state, args):
    """The training flags of the authors' run, with the sizes read from the tensor shapes."""
    wte = state[f'{GPT2}transformer.wte.weight']
    config = training_parser().parse_args(['--decoder', 'gpt2', '--gpt2-init', 'random', '--run-name', 'converted'])
    config.bpe_dir = args.bpe_dir
    config.gpt2_layers = count_layers(state, f'{GPT2}transformer.h.')
    config.gpt2_dim, config.gpt2_heads = wte.shape[1], args.gpt2_heads
    config.enc_layers = count_layers(state, 'captioner.video_encoder.encoder.layers.')
    config.enc_heads = args.enc_heads
    config.enc_ff = state['captioner.video_encoder.encoder.layers.0.linear1.weight'].shape[0]
    config.mask_ff = state['localizer.mask_decoder.layers.0.linear1.weight'].shape[0]
    config.num_queries = state['localizer.tpe'].shape[0]
    config.max_frames = state['captioner.video_encoder.vpe'].shape[0]
    return config, {'n_layer': config.gpt2_layers, 'n_head': config.gpt2_heads, 'n_embd': config.gpt2_dim,
                    'vocab_size': wte.shape[0],
                    'n_positions': state[f'{GPT2}transformer.wpe.weight'].shape[0]}


def convert(input_path, output_path, args):
    state = read_state_dict(input_path)
    try:
        config, arch = inferred_config(state, args)
    except KeyError as err:
        raise ConversionError(f'{input_path}: missing keys [{err}] needed to infer the model sizes') from None
    tokenizer = build_tokenizer(vars(config))
    if len(tokenizer) != arch['vocab_size']:
        raise ConversionError(f'{input_path}: vocabulary of {arch["vocab_size"]} rows, the ILCACM tokenizer has '
                              f'{len(tokenizer)}')
    model = build_model(vars(config), tokenizer, feature_dim=arch['n_embd'], arch=arch)
    try:
        load_strict(model, state, str(input_path))
    except CheckpointFormatError as error:
        raise ConversionError(f'{error} (check --gpt2-heads/--enc-heads)') from None
    paragraphs = None
    if args.paragraphs:
        raw = json.loads(pathlib.Path(args.paragraphs).read_text())
        paragraphs = {vid: {'sentences': p['sentences'][:config.max_captions] or ['None.'],
                            'duration': p.get('duration')} for vid, p in raw.items()}
    checkpoint = {'format': CHECKPOINT_FORMAT, 'model': {'ilcacm': model.state_dict()}, 'optimizer': {},
                  'scheduler': {},
                  'epoch': config.epochs - 1, 'step': 0, 'config': run_config(config, KIND), 'rng': None,
                  'kind': KIND, 'tokenizer': tokenizer.state(), 'decoder_arch': model_arch(model),
                  'feature_dim': arch['n_embd'], 'paragraphs': paragraphs,
                  'converted_from': str(input_path)}
    save_checkpoint(output_path, checkpoint)
    return checkpoint


def build_parser():
    parser = cli.parser(__doc__)
    parser.add_argument('--input', required=True, help="the authors' model.safetensors or pytorch_model.bin")
    parser.add_argument('--output', required=True, help='suite checkpoint to write (.pt)')
    parser.add_argument('--paragraphs', default=None,
                        help="the authors' stage-1 paragraphs JSON {vid: {sentences, duration}} (event counts)")
    parser.add_argument('--bpe-dir', default=SHARED_BPE, help='GPT-2 vocab.json + merges.txt (relative: to the '
                        'working directory if it exists there, else to the repository root)')
    parser.add_argument('--gpt2-heads', type=int, default=12)
    parser.add_argument('--enc-heads', type=int, default=12)
    cli.add_debug_flag(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    checkpoint = convert(args.input, args.output, args)
    n = sum(t.numel() for k, t in checkpoint['model']['ilcacm'].items() if not k.endswith('lm_head.weight'))
    print(f'wrote {args.output}: {n:,} parameters (lm_head tied), decoder {checkpoint["decoder_arch"]}')


if __name__ == '__main__':
    cli.main(main)
