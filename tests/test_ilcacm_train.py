"""ILCACM training: the stage-2 optimiser-step semantics (spec ilcacm §4.3), the loss groups of the global batch
(the authors' per-process token means, spec §4.4) under gradient accumulation and torchrun, the padded last batch,
and an end-to-end tiny synthetic run (stage 1 -> counts -> stage 2 -> eval)."""
import copy
import dataclasses
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.test_ilcacm_model import tiny_batch, tiny_model
from models.ilcacm.steps import train_step, uses_diversity
from utils.checkpoint import load_checkpoint
from utils.ilcacm_data import ILCACMBatch

REPO = Path(__file__).resolve().parents[1]
TINY_CLI = ['--decoder', 'word', '--word-min-count', '1', '--gpt2-layers', '1', '--gpt2-dim', '32',
            '--gpt2-heads', '2', '--enc-layers', '1', '--enc-heads', '2', '--enc-ff', '64', '--mask-ff', '64',
            '--cap-epochs', '1', '--epochs', '2', '--batch-size', '8', '--lr', '1e-3', '--device', 'cpu',
            '--quiet', '--num-beams', '2']


def args(**kw):
    return SimpleNamespace(**{'no_diversity': False, 'single_step': False, 'loss': 'pos+neg', 'clip': 1.0,
                              'loss_groups': 1, **kw})


def optimiser(model):
    """SGD with momentum: unlike Adam it is sensitive to the loss scale, so normalisation errors show."""
    return torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)


def scheduler(opt):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def global_loss(model, batch, mode):
    out = model(batch, mode)
    return out['ce'] / out['tokens'] + out['div'] / len(batch.vids)


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_diversity_warmup_holds_the_diversity_loss_for_the_first_stage2_epochs():
    assert [uses_diversity(args(cap_epochs=2, diversity_warmup=0), e) for e in range(5)] == [False, False, True,
                                                                                           True, True]
    assert [uses_diversity(args(cap_epochs=2, diversity_warmup=2), e) for e in range(5)] == [False] * 4 + [True]
    assert not uses_diversity(args(cap_epochs=0, no_diversity=True), 3)
    model, tok = tiny_model()
    batch = tiny_batch(tok)
    held, dropped = copy.deepcopy(model), copy.deepcopy(model)
    for net, step_args, use in ((held, args(), False), (dropped, args(no_diversity=True), None)):
        opt = optimiser(net)
        metrics = train_step(net, net, [batch], opt, scheduler(opt), 'localize', step_args, torch.device('cpu'), use)
        assert metrics['div'] >= 0   # logged even when it is not in the loss
    assert torch.equal(params(held), params(dropped))


def test_two_clipped_steps_match_deepspeed_semantics():
    model, tok = tiny_model()
    batch = tiny_batch(tok)
    reference = copy.deepcopy(model)
    opt = optimiser(model)
    train_step(model, model, [batch], opt, scheduler(opt), 'localize', args(), torch.device('cpu'))

    ref_opt = optimiser(reference)
    for mode in ('pos', 'neg'):  # zero_grad -> backward -> clip 1.0 -> step, twice (spec §4.3)
        ref_opt.zero_grad()
        global_loss(reference, batch, mode).backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        ref_opt.step()
    assert torch.allclose(params(model), params(reference), atol=1e-6)

    single, expected = copy.deepcopy(model), copy.deepcopy(model)
    single_opt, exp_opt = optimiser(single), optimiser(expected)
    train_step(single, single, [batch], single_opt, scheduler(single_opt), 'localize', args(single_step=True),
               torch.device('cpu'))
    exp_opt.zero_grad()  # --single-step: one clipped step on grad(L_pos + L_div + L_neg + L_div)
    (global_loss(expected, batch, 'pos') + global_loss(expected, batch, 'neg')).backward()
    torch.nn.utils.clip_grad_norm_(expected.parameters(), 1.0)
    exp_opt.step()
    assert torch.allclose(params(single), params(expected), atol=1e-6)
    two_steps = copy.deepcopy(model)
    two_opt = optimiser(two_steps)
    train_step(two_steps, two_steps, [batch], two_opt, scheduler(two_opt), 'localize', args(), torch.device('cpu'))
    assert not torch.allclose(params(single), params(two_steps), atol=1e-3)


