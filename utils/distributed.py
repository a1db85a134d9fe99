"""Data-parallel helpers for `torchrun` (DESIGN.md principle 4), no-ops in a single process.

Launch: `torchrun --nproc_per_node N train_script/X.py ...` (gloo on CPU, nccl on CUDA).
`--batch-size` is always the *global* batch: `make_loader` gives each of the N processes
`batch_size // N` samples of the same global, seeded order, so N processes with gradient averaging
(DDP) follow the same trajectory as one process with the same batch (up to float summation order),
provided the dataset size is a multiple of the global batch, `drop_last=True` or `pad_to` is the global batch.
"""
import math
import os

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from utils.checkpoint import seed_worker


class BatchSizeError(ValueError):
    """The global batch size cannot be split evenly between the processes."""


def init_distributed(device: str = 'auto') -> tuple[int, int]:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT); return (rank, world_size). Without that environment, or with a world
    of one, nothing is initialised and (0, 1) is returned.

    `device` is the script's `--device`: each process takes GPU LOCAL_RANK and nccl when it names CUDA
    ('auto' on a machine with CUDA), gloo on the CPU otherwise."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world_size = int(os.environ.get('WORLD_SIZE', 1))
    if world_size == 1:
        return 0, 1
    if torch.cuda.is_available() and not str(device).startswith('cpu'):
        local_rank, gpus = int(os.environ.get('LOCAL_RANK', 0)), torch.cuda.device_count()
        if local_rank >= gpus:
            raise RuntimeError(f"torchrun started more processes on this machine than it has GPUs ({gpus}): "
                               f"use --nproc_per_node {gpus} or fewer, or --device cpu (gloo)")
        torch.cuda.set_device(local_rank)
        backend = 'nccl'
    else:
        backend = 'gloo'
    dist.init_process_group(backend, init_method='env://')
    return dist.get_rank(), dist.get_world_size()


def get_rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over all processes (a new tensor; `t` is unchanged)."""
    t = t.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of `t` over all processes (a new tensor; `t` is unchanged)."""
    return all_reduce_sum(t) / get_world_size()


def all_gather_object(obj) -> list:
    """`[obj of rank 0, obj of rank 1, ...]`; `[obj]` in a single process."""
    if not dist.is_initialized():
        return [obj]
    gathered = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def _loader_seed(seed: int, rank: int, epoch: int) -> int:
    """Seed of the loader's generator (DataLoader workers' base seed) for one (seed, rank, epoch)."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1, np.uint64)[0])


class PaddedSampler(DistributedSampler):
    """DistributedSampler whose epoch order is padded to a multiple of `pad_to` samples by repeating the epoch's
    first samples (accelerate's `even_batches`, spec ilcacm §4.4): every global batch of `pad_to` is full, and its
    samples do not depend on the number of processes."""

    def __init__(self, dataset, pad_to: int, **kwargs):
        super().__init__(dataset, drop_last=False, **kwargs)
        self.total_size = math.ceil(len(dataset) / pad_to) * pad_to
        self.num_samples = self.total_size // self.num_replicas


def make_loader(dataset, batch_size: int, *, shuffle: bool, drop_last: bool, collate_fn, seed: int,
                num_workers: int = 0, epoch_sampler: bool = True, pad_to: int | None = None) -> DataLoader:
    """A DataLoader whose order depends only on (seed, epoch): call `set_epoch(loader, epoch)` before
    each epoch (it also reseeds the workers and forwards to `dataset.set_epoch` when present).

    `batch_size` is the global batch. `epoch_sampler=True` shards every epoch's permutation between
    the processes (DistributedSampler; rank r takes positions r, r+N, ...; with `drop_last=False` the
    last samples are repeated to make the shards equal, as DistributedSampler does);
    `epoch_sampler=False` gives every process the whole dataset (e.g. evaluation on the main process).
    A single process uses the same sampler with one replica, so its order is the global order.
    `pad_to` (a multiple of `batch_size` and of the number of processes; with `drop_last=False`) pads the epoch's
    order with its first samples to a multiple of `pad_to` (`PaddedSampler`): then update u's global batch is
    positions [u * pad_to, (u + 1) * pad_to) of that order, rank r holding positions r, r + N, ... of it.
    """
    world, rank = (get_world_size(), get_rank()) if epoch_sampler else (1, 0)
    if batch_size % world:
        raise BatchSizeError(f"--batch-size {batch_size} is the global batch and must be divisible by "
                             f"the number of processes ({world})")
    common = dict(num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
    sampler = (DistributedSampler(dataset, drop_last=drop_last, **common) if pad_to is None
               else PaddedSampler(dataset, pad_to, **common))
    generator = torch.Generator()
    generator.manual_seed(_loader_seed(seed, get_rank(), 0))
    return DataLoader(dataset, batch_size=batch_size // world, sampler=sampler, drop_last=drop_last,
                      collate_fn=collate_fn, num_workers=num_workers, worker_init_fn=seed_worker,
                      generator=generator, pin_memory=torch.cuda.is_available())


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Select epoch `epoch`'s order, worker seeds and (if the dataset has `set_epoch`) its sampling."""
    loader.sampler.set_epoch(epoch)
    loader.generator.manual_seed(_loader_seed(loader.sampler.seed, get_rank(), epoch))
    if hasattr(loader.dataset, 'set_epoch'):
        loader.dataset.set_epoch(epoch)


def wrap_ddp(model: torch.nn.Module, device: torch.device, *, find_unused_parameters: bool = False):
    """`model` wrapped in DistributedDataParallel when several processes run, else `model` itself."""
    if get_world_size() == 1:
        return model
    device_ids = [device.index] if device.type == 'cuda' else None
    return DistributedDataParallel(model, device_ids=device_ids,
                                   find_unused_parameters=find_unused_parameters)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside a DDP wrapper (the one whose state_dict goes into checkpoints)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def cleanup() -> None:
    """End of a normal run: every rank waits for the others before the process group goes, so that no rank tears
    down its gloo threads while a peer still communicates (a rank-exit SIGABRT seen once under load)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
