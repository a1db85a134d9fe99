"""Pretrained caption generator with one random segment per video: the random-segment dense-captioning
baseline (spec wsdec §4.4 end, `evaluate_pretrain.py`).

    python eval_script/evaluate_pretrain.py --checkpoint runs/wsdec_cg_pretrain/checkpoints/last.pt

Each val_1 video gets one `(c, w) ~ U[0,1)²` (torch.Generator seeded with `--rand_seed`, drawn per batch in
loader order) and one caption at it. As the original, one random GT sentence per video (a `mode='sample'`
dataset seeded with `--seed`) fills the `gt_sentence`/`gt_timestamp` fields, which the scorer ignores; the
original wrote the prediction as `gt_timestamp` (spec wsdec §6.1), here it is the true GT. The original loader was
batch 36, shuffle=True, drop_last=True: `--batch-size 36 --legacy-shuffled-eval` reproduces its 21 dropped videos.
Scored like eval_script/evaluate.py (2018 toolkit, missing = 0, val_1 + val_2).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse

import torch

from eval_script.evaluate import (add_eval_args, add_inference_args, captioner_setup, cli, eval_batches,
                                  score_dense, start_run, submission_params, write_submission)
from utils.features import write_skipped_videos
from utils.wsdec_inference import predict, pretrain_random_captions

OPTIONS = ('rand_seed', 'legacy_shuffled_eval')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_args(parser)
    add_inference_args(parser, OPTIONS)
    return parser


def run(argv=None):
    args = build_parser().parse_args(argv)
    state, device, cg, vocab, options, paths, dataset = captioner_setup(args, OPTIONS, mode='sample')
    run_folder = start_run(args, 'eval_wsdec_cg_pretrain')
    write_skipped_videos(run_folder.dir, paths.val_1, dataset.annotations, dataset.features)
    generator = torch.Generator().manual_seed(options.rand_seed)
    results = predict(eval_batches(dataset, args, options.legacy_shuffled_eval, run_folder),
                      lambda batch: pretrain_random_captions(cg, batch, generator, vocab), device)
    name = f'pretrain_random_seed{options.rand_seed}_val_1'
    params = submission_params(state, args.checkpoint, rand_seed=options.rand_seed, segments='one random per video')
    result = score_dense(run_folder, name, write_submission(run_folder, name, results, params), paths, args)
    run_folder.close()
    return result


if __name__ == '__main__':
    cli(run)
