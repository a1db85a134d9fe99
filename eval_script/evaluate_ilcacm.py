"""Evaluate an ILCACM checkpoint (spec ilcacm §5-6): event counts from the stage-1 paragraphs, masks from the mask
generator, one "<MASK>1 events: " caption per mask, timestamps clamp(c ± w/2) × duration. The submission goes to
<run>/predictions/, and is scored under the ILCACM protocol (2021 toolkit, skip missing videos, SODA_c) and the
WSDEC protocol (2018 toolkit, missing videos score 0); both tables are printed and saved in <run>/metrics/.

    python eval_script/evaluate_ilcacm.py --checkpoint runs/ilcacm/checkpoints/last.pt [--data-root DIR]

Baselines (`--count-mode`): 'paragraph' (default, spec §5.1), 'oracle' (the ground-truth count, capped at
--max-captions), 'equal-split' (stage 1 only: the paragraph's sentences on equal-width consecutive segments).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import json

import torch
from torch.utils.data import DataLoader

from models.ilcacm.factory import model_from_checkpoint
from models.ilcacm.model import split_paragraph
from third_party.densevid_eval import PROTOCOLS, evaluate, format_table, save_result
from utils.annotations import load_annotations
from utils.checkpoint import load_checkpoint
from utils.distributed import all_gather_object, get_rank, get_world_size, is_main_process
from utils.features import check_feature_width, open_features, select_videos, write_skipped_videos
from utils.ilcacm_data import ILCACMDataset, make_collate
from utils.run import autocast, data_paths, resolve_device

COUNT_MODES = ('paragraph', 'oracle', 'equal-split')
INFERENCE_FLAGS = ('count_mode', 'num_beams', 'eval_batch_size', 'paragraphs')


def add_inference_args(parser):
    g = parser.add_argument_group('inference (spec ilcacm §5)')
    g.add_argument('--count-mode', choices=COUNT_MODES, default='paragraph')
    g.add_argument('--num-beams', type=int, default=4)
    g.add_argument('--eval-batch-size', type=int, default=64,
                   help='videos per generation batch and process (the original: 8 per process on 8 GPUs); the '
                        'generated tokens do not depend on it in fp32')
    g.add_argument('--paragraphs', default=None,
                   help='stage-1 paragraphs JSON {vid: {"sentences": [...]}} (default: the ones in the checkpoint)')
    return parser


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


def shard_batches(dataset, batch_size, tokenizer):
    """This process's share (videos rank, rank + N, ...) of `dataset`, in order, as collated batches."""
    indices = list(range(get_rank(), len(dataset), get_world_size()))
    subset = torch.utils.data.Subset(dataset, indices)
    return DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=make_collate(tokenizer))


def gathered(per_process):
    """Merge the dicts produced by every process (video order of the dataset is restored by the caller)."""
    merged = {}
    for part in all_gather_object(per_process):
        merged.update(part)
    return merged


@torch.no_grad()
def generate_paragraphs(model, dataset, device, args):
    """Stage-1 paragraphs of every video: {vid: {'paragraph', 'sentences', 'duration'}} (spec §4.1.6, §5.1)."""
    model.eval()
    out = {}
    for batch in shard_batches(dataset, args.eval_batch_size, model.tokenizer):
        batch = batch.to(device)
        with autocast(device):
            texts = model.paragraphs(batch.video, batch.video_mask, num_beams=args.num_beams)
        for vid, duration, text in zip(batch.vids, batch.durations.tolist(), texts):
            out[vid] = {'paragraph': text, 'sentences': split_paragraph(text, args.max_captions),
                        'duration': duration}
    merged = gathered(out)
    return {vid: merged[vid] for vid in dataset.vids}


def event_counts(batch, paragraphs, count_mode):
    if count_mode == 'oracle':
        return list(batch.num_sents)
    return [len(paragraphs[vid]['sentences']) for vid in batch.vids]


@torch.no_grad()
def predict(model, dataset, paragraphs, device, args):
    """{vid: [{'sentence', 'timestamp'}]} of every video of `dataset` (spec §5.2)."""
    model.eval()
    results = {}
    for batch in shard_batches(dataset, args.eval_batch_size, model.tokenizer):
        if args.count_mode == 'equal-split':  # stage-1-only baseline: paragraph sentences on equal segments
            for vid, duration in zip(batch.vids, batch.durations.tolist()):
                sentences = paragraphs[vid]['sentences']
                n = len(sentences)
                results[vid] = [{'sentence': s, 'timestamp': [round(k / n * duration, 2),
                                                              round((k + 1) / n * duration, 2)]}
                                for k, s in enumerate(sentences)]
            continue
        batch = batch.to(device)
        counts = event_counts(batch, paragraphs, args.count_mode)
        with autocast(device):
            events, captions = model.localize_and_caption(batch.video, batch.video_mask, counts,
                                                          num_beams=args.num_beams)
        lefts, rights = events.lefts.float().tolist(), events.rights.float().tolist()
        start = 0
        for vid, duration, n in zip(batch.vids, batch.durations.tolist(), counts):
            results[vid] = [{'sentence': captions[i], 'timestamp': [round(lefts[i] * duration, 2),
                                                                    round(rights[i] * duration, 2)]}
                            for i in range(start, start + n)]
            start += n
    merged = gathered(results)
    return {vid: merged[vid] for vid in dataset.vids}


