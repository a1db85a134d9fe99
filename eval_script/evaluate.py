"""Evaluate any checkpoint of the suite: the script dispatches on the checkpoint's `kind`.

    python eval_script/evaluate.py --checkpoint runs/wsdec_final/checkpoints/last.pt [--data-root DIR]

* wsdec_final, wsdec_noregress, wsdec_noclass → dense captioning (spec wsdec §4.4): `--n_rand` random initial
  segments U[0,1)² (torch.Generator seeded with `--rand_seed`; one draw per batch shared by its videos as
  released, or `--per-video-random-segments`; `--n_rand -1` = the 15 anchors) → caption → localize → drop rule
  (IoU > 0.2, released; `--no-legacy-drop` drops if IoU < `--drop-iou`) → hull merge above `--iou-thres` →
  re-caption (`--refine-round` rounds). Scored with the 2018 toolkit, missing videos = 0, refs val_1 + val_2.
* wsdec_cg_pretrain → eval_script/evaluate_pretrain.py; wsdec_cg → eval_script/evaluate_cg.py;
  wsdec_sl → eval_script/evaluate_localization.py; ilcacm* → eval_script/evaluate_ilcacm.py.

The checkpoint's config rebuilds the models, the vocabulary (`config['vocab']`; `--vocab` for converted original
checkpoints) and the inference options (`config['inference']`); command-line flags override inference options only,
and the script prints which. Evaluation visits every video of val_1 in order (batches of `--batch-size` 8);
`--legacy-shuffled-eval` reproduces the released shuffle=True, drop_last=True loader (spec wsdec §6.3.6). Models run
in float32 (no autocast), so captions do not depend on the device's half-precision rounding.
Output: runs/<run-name>/predictions/*.json (submission) and metrics/*.json (stamped scores); the table is printed.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import importlib
import json
from dataclasses import asdict, fields
from pathlib import Path

from models.wsdec.factory import build_models_from_config
from third_party.densevid_eval import PROTOCOLS, evaluate, evaluate_localization, format_table, save_result
from utils.annotations import load_annotations
from utils.checkpoint import atomic_path, load_checkpoint
from utils.distributed import make_loader
from utils.features import check_feature_width, open_features, select_videos, write_skipped_videos
from utils.run import DataPaths, Run, add_common_args, data_paths, resolve_device
from utils.vocab import Vocabulary
from utils.wsdec_data import WSDECDataset, wsdec_collate
from utils.wsdec_inference import (InferenceOptions, build_submission, dense_captioning, resolve_options)

DENSE_KINDS = ('wsdec_final', 'wsdec_noregress', 'wsdec_noclass')
SCRIPT_OF_KIND = {'wsdec_cg_pretrain': 'eval_script.evaluate_pretrain', 'wsdec_cg': 'eval_script.evaluate_cg',
                  'wsdec_sl': 'eval_script.evaluate_localization'}
DENSE_OPTIONS = InferenceOptions.names()


class EvalInputError(ValueError):
    """Bad evaluation input: missing checkpoint, unknown kind, missing model part or vocabulary."""


# ---------------------------------------------------------------- flags shared by the WSDEC eval scripts
def add_eval_args(parser, checkpoint_flags=('--checkpoint',)):
    """The common flags (utils.run) plus the checkpoint(s), `--vocab`, `--features` and `--no-score`."""
    add_common_args(parser, epochs=0, batch_size=8, seed=233, run_name=None)
    for flag in checkpoint_flags:
        parser.add_argument(flag, required=True, help='checkpoint (.pt) written by this suite')
    parser.add_argument('--vocab', default=None,
                        help="vocabulary (JSON or the original pickle) for checkpoints without config['vocab'] "
                             "(converted original checkpoints)")
    parser.add_argument('--features', default=None, help='C3D .hdf5 file (or .npy folder) instead of the data root\'s')
    parser.add_argument('--no-score', action='store_true',
                        help='write the predictions only (score later with third_party/densevid_eval)')
    return parser


def add_inference_args(parser, names=DENSE_OPTIONS, base=InferenceOptions()):
    """Inference flags; each defaults to None = take the checkpoint's value (else `base`)."""
    g = parser.add_argument_group('inference options (override the checkpoint; spec wsdec §4.4)')
    helps = {
        'n_rand': (('--n_rand', '--n-rand'), dict(type=int, help=f'initial segments per video, -1 = the 15 '
                                                                  f'anchors ({base.n_rand})')),
        'rand_seed': (('--rand_seed', '--rand-seed'), dict(type=int, help=f'seed of the random draws ({base.rand_seed})')),
        'per_video_random_segments': (('--per-video-random-segments',), dict(
            action='store_const', const=True, help='draw initial segments per video (released: per batch)')),
        'refine_round': (('--refine-round',), dict(type=int, help=f'refinement rounds ({base.refine_round})')),
        'iou_thres': (('--iou-thres',), dict(type=float, help=f'hull-merge IoU threshold ({base.iou_thres})')),
        'drop_iou': (('--drop-iou',), dict(type=float, help=f'drop-rule IoU threshold ({base.drop_iou})')),
        'legacy_drop': (('--no-legacy-drop',), dict(
            action='store_const', const=False, help='drop proposals with IoU(new, old) < --drop-iou instead of > '
                                                    '(spec wsdec §6.3.3)')),
        'legacy_shuffled_eval': (('--legacy-shuffled-eval',), dict(
            action='store_const', const=True, help='shuffle=True, drop_last=True val loader as released')),
    }
    for name in names:
        flags, kwargs = helps[name]
        g.add_argument(*flags, dest=name, default=None, **kwargs)
    return parser


