"""Robustness of the dense-captioning test procedure to the number of random initial segments and to the seed
(spec wsdec §1, `scripts/run_random_test.sh`): n_rand ∈ {10, 15, 20} × seeds {233, 346, 581, 910, 191}.

    python scripts/run_random_test.py --checkpoint runs/wsdec_final/checkpoints/last.pt [--n-rand 10 15 20]
        [--seeds 233 346 581 910 191]

The model is loaded once; each (n_rand, seed) runs eval_script/evaluate.py's procedure (the other inference flags
are the same) and is scored with the 2018 toolkit (missing = 0, val_1 + val_2) through one METEOR process.
Writes predictions/ and metrics/ per run, then random_test.json and random_test.md in the run folder (default
`random_test_<checkpoint's run name>`): mean ± sample standard deviation over the seeds, per n_rand and metric.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import json
from dataclasses import replace

from eval_script.evaluate import (DENSE_OPTIONS, add_eval_args, add_inference_args, cli, eval_batches, eval_dataset,
                                  inference_options, load_models, load_vocab, read_checkpoint, resolve_data,
                                  score_dense, start_run, submission_params, write_submission)
from third_party.densevid_eval.meteor import Meteor
from utils.checkpoint import atomic_path
from utils.features import write_skipped_videos
from utils.run import resolve_device
from utils.wsdec_inference import aggregate_runs, dense_captioning, random_test_markdown

OPTIONS = tuple(n for n in DENSE_OPTIONS if n not in ('n_rand', 'rand_seed'))
TABLE_METRICS = ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr', 'Recall', 'Precision', 'F1']


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_args(parser)
    parser.add_argument('--n-rand', type=int, nargs='+', default=[10, 15, 20], help='numbers of initial segments')
    parser.add_argument('--seeds', type=int, nargs='+', default=[233, 346, 581, 910, 191], help='--rand_seed values')
    add_inference_args(parser, OPTIONS)
    return parser


def run(argv=None):
    args = build_parser().parse_args(argv)
    if args.no_score:
        raise ValueError("--no-score: the robustness study needs the scores")
    state = read_checkpoint(args.checkpoint)
    device = resolve_device(args.device)
    cg, sl = load_models(state, args.checkpoint, ('cg', 'sl'), device)
    vocab = load_vocab(state, args.checkpoint, args.vocab)
    base = inference_options(args, state['config'].get('inference'), OPTIONS)
    paths = resolve_data(args, state['config'])
    dataset = eval_dataset(paths, vocab, args, state['config'])
    run_folder = start_run(args, 'random_test', prefix='random_test')
    write_skipped_videos(run_folder.dir, paths.val_1, dataset.annotations, dataset.features)
    runs = []
    with Meteor() as meteor:
        for n_rand in args.n_rand:
            for seed in args.seeds:
                options = replace(base, n_rand=n_rand, rand_seed=seed)
                results = dense_captioning(cg, sl, eval_batches(dataset, args, options.legacy_shuffled_eval,
                                                                run_folder), options, vocab, device)
                name = f'dense_n{n_rand}_seed{seed}_val_1'
                submission = write_submission(run_folder, name, results,
                                              submission_params(state, args.checkpoint, options))
                metrics = score_dense(run_folder, name, submission, paths, args, meteor, show=False)['metrics']
                print(f"n_rand={n_rand} seed={seed}: " + ', '.join(f'{k} {metrics[k]:.2f}' for k in TABLE_METRICS))
                runs.append({'n_rand': n_rand, 'seed': seed, 'metrics': metrics})
    table = aggregate_runs(runs)
    markdown = random_test_markdown(table, TABLE_METRICS)
    summary = {'checkpoint': str(args.checkpoint), 'n_rand': args.n_rand, 'seeds': args.seeds,
               'std': 'sample standard deviation over seeds (n - 1)', 'runs': runs,
               'table': {str(n): row for n, row in table.items()}}
    for path, text in ((run_folder.dir / 'random_test.json', json.dumps(summary, indent=2)),
                       (run_folder.dir / 'random_test.md', markdown + '\n')):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    print(markdown)
    print(f"written: {run_folder.dir / 'random_test.json'}, {run_folder.dir / 'random_test.md'}")
    run_folder.close()
    return summary


if __name__ == '__main__':
    cli(run)
