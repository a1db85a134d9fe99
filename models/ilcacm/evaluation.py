"""Evaluate an ILCACM model (spec ilcacm §5-6): event counts from the stage-1 paragraphs, masks from the mask
generator, one "<MASK>1 events: " caption per mask, timestamps clamp(c ± w/2) × duration. The submission goes to
<run>/predictions/, and is scored under the ILCACM protocol (2021 toolkit, skip missing videos, SODA_c) and the
WSDEC protocol (2018 toolkit, missing videos score 0); both tables are printed and saved in <run>/metrics/.

Baselines (`--count-mode`): 'paragraph' (default, spec §5.1), 'oracle' (the ground-truth count, capped at
--max-captions), 'equal-split' (stage 1 only: the paragraph's sentences on equal-width consecutive segments).
"""
import argparse
import json
import pathlib

from models.ilcacm.config import INFERENCE_FLAGS, add_inference_args
from models.ilcacm.factory import model_from_checkpoint
from models.ilcacm.inference import generate_paragraphs, predict, video_reliance
from utils import cli
from utils.annotations import load_annotations
from utils.diagnostics import paragraph_diagnostics, training_log_summary
from utils.distributed import is_main_process
from utils.evaluation import score
from utils.features import check_feature_width, open_features, select_videos, write_skipped_videos
from utils.ilcacm_data import ILCACMDataset
from utils.run import data_paths, read_checkpoint, resolve_device

PROTOCOLS = ('ilcacm', 'wsdec')  # spec evaluation §1.3-1.5


class CheckpointKindError(ValueError):
    """The checkpoint is not an ILCACM one."""


def data_files(args):
    """(train, val_1, references, features) of --data-root (or the ActivityNet files in data/) and --dataset;
    YouCook2 data roots may lack val_2."""
    paths = data_paths(args.data_root)
    has_val_2 = args.dataset == 'activitynet' or paths.val_2.exists()
    features = pathlib.Path(args.features) if args.features else paths.clip_dir
    return paths.train, paths.val_1, [paths.val_1] + ([paths.val_2] if has_val_2 else []), features


def load_split(path, features, tokenizer, args):
    """Dataset of the videos to predict (the keys of val_1 that have features)."""
    annotations = load_annotations(path)
    vids = select_videos(annotations, features, args.missing_features, str(path))
    return ILCACMDataset(annotations, features, tokenizer, vids, args.max_frames, args.max_captions,
                         args.max_tokens)


def evaluate_model(model, dataset, paragraphs, references, run_dir, device, args, name='final'):
    """Predict (every process takes its share), then on the main process write <run_dir>/predictions/<name>.json
    and score it; returns {protocol: result} ({} on the other processes)."""
    if paragraphs is None and args.count_mode != 'oracle':
        paragraphs = generate_paragraphs(model, dataset, device, args)  # training ended before stage 2
    results = predict(model, dataset, paragraphs, device, args)
    diagnostics = video_reliance(model, dataset, device, args)
    if not is_main_process():
        return {}
    run_dir = pathlib.Path(run_dir)
    diagnostics |= paragraph_diagnostics(paragraphs or {}) | training_log_summary(run_dir / 'log.jsonl')
    submission = {'version': 'VERSION 1.0', 'results': results,
                  'external_data': {'used': True, 'details': 'CLIP ViT-L/14 features; ILCACM suite',
                                    'count_mode': args.count_mode, 'mask_mode': model.mask_mode}}
    path = run_dir / 'predictions' / f'{name}.json'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(submission))
    return score(run_dir / 'metrics', name, path, references, protocols=PROTOCOLS, diagnostics=diagnostics)


def evaluate_checkpoint(ckpt_path, args):
    """Rebuild the model of an ILCACM checkpoint and evaluate it; `args` may override inference options
    (INFERENCE_FLAGS), the data root and the features only. Returns {protocol: result}."""
    ckpt_path = pathlib.Path(ckpt_path)
    state = read_checkpoint(ckpt_path)
    if state.get('kind') != 'ilcacm':
        raise CheckpointKindError(f"{ckpt_path}: a '{state.get('kind')}' checkpoint, not an ILCACM one")
    config = argparse.Namespace(**state['config'])
    for flag in INFERENCE_FLAGS + ('data_root', 'features', 'device', 'missing_features'):
        if getattr(args, flag, None) is not None:
            setattr(config, flag, getattr(args, flag))
    device = resolve_device(config.device)
    model, tokenizer = model_from_checkpoint(state)
    model.to(device)
    _, val_path, references, feature_path = data_files(config)
    features = open_features(feature_path)
    dataset = load_split(val_path, features, tokenizer, config)  # every video's features readable (headers)
    check_feature_width(features, state['feature_dim'], ckpt_path)
    paragraphs = state.get('paragraphs')
    if config.paragraphs:
        paragraphs = {vid: {**p, 'sentences': p['sentences'][:config.max_captions] or ['None.']}
                      for vid, p in json.loads(pathlib.Path(config.paragraphs).read_text()).items()}
    ckpt_path = ckpt_path.resolve()  # runs/<name>/checkpoints/X.pt -> runs/<name>; elsewhere: a folder beside it
    run_dir = ckpt_path.parents[1] if ckpt_path.parent.name == 'checkpoints' else ckpt_path.with_suffix('')
    name = f"{ckpt_path.stem}_{config.count_mode}" + ('_segment-blind' if getattr(config, 'segment_blind', False) else '')
    write_skipped_videos(run_dir, val_path, dataset.annotations, dataset.features)
    return evaluate_model(model, dataset, paragraphs, references, run_dir, device, config, name)


def build_parser():
    parser = cli.parser(__doc__)
    parser.add_argument('--checkpoint', required=True, help='an ILCACM checkpoint (.pt) of this suite')
    parser.add_argument('--data-root', default=None, help='override the data root stored in the checkpoint')
    parser.add_argument('--features', default=None, help='override the feature folder / .hdf5')
    parser.add_argument('--device', default=None, help='default None: the checkpoint\'s')
    parser.add_argument('--missing-features', choices=('error', 'skip'), default=None,
                        help='default None: the checkpoint\'s')
    add_inference_args(parser)
    cli.add_debug_flag(parser)
    for action in parser._actions:  # inference flags override the checkpoint only when given
        if action.dest in INFERENCE_FLAGS:
            action.default = None
    return parser


def evaluate(argv=None):
    args = build_parser().parse_args(argv)
    return evaluate_checkpoint(args.checkpoint, args)
