"""What WSDEC's training and evaluation scripts share: the training data and loaders (spec wsdec §2), the
vocabulary, the models of a checkpoint, the checkpoint config, the epoch plans, and the one-model trainings
(train_cg_pretrain, train_cg, train_sl)."""
from dataclasses import dataclass, fields
from pathlib import Path

from models.wsdec.config import (VIDEO_SAMPLE_RATE, add_legacy_args, add_model_args, add_optim_args, cg_config,
                                 sl_config)
from models.wsdec.factory import build_models_from_config
from models.wsdec.steps import caption_step, epoch_schedule, lr_at_epoch, sgd
from utils import cli
from utils.annotations import load_annotations
from utils.checkpoint import seed_everything
from utils.distributed import get_world_size, make_loader, set_epoch
from utils.engine import EpochPlan, TrainState, fit
from utils.features import check_feature_width, open_features, select_videos
from utils.run import DataPaths, Run, data_paths, read_checkpoint, resolve_device
from utils.vocab import Vocabulary
from utils.wsdec_data import WSDECDataset, wsdec_collate


class SetupError(ValueError):
    """Inconsistent flags, checkpoints or data for a WSDEC run (the message names the culprit)."""


# --------------------------------------------------------------------------------------------- data
@dataclass
class TrainingData:
    paths: DataPaths
    annotations: dict
    features: object
    vids: list
    vocab: Vocabulary


def load_training_data(args, vocab: Vocabulary | None = None) -> TrainingData:
    """Train annotations, C3D features (`[::2]`, spec §2.2), the videos to use and the vocabulary:
    `vocab` if given, else `--vocab`, else built from the train captions (spec §2.3)."""
    if get_world_size() > 1:
        raise SetupError("the WSDEC training scripts run in one process (no torchrun)")
    paths = data_paths(args.data_root)
    annotations = load_annotations(paths.train)
    features = open_features(paths.c3d, sample_rate=VIDEO_SAMPLE_RATE)
    vids = select_videos(annotations, features, args.missing_features, str(paths.train))
    if args.limit_videos is not None:
        vids = vids[:args.limit_videos]
    if vocab is None:
        vocab = Vocabulary.load(args.vocab) if args.vocab else Vocabulary.build(annotations, vocab_size=args.vocab_size)
    return TrainingData(paths, annotations, features, vids, vocab)


def train_loader(data: TrainingData, batch_size: int, args):
    """`ANetDataSample` (one random sentence per video, spec §2.4), shuffle, drop_last."""
    if len(data.vids) < batch_size:
        raise SetupError(f"{len(data.vids)} training videos but a batch of {batch_size} with drop_last "
                                 f"(spec §2.4): no batch at all; lower --batch-size")
    dataset = WSDECDataset(data.annotations, data.features, data.vocab, 'sample', data.vids, seed=args.seed)
    return make_loader(dataset, batch_size, shuffle=True, drop_last=True, collate_fn=wsdec_collate,
                       seed=args.seed, num_workers=args.num_workers)


def epoch_batches(loader, epoch: int, device):
    """The loader's batches of `epoch` (its sampling reseeded for the epoch), moved to `device`."""
    set_epoch(loader, epoch)
    return (batch.to(device) for batch in loader)


def data_config(data: TrainingData) -> dict:
    return {'train': str(data.paths.train), 'val_1': str(data.paths.val_1), 'val_2': str(data.paths.val_2),
            'c3d': str(data.paths.c3d), 'video_sample_rate': VIDEO_SAMPLE_RATE, 'train_videos': len(data.vids)}


def checkpoint_config(run, models: dict, data: TrainingData, inference: dict) -> dict:
    """`config` of every checkpoint: resolved flags + kind, model configs, vocabulary, inference, data."""
    return {**run.config, 'models': models, 'vocab': list(data.vocab.id_to_word), 'inference': inference,
            'data': data_config(data)}