def inference_options(args, stored, names=DENSE_OPTIONS, base=InferenceOptions()) -> InferenceOptions:
    """Resolve the options (script defaults ← checkpoint ← command line) and print them and the overrides."""
    options, overridden = resolve_options(stored, {n: getattr(args, n, None) for n in names}, base)
    if overridden:
        print('inference options overridden on the command line: '
              + ', '.join(f'{k}={new!r} (checkpoint/default {old!r})' for k, (old, new) in overridden.items()))
    else:
        print('inference options: from the checkpoint/defaults (none overridden on the command line)')
    print('inference: ' + ', '.join(f'{k}={v!r}' for k, v in asdict(options).items() if k in names))
    return options


# ---------------------------------------------------------------- checkpoint, vocabulary, data
def read_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"{path}: checkpoint file not found")
    state = load_checkpoint(path)
    if not isinstance(state, dict) or 'kind' not in state or 'config' not in state:
        raise EvalInputError(f"{path}: not a checkpoint of this suite (needs the fields 'kind' and 'config')")
    return state


def load_models(state, path, parts, device):
    """The WSDEC models `parts` ('cg', 'sl') of a checkpoint, with weights, in eval mode on `device`."""
    missing = [p for p in parts if p not in state['model'] or p not in state['config'].get('models', {})]
    if missing:
        raise EvalInputError(f"{path}: a '{state['kind']}' checkpoint without the model part(s) {missing} "
                             f"(field 'model' holds {sorted(state['model'])})")
    models = build_models_from_config(state['config'])
    for name in parts:
        models[name].load_state_dict(state['model'][name])
        models[name].to(device).eval()
    return [models[name] for name in parts]


def load_vocab(state, path, vocab_path) -> Vocabulary:
    """`config['vocab']` (id_to_word), or `--vocab` for checkpoints that carry none."""
    config = state['config']
    if config.get('vocab') is not None:
        vocab = Vocabulary(config['vocab'])
    elif vocab_path:
        vocab = Vocabulary.load(vocab_path)
    else:
        raise EvalInputError(f"{path}: the checkpoint has no config['vocab']; pass --vocab FILE (the vocabulary "
                             f"it was trained with, e.g. data/translator6000.pkl)")
    sizes = [m['vocab_size'] for m in config['models'].values()]
    if any(len(vocab) > size for size in sizes):
        raise EvalInputError(f"{path}: the vocabulary has {len(vocab)} words but the model's vocab_size is {sizes}")
    return vocab


