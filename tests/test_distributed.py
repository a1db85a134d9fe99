"""utils/distributed.py: seeded loaders, single-process no-ops, and 2-process gloo DDP on CPU."""
import argparse
import json
import os
import random
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from utils.checkpoint import load_checkpoint, seed_everything
from utils.distributed import (BatchSizeError, all_reduce_mean, all_reduce_sum, barrier, cleanup, get_rank,
                               get_world_size, init_distributed, is_main_process, make_loader, set_epoch,
                               unwrap, wrap_ddp)
from utils.cli import add_common_args
from utils.run import Run, make_checkpoint

WORLD = 2
N_ITEMS = 16
GLOBAL_BATCH = 4


def _order(loader, epoch):
    set_epoch(loader, epoch)
    return [int(i) for (batch,) in loader for i in batch]


def _index_loader(n=N_ITEMS, batch=GLOBAL_BATCH, shuffle=True, seed=3, drop_last=False, pad_to=None):
    return make_loader(TensorDataset(torch.arange(n)), batch, shuffle=shuffle, drop_last=drop_last,
                       collate_fn=None, seed=seed, pad_to=pad_to)


def _tiny_model():
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))


def _train_tiny(device=torch.device('cpu')):
    """Two epochs of SGD with momentum on a fixed regression set; global batch GLOBAL_BATCH whatever the world."""
    seed_everything(get_rank())  # different initial weights per rank: DDP must broadcast rank 0's
    model = wrap_ddp(_tiny_model(), device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N_ITEMS, 3, generator=g)
    loader = make_loader(TensorDataset(x, x.prod(1, keepdim=True)), GLOBAL_BATCH, shuffle=True, drop_last=True,
                         collate_fn=None, seed=11)
    for epoch in range(2):
        set_epoch(loader, epoch)
        for xb, yb in loader:
            loss = nn.functional.mse_loss(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return [p.detach().clone() for p in unwrap(model).parameters()]


# --- single process ---

def test_single_process_helpers_are_no_ops(monkeypatch):
    for var in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK'):
        monkeypatch.delenv(var, raising=False)
    assert init_distributed() == (0, 1)
    assert (get_rank(), get_world_size(), is_main_process()) == (0, 1, True)
    barrier()
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(all_reduce_mean(t), t) and torch.equal(all_reduce_sum(t), t)
    model = _tiny_model()
    assert wrap_ddp(model, torch.device('cpu')) is model and unwrap(model) is model
    cleanup()


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('LOCAL_RANK', '1')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    with pytest.raises(RuntimeError, match='more processes on this machine than it has GPUs'):
        init_distributed('auto')
    assert not dist.is_initialized()


def test_loader_order_depends_only_on_seed_and_epoch():
    a, b = _index_loader(), _index_loader()
    assert _order(a, 0) == _order(b, 0)
    assert _order(a, 1) == _order(b, 1) != _order(a, 0)
    assert _order(a, 0) == _order(b, 0)  # going back to epoch 0 replays it
    assert _order(_index_loader(seed=4), 0) != _order(a, 0)
    assert sorted(_order(a, 5)) == list(range(N_ITEMS))
    assert _order(_index_loader(shuffle=False), 2) == list(range(N_ITEMS))


def test_drop_last_as_given():
    assert len(_order(_index_loader(n=10, drop_last=True), 0)) == 8
    assert sorted(_order(_index_loader(n=10, drop_last=False), 0)) == list(range(10))


class NoisyItems(Dataset):
    """Items drawn from NumPy and Python's global generators (like a worker-side augmentation)."""

    def __init__(self):
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.tensor([float(np.random.rand()), random.random()])


def test_set_epoch_forwards_to_dataset_and_seeds_workers():
    data = NoisyItems()
    loader = make_loader(data, 2, shuffle=False, drop_last=False, collate_fn=None, seed=0, num_workers=2)

    def values(epoch):
        set_epoch(loader, epoch)
        return torch.cat(list(loader))

    e0, e1 = values(0), values(1)
    assert data.epochs == [0, 1]
    assert torch.equal(values(0), e0) and not torch.equal(e0, e1)
    # the two workers draw different NumPy and Python streams
    assert len(set(e0[:, 0].tolist())) == 8 and len(set(e0[:, 1].tolist())) == 8


# --- two processes, gloo, CPU (spawned once; each test checks one property) ---

def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    result = {'init': init_distributed('cpu'), 'backend': dist.get_backend(), 'main': is_main_process()}
    t = torch.tensor([rank + 1.0, 10.0 * rank])
    result['mean'], result['sum'], result['input_after'] = all_reduce_mean(t), all_reduce_sum(t), t
    loader = _index_loader()
    result['batch_size'] = loader.batch_size
    result['orders'] = [_order(loader, epoch) for epoch in range(2)]
    result['padded'] = [_order(_index_loader(n=10, pad_to=GLOBAL_BATCH), epoch) for epoch in range(2)]
    try:
        _index_loader(batch=3)
    except BatchSizeError as e:
        result['batch_error'] = str(e)
    # rank-0-only writing: both ranks log and save, in turn, something naming their rank
    parser = add_common_args(argparse.ArgumentParser(), epochs=1, batch_size=4, seed=0, run_name='ddp')
    run = Run(parser.parse_args(['--runs-dir', out_dir, '--quiet']), kind='ddp_test')
    result['run_is_main'] = run.is_main
    seed_everything(100 + rank)
    model = _tiny_model()
    state = make_checkpoint({'tiny': model}, {'sgd': torch.optim.SGD(model.parameters(), lr=0.1)}, {}, epoch=0,
                            step=rank, config=run.config, kind=run.kind)
    for turn in range(WORLD):
        if turn == rank:
            run.log(rank, {'rank': rank})
            run.save_checkpoint(state, epoch=0)
        barrier()
    run.close()
    result['params'] = _train_tiny()
    cleanup()
    torch.save(result, os.path.join(out_dir, f'result_{rank}.pt'))


@pytest.fixture(scope='module')
def ddp_results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('ddp')
    with pytest.MonkeyPatch.context() as env:
        env.setenv('CUDA_VISIBLE_DEVICES', '')  # CPU processes (gloo) even on a GPU machine
        mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return out_dir, [torch.load(out_dir / f'result_{r}.pt', weights_only=True) for r in range(WORLD)]


def test_init_from_torchrun_env_uses_gloo_on_cpu(ddp_results):
    _, results = ddp_results
    assert [r['init'] for r in results] == [(0, 2), (1, 2)]
    assert [r['backend'] for r in results] == ['gloo', 'gloo']
    assert [r['main'] for r in results] == [True, False]


def test_all_reduce(ddp_results):
    _, results = ddp_results
    for rank, r in enumerate(results):
        assert torch.equal(r['mean'], torch.tensor([1.5, 5.0]))
        assert torch.equal(r['sum'], torch.tensor([3.0, 10.0]))
        assert torch.equal(r['input_after'], torch.tensor([rank + 1.0, 10.0 * rank]))


def test_sampler_shards_cover_each_epoch_exactly_once_in_the_global_order(ddp_results):
    _, results = ddp_results
    assert [r['batch_size'] for r in results] == [GLOBAL_BATCH // WORLD] * WORLD
    single = _index_loader()
    for epoch in range(2):
        shards = [r['orders'][epoch] for r in results]
        assert sorted(shards[0] + shards[1]) == list(range(N_ITEMS))
        # each global batch of 4 = the same 4 items as the one-process batch (positions interleave)
        global_order = _order(single, epoch)
        for k in range(N_ITEMS // GLOBAL_BATCH):
            half = GLOBAL_BATCH // WORLD
            together = shards[0][k * half:(k + 1) * half] + shards[1][k * half:(k + 1) * half]
            assert sorted(together) == sorted(global_order[k * GLOBAL_BATCH:(k + 1) * GLOBAL_BATCH])
    assert results[0]['orders'][0] != results[0]['orders'][1]
    assert 'must be divisible by the number of processes (2)' in results[0]['batch_error']


def test_padded_epochs_repeat_their_first_items_and_deal_them_round_robin(ddp_results):
    """pad_to: 10 items in global batches of 4 -> the epoch's order, then its first 2 items (accelerate's even
    batches); rank r holds global positions r, r + 2, ... of it."""
    _, results = ddp_results
    for epoch in range(2):
        order = _order(_index_loader(n=10), epoch)
        padded = order + order[:2]
        assert _order(_index_loader(n=10, pad_to=GLOBAL_BATCH), epoch) == padded
        shards = [r['padded'][epoch] for r in results]
        assert [shards[k % WORLD][k // WORLD] for k in range(12)] == padded


def test_only_rank_0_writes(ddp_results):
    out_dir, results = ddp_results
    assert [r['run_is_main'] for r in results] == [True, False]
    lines = [json.loads(line) for line in (out_dir / 'ddp' / 'log.jsonl').read_text().splitlines()]
    assert lines == [{'step': 0, 'split': 'train', 'rank': 0.0}]
    ckpt = load_checkpoint(out_dir / 'ddp' / 'checkpoints' / 'last.pt')
    assert ckpt['step'] == 0 and ckpt['kind'] == 'ddp_test'
    # the checkpoint carries both processes' RNG streams (seeded 100 and 101)
    assert len(ckpt['rng']) == WORLD and not torch.equal(ckpt['rng'][0]['torch'], ckpt['rng'][1]['torch'])


def test_ddp_two_processes_equal_one_process_with_the_same_global_batch(ddp_results):
    _, results = ddp_results
    reference = _train_tiny()
    initial = [p.detach() for p in (seed_everything(0), _tiny_model())[1].parameters()]
    for r in results:
        for got, want, init in zip(r['params'], reference, initial):
            assert not torch.allclose(want, init)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