# -------------------------------------------------------------------------------- checkpoints → models
def checkpoint_vocab(state, path, vocab_flag=None) -> Vocabulary:
    """`config['vocab']` (id_to_word), or `--vocab` for checkpoints that carry none (converted originals); a
    `--vocab` that differs from the stored one is refused."""
    stored = state['config'].get('vocab')
    if stored is not None:
        vocab = Vocabulary(stored)
        if vocab_flag and Vocabulary.load(vocab_flag).id_to_word != vocab.id_to_word:
            raise SetupError(f"--vocab {vocab_flag} differs from the vocabulary stored in {path}")
    elif vocab_flag:
        vocab = Vocabulary.load(vocab_flag)
    else:
        raise SetupError(f"{path}: the checkpoint has no config['vocab']; pass --vocab FILE (the vocabulary "
                                 f"it was trained with, e.g. data/translator6000.pkl)")
    sizes = [m['vocab_size'] for m in state['config'].get('models', {}).values()]
    if any(len(vocab) > size for size in sizes):
        raise SetupError(f"{path}: the vocabulary has {len(vocab)} words but the model's vocab_size is {sizes}")
    return vocab


def checkpoint_models(state, path, parts) -> dict:
    """The WSDEC models `parts` ('cg', 'sl') of a checkpoint, with their weights (on the CPU, train mode)."""
    missing = [p for p in parts if p not in state['model'] or p not in state['config'].get('models', {})]
    if missing:
        raise SetupError(f"{path}: a '{state['kind']}' checkpoint without the model part(s) {missing} "
                                 f"(field 'model' holds {sorted(state['model'])})")
    models = build_models_from_config(state['config'])
    for name in parts:
        models[name].load_state_dict(state['model'][name])
    return {name: models[name] for name in parts}


def load_caption_generator(path, vocab_flag=None):
    """`(cg_config, cg_state_dict, vocab)` of a caption-generator checkpoint (suite or converted original)."""
    state = read_checkpoint(path)
    if 'cg' not in state['model'] or 'cg' not in state['config'].get('models', {}):
        raise SetupError(f"{path}: not a checkpoint with a caption generator "
                                 f"(needs config['models']['cg'] and model['cg'])")
    vocab = checkpoint_vocab(state, path, vocab_flag)
    config = state['config']['models']['cg']
    if config['vocab_size'] != len(vocab):
        raise SetupError(f"{path}: caption generator vocab_size {config['vocab_size']} != {len(vocab)} words")
    return config, state['model']['cg'], vocab


def stored_data_paths(args, config) -> DataPaths:
    """`--data-root` if given, else the checkpoint's `config['data']` paths, else its `data_root`."""
    if args.data_root:
        return data_paths(args.data_root)
    base = data_paths(config.get('data_root'))
    stored = config.get('data') or {}
    return DataPaths(**{f.name: Path(stored.get(f.name, getattr(base, f.name))) for f in fields(DataPaths)})


def video_sample_rate(config) -> int:
    """The checkpoint's C3D subsampling `[::video_sample_rate]` (spec §2.2; 2, as every original script, when the
    checkpoint does not record it)."""
    return (config.get('data') or {}).get('video_sample_rate', VIDEO_SAMPLE_RATE)


def eval_dataset(paths, vocab, args, config, mode='full', checkpoints=()) -> WSDECDataset:
    """val_1 videos that have features (`--missing-features`), in annotation order; C3D subsampled by the
    checkpoint's `video_sample_rate` (2 in every original script); the feature width checked against the models
    of `checkpoints` ((state, path) pairs)."""
    annotations = load_annotations(paths.val_1)
    features = open_features(args.features or paths.c3d, video_sample_rate(config))
    for state, path in checkpoints:
        for model in state['config'].get('models', {}).values():
            check_feature_width(features, model['video_feature_dim'], path)
    vids = select_videos(annotations, features, args.missing_features, str(paths.val_1))
    return WSDECDataset(annotations, features, vocab, mode=mode, vids=vids, seed=args.seed)


# ---------------------------------------------------------------------------------------- training runs
def start_training(args, kind: str, vocab: Vocabulary | None = None):
    """Seed, pick the device, check and lock the run folder, load the data. Returns (run, data, device)."""
    seed_everything(args.seed)
    device = resolve_device(args.device)
    run = Run(args, kind)
    try:
        data = load_training_data(args, vocab)
    except BaseException:
        run.close()
        raise
    run.record_skipped(data.paths.train, data.annotations, data.features)
    return run, data, device


def save_vocab(run, vocab: Vocabulary) -> None:
    if run.is_main:
        run.start()
        vocab.save(run.dir / 'vocab.json')


