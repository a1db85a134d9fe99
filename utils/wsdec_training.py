"""Shared pieces of WSDEC's five training scripts (spec wsdec §4): flags with the paper's defaults, data
and vocabulary, the 0.3.1 learning-rate schedule, SGD parameter groups, the two phases of the cycle
training (CG phase, SL phase with METEOR pseudo-labels), checkpoints and the epoch loop.

Legacy behaviours (faithful by default, DESIGN.md principle 1; the corrected behaviour is one flag away):

| flag | default | spec | effect when given |
|---|---|---|---|
| `--consistent-shift` | off (original) | wsdec §6.3.1 | `forward_diff` of the cycle training applies the −regressor_scale/2 centre shift that inference applies (train_final) |
| `--fixed-regression-target` | off (original) | wsdec §6.3.2 | supervised SL L1 compares `R − scale/2` with `GT − anchor` instead of `R` with `anchor − GT` (train_sl) |
| `--modern-bn-init` | off (original) | wsdec §6.4 | BatchNorm weights start at 1 (PyTorch ≥ 1.2) instead of U(0, 1) (train_final, train_baseline_regressor, train_sl) |
| `--zero-grad-set-to-none` | off (original) | wsdec §6.4, §4.2 | `zero_grad(set_to_none=True)`: parameters without a gradient in a phase skip weight decay and momentum (all five) |

The initial commit's uniform random tie-break of the METEOR pseudo-labels was removed by the authors; it
is not offered (labels take the first maximum, spec §4.2, §6.3.7).

Port decisions: the model's vocabulary size is the vocabulary's (6000 on ActivityNet, spec §2.3); one
process only (the cycle step calls the localizer twice per iteration); float32 on every device.
"""
import argparse
import bisect
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.wsdec.anchors import ANCHOR_LIST, anchors
from models.wsdec.caption_generator import caption_loss
from models.wsdec.factory import build_models_from_config
from utils.annotations import load_annotations
from utils.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state
from utils.distributed import all_gather_object, get_world_size, make_loader, set_epoch
from utils.features import open_features, select_videos, write_skipped_videos
from utils.run import DataPaths, Run, RunFolderError, check_finite, data_paths, resolve_device, seed_everything
from utils.segments import cw2se, segment_iou
from utils.text import remove_nonascii
from utils.vocab import Vocabulary
from utils.wsdec_data import WSDECDataset, wsdec_collate

MOMENTUM, WEIGHT_DECAY = 0.8, 1e-4      # spec §4 "Common to all scripts"
CYCLE_NOISE = 0.01                      # spec §4.2 CG phase step 1: ε ~ U(−0.01, 0.01)²
RECONSTRUCTION_WEIGHT = 1 / 100         # spec §4.2 CG phase step 4
VIDEO_SAMPLE_RATE = 2                   # spec §2.2
PHASE_ID = {'cg': 0, 'sl': 1}           # the 'phase' scalar of the logs
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


class TrainingSetupError(ValueError):
    """Inconsistent flags, checkpoints or data for a WSDEC training run (the message names the culprit)."""


# ------------------------------------------------------------------------------------------------ flags
def add_model_args(parser, *, fc_dropout=None, regressor_scale=None):
    """Model-size flags (defaults: every script's, spec §3) and the localizer's per-script values."""
    g = parser.add_argument_group('model (spec wsdec §3)')
    g.add_argument('--hidden-dim', '--hidden_dim', dest='hidden_dim', type=int, default=512)
    g.add_argument('--embedding-dim', '--sent_embedding_dim', dest='embedding_dim', type=int, default=None,
                   help='word embedding size (default: --hidden-dim; the caption generator needs them equal)')
    g.add_argument('--rnn-dropout', '--rnn_dropout', dest='rnn_dropout', type=float, default=0.3)
    g.add_argument('--max-cap-length', '--max_cap_length', dest='max_cap_length', type=int, default=20)
    g.add_argument('--vocab', default=None,
                   help='vocabulary file (JSON or the original pickle); default: build it from the train captions '
                        '(spec §2.3) and store it in the run folder')
    g.add_argument('--vocab-size', '--vocab_size', dest='vocab_size', type=int, default=6000,
                   help='vocabulary size limit when building it')
    if fc_dropout is not None:
        g.add_argument('--fc-dropout', '--fc_dropout', dest='fc_dropout', type=float, default=fc_dropout)
    if regressor_scale is not None:
        g.add_argument('--regressor-scale', '--regressor_scale', dest='regressor_scale', type=float,
                       default=regressor_scale, help='refiner range; 0 is the "no regression" ablation (spec §4.3)')
    return g


