"""Sentence localization on val_1 (spec wsdec §4.5): every GT sentence → one segment; R@1 at tIoU > 0.1/0.3/0.5/
0.7/0.9 (micro-average over sentences) and the per-sentence mIoU (spec evaluation §3.6).

    python eval_script/evaluate_localization.py --checkpoint runs/wsdec_final/checkpoints/last.pt
    python eval_script/evaluate_localization.py --checkpoint runs/wsdec_sl/checkpoints/last.pt      # supervised SL
    python eval_script/evaluate_localization.py --checkpoint CKPT --random-baseline

Works with any checkpoint holding a sentence localizer (weakly supervised final / no-regression / no-classification
models, the supervised `wsdec_sl`); no caption generator is needed. Entries carry `sentence` (the GT, rtranslated),
`timestamp` (the localized segment, seconds) and `gt_timestamp` (the GT, seconds).

`--random-baseline`: one `(c, w) ~ U[0,1)²` per GT sentence (torch.Generator seeded with `--rand_seed`), for
**every sentence of every video** by default; `--legacy-one-sentence-per-video` scores one random GT sentence per
video instead, as the released `evaluate_localization_prt_model.py` (~4.9k instead of ~17.5k sentences on
ActivityNet; the sentence is drawn by a `mode='sample'` dataset seeded with `--seed`). The checkpoint then only
provides the vocabulary and data paths. mIoU here is the per-sentence mean, not WSDEC's per-batch log line.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse

import torch

from eval_script.evaluate import (EvalInputError, add_eval_args, add_inference_args, cli, eval_batches,
                                  eval_dataset, inference_options, load_models, load_vocab, read_checkpoint,
                                  resolve_data, score_localization, start_run, submission_params, write_submission)
from utils.features import write_skipped_videos
from utils.run import resolve_device
from utils.wsdec_inference import localize_sentences, predict, random_localization

OPTIONS = ('rand_seed', 'legacy_shuffled_eval')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_args(parser)
    parser.add_argument('--random-baseline', action='store_true',
                        help='one random (c, w) per GT sentence instead of the localizer')
    parser.add_argument('--legacy-one-sentence-per-video', action='store_true',
                        help='with --random-baseline: one random GT sentence per video, as released')
    add_inference_args(parser, OPTIONS)
    return parser


def run(argv=None):
    args = build_parser().parse_args(argv)
    if args.legacy_one_sentence_per_video and not args.random_baseline:
        raise EvalInputError("--legacy-one-sentence-per-video applies to --random-baseline only (the released "
                             "localizer evaluations used every sentence)")
    state = read_checkpoint(args.checkpoint)
    device = resolve_device(args.device)
    vocab = load_vocab(state, args.checkpoint, args.vocab)
    options = inference_options(args, state['config'].get('inference'), OPTIONS)
    paths = resolve_data(args, state['config'])
    if args.random_baseline:
        generator = torch.Generator().manual_seed(options.rand_seed)
        step = lambda batch: random_localization(batch, generator, vocab)  # noqa: E731
        name, what = f'localization_random_seed{options.rand_seed}_val_1', 'random (c, w) per sentence'
        mode = 'sample' if args.legacy_one_sentence_per_video else 'full'
    else:
        (sl,) = load_models(state, args.checkpoint, ('sl',), device)
        step = lambda batch: localize_sentences(sl, batch, vocab)  # noqa: E731
        name, what, mode = 'localization_val_1', 'sentence localizer', 'full'
    dataset = eval_dataset(paths, vocab, args, state['config'], mode=mode)
    print(f"localizing {'one random sentence' if mode == 'sample' else 'every sentence'} of each of "
          f"{len(dataset)} videos with the {what}")
    run_folder = start_run(args, 'eval_localization' + ('_random' if args.random_baseline else ''))
    write_skipped_videos(run_folder.dir, paths.val_1, dataset.annotations, dataset.features)
    results = predict(eval_batches(dataset, args, options.legacy_shuffled_eval, run_folder), step, device)
    params = submission_params(state, args.checkpoint, localizer=what, sentences=mode)
    result = score_localization(run_folder, name, write_submission(run_folder, name, results, params))
    run_folder.close()
    return result


if __name__ == '__main__':
    cli(run)
