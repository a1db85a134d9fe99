"""Every WSDEC evaluation experiment as `evaluate_X(argv)` with its parser (spec wsdec §4.3-4.5): checkpoint →
val_1 data → an inference procedure of models/wsdec/inference.py → submission → scores. The scripts in
eval_script/ are thin entry points; eval_script/evaluate.py dispatches a checkpoint to its procedure by `kind`.

Every procedure visits every video of val_1 in order (batches of `--batch-size`); `--legacy-shuffled-eval`
reproduces the released shuffle=True, drop_last=True loader (spec §6.3.6). Models run in float32 (no autocast),
so captions do not depend on the device's half-precision rounding. The checkpoint's config rebuilds the models,
the vocabulary (`config['vocab']`; `--vocab` for converted original checkpoints) and the inference options
(`config['inference']`); command-line flags override inference options only, and the script prints which.
Dense captioning is scored with the 2018 toolkit, missing videos = 0, references val_1 + val_2.
"""
import json
from dataclasses import asdict, replace

import torch

from models.wsdec.config import InferenceOptions, resolve_options
from models.wsdec.inference import (aggregate_runs, build_submission, caption_gt_segments, dense_captioning,
                                    localize_sentences, predict, pretrain_random_captions, random_localization,
                                    random_test_markdown, segment_blind, video_reliance, whole_video_captions)
from models.wsdec.runs import SetupError, checkpoint_models, checkpoint_vocab, eval_dataset, \
    stored_data_paths
from utils import cli
from utils.checkpoint import atomic_path
from utils.distributed import make_loader
from utils.diagnostics import training_log_summary
from utils.evaluation import checkpoint_run_dir, eval_run, references, score, score_localization, write_submission
from utils.run import read_checkpoint, resolve_device
from utils.wsdec_data import WSDECDataset, wsdec_collate

DENSE_KINDS = ('wsdec_final', 'wsdec_noregress', 'wsdec_noclass')
DENSE_OPTIONS = InferenceOptions.names()
TWO_STAGE = InferenceOptions(n_rand=-1, iou_thres=0.8)
RANDOM_TEST_METRICS = ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr', 'Recall', 'Precision',
                       'F1']


# ------------------------------------------------------------------------------------------------- flags
def add_eval_args(parser, checkpoint_flags=('--checkpoint',)):
    """The common flags plus the checkpoint(s), `--vocab`, `--features` and `--no-score`."""
    cli.add_common_args(parser, epochs=0, batch_size=8, seed=233, run_name=None)
    for flag in checkpoint_flags:
        cli.add_flag(parser, flag, required=True, default=None, help='checkpoint (.pt) written by this suite')
    parser.add_argument('--vocab', default=None,
                        help="vocabulary (JSON or the original pickle) for checkpoints without config['vocab'] "
                             "(converted original checkpoints)")
    parser.add_argument('--features', default=None, help='C3D .hdf5 file (or .npy folder) instead of the data root\'s')
    parser.add_argument('--no-score', action='store_true',
                        help='write the predictions only (score later with third_party/densevid_eval)')
    return parser


def add_inference_args(parser, names=DENSE_OPTIONS, base=InferenceOptions()):
    """Inference flags; each defaults to None = take the checkpoint's value (else `base`, shown in the help)."""
    g = parser.add_argument_group('inference options (override the checkpoint; spec wsdec §4.4)')
    flags = {
        'n_rand': (('--n-rand', '--n_rand'), dict(type=int, help=f'initial segments per video, -1 = the anchors '
                                                                  f'of the checkpoint (default {base.n_rand})')),
        'rand_seed': (('--rand-seed', '--rand_seed'), dict(type=int, help=f'seed of the random draws (default '
                                                                          f'{base.rand_seed})')),
        'per_video_random_segments': (('--per-video-random-segments',), dict(
            action='store_const', const=True, help='draw initial segments per video (released: per batch)')),
        'refine_round': (('--refine-round', '--refine_round'), dict(type=int, help=f'refinement rounds (default '
                                                                                   f'{base.refine_round})')),
        'iou_thres': (('--iou-thres', '--iou_thres'), dict(type=float, help=f'hull-merge IoU threshold (default '
                                                                            f'{base.iou_thres})')),
        'drop_iou': (('--drop-iou',), dict(type=float, help=f'drop-rule IoU threshold (default {base.drop_iou})')),
        'legacy_drop': (('--no-legacy-drop',), dict(
            action='store_const', const=False, help='drop proposals with IoU(new, old) < --drop-iou instead of > '
                                                    '(spec wsdec §6.3.3)')),
        'legacy_shuffled_eval': (('--legacy-shuffled-eval',), dict(
            action='store_const', const=True, help='shuffle=True, drop_last=True val loader as released')),
    }
    for name in names:
        (flag, *aliases), kwargs = flags[name]
        cli.add_flag(g, flag, *aliases, dest=name, default=None, **kwargs)
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


