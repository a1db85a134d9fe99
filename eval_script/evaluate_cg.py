"""Supervised caption generator at the ground-truth segments of val_1 ("captioning with GT proposals";
spec wsdec §4.3, `train_cg.py`'s eval).

    python eval_script/evaluate_cg.py --checkpoint runs/wsdec_cg/checkpoints/last.pt

Each GT segment, as the training input `se2cw([s_idx, e_idx]) / L` in feature-index units, gets one caption,
written with the GT timestamp in seconds. Scored like eval_script/evaluate.py (2018 toolkit, missing = 0,
val_1 + val_2).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse

from eval_script.evaluate import (add_eval_args, add_inference_args, captioner_setup, cli, eval_batches,
                                  score_dense, start_run, submission_params, write_submission)
from utils.features import write_skipped_videos
from utils.wsdec_inference import caption_gt_segments, predict

OPTIONS = ('legacy_shuffled_eval',)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_args(parser)
    add_inference_args(parser, OPTIONS)
    return parser


def run(argv=None):
    args = build_parser().parse_args(argv)
    state, device, cg, vocab, options, paths, dataset = captioner_setup(args, OPTIONS)
    run_folder = start_run(args, 'eval_wsdec_cg')
    write_skipped_videos(run_folder.dir, paths.val_1, dataset.annotations, dataset.features)
    results = predict(eval_batches(dataset, args, options.legacy_shuffled_eval, run_folder),
                      lambda batch: caption_gt_segments(cg, batch, vocab), device)
    name = 'gt_segments_val_1'
    params = submission_params(state, args.checkpoint, segments='ground truth')
    result = score_dense(run_folder, name, write_submission(run_folder, name, results, params), paths, args)
    run_folder.close()
    return result


if __name__ == '__main__':
    cli(run)