def resolve_data(args, config) -> DataPaths:
    """`--data-root` if given, else the checkpoint's `config['data']` paths, else its `data_root`."""
    if args.data_root:
        return data_paths(args.data_root)
    base = data_paths(config.get('data_root'))
    stored = config.get('data') or {}
    return DataPaths(**{f.name: Path(stored.get(f.name, getattr(base, f.name))) for f in fields(DataPaths)})


def eval_dataset(paths, vocab, args, config, mode='full') -> WSDECDataset:
    """val_1 videos that have features (`--missing-features`), in annotation order; C3D subsampled by the
    checkpoint's `video_sample_rate` (2 in every original script)."""
    annotations = load_annotations(paths.val_1)
    sample_rate = (config.get('data') or {}).get('video_sample_rate', 2)
    features = open_features(args.features or paths.c3d, sample_rate)
    check_feature_width(features, next(iter(config['models'].values()))['video_feature_dim'],
                        getattr(args, 'checkpoint', None) or args.cg_checkpoint)
    vids = select_videos(annotations, features, args.missing_features, str(paths.val_1))
    return WSDECDataset(annotations, features, vocab, mode=mode, vids=vids, seed=args.seed)


def captioner_setup(args, option_names, mode='full'):
    """What the captioner-only evaluations share: checkpoint, CG on the device, vocabulary, inference options,
    data paths and the val_1 dataset. Returns (state, device, cg, vocab, options, paths, dataset)."""
    state = read_checkpoint(args.checkpoint)
    device = resolve_device(args.device)
    (cg,) = load_models(state, args.checkpoint, ('cg',), device)
    vocab = load_vocab(state, args.checkpoint, args.vocab)
    options = inference_options(args, state['config'].get('inference'), option_names)
    paths = resolve_data(args, state['config'])
    return state, device, cg, vocab, options, paths, eval_dataset(paths, vocab, args, state['config'], mode=mode)


def eval_batches(dataset, args, legacy_shuffled, run):
    """Every video in order, or the released shuffle=True, drop_last=True loader (seeded by --seed)."""
    loader = make_loader(dataset, args.batch_size, shuffle=legacy_shuffled, drop_last=legacy_shuffled,
                         collate_fn=wsdec_collate, seed=args.seed, num_workers=args.num_workers, epoch_sampler=False)
    if legacy_shuffled:
        print(f"--legacy-shuffled-eval: {len(dataset) % args.batch_size} of {len(dataset)} videos are dropped "
              f"(drop_last) and score 0")
    return run.progress(loader, 'eval', total=len(loader))


def references(paths):
    """val_1 and val_2 of the data root (val_2 only where it exists, e.g. not for YouCook2 roots)."""
    return [paths.val_1] + ([paths.val_2] if paths.val_2.exists() else [])


# ---------------------------------------------------------------- run folder, submissions, scores
def checkpoint_run_name(path) -> str:
    """The run folder name of `runs/<name>/checkpoints/X.pt`, else the file's stem."""
    path = Path(path).resolve()
    return path.parent.parent.name if path.parent.name == 'checkpoints' else path.stem


def start_run(args, kind, prefix='eval') -> Run:
    """runs/<run-name>/ (default `<prefix>_<checkpoint's run name>`); an existing folder is an error
    unless --resume (utils.run.Run), so choose a new --run-name to evaluate again."""
    if args.run_name is None:
        args.run_name = f"{prefix}_{checkpoint_run_name(getattr(args, 'checkpoint', None) or args.sl_checkpoint)}"
    return Run(args, kind)


def write_submission(run, name, results, params) -> Path:
    path = run.predictions_dir / f'{name}.json'
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(build_submission(results, params)))
    n = sum(len(v) for v in results.values())
    print(f"predictions: {path} ({n} entries, {len(results)} videos)")
    return path