# ------------------------------------------------------------------------------------- shared pieces
def eval_models(state, path, parts, device) -> list:
    """The checkpoint's models `parts` in eval mode on `device` (eval mode: the caption generator beam-searches)."""
    models = checkpoint_models(state, path, parts)
    return [models[name].to(device).eval() for name in parts]


def eval_batches(dataset, args, legacy_shuffled, run):
    """Every video in order, or the released shuffle=True, drop_last=True loader (seeded by --seed)."""
    loader = make_loader(dataset, args.batch_size, shuffle=legacy_shuffled, drop_last=legacy_shuffled,
                         collate_fn=wsdec_collate, seed=args.seed, num_workers=args.num_workers, epoch_sampler=False)
    if legacy_shuffled:
        print(f"--legacy-shuffled-eval: {len(dataset) % args.batch_size} of {len(dataset)} videos are dropped "
              f"(drop_last) and score 0")
    return run.progress(loader, 'eval', total=len(loader))


def open_run(args, kind, checkpoint, paths, dataset, prefix='eval'):
    """The evaluation's run folder (utils.evaluation.eval_run), recording the val_1 videos skipped for lack of
    features."""
    run = eval_run(args, kind, checkpoint, prefix)
    run.record_skipped(paths.val_1, dataset.annotations, dataset.features)
    return run


def submission_params(state, path, options=None, **extra) -> dict:
    return {'checkpoint': str(path), 'kind': state['kind'], **(asdict(options) if options else {}), **extra}


def setup(args, parts, option_names, mode='full', base=InferenceOptions()):
    """What every procedure starts with: the checkpoint, its models on the device, vocabulary, inference
    options, data paths and the val_1 dataset. Returns (state, device, models, vocab, options, paths, dataset)."""
    state = read_checkpoint(args.checkpoint)
    device = resolve_device(args.device)
    models = eval_models(state, args.checkpoint, parts, device)
    vocab = checkpoint_vocab(state, args.checkpoint, args.vocab)
    options = inference_options(args, state['config'].get('inference'), option_names, base)
    paths = stored_data_paths(args, state['config'])
    dataset = eval_dataset(paths, vocab, args, state['config'], mode, [(state, args.checkpoint)])
    return state, device, models, vocab, options, paths, dataset


def captioner_diagnostics(cg, dataset, args, device, checkpoint) -> dict:
    """The caption generator's video reliance on every GT sentence of the evaluated videos (GT segments), and the
    pseudo-label ties logged by the checkpoint's training run (utils/diagnostics.py; issue 14)."""
    full = dataset if dataset.mode == 'full' else WSDECDataset(dataset.annotations, dataset.features, dataset.vocab,
                                                               'full', dataset.vids)
    loader = make_loader(full, args.batch_size, shuffle=False, drop_last=False, collate_fn=wsdec_collate,
                         seed=args.seed, num_workers=args.num_workers, epoch_sampler=False)
    out = video_reliance(cg, loader, device)
    run_dir = checkpoint_run_dir(checkpoint)
    return out | (training_log_summary(run_dir / 'log.jsonl') if run_dir else {})


def finish(run, name, results, params, paths, args, meteor=None, show=True, diagnostics=None):
    """Write the submission, score it under the WSDEC protocol (unless --no-score) with the diagnostics, close
    the run."""
    submission = write_submission(run, name, build_submission(results, params))
    result = None
    if args.no_score:
        print('--no-score: not scored')
    else:
        result = score(run.metrics_dir, name, submission, references(paths), meteor=meteor, show=show,
                       diagnostics=diagnostics)['wsdec']
    run.close()
    return result


# ------------------------------------------------------------------------------------------ procedures
def dense_parser():
    """Dense captioning of a final / no-regression / no-classification checkpoint (spec wsdec §4.4):
    `--n-rand` random initial segments U[0,1)² (torch.Generator seeded with `--rand-seed`; one draw per batch
    shared by its videos as released, or `--per-video-random-segments`; `--n-rand -1` = the anchors) → caption →
    localize → drop rule (IoU > 0.2, released; `--no-legacy-drop` drops if IoU < `--drop-iou`) → hull merge above
    `--iou-thres` → re-caption (`--refine-round` rounds)."""
    parser = cli.parser(dense_parser.__doc__ + '\n\n' + __doc__)
    add_eval_args(parser)
    parser.add_argument('--segment-blind', action='store_true',
                        help="baseline (issue 14): keep the procedure's segments, caption every event with the "
                             "caption generator's whole-video caption")
    return add_inference_args(parser)


