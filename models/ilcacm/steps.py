"""ILCACM's training steps (spec ilcacm §4): stage 1 (full-mode captioning) and stage 2 (complementary masked
captioning with two independent, clipped optimiser steps per batch, DeepSpeed semantics, spec §4.3), the cosine
schedule with warm-up, and the check of a shared stage-1 checkpoint (`--stage1-from`).

Stage 2: zero_grad -> backward(L_pos + L_div) -> clip -> step -> zero_grad -> backward(L_neg + L_div) -> clip ->
step, one scheduler tick per batch. `--single-step` takes one step on the accumulated gradient of both instead.

Loss groups (losses.py): a global batch is positions [u B, (u + 1) B) of the epoch's order padded to a multiple of B
(utils/distributed.py `PaddedSampler`), dealt round robin: video i of this process's share of the update (its
micro-batches in order) is at position i * world + rank, and group g holds positions [g B / G, (g + 1) B / G). The
groups, and so the loss, are the same for any number of processes and micro-batches.
"""
import contextlib
import math
import pathlib

import torch
from torch.nn.parallel import DistributedDataParallel

from models.ilcacm.config import STAGE2_ONLY
from models.ilcacm.losses import LOSS_SETS, loss_groups_of, normalise, sequence_weights
from utils.checkpoint import load_checkpoint
from utils.distributed import all_reduce_sum, get_rank, get_world_size
from utils.run import autocast, upgrade_checkpoint

KIND = 'ilcacm'
STAGE1_FILE = 'stage1.pt'


class Stage1Error(ValueError):
    """--stage1-from names a checkpoint that is not the end of a compatible stage 1."""


def stage1_checkpoint(path: str, run_config: dict, cap_epochs: int) -> dict:
    """The stage-1 checkpoint named by --stage1-from, checked to be the end of stage 1 of a run that differs
    from this one only in STAGE2_ONLY flags (and flags that never change what is learnt)."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / 'checkpoints' / STAGE1_FILE
    elif path.name != STAGE1_FILE:
        path = path.parent / STAGE1_FILE
    if not path.is_file():
        raise Stage1Error(f"--stage1-from: {path} not found (train_ilcacm.py writes checkpoints/{STAGE1_FILE} "
                                f"when stage 1 ends)")
    state = upgrade_checkpoint(load_checkpoint(path), path)
    if state.get('kind') != KIND or state.get('epoch') != cap_epochs - 1 or state.get('paragraphs') is None:
        raise Stage1Error(f"--stage1-from: {path} is not the end of stage 1 of an ILCACM run with --cap-epochs "
                         f"{cap_epochs} (kind {state.get('kind')!r}, epoch {state.get('epoch')})")
    ignored = set(STAGE2_ONLY) | {'stage1_from', 'run_name', 'runs_dir', 'quiet', 'num_workers', 'device',
                                  'keep_checkpoints', 'resume'}
    saved = state['config']
    changed = sorted(k for k in saved.keys() | run_config.keys()
                     if k not in ignored and saved.get(k) != run_config.get(k))
    if changed:
        diff = ', '.join(f'{k}: {saved.get(k)!r} -> {run_config.get(k)!r}' for k in changed)
        raise Stage1Error(f"--stage1-from: {path} was trained with other stage-1 flags ({diff}); only "
                         f"{', '.join(STAGE2_ONLY)} may differ")
    return state


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


def sequence_tokens(model, batch, mode):
    """Target tokens of each sequence of a micro-batch in `mode`, (N,) on the CPU: the prompt tokens after the mode
    token + the non-pad targets."""
    targets = {'full': batch.dense_tokens, 'pos': batch.positive_tokens, 'neg': batch.negative_tokens}[mode]
    prompt_len = len(model.tokenizer.prompt('full', 1))
    return (prompt_len - 1) + (targets != model.tokenizer.pad_id).sum(1).cpu()


def supervised_tokens(model, batch, mode):
    """Number of target tokens of a micro-batch in `mode`."""
    return int(sequence_tokens(model, batch, mode).sum())


def reduce_sum(t, device):
    """Sum over the processes of a CPU tensor, reduced on the training device (NCCL reduces CUDA tensors only)."""
    return all_reduce_sum(t.to(device)).cpu()


def sequence_groups(group, mode, loss_groups, device):
    """(loss group of each sequence of each micro-batch of `group`, videos of the global batch). `group` is this
    process's share of one global batch; the module docstring says which videos form a loss group; a stage-2
    video's sequences follow it."""
    world, rank = get_world_size(), get_rank()
    batch_videos = int(reduce_sum(torch.tensor(sum(len(b.vids) for b in group)), device))
    out, start = [], 0
    for batch in group:
        positions = torch.arange(start, start + len(batch.vids)) * world + rank
        start += len(batch.vids)
        videos = loss_groups_of(positions, batch_videos, loss_groups)
        out.append(videos if mode == 'full' else videos.repeat_interleave(torch.tensor(batch.num_sents)))
    return out, batch_videos