def score_dense(run, name, submission, paths, args, meteor=None, show=True):
    """WSDEC protocol (2018 toolkit, missing videos = 0, val_1 + val_2); metrics saved, table printed if `show`."""
    if args.no_score:
        print('--no-score: not scored')
        return None
    result = evaluate(submission, references(paths), meteor=meteor, **PROTOCOLS['wsdec'])
    save_result(result, run.metrics_dir / f'{name}.json')
    if show:
        print(format_table(result))
    return result


def score_localization(run, name, submission):
    """R@1 at 0.1/0.3/0.5/0.7/0.9 and per-sentence mIoU (spec evaluation §3.6)."""
    result = evaluate_localization(submission)
    save_result(result, run.metrics_dir / f'{name}.json')
    print(format_table(result))
    return result


def submission_params(state, path, options=None, **extra) -> dict:
    return {'checkpoint': str(path), 'kind': state['kind'], **(asdict(options) if options else {}), **extra}


# ---------------------------------------------------------------- dense captioning and the dispatcher
def evaluate_dense(args, state=None) -> dict | None:
    """Dense captioning of a final / no-regression / no-classification checkpoint (spec wsdec §4.4)."""
    state = state or read_checkpoint(args.checkpoint)
    device = resolve_device(args.device)
    cg, sl = load_models(state, args.checkpoint, ('cg', 'sl'), device)
    vocab = load_vocab(state, args.checkpoint, args.vocab)
    options = inference_options(args, state['config'].get('inference'))
    paths = resolve_data(args, state['config'])
    dataset = eval_dataset(paths, vocab, args, state['config'])
    run = start_run(args, f"eval_{state['kind']}")
    write_skipped_videos(run.dir, paths.val_1, dataset.annotations, dataset.features)
    results = dense_captioning(cg, sl, eval_batches(dataset, args, options.legacy_shuffled_eval, run),
                               options, vocab, device)
    name = f'dense_n{options.n_rand}_seed{options.rand_seed}_val_1'
    submission = write_submission(run, name, results, submission_params(state, args.checkpoint, options))
    result = score_dense(run, name, submission, paths, args)
    run.close()
    return result


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_args(parser)
    add_inference_args(parser)
    return parser


def evaluate_ilcacm(checkpoint, argv):
    try:
        module = importlib.import_module('eval_script.evaluate_ilcacm')
    except ImportError as error:
        raise EvalInputError(f"{checkpoint}: an ILCACM checkpoint, but eval_script/evaluate_ilcacm.py cannot be "
                             f"imported ({error})") from None
    args = module.build_parser().parse_args(argv) if hasattr(module, 'build_parser') else build_parser().parse_args(argv)
    return module.evaluate_checkpoint(checkpoint, args)


def dispatch(argv=None):
    """Evaluate `--checkpoint` with the procedure of its kind; returns the scorer's result."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--checkpoint')
    known, _ = pre.parse_known_args(argv)
    if known.checkpoint is None:  # let the full parser print usage and the missing-flag error
        return build_parser().parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    state = read_checkpoint(known.checkpoint)
    kind = state['kind']
    print(f"{known.checkpoint}: kind '{kind}'")
    if str(kind).startswith('ilcacm'):
        return evaluate_ilcacm(known.checkpoint, argv)
    if kind in SCRIPT_OF_KIND:
        print(f"→ {SCRIPT_OF_KIND[kind].replace('.', '/')}.py")
        return importlib.import_module(SCRIPT_OF_KIND[kind]).run(argv)
    if kind in DENSE_KINDS:
        return evaluate_dense(build_parser().parse_args(argv), state)
    raise EvalInputError(f"{known.checkpoint}: unknown checkpoint kind {kind!r}; expected one of "
                         f"{sorted(DENSE_KINDS + tuple(SCRIPT_OF_KIND))} or ilcacm*")


def cli(entry, argv=None):
    """Run `entry(argv)`; bad input ends the process with a one-line message and exit status 2."""
    from third_party.densevid_eval.meteor import JavaNotFoundError
    try:
        entry(argv)
    except (ValueError, JavaNotFoundError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    cli(dispatch)