def sub_batch(batch, videos):
    """The collated batch of the videos `videos` (a range) of `batch` (their sequences, same padding)."""
    starts = [0] + list(itertools.accumulate(batch.num_sents))
    v, seqs = slice(videos.start, videos.stop), slice(starts[videos.start], starts[videos.stop])
    return ILCACMBatch(batch.vids[v], batch.durations[v], batch.video[v], batch.video_mask[v], batch.num_sents[v],
                       batch.sentences[v], batch.positive_tokens[seqs], batch.negative_tokens[seqs],
                       batch.dense_tokens[v], batch.timestamps[seqs])


def micro_batches(batch, size):
    return [sub_batch(batch, range(i, min(i + size, len(batch.vids)))) for i in range(0, len(batch.vids), size)]


def varied_batch(tok, counts):
    """A tiny batch whose videos all differ (the tiny features repeat by id length)."""
    batch = tiny_batch(tok, counts=counts)
    noise = torch.randn(batch.video.shape, generator=torch.Generator().manual_seed(4))
    return dataclasses.replace(batch, video=batch.video + noise)


@pytest.mark.parametrize('loss_groups', [1, 2, 4])
@pytest.mark.parametrize('stage', ['caption', 'localize'])
def test_accumulated_micro_batches_equal_the_global_batch(stage, loss_groups):
    """Four micro-batches of one video each: with 2 loss groups each group spans two micro-batches."""
    model, tok = tiny_model()
    batch = varied_batch(tok, counts=(3, 1, 2, 3))
    accumulated = copy.deepcopy(model)
    opt, acc_opt = optimiser(model), optimiser(accumulated)
    whole = train_step(model, model, [batch], opt, scheduler(opt), stage, args(loss_groups=loss_groups),
                       torch.device('cpu'))
    parts = train_step(accumulated, accumulated, micro_batches(batch, 1), acc_opt, scheduler(acc_opt), stage,
                       args(loss_groups=loss_groups), torch.device('cpu'))
    assert whole.keys() == parts.keys() and all(whole[k] == pytest.approx(parts[k], rel=1e-5) for k in whole)
    assert torch.allclose(params(model), params(accumulated), atol=1e-6)


@pytest.mark.parametrize('mode', ['full', 'pos', 'neg'])
def test_eight_loss_groups_are_the_mean_of_eight_token_means(mode):
    """The authors' objective (spec §4.4): 8 processes each take HF's token mean over their own videos (here 2
    consecutive videos each, run as a batch of their own), DeepSpeed averages them; L_div is a mean over all 16
    videos. The step's loss and update equal that, and differ from the one global token mean."""
    model, tok = tiny_model()
    counts = (3, 1, 2, 3, 1, 1, 3, 2, 2, 3, 1, 2, 3, 3, 1, 2)
    batch = varied_batch(tok, counts)
    reference = copy.deepcopy(model)
    ref_opt = optimiser(reference)
    ref_opt.zero_grad()
    per_group = [reference(sub_batch(batch, range(2 * g, 2 * g + 2)), mode) for g in range(8)]
    ce = sum(out['ce'] / out['tokens'] for out in per_group) / 8
    div = sum(out['div'] for out in per_group) / 16 if mode != 'full' else 0.0
    (ce + div).backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
    ref_opt.step()
    with torch.no_grad():
        whole = model(batch, mode)
    assert abs(ce.item() - float(whole['ce'] / whole['tokens'])) > 2e-4  # the groups matter (tolerance below: 4e-5)

    stage, loss = ('caption', 'pos+neg') if mode == 'full' else ('localize', mode)
    opt = optimiser(model)
    metrics = train_step(model, model, [batch], opt, scheduler(opt), stage, args(loss_groups=8, loss=loss),
                         torch.device('cpu'))
    assert metrics[f'loss_{mode}'] == pytest.approx(ce.item(), rel=1e-5)
    assert torch.allclose(params(model), params(reference), atol=1e-6)


