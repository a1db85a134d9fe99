"""Train ILCACM (spec ilcacm §4): stage 1 (full-mode captioning, epochs [0, cap_epochs)), stage-1 paragraphs on
val_1 (they fix the event counts, spec §4.1.6), stage 2 (complementary masked captioning) to --total-epochs, then
evaluation under the ILCACM and WSDEC protocols.

    python train_script/train_ilcacm.py --data-root DIR [--gpt2 data/distilgpt2]
    torchrun --nproc_per_node N train_script/train_ilcacm.py ...   # same training, --batch-size is global

Stage 2 takes two independent, clipped optimiser steps per batch (DeepSpeed semantics, spec §4.3):
zero_grad -> backward(L_pos + L_div) -> clip -> step -> zero_grad -> backward(L_neg + L_div) -> clip -> step, one
scheduler tick per batch. `--single-step` takes one step on the accumulated gradient of both instead.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import contextlib
import json
import math
import time

import torch
from torch.nn.parallel import DistributedDataParallel

from eval_script.evaluate_ilcacm import add_inference_args, data_files, evaluate_model, generate_paragraphs, \
    load_split
from models.ilcacm.factory import add_model_args, build_model, build_tokenizer, model_arch, resolve_model_args
from models.ilcacm.losses import LOSS_SETS, normalise
from models.ilcacm.text_decoder import tokenizer_from_state
from utils.annotations import load_annotations
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.distributed import all_reduce_sum, cleanup, get_world_size, init_distributed, make_loader, set_epoch, \
    wrap_ddp
from utils.features import open_features, select_videos, write_skipped_videos
from utils.ilcacm_data import ILCACMDataset, make_collate
from utils.run import Run, add_common_args, autocast, check_finite, make_checkpoint, resolve_device, \
    restore_training_state, seed_everything
from utils.text import ilcacm_normalize

KIND = 'ilcacm'
# Flags that stage 1, the model built for it and the stage-1 paragraphs do not read (--num-beams and
# --eval-batch-size do: they generate the paragraphs): runs differing only in these share stage 1
STAGE2_ONLY = ('loss', 'no_diversity', 'single_step', 'mask_shape', 'mask_mode', 'tau', 'gamma', 'count_mode',
               'paragraphs', 'skip_eval')
STAGE1_FILE = 'stage1.pt'


def stage1_checkpoint(path: str, run_config: dict, cap_epochs: int) -> dict:
    """The stage-1 checkpoint named by --stage1-from, checked to be the end of stage 1 of a run that differs
    from this one only in STAGE2_ONLY flags (and flags that never change what is learnt)."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / 'checkpoints' / STAGE1_FILE
    elif path.name != STAGE1_FILE:
        path = path.parent / STAGE1_FILE
    if not path.is_file():
        raise FileNotFoundError(f"--stage1-from: {path} not found (train_ilcacm.py writes checkpoints/{STAGE1_FILE} "
                                f"when stage 1 ends)")
    state = load_checkpoint(path)
    if state.get('kind') != KIND or state.get('epoch') != cap_epochs - 1 or state.get('paragraphs') is None:
        raise ValueError(f"--stage1-from: {path} is not the end of stage 1 of an ILCACM run with --cap-epochs "
                         f"{cap_epochs} (kind {state.get('kind')!r}, epoch {state.get('epoch')})")
    ignored = set(STAGE2_ONLY) | {'stage1_from', 'run_name', 'runs_dir', 'quiet', 'num_workers', 'device',
                                  'keep_checkpoints', 'resume'}
    saved = state['config']
    changed = sorted(k for k in saved.keys() | run_config.keys()
                     if k not in ignored and saved.get(k) != run_config.get(k))
    if changed:
        diff = ', '.join(f'{k}: {saved.get(k)!r} -> {run_config.get(k)!r}' for k in changed)
        raise ValueError(f"--stage1-from: {path} was trained with other stage-1 flags ({diff}); only "
                         f"{', '.join(STAGE2_ONLY)} may differ")
    return state


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_args(parser, epochs=20, batch_size=64, seed=42, run_name='ilcacm')
    g = parser.add_argument_group('training (spec ilcacm §4)')
    g.add_argument('--total-epochs', dest='epochs', type=int, default=argparse.SUPPRESS, help='alias of --epochs')
    g.add_argument('--cap-epochs', type=int, default=10, help='stage-1 (full-mode) epochs')
    g.add_argument('--grad-accum', type=int, default=1, help='micro-batches per update (--batch-size stays global)')
    g.add_argument('--lr', type=float, default=1e-4)
    g.add_argument('--betas', type=float, nargs=2, default=(0.9, 0.99))
    g.add_argument('--weight-decay', type=float, default=0.01, help='applied to every parameter (spec §8.1.11)')
    g.add_argument('--warmup', type=float, default=0.05, help='warm-up fraction of all updates')
    g.add_argument('--clip', type=float, default=1.0, help='gradient-norm clipping per optimiser step (0: off)')
    g.add_argument('--single-step', action='store_true',
                   help='stage 2: one step on grad(L_pos + L_neg + 2 L_div) instead of two clipped steps')
    g.add_argument('--loss', choices=tuple(LOSS_SETS), default='pos+neg', help='stage-2 losses')
    g.add_argument('--no-diversity', action='store_true', help='drop L_div from the stage-2 losses')
    g.add_argument('--features', default=None, help='feature folder (.npy per video) or .hdf5 '
                   '(default: the data root\'s features/clip)')
    g.add_argument('--skip-eval', action='store_true', help='do not evaluate after training')
    g.add_argument('--stage1-from', default=None, metavar='RUN_OR_CKPT',
                   help='start at stage 2 from the stage-1 checkpoint of another run (its folder, its '
                        'checkpoints/stage1.pt, or any checkpoint beside it) trained with the same flags but for '
                        f'the stage-2-only ones ({", ".join("--" + k.replace("_", "-") for k in STAGE2_ONLY)}); '
                        'the result equals training this run from scratch')
    add_model_args(parser)
    add_inference_args(parser)
    return parser