def evaluate_dense(argv=None):
    args = cli.parse(dense_parser(), argv)
    state, device, (cg, sl), vocab, options, paths, dataset = setup(args, ('cg', 'sl'), DENSE_OPTIONS)
    run = open_run(args, f"eval_{state['kind']}", args.checkpoint, paths, dataset)
    results = dense_captioning(cg, sl, eval_batches(dataset, args, options.legacy_shuffled_eval, run), options,
                               vocab, device, anchor_list=sl_anchors(state))
    name = f'dense_n{options.n_rand}_seed{options.rand_seed}_val_1'
    if args.segment_blind:
        whole = predict(eval_batches(dataset, args, options.legacy_shuffled_eval, run),
                        lambda batch: whole_video_captions(cg, batch, vocab), device)
        results, name = segment_blind(results, whole), name + '_segment_blind'
    return finish(run, name, results, submission_params(state, args.checkpoint, options), paths, args,
                  diagnostics=captioner_diagnostics(cg, dataset, args, device, args.checkpoint))


def sl_anchors(state):
    """The anchors stored in the checkpoint's localizer config (the original reads `params['anchor_list']`)."""
    anchors = state['config']['models'].get('sl', {}).get('anchor_list')
    return None if anchors is None else torch.tensor(anchors, dtype=torch.float32)


PRETRAIN_OPTIONS = ('rand_seed', 'legacy_shuffled_eval')


def pretrain_parser():
    """Pretrained caption generator with one random segment per video: the random-segment dense-captioning
    baseline (spec wsdec §4.4 end, `evaluate_pretrain.py`). Each val_1 video gets one `(c, w) ~ U[0,1)²`
    (torch.Generator seeded with `--rand-seed`, drawn per batch in loader order) and one caption at it. As the
    original, one random GT sentence per video (a `mode='sample'` dataset seeded with `--seed`) fills the
    `gt_sentence`/`gt_timestamp` fields, which the scorer ignores; the original wrote the prediction as
    `gt_timestamp` (spec wsdec §6.1), here it is the true GT. The original loader was batch 36, shuffle=True,
    drop_last=True: `--batch-size 36 --legacy-shuffled-eval` reproduces its 21 dropped videos."""
    parser = cli.parser(pretrain_parser.__doc__)
    add_eval_args(parser)
    return add_inference_args(parser, PRETRAIN_OPTIONS)


def evaluate_pretrain(argv=None):
    args = cli.parse(pretrain_parser(), argv)
    state, device, (cg,), vocab, options, paths, dataset = setup(args, ('cg',), PRETRAIN_OPTIONS, mode='sample')
    run = open_run(args, 'eval_wsdec_cg_pretrain', args.checkpoint, paths, dataset)
    generator = torch.Generator().manual_seed(options.rand_seed)
    results = predict(eval_batches(dataset, args, options.legacy_shuffled_eval, run),
                      lambda batch: pretrain_random_captions(cg, batch, generator, vocab), device)
    params = submission_params(state, args.checkpoint, rand_seed=options.rand_seed, segments='one random per video')
    return finish(run, f'pretrain_random_seed{options.rand_seed}_val_1', results, params, paths, args,
                  diagnostics=captioner_diagnostics(cg, dataset, args, device, args.checkpoint))


def cg_parser():
    """Supervised caption generator at the ground-truth segments of val_1 ("captioning with GT proposals";
    spec wsdec §4.3, `train_cg.py`'s eval). Each GT segment, as the training input `se2cw([s_idx, e_idx]) / L`
    in feature-index units, gets one caption, written with the GT timestamp in seconds."""
    parser = cli.parser(cg_parser.__doc__)
    add_eval_args(parser)
    return add_inference_args(parser, ('legacy_shuffled_eval',))


def evaluate_cg(argv=None):
    args = cli.parse(cg_parser(), argv)
    state, device, (cg,), vocab, options, paths, dataset = setup(args, ('cg',), ('legacy_shuffled_eval',))
    run = open_run(args, 'eval_wsdec_cg', args.checkpoint, paths, dataset)
    results = predict(eval_batches(dataset, args, options.legacy_shuffled_eval, run),
                      lambda batch: caption_gt_segments(cg, batch, vocab), device)
    params = submission_params(state, args.checkpoint, segments='ground truth')
    return finish(run, 'gt_segments_val_1', results, params, paths, args,
                  diagnostics=captioner_diagnostics(cg, dataset, args, device, args.checkpoint))