def test_the_last_global_batch_is_filled_with_the_epochs_first_videos():
    """24 videos in global batches of 16 (2 micro-batches of 8): the second update holds the epoch's last 8 videos
    and its first 8 again, as accelerate's even batches do (spec §4.4), so every update has 16 videos."""
    from torch.utils.data import TensorDataset
    from models.ilcacm.runs import training_loader
    from utils.distributed import make_loader, set_epoch
    data = TensorDataset(torch.arange(24))
    loader = training_loader(data, None, SimpleNamespace(batch_size=16, grad_accum=2, seed=5, num_workers=0))
    unpadded = make_loader(data, 8, shuffle=True, drop_last=False, collate_fn=None, seed=5)
    for epoch in (0, 1):
        set_epoch(loader, epoch)
        set_epoch(unpadded, epoch)
        order = [int(i) for (batch,) in unpadded for i in batch]
        batches = [batch.tolist() for (batch,) in loader]
        assert [len(b) for b in batches] == [8, 8, 8, 8]
        assert sum(batches, []) == order + order[:8] and sorted(order) == list(range(24))


def test_loss_groups_must_split_the_batch_evenly():
    from models.ilcacm.losses import LossGroupError
    from train_script.train_ilcacm import main
    with pytest.raises(LossGroupError, match=r'--loss-groups 8 does not split the global batch of 12 videos'):
        main(['--data-root', 'nowhere', '--decoder', 'word', '--batch-size', '12'])
    model, tok = tiny_model()
    opt = optimiser(model)
    with pytest.raises(LossGroupError, match='--loss-groups 3'):
        train_step(model, model, [tiny_batch(tok)], opt, scheduler(opt), 'caption', args(loss_groups=3),
                   torch.device('cpu'))


def train(data, run_name, runs, extra=(), nproc=1):
    launcher = [sys.executable] if nproc == 1 else [sys.executable, '-m', 'torch.distributed.run',
                                                    '--nproc_per_node', str(nproc), '--master_port', '29517']
    cmd = launcher + [str(REPO / 'train_script' / 'train_ilcacm.py'), '--data-root', str(data.root),
                      '--runs-dir', str(runs), '--run-name', run_name, *TINY_CLI, *extra]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize('extra,steps', [((), 6), (('--batch-size', '16', '--loss-groups', '4'), 4)],
                         ids=['8-groups-of-1', 'padded-4-groups-of-4'])
def test_torchrun_two_processes_equal_one_process(tiny_data, tmp_path, extra, steps):
    """2 processes x 2 micro-batches = 1 process, with the default 8 loss groups of one video, and with global batches
    of 16 of the 24 videos: the second is padded with the epoch's first 8 (spec §4.4), and each of its 4 loss groups
    (4 consecutive videos) holds 2 videos of each process."""
    common = ['--dropout', '0', '--skip-eval', '--count-mode', 'oracle', '--device', 'cpu', *extra]  # gloo
    train(tiny_data, 'one', tmp_path, common)
    train(tiny_data, 'two', tmp_path, common + ['--grad-accum', '2'], nproc=2)
    one = load_checkpoint(tmp_path / 'one' / 'checkpoints' / 'last.pt')
    two = load_checkpoint(tmp_path / 'two' / 'checkpoints' / 'last.pt')
    assert one['step'] == two['step'] == steps  # ceil(24 / batch) updates per epoch, 2 epochs
    # Adam turns float-summation-order noise in near-zero gradients (the small localizer grads) into updates of
    # up to ~1e-5 per step; a wrong loss normalisation or data split would move every parameter by ~lr = 1e-3.
    diffs = torch.cat([(t - two['model']['ilcacm'][k]).abs().flatten() for k, t in one['model']['ilcacm'].items()])
    assert diffs.max() < 2e-4 and diffs.mean() < 1e-6
    assert one['paragraphs'] == two['paragraphs']


