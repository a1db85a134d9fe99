"""Two-stage baseline: supervised sentence localizer + supervised caption generator run through the dense-
captioning procedure (spec wsdec §1 table, `evaluate_twostage.py`): the 15 anchors → caption → localize →
drop rule → hull merge above IoU 0.8 → re-caption.

    python eval_script/evaluate_twostage.py --sl-checkpoint runs/wsdec_sl/checkpoints/last.pt \\
        --cg-checkpoint runs/wsdec_cg/checkpoints/last.pt

Defaults: `--n_rand -1` (anchors), `--iou-thres 0.8`; the other options and flags are those of
eval_script/evaluate.py (the two checkpoints store no dense-captioning options). Both checkpoints must share
one vocabulary. Scored with the 2018 toolkit, missing = 0, val_1 + val_2.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse

from eval_script.evaluate import (EvalInputError, add_eval_args, add_inference_args, cli, eval_batches,
                                  eval_dataset, inference_options, load_models, load_vocab, read_checkpoint,
                                  resolve_data, score_dense, start_run, submission_params, write_submission)
from utils.features import write_skipped_videos
from utils.run import resolve_device
from utils.wsdec_inference import InferenceOptions, dense_captioning

TWO_STAGE = InferenceOptions(n_rand=-1, iou_thres=0.8)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_args(parser, checkpoint_flags=('--sl-checkpoint', '--cg-checkpoint'))
    add_inference_args(parser, base=TWO_STAGE)
    return parser


def run(argv=None):
    args = build_parser().parse_args(argv)
    sl_state, cg_state = read_checkpoint(args.sl_checkpoint), read_checkpoint(args.cg_checkpoint)
    device = resolve_device(args.device)
    (sl,) = load_models(sl_state, args.sl_checkpoint, ('sl',), device)
    (cg,) = load_models(cg_state, args.cg_checkpoint, ('cg',), device)
    vocab = load_vocab(cg_state, args.cg_checkpoint, args.vocab)
    if load_vocab(sl_state, args.sl_checkpoint, args.vocab).id_to_word != vocab.id_to_word:
        raise EvalInputError(f"{args.sl_checkpoint} and {args.cg_checkpoint} were trained with different "
                             f"vocabularies (config['vocab'])")
    options = inference_options(args, None, base=TWO_STAGE)
    paths = resolve_data(args, cg_state['config'])
    dataset = eval_dataset(paths, vocab, args, cg_state['config'])
    run_folder = start_run(args, 'eval_wsdec_twostage', prefix='eval_twostage')
    write_skipped_videos(run_folder.dir, paths.val_1, dataset.annotations, dataset.features)
    results = dense_captioning(cg, sl, eval_batches(dataset, args, options.legacy_shuffled_eval, run_folder),
                               options, vocab, device)
    name = f'twostage_n{options.n_rand}_seed{options.rand_seed}_val_1'
    params = submission_params(cg_state, args.cg_checkpoint, options, sl_checkpoint=args.sl_checkpoint)
    result = score_dense(run_folder, name, write_submission(run_folder, name, results, params), paths, args)
    run_folder.close()
    return result


if __name__ == '__main__':
    cli(run)