def localization_parser():
    """Sentence localization on val_1 (spec wsdec §4.5): every GT sentence → one segment; R@1 at tIoU > 0.1/0.3/
    0.5/0.7/0.9 (micro-average over sentences) and the per-sentence mIoU (spec evaluation §3.6). Works with any
    checkpoint holding a sentence localizer (weakly supervised final / no-regression / no-classification models, the
    supervised `wsdec_sl`). Entries carry `sentence` (the GT, rtranslated), `timestamp` (the localized segment,
    seconds) and `gt_timestamp` (the GT, seconds). `--random-baseline`: one `(c, w) ~ U[0,1)²` per GT sentence
    (torch.Generator seeded with `--rand-seed`), for every sentence of every video by default;
    `--legacy-one-sentence-per-video` scores one random GT sentence per video instead, as the released
    `evaluate_localization_prt_model.py` (the sentence is drawn by a `mode='sample'` dataset seeded with `--seed`).
    The checkpoint then only provides the vocabulary and data paths. mIoU here is the per-sentence mean, not
    WSDEC's per-batch log line."""
    parser = cli.parser(localization_parser.__doc__)
    add_eval_args(parser)
    parser.add_argument('--random-baseline', action='store_true',
                        help='one random (c, w) per GT sentence instead of the localizer')
    parser.add_argument('--legacy-one-sentence-per-video', action='store_true',
                        help='with --random-baseline: one random GT sentence per video, as released')
    return add_inference_args(parser, PRETRAIN_OPTIONS)


def evaluate_localization(argv=None):
    args = cli.parse(localization_parser(), argv)
    if args.legacy_one_sentence_per_video and not args.random_baseline:
        raise SetupError("--legacy-one-sentence-per-video applies to --random-baseline only (the released "
                                 "localizer evaluations used every sentence)")
    parts = () if args.random_baseline else ('sl',)
    mode = 'sample' if args.legacy_one_sentence_per_video else 'full'
    state, device, models, vocab, options, paths, dataset = setup(args, parts, PRETRAIN_OPTIONS, mode=mode)
    if args.random_baseline:
        generator = torch.Generator().manual_seed(options.rand_seed)
        step = lambda batch: random_localization(batch, generator, vocab)  # noqa: E731
        name, what = f'localization_random_seed{options.rand_seed}_val_1', 'random (c, w) per sentence'
    else:
        step = lambda batch: localize_sentences(models[0], batch, vocab)  # noqa: E731
        name, what = 'localization_val_1', 'sentence localizer'
    print(f"localizing {'one random sentence' if mode == 'sample' else 'every sentence'} of each of "
          f"{len(dataset)} videos with the {what}")
    run = open_run(args, 'eval_localization' + ('_random' if args.random_baseline else ''), args.checkpoint, paths,
                   dataset)
    results = predict(eval_batches(dataset, args, options.legacy_shuffled_eval, run), step, device)
    params = submission_params(state, args.checkpoint, localizer=what, sentences=mode)
    result = score_localization(run, name, write_submission(run, name, build_submission(results, params)))
    run.close()
    return result


def twostage_parser():
    """Two-stage baseline: supervised sentence localizer + supervised caption generator run through the
    dense-captioning procedure (spec wsdec §1 table, `evaluate_twostage.py`): the anchors → caption → localize →
    drop rule → hull merge above IoU 0.8 → re-caption. Defaults: `--n-rand -1` (anchors), `--iou-thres 0.8`;
    the two checkpoints store no dense-captioning options. Both checkpoints must share one vocabulary."""
    parser = cli.parser(twostage_parser.__doc__)
    add_eval_args(parser, checkpoint_flags=('--sl-checkpoint', '--cg-checkpoint'))
    return add_inference_args(parser, base=TWO_STAGE)