def cosine_schedule(optimizer, total_updates, warmup_fraction):
    """transformers' get_cosine_schedule_with_warmup with W = int(warmup * total) (spec §4.4)."""
    warmup = int(warmup_fraction * total_updates)

    def factor(step):
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total_updates - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def grouped(iterable, size):
    """Consecutive lists of `size` micro-batches (the last one may be shorter)."""
    group = []
    for item in iterable:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def supervised_tokens(model, batch, mode):
    """Number of target tokens of a micro-batch in `mode` (prompt tokens after the mode token + non-pad targets)."""
    targets = {'full': batch.dense_tokens, 'pos': batch.positive_tokens, 'neg': batch.negative_tokens}[mode]
    prompt_len = len(model.tokenizer.prompt('full', 1))
    return targets.shape[0] * (prompt_len - 1) + int((targets != model.tokenizer.pad_id).sum())


def accumulate_gradients(ddp, model, group, mode, device, use_diversity):
    """backward() of the global-batch loss of `mode` over the micro-batches of `group` (losses.py); returns the
    global mean CE and L_div as floats."""
    totals = {'tokens': all_reduce_sum(torch.tensor(float(sum(supervised_tokens(model, b, mode) for b in group)))),
              'videos': all_reduce_sum(torch.tensor(float(sum(len(b.vids) for b in group)))),
              'world': get_world_size()}
    ce_sum, div_sum = torch.zeros(()), torch.zeros(())
    for i, batch in enumerate(group):
        last = i == len(group) - 1
        sync = contextlib.nullcontext() if last or not isinstance(ddp, DistributedDataParallel) else ddp.no_sync()
        with sync:
            with autocast(device):
                sums = ddp(batch.to(device), mode)
                loss = normalise(sums, {k: v.to(device) if torch.is_tensor(v) else v for k, v in totals.items()},
                                 use_diversity)
            loss.backward()
        ce_sum += sums['ce'].detach().float().cpu()
        div_sum += sums.get('div', torch.zeros(())).detach().float().cpu()
    ce, div = all_reduce_sum(ce_sum) / totals['tokens'], all_reduce_sum(div_sum) / totals['videos']
    return {f'loss_{mode}': float(ce), **({'div': float(div)} if mode != 'full' else {})}


def optimiser_step(model, optimizer, clip):
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else float('inf'))
    optimizer.step()
    return float(grad_norm)


def train_step(ddp, model, group, optimizer, scheduler, stage, args, device):
    """One update of the global batch `group`: stage 1 'caption' or stage 2 'localize' (spec §4.2-4.3)."""
    use_div = not args.no_diversity
    metrics = {'lr': scheduler.get_last_lr()[0]}
    if stage == 'caption':
        optimizer.zero_grad(set_to_none=True)
        metrics.update(accumulate_gradients(ddp, model, group, 'full', device, use_div))
        metrics['grad_norm'] = optimiser_step(model, optimizer, args.clip)
    elif args.single_step:
        optimizer.zero_grad(set_to_none=True)
        for mode in LOSS_SETS[args.loss]:
            metrics.update(accumulate_gradients(ddp, model, group, mode, device, use_div))
        metrics['grad_norm'] = optimiser_step(model, optimizer, args.clip)
    else:
        for mode in LOSS_SETS[args.loss]:  # DeepSpeed: one independent clipped step per backward
            optimizer.zero_grad(set_to_none=True)
            metrics.update(accumulate_gradients(ddp, model, group, mode, device, use_div))
            metrics[f'grad_norm_{mode}'] = optimiser_step(model, optimizer, args.clip)
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return metrics