def score(submission_path, references, metrics_dir, name):
    """Score under both protocols; print the tables and save <metrics_dir>/<name>_<protocol>.json."""
    out = {}
    for protocol in ('ilcacm', 'wsdec'):  # spec evaluation §1.3-1.5
        options = PROTOCOLS[protocol]
        result = evaluate(submission_path, [str(r) for r in references], **options)
        save_result(result, pathlib.Path(metrics_dir) / f'{name}_{protocol}.json')
        print(f'== {protocol} protocol (toolkit {options["toolkit"]}, missing videos: {options["missing"]}) ==')
        print(format_table(result), flush=True)
        out[protocol] = result
    return out


def evaluate_model(model, dataset, paragraphs, references, run_dir, device, args, name='final'):
    """Predict (every process takes its share), then on the main process write <run_dir>/predictions/<name>.json
    and score it; returns {protocol: result} ({} on the other processes)."""
    if paragraphs is None and args.count_mode != 'oracle':
        paragraphs = generate_paragraphs(model, dataset, device, args)  # training ended before stage 2
    results = predict(model, dataset, paragraphs, device, args)
    if not is_main_process():
        return {}
    run_dir = pathlib.Path(run_dir)
    submission = {'version': 'VERSION 1.0', 'results': results,
                  'external_data': {'used': True, 'details': 'CLIP ViT-L/14 features; ILCACM suite',
                                    'count_mode': args.count_mode, 'mask_mode': model.mask_mode}}
    path = run_dir / 'predictions' / f'{name}.json'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(submission))
    return score(path, references, run_dir / 'metrics', name)


def evaluate_checkpoint(ckpt_path, args):
    """Rebuild the model of an ILCACM checkpoint and evaluate it; `args` may override inference options
    (INFERENCE_FLAGS), the data root and the features only. Returns {protocol: result}."""
    ckpt_path = pathlib.Path(ckpt_path)
    state = load_checkpoint(ckpt_path)
    if state.get('kind') != 'ilcacm':
        raise ValueError(f"{ckpt_path}: a '{state.get('kind')}' checkpoint, not an ILCACM one")
    config = argparse.Namespace(**state['config'])
    for flag in INFERENCE_FLAGS + ('data_root', 'features', 'device', 'missing_features'):
        if getattr(args, flag, None) is not None:
            setattr(config, flag, getattr(args, flag))
    device = resolve_device(config.device)
    model, tokenizer = model_from_checkpoint(state)
    model.to(device)
    _, val_path, references, feature_path = data_files(config)
    dataset = load_split(val_path, open_features(feature_path), tokenizer, config)
    check_feature_width(dataset.features, state['feature_dim'], ckpt_path)
    paragraphs = state.get('paragraphs')
    if config.paragraphs:
        paragraphs = {vid: {**p, 'sentences': p['sentences'][:config.max_captions] or ['None.']}
                      for vid, p in json.loads(pathlib.Path(config.paragraphs).read_text()).items()}
    ckpt_path = ckpt_path.resolve()  # runs/<name>/checkpoints/X.pt -> runs/<name>; elsewhere: a folder beside it
    run_dir = ckpt_path.parents[1] if ckpt_path.parent.name == 'checkpoints' else ckpt_path.with_suffix('')
    name = f"{ckpt_path.stem}_{config.count_mode}"
    write_skipped_videos(run_dir, val_path, dataset.annotations, dataset.features)
    return evaluate_model(model, dataset, paragraphs, references, run_dir, device, config, name)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', required=True, help='an ILCACM checkpoint (.pt) of this suite')
    parser.add_argument('--data-root', default=None, help='override the data root stored in the checkpoint')
    parser.add_argument('--features', default=None, help='override the feature folder / .hdf5')
    parser.add_argument('--device', default=None)
    parser.add_argument('--missing-features', choices=('error', 'skip'), default=None)
    add_inference_args(parser)
    for action in parser._actions:  # inference flags override the checkpoint only when given
        if action.dest in INFERENCE_FLAGS:
            action.default = None
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    evaluate_checkpoint(args.checkpoint, args)


if __name__ == '__main__':
    main()