def start_cycle_training(args, kind: str, sl_type: str):
    """train_final / train_baseline_regressor: the run, its data, the pretrained CG (from --checkpoint-cg,
    with its vocabulary) and a freshly initialised localizer (PyTorch default init, spec §4.2).
    Returns (run, data, device, {'cg', 'sl'} on the device, models config)."""
    cg_cfg, cg_state, vocab = load_caption_generator(args.checkpoint_cg, args.vocab)
    run, data, device = start_training(args, kind, vocab)
    if cg_cfg['video_feature_dim'] != data.features.dim:
        run.close()
        raise SetupError(f"{args.checkpoint_cg}: caption generator expects {cg_cfg['video_feature_dim']}-d "
                                 f"features, {data.paths.c3d} has {data.features.dim}-d")
    models_config = {'cg': cg_cfg, 'sl': sl_config(args, len(vocab), data.features.dim, sl_type)}
    models = build_models_from_config(models_config)
    models['cg'].load_state_dict(cg_state)
    return run, data, device, {name: m.to(device) for name, m in models.items()}, models_config


def epoch_lr(args, epoch: int) -> float:
    """The base lr of `epoch` under the 0.3.1 schedule (logged as `lr`)."""
    return lr_at_epoch(args.lr, args.lr_step, epoch)


def one_loader_plan(loader, step, device, args, **scalars):
    """`plan(epoch)` of a script whose every epoch is the same kind: `step` over the loader's batches."""
    def plan(epoch):
        return EpochPlan(epoch_batches(loader, epoch, device), step, f'epoch {epoch}', len(loader),
                         {'lr': epoch_lr(args, epoch), **scalars}, max_steps=args.max_steps_per_epoch)
    return plan


def fit_wsdec(run, args, data, state, config, plan) -> None:
    """Resume (--resume), store the vocabulary in the run folder, train the epochs (utils.engine)."""
    resume = run.resume_state()
    save_vocab(run, data.vocab)
    fit(run, state, args.epochs, plan, config=config, resume=resume)


def train_single_model(args, kind: str, name: str, config_of, step_of, inference: dict) -> None:
    """train_cg_pretrain / train_cg / train_sl: one model (`config_of(args, vocab_size, feature_dim)`), SGD over
    all its parameters with the 0.3.1 schedule, no clipping (spec §4.1, §4.3); `step_of(model, optimizer)`."""
    run, data, device = start_training(args, kind)
    with run:
        models_config = {name: config_of(args, len(data.vocab), data.features.dim)}
        model = build_models_from_config(models_config)[name].to(device)
        optimizer = sgd(model.parameters(), args.lr)
        state = TrainState({name: model}, {name: optimizer}, {name: epoch_schedule(optimizer, args.lr_step)},
                           epoch_schedulers=True)
        plan = one_loader_plan(train_loader(data, args.batch_size, args), step_of(model, optimizer), device, args)
        fit_wsdec(run, args, data, state, checkpoint_config(run, models_config, data, inference), plan)


def caption_generator_script(doc: str, kind: str, batch_size: int, segment_of, inference: dict):
    """`(build_parser, main)` of train_cg_pretrain.py / train_cg.py: 100 epochs, SGD lr 1e-2 ×0.1 at epochs 20, 50,
    70, teacher-forced L_cap at `segment_of(batch)` (spec §4.1, §4.3). `segment_of` may be a dict of named
    segment rules instead: the script then takes `--pretrain-segment NAME` (default: the first, the original's)."""
    def build_parser():
        parser = cli.parser(doc)
        cli.add_common_args(parser, epochs=100, batch_size=batch_size, seed=233, run_name=kind)
        add_model_args(parser)
        add_optim_args(parser, lr_step=(20, 50, 70))
        add_legacy_args(parser, 'zero_grad_set_to_none')
        if isinstance(segment_of, dict):
            names = list(segment_of)
            parser.add_argument_group('pretraining segments (spec wsdec §4.1; issue 14)').add_argument(
                '--pretrain-segment', choices=names, default=names[0],
                help=f'the segment each sentence is captioned from: {names[0]} = (c, w) = (0.5, 1) for every '
                     'sentence (spec §4.1, the original); caption-order = sentence j of n gets the j-th of n equal '
                     'parts of the video (issue 14: a captioner that the segment steers)')
        return parser

    def main(argv=None):
        args = cli.parse(build_parser(), argv)
        rule = segment_of[args.pretrain_segment] if isinstance(segment_of, dict) else segment_of
        step_of = lambda cg, optimizer: caption_step(cg, optimizer, rule,  # noqa: E731
                                                     set_to_none=args.zero_grad_set_to_none)
        train_single_model(args, kind, 'cg', cg_config, step_of, inference)
    return build_parser, main
