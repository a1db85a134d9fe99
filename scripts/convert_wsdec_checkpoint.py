"""Convert an authors' WSDEC checkpoint (PyTorch 0.3.1 / Python 2 `.ckp`) into a suite checkpoint.

    python scripts/convert_wsdec_checkpoint.py --input final_model.ckp --output runs/final.pt

Input (wsdec_state_dict.md §0, §7, §8): `{'state_dict', 'dynamic_params', 'params'}`; two-model
files keep both models in `dynamic_params['model_sl'|'model_cg']`. Output:
`{'model': {'cg': sd, 'sl': sd}, 'config': {'models', 'inference', 'original_params', 'source'},
'kind', 'epoch', 'step'}` loadable with `torch.load(weights_only=True)`; rebuild the models with
`models.wsdec.factory.build_models_from_config(ckpt['config'])`.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import pickle
import warnings

import torch

from models.wsdec.factory import build_models_from_config, wsdec_config_from_params
from models.wsdec.state_dict_names import from_original
from utils.checkpoint import save_checkpoint

TOP_KEYS = {'state_dict', 'dynamic_params', 'params'}


class CheckpointFormatError(ValueError):
    """The input is not a WSDEC checkpoint of the expected layout (the message names file and field)."""


def load_original(path) -> dict:
    """Read a 0.3.1 legacy-format pickle on CPU (wsdec_state_dict.md §6 "File format").

    `weights_only=True` is tried first; files it refuses (other globals, non-ASCII Python 2 strings)
    are read with `weights_only=False, encoding='latin1'`, which executes pickled code: only do this
    for files you trust.
    """
    try:  # the restricted unpickler ignores `encoding`; Python 2 non-ASCII strings then fail below
        return torch.load(path, map_location='cpu', weights_only=True)
    except (pickle.UnpicklingError, UnicodeDecodeError) as error:
        warnings.warn(f"{path}: not loadable with weights_only=True ({str(error).splitlines()[0]}); "
                      f"loading it with weights_only=False (trusted file assumed)")
        return torch.load(path, map_location='cpu', encoding='latin1', weights_only=False)


def split_models(ckpt: dict, path) -> tuple[dict, str]:
    """`({'cg': sd, 'sl': sd}, kind)` from a loaded file (wsdec_state_dict.md §10 steps 1-2)."""
    if not isinstance(ckpt, dict) or set(ckpt) != TOP_KEYS:
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointFormatError(f"{path}: expected top-level keys {sorted(TOP_KEYS)}, found {found}")
    dynamic = ckpt['dynamic_params']
    if 'model_sl' in dynamic:
        parts = {'cg': dynamic['model_cg'], 'sl': dynamic['model_sl']}
    elif any(k.startswith('decoder.') for k in ckpt['state_dict']):
        parts = {'cg': ckpt['state_dict']}
    elif 'refiner.weight' in ckpt['state_dict']:
        parts = {'sl': ckpt['state_dict']}
    else:
        raise CheckpointFormatError(f"{path}: field 'state_dict' holds neither a caption generator "
                                    f"('decoder.*') nor a sentence localizer ('refiner.*')")
    if 'sl' not in parts:
        return parts, 'wsdec_cg'
    if 'predictor.weight' not in parts['sl']:
        return parts, 'wsdec_noclass'
    if 'cg' not in parts:
        return parts, 'wsdec_sl'
    return parts, 'wsdec_noregress' if float(ckpt['params']['regressor_scale']) == 0 else 'wsdec_final'


def json_params(params: dict) -> dict:
    """The JSON-able entries of the original argparse `params` (strings, numbers, bools, lists)."""
    def plain(v):
        return v is None or isinstance(v, (str, int, float, bool)) or (
            isinstance(v, (list, tuple)) and all(plain(x) for x in v))
    return {str(k): (list(v) if isinstance(v, tuple) else v) for k, v in params.items() if plain(v)}


def convert(ckpt: dict, path='<checkpoint>', kind=None) -> dict:
    """The suite checkpoint of a loaded original file; every tensor is checked by a strict load."""
    parts, detected = split_models(ckpt, path)
    params = ckpt['params']
    sl_type = 'regressor' if detected == 'wsdec_noclass' else 'anchor'
    config = wsdec_config_from_params(params, tuple(parts), sl_type, source=str(path))
    models = build_models_from_config(config)
    state = {}
    for name, original in parts.items():
        tensors = {k: v.detach().float().clone() for k, v in original.items()}  # drop shared/cuDNN storages
        try:  # a fresh dict without version metadata: BN counters may be absent (spec §6)
            models[name].load_state_dict(from_original(tensors), strict=True)
        except RuntimeError as error:
            raise CheckpointFormatError(f"{path}: model '{name}' does not match its params: {error}") from None
        state[name] = {k: v.clone() for k, v in models[name].state_dict().items()}
    epoch = int(ckpt['dynamic_params'].get('step', 0))
    return {
        'model': state,
        'config': {'models': config,
                   'inference': {k: params[k] for k in ('refine_round', 'iou_thres') if k in params},
                   'original_params': json_params(params),
                   'source': {'file': str(path), 'detected_kind': detected}},
        'kind': kind or detected,
        'epoch': epoch,  # the original 'step' is the 0-based epoch index (wsdec_state_dict.md §7)
        'step': epoch,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='original .ckp file')
    parser.add_argument('--output', required=True, help='suite checkpoint to write (.pt)')
    parser.add_argument('--kind', default=None, help='override the detected kind (wsdec_final, wsdec_cg, ...)')
    args = parser.parse_args(argv)
    converted = convert(load_original(args.input), args.input, args.kind)
    save_checkpoint(args.output, converted)
    counts = {name: sum(v.numel() for k, v in sd.items() if 'running' not in k and 'num_batches' not in k)
              for name, sd in converted['model'].items()}
    print(f"{args.input} → {args.output}: kind={converted['kind']} epoch={converted['epoch']} "
          + ' '.join(f"{name}={len(sd)} keys/{counts[name]:,} params" for name, sd in converted['model'].items()))


if __name__ == '__main__':
    main()
