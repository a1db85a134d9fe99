"""ILCACM training: the stage-2 optimiser-step semantics (spec ilcacm §4.3), global-batch loss normalisation
(gradient accumulation, torchrun), and an end-to-end tiny synthetic run (stage 1 -> counts -> stage 2 -> eval)."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.test_ilcacm_model import tiny_batch, tiny_model
from models.ilcacm.steps import train_step
from utils.checkpoint import load_checkpoint
from utils.ilcacm_data import ILCACMBatch

REPO = Path(__file__).resolve().parents[1]
TINY_CLI = ['--decoder', 'word', '--word-min-count', '1', '--gpt2-layers', '1', '--gpt2-dim', '32',
            '--gpt2-heads', '2', '--enc-layers', '1', '--enc-heads', '2', '--enc-ff', '64', '--mask-ff', '64',
            '--cap-epochs', '1', '--epochs', '2', '--batch-size', '8', '--lr', '1e-3', '--device', 'cpu',
            '--quiet', '--num-beams', '2']


def args(**kw):
    return SimpleNamespace(**{'no_diversity': False, 'single_step': False, 'loss': 'pos+neg', 'clip': 1.0, **kw})


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


def split_batch(batch, first):
    """Two micro-batches (videos [:first] and [first:]) of a collated batch."""
    n_first = sum(batch.num_sents[:first])
    parts = []
    for videos, seqs in ((slice(0, first), slice(0, n_first)), (slice(first, None), slice(n_first, None))):
        parts.append(ILCACMBatch(batch.vids[videos], batch.durations[videos], batch.video[videos],
                                 batch.video_mask[videos], batch.num_sents[videos], batch.sentences[videos],
                                 batch.positive_tokens[seqs], batch.negative_tokens[seqs],
                                 batch.dense_tokens[videos], batch.timestamps[seqs]))
    return parts


@pytest.mark.parametrize('stage', ['caption', 'localize'])
def test_accumulated_micro_batches_equal_the_global_batch(stage):
    model, tok = tiny_model()
    batch = tiny_batch(tok, counts=(3, 1))
    accumulated = copy.deepcopy(model)
    opt, acc_opt = optimiser(model), optimiser(accumulated)
    train_step(model, model, [batch], opt, scheduler(opt), stage, args(), torch.device('cpu'))
    train_step(accumulated, accumulated, split_batch(batch, 1), acc_opt, scheduler(acc_opt), stage, args(),
               torch.device('cpu'))
    assert torch.allclose(params(model), params(accumulated), atol=1e-6)


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
def test_torchrun_two_processes_equal_one_process(tiny_data, tmp_path):
    common = ['--dropout', '0', '--skip-eval', '--count-mode', 'oracle', '--device', 'cpu']  # gloo, on any machine
    train(tiny_data, 'one', tmp_path, common)
    train(tiny_data, 'two', tmp_path, common + ['--grad-accum', '2'], nproc=2)
    one = load_checkpoint(tmp_path / 'one' / 'checkpoints' / 'last.pt')
    two = load_checkpoint(tmp_path / 'two' / 'checkpoints' / 'last.pt')
    assert one['step'] == two['step'] == 6
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
