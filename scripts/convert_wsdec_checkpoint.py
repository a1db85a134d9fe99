"""Convert an authors' WSDEC checkpoint (PyTorch 0.3.1 / Python 2 `.ckp`) into a suite checkpoint.

    python scripts/convert_wsdec_checkpoint.py --input final_model.ckp --output runs/final.pt

Input (wsdec_state_dict.md §0, §7, §8): `{'state_dict', 'dynamic_params', 'params'}`; two-model
files keep both models in `dynamic_params['model_sl'|'model_cg']`. Output:
`{'model': {'cg': sd, 'sl': sd}, 'config': {'models', 'inference', 'original_params', 'source'},
'kind', 'epoch', 'step'}` loadable with `torch.load(weights_only=True)`; rebuild the models with
`models.wsdec.factory.build_models_from_config(ckpt['config'])`.

The file is read by a restricted unpickler (tensors, OrderedDict, plain containers and scalars only), so
nothing in it can run code; the kind comes from the file (`--kind` overrides it, and is needed for a
caption-generator-only file whose `params` do not say which script wrote it). Errors: `error: ...`, exit 2.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import pickle
import re
import tarfile
import zipfile
from pathlib import Path

import torch

from models.wsdec.factory import build_models_from_config, wsdec_config_from_params
from models.wsdec.state_dict_names import from_original
from utils import cli
from utils.checkpoint import save_checkpoint
from utils.run import CHECKPOINT_FORMAT
from utils.restricted_pickle import ForbiddenGlobalError, RestrictedUnpickler, as_pickle_module

TOP_KEYS = {'state_dict', 'dynamic_params', 'params'}
# argparse `batch_size` defaults of the two scripts that write caption-generator-only files; their stored
# `params` have the same 44 keys and differ only there (spec wsdec §4, wsdec_state_dict.md §7)
CG_ONLY_KIND_OF_BATCH_SIZE = {36: 'wsdec_cg_pretrain', 64: 'wsdec_cg'}


class CheckpointFormatError(ValueError):
    """The input is not a WSDEC checkpoint of the expected layout (the message names file and field)."""


class CheckpointUnpickler(RestrictedUnpickler):
    """What the authors' files hold (wsdec_state_dict.md §6 "File format"): tensors rebuilt from storages
    (the storage classes come through `torch.load`'s persistent ids), `OrderedDict` state dicts, and plain
    containers and scalars in `params` / `dynamic_params`. Nothing else is resolved."""
    ALLOWED = frozenset({('collections', 'OrderedDict'), ('torch._utils', '_rebuild_tensor'),
                         ('torch._utils', '_rebuild_tensor_v2')})


def load_original(path) -> dict:
    """Read a checkpoint on CPU without running code from it (wsdec_state_dict.md §6 "File format").

    The authors' 0.3.1 legacy-format files go through `CheckpointUnpickler`, with Python 2 strings decoded as
    latin1; a zip-format file (PyTorch >= 1.6, e.g. a re-saved one) through `torch.load(weights_only=True)`,
    which also refuses TorchScript archives. A global outside the allow-list is refused with a
    CheckpointFormatError naming it; there is no fallback.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    if tarfile.is_tarfile(path):  # the pre-0.3 tar layout extracts members to disk: not read
        raise CheckpointFormatError(f"{path}: a tar-format (PyTorch < 0.3) file; expected the legacy or zip "
                                    f"format of torch.save")
    if zipfile.is_zipfile(path):
        options = {'weights_only': True}
    else:
        options = {'weights_only': False, 'pickle_module': as_pickle_module(CheckpointUnpickler), 'encoding': 'latin1'}
    try:
        return torch.load(path, map_location='cpu', **options)
    except ForbiddenGlobalError as error:
        raise _refused(path, error.qualname) from None
    except (pickle.UnpicklingError, EOFError, RuntimeError) as error:
        unsupported = re.search(r'Unsupported global: GLOBAL (\S+)', str(error))  # torch's weights-only loader
        if unsupported:
            raise _refused(path, unsupported.group(1)) from None
        raise CheckpointFormatError(f"{path}: not a readable torch.save file "
                                    f"({str(error).splitlines()[0]})") from None


def _refused(path, qualname):
    return CheckpointFormatError(f"{path}: refused to unpickle '{qualname}': a WSDEC checkpoint holds only "
                                 f"tensors, OrderedDicts and plain containers/scalars, and nothing in a "
                                 f"checkpoint may run code")


def split_models(ckpt: dict, path) -> dict:
    """`{'cg': sd, 'sl': sd}` (the parts present) of a loaded file (wsdec_state_dict.md §10 steps 1-2)."""
    if not isinstance(ckpt, dict) or set(ckpt) != TOP_KEYS:
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointFormatError(f"{path}: expected top-level keys {sorted(TOP_KEYS)}, found {found}")
    dynamic = ckpt['dynamic_params']
    if 'model_sl' in dynamic:
        return {'cg': dynamic['model_cg'], 'sl': dynamic['model_sl']}
    if any(k.startswith('decoder.') for k in ckpt['state_dict']):
        return {'cg': ckpt['state_dict']}
    if 'refiner.weight' in ckpt['state_dict']:
        return {'sl': ckpt['state_dict']}
    raise CheckpointFormatError(f"{path}: field 'state_dict' holds neither a caption generator "
                                f"('decoder.*') nor a sentence localizer ('refiner.*')")


def cg_only_kind(params: dict, path) -> str:
    """`train_cg_pretrain.py` or `train_cg.py`, told apart by their `batch_size` defaults (36 / 64)."""
    batch_size = params.get('batch_size')
    if batch_size not in CG_ONLY_KIND_OF_BATCH_SIZE:
        raise CheckpointFormatError(
            f"{path}: a caption-generator-only file, written by train_cg_pretrain.py (params 'batch_size' 36 "
            f"by default) or train_cg.py (64), but its 'batch_size' is {batch_size!r}: say which with "
            f"--kind wsdec_cg_pretrain or --kind wsdec_cg")
    return CG_ONLY_KIND_OF_BATCH_SIZE[batch_size]


def detect_kind(parts: dict, params: dict, path) -> str:
    """The suite kind of a file's models (wsdec_state_dict.md §8); CheckpointFormatError when undecidable."""
    if 'sl' not in parts:
        return cg_only_kind(params, path)
    if 'predictor.weight' not in parts['sl']:
        return 'wsdec_noclass'
    if 'cg' not in parts:
        return 'wsdec_sl'
    return 'wsdec_noregress' if float(params['regressor_scale']) == 0 else 'wsdec_final'


def json_params(params: dict) -> dict:
    """The JSON-able entries of the original argparse `params` (strings, numbers, bools, lists)."""
    def plain(v):
        return v is None or isinstance(v, (str, int, float, bool)) or (
            isinstance(v, (list, tuple)) and all(plain(x) for x in v))
    return {str(k): (list(v) if isinstance(v, tuple) else v) for k, v in params.items() if plain(v)}


def convert(ckpt: dict, path='<checkpoint>', kind=None) -> dict:
    """The suite checkpoint of a loaded original file; every tensor is checked by a strict load."""
    parts = split_models(ckpt, path)
    params = ckpt['params']
    try:
        detected = detect_kind(parts, params, path)
    except CheckpointFormatError:
        if kind is None:
            raise
        detected = None  # undecidable from the file; the caller's --kind says what it is
    sl_type = 'regressor' if 'sl' in parts and 'predictor.weight' not in parts['sl'] else 'anchor'
    config = wsdec_config_from_params(params, tuple(parts), sl_type, source=str(path))
    models = build_models_from_config(config)
    state = {}
    for name, original in parts.items():
        if not isinstance(original, dict) or not all(isinstance(v, torch.Tensor) for v in original.values()):
            raise CheckpointFormatError(f"{path}: the state dict of model '{name}' is not a mapping of tensors")
        tensors = {k: v.detach().float().clone() for k, v in original.items()}  # drop shared/cuDNN storages
        try:  # a fresh dict without version metadata: BN counters may be absent (spec §6)
            models[name].load_state_dict(from_original(tensors), strict=True)
        except RuntimeError as error:
            raise CheckpointFormatError(f"{path}: model '{name}' does not match its params: {error}") from None
        state[name] = {k: v.clone() for k, v in models[name].state_dict().items()}
    epoch = int(ckpt['dynamic_params'].get('step', 0))
    return {
        'format': CHECKPOINT_FORMAT, 'model': state, 'optimizer': {}, 'scheduler': {},
        'config': {'models': config,
                   'inference': {k: params[k] for k in ('refine_round', 'iou_thres') if k in params},
                   'original_params': json_params(params),
                   'source': {'file': str(path), 'detected_kind': detected}},
        'kind': kind or detected,
        'epoch': epoch,  # the original 'step' is the 0-based epoch index (wsdec_state_dict.md §7)
        'step': epoch,
    }


def main(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument('--input', required=True, help='original .ckp file')
    parser.add_argument('--output', required=True, help='suite checkpoint to write (.pt)')
    parser.add_argument('--kind', default=None,
                        help='override the detected kind (wsdec_final, wsdec_cg_pretrain, wsdec_cg, ...)')
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    converted = convert(load_original(args.input), args.input, args.kind)
    save_checkpoint(args.output, converted)
    counts = {name: sum(v.numel() for k, v in sd.items() if 'running' not in k and 'num_batches' not in k)
              for name, sd in converted['model'].items()}
    print(f"{args.input} → {args.output}: kind={converted['kind']} epoch={converted['epoch']} "
          + ' '.join(f"{name}={len(sd)} keys/{counts[name]:,} params" for name, sd in converted['model'].items()))
    return 0


if __name__ == '__main__':
    cli.main(main)