def group_tokens(model, group, groups, mode, loss_groups, device):
    """Target tokens of each loss group in the whole global batch."""
    counts = torch.zeros(loss_groups)
    for batch, groups_of_batch in zip(group, groups):
        counts.index_add_(0, groups_of_batch, sequence_tokens(model, batch, mode).float())
    return reduce_sum(counts, device)


def accumulate_gradients(ddp, model, group, mode, device, use_diversity, loss_groups):
    """backward() of the global-batch loss of `mode` over the micro-batches of `group` (losses.py); returns that
    loss's CE part (the mean of the groups' token means) and L_div as floats."""
    groups, videos = sequence_groups(group, mode, loss_groups, device)
    tokens = group_tokens(model, group, groups, mode, loss_groups, device)
    totals = {'videos': videos, 'world': get_world_size()}
    group_ce, div_sum = torch.zeros(loss_groups), torch.zeros(())
    for i, (batch, groups_of_batch) in enumerate(zip(group, groups)):
        last = i == len(group) - 1
        sync = contextlib.nullcontext() if last or not isinstance(ddp, DistributedDataParallel) else ddp.no_sync()
        weights = sequence_weights(groups_of_batch, tokens).to(device)
        with sync:
            with autocast(device):
                sums = ddp(batch.to(device), mode)
                loss = normalise(sums, weights, totals, use_diversity)
            loss.backward()
        group_ce.index_add_(0, groups_of_batch, sums['ce_seq'].detach().float().cpu())
        div_sum += sums.get('div', torch.zeros(())).detach().float().cpu()
    ce, div = (reduce_sum(group_ce, device) / tokens).mean(), reduce_sum(div_sum, device) / videos
    return {f'loss_{mode}': float(ce), **({'div': float(div)} if mode != 'full' else {})}


def optimiser_step(model, optimizer, clip):
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else float('inf'))
    optimizer.step()
    return float(grad_norm)


def train_step(ddp, model, group, optimizer, scheduler, stage, args, device, use_diversity=None):
    """One update of the global batch `group`: stage 1 'caption' or stage 2 'localize' (spec §4.2-4.3). L_div is in
    the stage-2 losses unless --no-diversity, or `use_diversity=False` (--diversity-warmup; it is logged anyway)."""
    use_div = not args.no_diversity if use_diversity is None else use_diversity
    groups = args.loss_groups
    metrics = {'lr': scheduler.get_last_lr()[0]}
    if stage == 'caption':
        optimizer.zero_grad(set_to_none=True)
        metrics.update(accumulate_gradients(ddp, model, group, 'full', device, use_div, groups))
        metrics['grad_norm'] = optimiser_step(model, optimizer, args.clip)
    elif args.single_step:
        optimizer.zero_grad(set_to_none=True)
        for mode in LOSS_SETS[args.loss]:
            metrics.update(accumulate_gradients(ddp, model, group, mode, device, use_div, groups))
        metrics['grad_norm'] = optimiser_step(model, optimizer, args.clip)
    else:
        for mode in LOSS_SETS[args.loss]:  # DeepSpeed: one independent clipped step per backward
            optimizer.zero_grad(set_to_none=True)
            metrics.update(accumulate_gradients(ddp, model, group, mode, device, use_div, groups))
            metrics[f'grad_norm_{mode}'] = optimiser_step(model, optimizer, args.clip)
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return metrics


def uses_diversity(args, epoch: int) -> bool:
    """L_div in the losses of `epoch`: always in stage 2 (the original), unless --no-diversity, or during the first
    --diversity-warmup epochs of stage 2 (issue 14: the masks no longer shrink while the captioner learns to read
    the video)."""
    return not args.no_diversity and epoch >= args.cap_epochs + getattr(args, 'diversity_warmup', 0)