@pytest.mark.slow
@pytest.mark.java
def test_end_to_end_tiny_run_and_evaluation(tiny_data, tmp_path):
    out = train(tiny_data, 'e2e', tmp_path)
    run = tmp_path / 'e2e'
    log = [json.loads(line) for line in (run / 'log.jsonl').read_text().splitlines()]
    assert {'loss_full'} <= set(log[0]) and {'loss_pos', 'loss_neg', 'div'} <= set(log[-1])
    paragraphs = json.loads((run / 'predictions' / 'stage1_paragraphs.json').read_text())
    val_1 = json.loads(tiny_data.val_1.read_text())
    assert list(paragraphs) == list(val_1)
    submission = json.loads((run / 'predictions' / 'final.json').read_text())['results']
    for vid, events in submission.items():
        assert len(events) == len(paragraphs[vid]['sentences'])  # counts come from the stage-1 paragraphs
        assert all(0 <= e['timestamp'][0] <= e['timestamp'][1] <= val_1[vid]['duration'] for e in events)
    ilcacm = json.loads((run / 'metrics' / 'final_ilcacm.json').read_text())
    wsdec = json.loads((run / 'metrics' / 'final_wsdec.json').read_text())
    assert ilcacm['meta']['toolkit'] == '2021' and wsdec['meta']['toolkit'] == '2018'
    assert 'SODA_c' in ilcacm['metrics'] and '== wsdec protocol' in out


@pytest.mark.slow
def test_stage2_from_a_shared_stage1_equals_training_from_scratch(tiny_data, tmp_path):
    common = ['--skip-eval', '--count-mode', 'oracle', '--keep-checkpoints', '1']
    train(tiny_data, 'base', tmp_path, common)  # its stage 1 is shared by the variant below
    assert (tmp_path / 'base' / 'checkpoints' / 'stage1.pt').is_file()  # kept despite --keep-checkpoints 1
    assert not (tmp_path / 'base' / 'checkpoints' / 'epoch_000.pt').exists()
    variant = common + ['--loss', 'pos', '--mask-shape', 'cauchy']
    train(tiny_data, 'scratch', tmp_path, variant)
    train(tiny_data, 'shared', tmp_path, variant + ['--stage1-from', str(tmp_path / 'base' / 'checkpoints' / 'last.pt')])
    scratch = load_checkpoint(tmp_path / 'scratch' / 'checkpoints' / 'last.pt')
    shared = load_checkpoint(tmp_path / 'shared' / 'checkpoints' / 'last.pt')
    assert scratch['step'] == shared['step'] and scratch['paragraphs'] == shared['paragraphs']
    assert all(torch.equal(t, shared['model']['ilcacm'][k]) for k, t in scratch['model']['ilcacm'].items())
    log = [json.loads(line) for line in (tmp_path / 'shared' / 'log.jsonl').read_text().splitlines()]
    assert log and all('loss_full' not in row for row in log)  # stage 1 was not trained again
    from models.ilcacm.steps import stage1_checkpoint
    config = dict(load_checkpoint(tmp_path / 'base' / 'checkpoints' / 'stage1.pt')['config'])
    with pytest.raises(ValueError, match=r"other stage-1 flags \(lr: 0.001 -> 0.01\)"):
        stage1_checkpoint(tmp_path / 'base', {**config, 'lr': 0.01}, 1)
    with pytest.raises(ValueError, match='not the end of stage 1'):
        stage1_checkpoint(tmp_path / 'base', config, 2)
    with pytest.raises(ValueError, match='stage1.pt'):
        stage1_checkpoint(tmp_path / 'nowhere', config, 1)