def main(argv=None):
    args = resolve_model_args(build_parser().parse_args(argv))
    if args.batch_size % args.grad_accum:
        raise ValueError(f'--batch-size {args.batch_size} must be divisible by --grad-accum {args.grad_accum}')
    rank, world = init_distributed(args.device)
    seed_everything(args.seed + rank)
    device = resolve_device(args.device)
    run = Run(args, kind=KIND)
    train_path, val_path, references, feature_path = data_files(args)
    train_ann = load_annotations(train_path)
    features = open_features(feature_path)
    train_vids = select_videos(train_ann, features, args.missing_features, str(train_path))
    write_skipped_videos(run.dir, train_path, train_ann, features)

    state = run.resume_state()
    if state is None and args.stage1_from:
        state = stage1_checkpoint(args.stage1_from, run.config, args.cap_epochs)
    if state is not None:
        tokenizer = tokenizer_from_state(state['tokenizer'])
    else:
        tokenizer = build_tokenizer(vars(args), [s for v in train_vids
                                                 for s in ilcacm_normalize(train_ann[v]['sentences'],
                                                                           args.max_captions)])
    model = build_model(vars(args), tokenizer, features.dim).to(device)
    dataset = ILCACMDataset(train_ann, features, tokenizer, train_vids, args.max_frames, args.max_captions,
                            args.max_tokens)
    loader = make_loader(dataset, args.batch_size // args.grad_accum, shuffle=True, drop_last=False,
                         collate_fn=make_collate(tokenizer), seed=args.seed, num_workers=args.num_workers)
    updates_per_epoch = math.ceil(len(loader) / args.grad_accum)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=tuple(args.betas), eps=1e-8,
                                  weight_decay=args.weight_decay)
    scheduler = cosine_schedule(optimizer, updates_per_epoch * args.epochs, args.warmup)
    # the run's own last checkpoint (--resume) or another run's stage 1 (--stage1-from), loaded once above
    start_epoch, step = (0, 0) if state is None else restore_training_state(state, model, optimizer, scheduler)
    ddp = wrap_ddp(model, device, find_unused_parameters=True)  # stage 1 leaves the mask generator unused
    paragraphs = None if state is None else state.get('paragraphs')
    val = load_split(val_path, features, tokenizer, args)
    write_skipped_videos(run.dir, val_path, val.annotations, features)

    def stage1_paragraphs():
        start = time.perf_counter()
        result = generate_paragraphs(model, val, device, args)
        if run.is_main:
            (run.predictions_dir / 'stage1_paragraphs.json').write_text(json.dumps(result, indent=1))
            if not args.quiet:
                print(f'stage-1 paragraphs of {len(result)} videos in {time.perf_counter() - start:.1f} s', flush=True)
        return result

    if paragraphs is None and start_epoch >= args.cap_epochs:
        paragraphs = stage1_paragraphs()
    for epoch in range(start_epoch, args.epochs):
        stage = 'caption' if epoch < args.cap_epochs else 'localize'
        epoch_start = time.perf_counter()
        set_epoch(loader, epoch)
        ddp.train()
        for group in grouped(run.progress(loader, f'epoch {epoch} ({stage})'), args.grad_accum):
            metrics = train_step(ddp, model, group, optimizer, scheduler, stage, args, device)
            step += 1
            for name, value in metrics.items():
                if name.startswith(('loss', 'div')):
                    check_finite(torch.tensor(value), step)
            run.log(step, {**metrics, 'epoch': epoch})
        epoch_seconds = time.perf_counter() - epoch_start
        if paragraphs is None and epoch + 1 >= args.cap_epochs:
            paragraphs = stage1_paragraphs()
        checkpoint = make_checkpoint(model, optimizer, scheduler, epoch, step, run.config, KIND)
        checkpoint.update(tokenizer=tokenizer.state(), decoder_arch=model_arch(model), feature_dim=features.dim,
                          paragraphs=paragraphs)
        run.save_checkpoint(checkpoint, epoch)
        if epoch == args.cap_epochs - 1 and run.is_main:  # kept whatever --keep-checkpoints: see --stage1-from
            save_checkpoint(run.checkpoints_dir / STAGE1_FILE, checkpoint)
        if not args.quiet and run.is_main:
            print(f"epoch {epoch} ({stage}) step {step}: " +
                  ', '.join(f'{k} {v:.4f}' for k, v in metrics.items() if k.startswith(('loss', 'div'))) +
                  f' ({epoch_seconds:.1f} s)', flush=True)
    if not args.skip_eval:
        evaluate_model(model, val, paragraphs, references, run.dir, device, args)
    run.close()
    cleanup()


if __name__ == '__main__':
    main()