def evaluate_twostage(argv=None):
    args = cli.parse(twostage_parser(), argv)
    sl_state, cg_state = read_checkpoint(args.sl_checkpoint), read_checkpoint(args.cg_checkpoint)
    device = resolve_device(args.device)
    (sl,) = eval_models(sl_state, args.sl_checkpoint, ('sl',), device)
    (cg,) = eval_models(cg_state, args.cg_checkpoint, ('cg',), device)
    vocab = checkpoint_vocab(cg_state, args.cg_checkpoint, args.vocab)
    if checkpoint_vocab(sl_state, args.sl_checkpoint, args.vocab).id_to_word != vocab.id_to_word:
        raise SetupError(f"{args.sl_checkpoint} and {args.cg_checkpoint} were trained with different "
                                 f"vocabularies (config['vocab'])")
    options = inference_options(args, None, base=TWO_STAGE)
    paths = stored_data_paths(args, cg_state['config'])
    dataset = eval_dataset(paths, vocab, args, cg_state['config'], 'full',
                           [(cg_state, args.cg_checkpoint), (sl_state, args.sl_checkpoint)])
    run = open_run(args, 'eval_wsdec_twostage', args.sl_checkpoint, paths, dataset, prefix='eval_twostage')
    results = dense_captioning(cg, sl, eval_batches(dataset, args, options.legacy_shuffled_eval, run), options,
                               vocab, device, anchor_list=sl_anchors(sl_state))
    name = f'twostage_n{options.n_rand}_seed{options.rand_seed}_val_1'
    params = submission_params(cg_state, args.cg_checkpoint, options, sl_checkpoint=args.sl_checkpoint)
    return finish(run, name, results, params, paths, args,
                  diagnostics=captioner_diagnostics(cg, dataset, args, device, args.cg_checkpoint))


RANDOM_TEST_OPTIONS = tuple(n for n in DENSE_OPTIONS if n not in ('n_rand', 'rand_seed'))


def random_test_parser():
    """Robustness of the dense-captioning test procedure to the number of random initial segments and to the
    seed (spec wsdec §1, `scripts/run_random_test.sh`): n_rand ∈ {10, 15, 20} × seeds {233, 346, 581, 910, 191}.
    The model is loaded once; each (n_rand, seed) runs the dense-captioning procedure (the other inference
    flags are the same) and is scored with the 2018 toolkit (missing = 0, val_1 + val_2) through one METEOR
    process. Writes predictions/ and metrics/ per run, then random_test.json and random_test.md in the run folder
    (default `random_test_<checkpoint's run name>`): mean ± sample standard deviation over the seeds."""
    parser = cli.parser(random_test_parser.__doc__)
    add_eval_args(parser)
    parser.add_argument('--n-rand', type=int, nargs='+', default=[10, 15, 20], help='numbers of initial segments')
    parser.add_argument('--seeds', type=int, nargs='+', default=[233, 346, 581, 910, 191], help='--rand-seed values')
    return add_inference_args(parser, RANDOM_TEST_OPTIONS)


def random_test(argv=None):
    from third_party.densevid_eval.meteor import Meteor
    args = cli.parse(random_test_parser(), argv)
    if args.no_score:
        raise SetupError("--no-score: the robustness study needs the scores")
    state, device, (cg, sl), vocab, base, paths, dataset = setup(args, ('cg', 'sl'), RANDOM_TEST_OPTIONS)
    run = open_run(args, 'random_test', args.checkpoint, paths, dataset, prefix='random_test')
    diagnostics = captioner_diagnostics(cg, dataset, args, device, args.checkpoint)
    runs = []
    with Meteor() as meteor:
        for n_rand in args.n_rand:
            for seed in args.seeds:
                options = replace(base, n_rand=n_rand, rand_seed=seed)
                results = dense_captioning(cg, sl, eval_batches(dataset, args, options.legacy_shuffled_eval, run),
                                           options, vocab, device, anchor_list=sl_anchors(state))
                name = f'dense_n{n_rand}_seed{seed}_val_1'
                submission = write_submission(run, name, build_submission(
                    results, submission_params(state, args.checkpoint, options)))
                metrics = score(run.metrics_dir, name, submission, references(paths), meteor=meteor, show=False,
                                diagnostics=diagnostics)['wsdec']['metrics']
                print(f"n_rand={n_rand} seed={seed}: " + ', '.join(f'{k} {metrics[k]:.2f}' for k in RANDOM_TEST_METRICS))
                runs.append({'n_rand': n_rand, 'seed': seed, 'metrics': metrics})
    table = aggregate_runs(runs)
    markdown = random_test_markdown(table, RANDOM_TEST_METRICS)
    summary = {'checkpoint': str(args.checkpoint), 'n_rand': args.n_rand, 'seeds': args.seeds,
               'std': 'sample standard deviation over seeds (n - 1)', 'runs': runs,
               'table': {str(n): row for n, row in table.items()}}
    for path, text in ((run.dir / 'random_test.json', json.dumps(summary, indent=2)),
                       (run.dir / 'random_test.md', markdown + '\n')):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    print(markdown)
    print(f"written: {run.dir / 'random_test.json'}, {run.dir / 'random_test.md'}")
    run.close()
    return summary


EVALUATIONS = {**{kind: evaluate_dense for kind in DENSE_KINDS}, 'wsdec_cg_pretrain': evaluate_pretrain,
               'wsdec_cg': evaluate_cg, 'wsdec_sl': evaluate_localization}