def add_optim_args(parser, *, lr_step, grad_clip=None):
    """SGD(momentum 0.8, wd 1e-4), lr 1e-2 decayed ×0.1 at `lr_step` with 0.3.1 semantics (spec §4)."""
    g = parser.add_argument_group('optimisation (spec wsdec §4)')
    g.add_argument('--lr', type=float, default=1e-2)
    g.add_argument('--lr-step', '--lr_step', dest='lr_step', type=int, nargs='+', default=list(lr_step),
                   help='epochs (0-based) at which the lr is multiplied by 0.1')
    if grad_clip is not None:
        g.add_argument('--grad-clip', '--grad_clip', dest='grad_clip', type=float, default=grad_clip,
                       help='max gradient norm of the localizer parameters in cycle (CG-phase) steps')
    g.add_argument('--max-steps-per-epoch', type=int, default=None, help='quick runs: stop each epoch early')
    g.add_argument('--limit-videos', type=int, default=None, help='quick runs: use the first N training videos')
    return g


def add_legacy_args(parser, *names):
    """The legacy flags `names` (keys of LEGACY_FLAGS), default = the original behaviour."""
    g = parser.add_argument_group('legacy behaviours (default: as released; see utils/wsdec_training.py)')
    for name in names:
        flag, text = LEGACY_FLAGS[name]
        g.add_argument(flag, dest=name, action='store_true', help=text)
    return g


def add_checkpoint_cg_arg(parser):
    parser.add_argument('--checkpoint-cg', '--checkpoint_cg', dest='checkpoint_cg', required=True,
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


def inference_defaults(**extra) -> dict:
    """What the evaluation scripts need besides the models (spec §4.4-4.5); `extra` per experiment."""
    return {'video_sample_rate': VIDEO_SAMPLE_RATE, 'beam_size': 3, **extra}


DENSE_INFERENCE = dict(procedure='dense', n_rand=15, rand_seed=233, refine_round=1, iou_thres=0.9, drop_iou=0.2,
                       legacy_drop=True, batch_size=8)  # spec §4.4


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
        raise TrainingSetupError("the WSDEC training scripts run in one process (no torchrun)")
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
        raise TrainingSetupError(f"{len(data.vids)} training videos but a batch of {batch_size} with drop_last "
                                 f"(spec §2.4): no batch at all; lower --batch-size")
    dataset = WSDECDataset(data.annotations, data.features, data.vocab, 'sample', data.vids, seed=args.seed)
    return make_loader(dataset, batch_size, shuffle=True, drop_last=True, collate_fn=wsdec_collate,
                       seed=args.seed, num_workers=args.num_workers)


def data_config(data: TrainingData) -> dict:
    return {'train': str(data.paths.train), 'val_1': str(data.paths.val_1), 'val_2': str(data.paths.val_2),
            'c3d': str(data.paths.c3d), 'video_sample_rate': VIDEO_SAMPLE_RATE, 'train_videos': len(data.vids)}


def checkpoint_config(run, models: dict, data: TrainingData, inference: dict) -> dict:
    """`config` of every checkpoint: resolved flags + kind, model configs, vocabulary, inference, data."""
    return {**run.config, 'models': models, 'vocab': list(data.vocab.id_to_word), 'inference': inference,
            'data': data_config(data)}


def save_vocab(run, vocab: Vocabulary) -> None:
    if run.is_main:
        vocab.save(run.dir / 'vocab.json')


def load_caption_generator(path, vocab_flag=None):
    """`(cg_config, cg_state_dict, vocab)` of a caption-generator checkpoint (suite or converted original).

    The vocabulary comes from the checkpoint (`config['vocab']`), else from `--vocab`: the localizer must
    share the caption generator's word ids."""
    ckpt = load_checkpoint(path)
    try:
        config, state = ckpt['config']['models']['cg'], ckpt['model']['cg']
    except (KeyError, TypeError):
        raise TrainingSetupError(f"{path}: not a checkpoint with a caption generator "
                                 f"(needs config['models']['cg'] and model['cg'])") from None
    if 'vocab' in ckpt['config']:
        vocab = Vocabulary(ckpt['config']['vocab'])
        if vocab_flag and Vocabulary.load(vocab_flag).id_to_word != vocab.id_to_word:
            raise TrainingSetupError(f"--vocab {vocab_flag} differs from the vocabulary stored in {path}")
    elif vocab_flag:
        vocab = Vocabulary.load(vocab_flag)
    else:
        raise TrainingSetupError(f"{path} stores no vocabulary (a converted original checkpoint?): pass --vocab")
    if config['vocab_size'] != len(vocab):
        raise TrainingSetupError(f"{path}: caption generator vocab_size {config['vocab_size']} != {len(vocab)} words")
    return config, state, vocab


# ----------------------------------------------------------------------------------- schedule, SGD
def lr_at_epoch(base: float, milestones, epoch: int, gamma: float = 0.1) -> float:
    """lr of 0-based `epoch` under PyTorch 0.3.1's `MultiStepLR` stepped at each epoch start (spec §4, §9):
    `base · gamma^{bisect_right(milestones, epoch)}`."""
    return base * gamma ** bisect.bisect_right(sorted(milestones), epoch)


def phase_at_epoch(epoch: int, alter_step: int = 5) -> str:
    """'sl' (METEOR-labelled classification) if `epoch % alter_step == 0`, else 'cg' (cycle) (spec §4.2)."""
    return 'sl' if epoch % alter_step == 0 else 'cg'


def sgd(groups, lr: float) -> torch.optim.SGD:
    """SGD(momentum 0.8, weight decay 1e-4) (spec §4); each group keeps its base lr as `initial_lr`."""
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    for group in optimizer.param_groups:
        group['initial_lr'] = group['lr']
    return optimizer


def cycle_parameter_groups(sl, cg, lr: float) -> list[dict]:
    """`optimizer_cg` of train_final (spec §3.3 `get_parameter_group_c`, §4.2): SL refiner @lr, the rest of
    the SL (encoders, embedding, mixer, predictor) @lr/10, the whole CG @lr."""
    refiner = set(id(p) for p in sl.refiner.parameters())
    return [{'name': 'sl_refiner', 'params': list(sl.refiner.parameters()), 'lr': lr},
            {'name': 'sl_rest', 'params': [p for p in sl.parameters() if id(p) not in refiner], 'lr': lr / 10},
            {'name': 'cg', 'params': list(cg.parameters()), 'lr': lr}]


def set_epoch_lr(optimizers, milestones, epoch: int) -> float:
    """Set every group's lr for `epoch` (0.3.1 semantics); returns the base lr's value."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group['lr'] = lr_at_epoch(group['initial_lr'], milestones, epoch)
    return lr_at_epoch(1.0, milestones, epoch)


# --------------------------------------------------------------------------------------- the steps
def localizer_inputs(batch, sent=None):
    """Arguments of a localizer's forward for the batch's sentences (or `sent` with their lengths/masks)."""
    return (batch.video, batch.video_length, batch.video_mask, batch.caption if sent is None else sent,
            batch.caption_length, batch.caption_mask, batch.caption_gather_idx)


def training_miou(segment_seconds, batch) -> float:
    """Mean IoU of the predicted segments (seconds) with the GT ones: logged only, never in a loss."""
    return float(segment_iou(segment_seconds.detach(), batch.raw_timestamp).mean())


def segment_seconds(cw, batch):
    duration = batch.video_length[:, 1].index_select(0, batch.caption_gather_idx)
    return cw2se(cw.detach(), clip=True) * duration.unsqueeze(1)


def cycle_step(cg, sl, batch, optimizer, *, grad_clip, set_to_none=False) -> dict:
    """One CG-phase iteration (spec §4.2 "CG phase"), both models in train mode:
    S = l_diff(V, C) + ε; logp, Ĉ = g(V, S, C); S' = l_diff(V, Ĉ) with C's length and mask;
    L = L_cap + mean((S' − sg(S))²)/100; clip the localizer's gradients only; step."""
    cg.train()
    sl.train()
    # both localizer calls encode the same videos: done together (LocalizerBackbone.encode_video_twice)
    first_encoding, second_encoding = sl.encode_video_twice(batch.video, batch.video_length)
    segment = sl(*localizer_inputs(batch), mode='diff', video_encoding=first_encoding)
    segment = segment + (torch.rand_like(segment) * 2 - 1) * CYCLE_NOISE
    logp, generated = cg(batch.video, batch.video_length, batch.video_mask, segment, batch.caption_gather_idx,
                         sent=batch.caption)
    reconstructed = sl(*localizer_inputs(batch, generated.detach()), mode='diff', video_encoding=second_encoding)
    loss_cap = caption_loss(logp, batch.caption, batch.caption_mask)
    loss_rec = ((reconstructed - segment.detach()) ** 2).mean() * RECONSTRUCTION_WEIGHT
    loss = loss_cap + loss_rec
    optimizer.zero_grad(set_to_none=set_to_none)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(sl.parameters(), grad_clip)
    optimizer.step()
    return {'loss': loss.detach(), 'loss_cap': loss_cap.detach(), 'loss_rec': loss_rec.detach(),
            'miou': training_miou(segment_seconds(segment, batch), batch)}


@torch.no_grad()
def anchor_captions(cg, batch, anchor_cw) -> torch.Tensor:
    """Beam-search captions of every anchor for every sentence row: tokens `(N, A, max_len + 2)`."""
    n, a = batch.caption.size(0), anchor_cw.size(0)
    segments = anchor_cw.to(batch.video.device).repeat(n, 1)
    gather = batch.caption_gather_idx.repeat_interleave(a)
    tokens, _, _ = cg(batch.video, batch.video_length, batch.video_mask, segments, gather)
    return tokens.view(n, a, -1)


def first_argmax(rows) -> list[int]:
    """Index of the first maximum of each row (np.argmax's tie-break, spec §4.2, §6.3.7)."""
    return [max(range(len(row)), key=lambda k: (row[k], -k)) for row in rows]


def pseudo_labels(cg, batch, vocab: Vocabulary, scorer, anchor_cw=None) -> tuple[torch.Tensor, list]:
    """METEOR pseudo-labels (spec §4.2 SL phase step 2): caption the anchors with the frozen CG (eval mode,
    beam search), score every caption against the row's GT sentence, label = first argmax.

    `scorer(hyps, refs) -> list[float]` gets all N·A pairs at once; strings are rtranslated then
    stripped of non-ASCII characters. Returns the labels `(N,)` and the score rows.
    """
    anchor_cw = anchors() if anchor_cw is None else anchor_cw
    cg.eval()
    tokens = anchor_captions(cg, batch, anchor_cw).cpu()
    n, a = tokens.shape[:2]
    hyps = [remove_nonascii(vocab.decode(t)) for t in tokens.view(n * a, -1)]
    refs = [remove_nonascii(vocab.decode(c)) for c in batch.caption.cpu()]
    scores = scorer(hyps, [[refs[i // a]] for i in range(n * a)])
    rows = [list(map(float, scores[i * a:(i + 1) * a])) for i in range(n)]
    return torch.tensor(first_argmax(rows), device=batch.video.device), rows


def classification_step(sl, cg, batch, optimizer, vocab, scorer, *, set_to_none=False) -> dict:
    """One SL-phase iteration (spec §4.2 "SL phase"): SL in train mode, CG frozen in eval mode;
    L = CE(score, METEOR pseudo-label); all SL parameters with gradients are updated; no clipping."""
    sl.train()
    score, _, seconds = sl(*localizer_inputs(batch), mode='forward')
    labels, _ = pseudo_labels(cg, batch, vocab, scorer)
    loss = F.cross_entropy(score, labels)
    optimizer.zero_grad(set_to_none=set_to_none)
    loss.backward()
    optimizer.step()
    return {'loss': loss.detach(), 'miou': training_miou(seconds, batch),
            'label_mean': float(labels.float().mean())}


class MeteorPseudoLabelScorer:
    """`scorer` of `pseudo_labels`: coco-caption's PTB tokenizer then METEOR 1.5 through one persistent Java
    process (spec §4.2, §6.5), started on first use (METEOR loads its tables once, ~30 s).

    Each line is tokenized on its own (`ptb_tokenize`), so tokenized strings are cached and the tokenizer
    JVM only runs for batches holding unseen sentences (one call for all of them).
    """

    def __init__(self):
        self._meteor = None
        self._tokenized = {}
        self.seconds = 0.0

    def tokenize(self, texts):
        from third_party.densevid_eval.meteor import ptb_tokenize
        unseen = sorted(set(texts) - self._tokenized.keys())
        if unseen:
            self._tokenized.update(zip(unseen, ptb_tokenize(unseen)))
        return [self._tokenized[t] for t in texts]

    def __call__(self, hyps, refs):
        from third_party.densevid_eval.meteor import Meteor
        start = time.perf_counter()
        if self._meteor is None:
            self._meteor = Meteor()
        flat = self.tokenize(list(hyps) + [r for rs in refs for r in rs])
        rest = iter(flat[len(hyps):])
        scores = self._meteor.score_pairs(flat[:len(hyps)], [[next(rest) for _ in rs] for rs in refs])
        self.seconds += time.perf_counter() - start
        return scores

    def close(self):
        if self._meteor is not None:
            self._meteor.close()
            self._meteor = None


# -------------------------------------------------------------------------------- checkpoints, loop
def training_checkpoint(models: dict, optimizers: dict, milestones, epoch: int, step: int, config: dict,
                        kind: str) -> dict:
    """`{'model': {name: sd}, 'optimizer': {name: sd}, 'scheduler', 'epoch', 'step', 'config', 'rng', 'kind'}`;
    the scheduler is the 0.3.1 MultiStepLR schedule (lr of an epoch = `lr_at_epoch`)."""
    return {'model': {name: m.state_dict() for name, m in models.items()},
            'optimizer': {name: o.state_dict() for name, o in optimizers.items()},
            'scheduler': {'milestones': list(milestones), 'gamma': 0.1, 'last_epoch': epoch + 1},
            'epoch': epoch, 'step': step, 'config': config,
            'rng': all_gather_object(capture_rng_state()), 'kind': kind}


def resume_training(run, models: dict, optimizers: dict) -> tuple[int, int]:
    """Restore models, optimisers and RNG states from last.pt under --resume: (first epoch, step)."""
    state = run.resume_state()
    if state is None:
        return 0, 0
    for name, model in models.items():
        model.load_state_dict(state['model'][name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state['optimizer'][name])
    restore_rng_state(state['rng'][0])
    return state['epoch'] + 1, state['step']


def run_epoch(run, loader, epoch: int, step: int, step_fn, device, *, max_steps=None, desc='', scalars=None):
    """Iterate one epoch: `step_fn(batch) -> metrics`; stop on a non-finite loss; log every step.
    Returns (global step, mean of each metric over the epoch)."""
    set_epoch(loader, epoch)
    totals, count = {}, 0
    for i, batch in enumerate(run.progress(loader, desc, total=len(loader))):
        if max_steps is not None and i >= max_steps:
            break
        metrics = step_fn(batch.to(device))
        step += 1
        check_finite(metrics['loss'], step)
        metrics = {k: float(v) for k, v in metrics.items()}
        run.log(step, {**metrics, **(scalars or {}), 'epoch': epoch})
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + v
        count += 1
    return step, {k: v / max(count, 1) for k, v in totals.items()}


def report_epoch(run, args, epoch: int, step: int, means: dict, extra: str = '') -> None:
    if run.is_main and not args.quiet:
        values = ', '.join(f'{k} {v:.4f}' for k, v in means.items())
        print(f"epoch {epoch}{extra} step {step}: {values}", flush=True)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the docstring's layout."""


def parser_for(doc: str) -> argparse.ArgumentParser:
    """The parser of a training script, described by its module docstring."""
    return argparse.ArgumentParser(description=doc, formatter_class=_HelpFormatter)


def start_run(args, kind: str, vocab: Vocabulary | None = None):
    """Seed, pick the device, open the run folder, load the data (and store a built vocabulary)."""
    seed_everything(args.seed)
    device = resolve_device(args.device)
    run = Run(args, kind)
    data = load_training_data(args, vocab)
    write_skipped_videos(run.dir, data.paths.train, data.annotations, data.features)
    save_vocab(run, data.vocab)
    return run, data, device


def fit(run, args, models: dict, optimizers: dict, config: dict, epoch_fn) -> None:
    """The epoch loop every script shares: resume, set the epoch's lr (0.3.1 semantics), run the epoch,
    save a checkpoint. `epoch_fn(epoch, step, lr) -> (step, mean metrics, label)`."""
    start_epoch, step = resume_training(run, models, optimizers)
    try:
        for epoch in range(start_epoch, args.epochs):
            lr = args.lr * set_epoch_lr(optimizers.values(), args.lr_step, epoch)
            step, means, label = epoch_fn(epoch, step, lr)
            report_epoch(run, args, epoch, step, {'lr': lr, **means}, label)
            run.save_checkpoint(training_checkpoint(models, optimizers, args.lr_step, epoch, step, config,
                                                    run.kind), epoch)
    finally:
        run.close()


def caption_step(cg, optimizer, segment_of, *, set_to_none=False):
    """Step function of the caption-generator-only scripts: teacher-forced L_cap on `segment_of(batch)`."""
    def step(batch):
        cg.train()
        logp, _ = cg(batch.video, batch.video_length, batch.video_mask, segment_of(batch), batch.caption_gather_idx,
                     sent=batch.caption)
        loss = caption_loss(logp, batch.caption, batch.caption_mask)
        optimizer.zero_grad(set_to_none=set_to_none)
        loss.backward()
        optimizer.step()
        return {'loss': loss.detach()}
    return step


def train_caption_generator(args, kind: str, segment_of, inference: dict) -> None:
    """train_cg_pretrain / train_cg: the CG alone, SGD over all its parameters, no clipping (spec §4.1, §4.3)."""
    run, data, device = start_run(args, kind)
    models_config = {'cg': cg_config(args, len(data.vocab), data.features.dim)}
    cg = build_models_from_config(models_config)['cg'].to(device)
    optimizers = {'cg': sgd(cg.parameters(), args.lr)}
    loader = train_loader(data, args.batch_size, args)
    config = checkpoint_config(run, models_config, data, inference)

    def epoch_fn(epoch, step, lr):
        fn = caption_step(cg, optimizers['cg'], segment_of, set_to_none=args.zero_grad_set_to_none)
        step, means = run_epoch(run, loader, epoch, step, fn, device, max_steps=args.max_steps_per_epoch,
                                desc=f'epoch {epoch}', scalars={'lr': lr})
        return step, means, ''
    fit(run, args, {'cg': cg}, optimizers, config, epoch_fn)


def start_cycle_run(args, kind: str, sl_type: str):
    """train_final / train_baseline_regressor: the run, its data, the pretrained CG (from --checkpoint_cg,
    with its vocabulary) and a freshly initialised localizer (PyTorch default init, spec §4.2)."""
    cg_cfg, cg_state, vocab = load_caption_generator(args.checkpoint_cg, args.vocab)
    run, data, device = start_run(args, kind, vocab)
    if cg_cfg['video_feature_dim'] != data.features.dim:
        raise TrainingSetupError(f"{args.checkpoint_cg}: caption generator expects {cg_cfg['video_feature_dim']}-d "
                                 f"features, {data.paths.c3d} has {data.features.dim}-d")
    models_config = {'cg': cg_cfg, 'sl': sl_config(args, len(vocab), data.features.dim, sl_type)}
    models = build_models_from_config(models_config)
    models['cg'].load_state_dict(cg_state)
    return run, data, device, {name: m.to(device) for name, m in models.items()}, models_config
