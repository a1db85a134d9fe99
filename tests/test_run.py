"""utils/run.py and utils/engine.py: flags, data paths, run folders, logging, existing-run protection, the run lock,
damaged checkpoints, the one checkpoint format and exact --resume through the one epoch loop."""
import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import utils.run
from utils.checkpoint import NonFiniteLossError, load_checkpoint, save_checkpoint, seed_everything
from utils.cli import add_common_args
from utils.distributed import make_loader, set_epoch
from utils.engine import EpochPlan, TrainState, fit
from utils.run import (REPO_ROOT, DeviceError, Run, RunFolderError, autocast, data_paths, make_checkpoint,
                       read_checkpoint, resolve_device)


def parse(tmp_path, *flags, run_name='exp'):
    parser = argparse.ArgumentParser()
    parser.add_argument('--lr', type=float, default=0.1)
    add_common_args(parser, epochs=4, batch_size=4, seed=7, run_name=run_name)
    return parser.parse_args(['--runs-dir', str(tmp_path / 'runs'), *flags])


def test_common_args_defaults_and_flags(tmp_path):
    args = parse(tmp_path)
    assert (args.epochs, args.batch_size, args.seed, args.run_name) == (4, 4, 7, 'exp')
    assert (args.device, args.resume, args.quiet, args.num_workers, args.missing_features) == \
        ('auto', False, False, 0, 'error')
    assert args.data_root is None
    args = parse(tmp_path, '--data-root', 'd', '--run-name', 'r', '--epochs', '9', '--batch-size', '2',
                 '--seed', '1', '--device', 'cpu', '--resume', '--quiet', '--num-workers', '3',
                 '--missing-features', 'skip')
    assert (args.data_root, args.run_name, args.epochs, args.batch_size, args.seed, args.device, args.resume,
            args.quiet, args.num_workers, args.missing_features) == \
        ('d', 'r', 9, 2, 1, 'cpu', True, True, 3, 'skip')
    with pytest.raises(SystemExit):
        parse(tmp_path, '--missing-features', 'zero')


def test_data_paths():
    p = data_paths('/x/root')
    assert p.root == Path('/x/root')
    assert (p.train, p.val_1, p.val_2) == tuple(Path('/x/root/captions') / f'{s}.json'
                                                for s in ('train', 'val_1', 'val_2'))
    assert p.c3d == Path('/x/root/features/c3d.hdf5') and p.clip_dir == Path('/x/root/features/clip')
    d = data_paths(None)
    assert d.train == REPO_ROOT / 'data/densecap/train.json' and d.val_2 == REPO_ROOT / 'data/densecap/val_2.json'
    assert d.c3d == REPO_ROOT / 'data/anet_v1.3.c3d.hdf5' and d.clip_dir == REPO_ROOT / 'data/clip_features'


def test_run_folder_layout_config_and_logs(tmp_path):
    args = parse(tmp_path, '--quiet')
    with Run(args, kind='unit') as run:
        assert run.dir == tmp_path / 'runs' / 'exp' and run.is_main
        assert not run.dir.exists()  # nothing is created before the run starts (after its setup)
        run.log(3, {'loss': torch.tensor(1.5), 'lr': 0.01})
        run.log(3, {'meteor': 4.25}, split='val')
        run.save_checkpoint({'step': 3, 'w': torch.ones(2)}, epoch=0)
        run.save_checkpoint({'step': 6, 'w': torch.zeros(2)}, epoch=1)
    names = sorted(p.name for p in run.dir.iterdir())
    assert names == ['checkpoints', 'config.json', 'log.jsonl', 'metrics', 'predictions', 'tensorboard']
    config = json.loads((run.dir / 'config.json').read_text())
    assert config == {**vars(args), 'kind': 'unit'}
    lines = [json.loads(line) for line in (run.dir / 'log.jsonl').read_text().splitlines()]
    assert lines == [{'step': 3, 'split': 'train', 'loss': 1.5, 'lr': 0.01},
                     {'step': 3, 'split': 'val', 'meteor': 4.25}]
    events = list((run.dir / 'tensorboard').glob('events.out.tfevents.*'))
    assert len(events) == 1 and events[0].stat().st_size > 0
    ckpts = sorted(p.name for p in run.checkpoints_dir.iterdir())
    assert ckpts == ['epoch_000.pt', 'epoch_001.pt', 'last.pt']
    assert load_checkpoint(run.checkpoints_dir / 'last.pt')['step'] == 6
    assert load_checkpoint(run.checkpoints_dir / 'epoch_000.pt')['step'] == 3


def test_tensorboard_holds_the_logged_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    with Run(parse(tmp_path, '--quiet'), kind='unit') as run:
        run.log(1, {'loss': 2.0})
        run.log(2, {'loss': 1.0})
    acc = EventAccumulator(str(run.dir / 'tensorboard'))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars('train/loss')] == [(1, 2.0), (2, 1.0)]


def test_a_run_made_before_a_flag_existed_resumes_with_its_implied_value(tmp_path):
    """A flag added later (e.g. --pretrain-segment, issue 14) is absent from an earlier run's config.json: the run
    resumes while the flag keeps the value every earlier run had, and is refused with another value."""
    import argparse
    import utils.run as run_module

    def parse_with(value, *argv):
        args = parse(tmp_path, *argv)
        return argparse.Namespace(**vars(args), pretrain_segment=value)
    run = Run(parse_with('whole-video'), kind='unit').start()
    run.close()
    config = json.loads((run.dir / 'config.json').read_text())
    del config['pretrain_segment']
    (run.dir / 'config.json').write_text(json.dumps(config))
    assert run_module.IMPLIED_BY_EARLIER_RUNS['pretrain_segment'] == 'whole-video'
    Run(parse_with('whole-video', '--resume'), kind='unit').close()  # accepted
    with pytest.raises(RunFolderError, match="pretrain_segment: 'whole-video' -> 'caption-order'"):
        Run(parse_with('caption-order', '--resume'), kind='unit')


def test_existing_run_is_protected(tmp_path):
    Run(parse(tmp_path), kind='unit').start().close()
    with pytest.raises(RunFolderError, match='--resume.*--run-name'):
        Run(parse(tmp_path), kind='unit')
    # --resume with a changed learning flag is refused and names the flag
    with pytest.raises(RunFolderError, match=r"lr: 0\.1 -> 0\.2"):
        Run(parse(tmp_path, '--resume', '--lr', '0.2'), kind='unit')
    with pytest.raises(RunFolderError, match="kind: 'unit' -> 'other'"):
        Run(parse(tmp_path, '--resume'), kind='other')
    # a longer schedule may be resumed; config.json then records it
    run = Run(parse(tmp_path, '--resume', '--epochs', '8', '--quiet'), kind='unit')
    with pytest.raises(RunFolderError, match='saved no checkpoint'):
        run.resume_state()
    run.start()
    assert json.loads((run.dir / 'config.json').read_text())['epochs'] == 8
    run.close()


def test_failed_setup_leaves_no_run_folder_and_no_lock(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with Run(parse(tmp_path), kind='unit'):
            1 / 0  # e.g. bad data found while setting up
    assert not (tmp_path / 'runs' / 'exp').exists() and not (tmp_path / 'runs' / '.exp.lock').exists()
    Run(parse(tmp_path), kind='unit').close()  # the same run name starts without --resume


def test_resume_of_missing_run_is_an_error(tmp_path):
    with pytest.raises(RunFolderError, match='not found'):
        Run(parse(tmp_path, '--resume', run_name='never'), kind='unit')
    assert not (tmp_path / 'runs' / 'never').exists()


def test_progress_is_off_when_quiet_or_not_a_tty(tmp_path, monkeypatch):
    with Run(parse(tmp_path), kind='unit') as run:
        monkeypatch.setattr('sys.stderr.isatty', lambda: True)
        bar = run.progress(range(5), 'x')
        assert not bar.disable and list(bar) == [0, 1, 2, 3, 4]
        monkeypatch.setattr('sys.stderr.isatty', lambda: False)
        assert run.progress(range(5), 'x').disable
        run.args.quiet = True
        monkeypatch.setattr('sys.stderr.isatty', lambda: True)
        bar = run.progress(iter(range(3)), 'x', total=3)
        assert bar.disable and list(bar) == [0, 1, 2]


def test_resolve_device_and_autocast():
    expected = 'cuda' if torch.cuda.is_available() else 'cpu'
    assert resolve_device('auto').type == expected
    assert resolve_device('cpu') == torch.device('cpu')
    with pytest.raises(DeviceError, match='not a device name'):
        resolve_device('gpu0')
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match='CUDA is not available'):
            resolve_device('cuda')
    with autocast(torch.device('cpu')):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


# --- resume exactness: 4 epochs in one go == 2 epochs, stop, fresh objects, --resume for 2 more ---

def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 4, generator=g)
    return TensorDataset(x, x.sum(1, keepdim=True).sin())


def _train(args, kind='tiny', bad_step=None):
    """What a training script does, with every object built afresh (as in a new process), through utils.engine.
    `bad_step`: the loss of that global step is NaN."""
    seed_everything(args.seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1, 3], gamma=0.5)
    loader = make_loader(_data(), args.batch_size, shuffle=True, drop_last=False, collate_fn=None,
                         seed=args.seed)
    calls = []

    def step(batch):
        x, y = batch
        loss = nn.functional.mse_loss(model(x), y)
        calls.append(None)
        if bad_step is not None and len(calls) + done == bad_step:
            loss = loss * float('nan')
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {'loss': loss.detach(), 'lr': scheduler.get_last_lr()[0]}

    def plan(epoch):
        set_epoch(loader, epoch)
        return EpochPlan(loader, step, f'epoch {epoch}', len(loader))
    with Run(args, kind) as run:
        resume = run.resume_state()
        done = 0 if resume is None else resume['step']
        fit(run, TrainState({'net': model}, {'sgd': optimizer}, {'lr': scheduler}, epoch_schedulers=True),
            args.epochs, plan, config=run.config, resume=resume)
    return model


def _resumed(tmp_path, run_name):
    _train(parse(tmp_path, '--quiet', '--epochs', '2', run_name=run_name))
    return _train(parse(tmp_path, '--quiet', '--epochs', '4', '--resume', run_name=run_name))


def test_resume_continues_bit_for_bit(tmp_path):
    whole = _train(parse(tmp_path, '--quiet', run_name='whole'))
    resumed = _resumed(tmp_path, 'split')
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    log = [json.loads(line) for line in (tmp_path / 'runs/split/log.jsonl').read_text().splitlines()]
    assert [r['step'] for r in log] == list(range(1, 13))  # 3 batches x 4 epochs, continued step counter
    assert log == [json.loads(line) for line in (tmp_path / 'runs/whole/log.jsonl').read_text().splitlines()]
    last = load_checkpoint(tmp_path / 'runs/split/checkpoints/last.pt')
    assert (last['epoch'], last['step'], last['kind'], last['config']['epochs']) == (3, 12, 'tiny', 4)
    assert set(last) == {'format', 'model', 'optimizer', 'scheduler', 'epoch', 'step', 'config', 'rng', 'kind'}
    assert (set(last['model']), set(last['optimizer']), set(last['scheduler'])) == ({'net'}, {'sgd'}, {'lr'})


def test_resume_without_rng_restore_diverges(tmp_path, monkeypatch):
    """Control: the dropout stream matters, so the test above really checks the RNG restore."""
    whole = _train(parse(tmp_path, '--quiet', run_name='whole'))
    monkeypatch.setattr(utils.run, 'restore_rng_state', lambda state: None)
    resumed = _resumed(tmp_path, 'norng')
    assert not torch.equal(whole[0].weight, resumed[0].weight)


def test_resume_refuses_a_checkpoint_of_another_kind(tmp_path):
    _train(parse(tmp_path, '--quiet', '--epochs', '1'), kind='tiny')
    config = tmp_path / 'runs/exp/config.json'
    config.write_text(config.read_text().replace('"tiny"', '"other"'))
    with pytest.raises(RunFolderError, match="'tiny' checkpoint, this script trains 'other'"):
        _train(parse(tmp_path, '--quiet', '--epochs', '2', '--resume'), kind='other')


def test_keep_checkpoints_prunes_old_epochs_but_keeps_last(tmp_path):
    _train(parse(tmp_path, '--quiet', '--epochs', '4', '--keep-checkpoints', '2'))
    ckpts = tmp_path / 'runs/exp/checkpoints'
    assert sorted(p.name for p in ckpts.glob('*.pt')) == ['epoch_002.pt', 'epoch_003.pt', 'last.pt']
    assert load_checkpoint(ckpts / 'last.pt')['epoch'] == 3


# --- the run lock (one process per run folder) ---------------------------------------------------------------
LOCK_SCRIPT = textwrap.dedent("""
    import argparse, sys, time
    sys.path.insert(0, {repo!r})
    from utils.cli import add_common_args, main
    from utils.run import Run
    def entry(argv):
        parser = argparse.ArgumentParser()
        add_common_args(parser, epochs=1, batch_size=1, seed=0, run_name='locked')
        args = parser.parse_args(['--runs-dir', {runs!r}, '--quiet'])
        with Run(args, 'unit') as run:
            run.start()
            print('started', flush=True)
            time.sleep(float(sys.argv[1]))
    main(entry, [])
""")


def test_two_processes_cannot_share_a_run_folder(tmp_path):
    script = tmp_path / 'hold.py'
    script.write_text(LOCK_SCRIPT.format(repo=str(REPO_ROOT), runs=str(tmp_path / 'runs')))
    first = subprocess.Popen([sys.executable, str(script), '30'], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == 'started'
        second = subprocess.run([sys.executable, str(script), '0'], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert second.stderr.count('\n') == 1 and f'in use by process {first.pid}' in second.stderr
    finally:
        first.kill()   # SIGKILL: no cleanup at all
        first.wait()
    # the killed owner left its lock: reported as stale, cleared only on request
    lock = tmp_path / 'runs' / '.locked.lock'
    assert json.loads(lock.read_text())['pid'] == first.pid
    args = parse(tmp_path, '--resume', run_name='locked')
    with pytest.raises(RunFolderError, match=f'stale lock .* process {first.pid} .*--clear-stale-lock'):
        Run(args, 'unit')
    with pytest.raises(RunFolderError, match='flags differ'):  # the lock goes first, then the folder is checked
        Run(parse(tmp_path, '--resume', '--clear-stale-lock', run_name='locked'), 'unit')
    assert not lock.exists()
    # SIGTERM (a plain `kill`) ends the run like an exception: the lock goes with it
    lock.parent.joinpath('locked', 'config.json').unlink()
    second = subprocess.Popen([sys.executable, str(script), '30'], stdout=subprocess.PIPE, text=True)
    assert second.stdout.readline().strip() == 'started' and lock.exists()
    second.terminate()
    assert second.wait(timeout=30) == 128 + 15 and not lock.exists()


# --- damaged checkpoints, interrupted writes, the log after --resume ------------------------------------------
def test_damaged_last_checkpoint_names_the_newest_intact_one(tmp_path):
    _train(parse(tmp_path, '--quiet', '--epochs', '3'))
    ckpts = tmp_path / 'runs/exp/checkpoints'
    (ckpts / 'last.pt').write_bytes((ckpts / 'last.pt').read_bytes()[:100])   # truncated
    (ckpts / 'epoch_002.pt').write_bytes(b'')                                 # empty
    with pytest.raises(RunFolderError, match=r'last\.pt is damaged .*newest intact checkpoint is .*epoch_001\.pt '
                                             r'\(epoch 1, step 6\).*--resume --resume-from'):
        _train(parse(tmp_path, '--quiet', '--epochs', '4', '--resume'))
    resumed = _train(parse(tmp_path, '--quiet', '--epochs', '4', '--resume', '--resume-from',
                           str(ckpts / 'epoch_001.pt')))
    whole = _train(parse(tmp_path, '--quiet', '--epochs', '4', run_name='whole'))
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    log = [json.loads(line)['step'] for line in (tmp_path / 'runs/exp/log.jsonl').read_text().splitlines()]
    assert log == list(range(1, 13))  # the rows after step 6 were dropped, then logged again once
    with pytest.raises(RunFolderError, match='not a checkpoint of this run'):
        Run(parse(tmp_path, '--resume', '--resume-from', str(tmp_path / 'runs/whole/checkpoints/last.pt')),
            'tiny').resume_state()


def test_temporary_files_of_an_interrupted_write_are_removed(tmp_path, capsys):
    _train(parse(tmp_path, '--quiet', '--epochs', '1'))
    orphan = tmp_path / 'runs/exp/checkpoints/.epoch_001.pt.12345.tmp'
    orphan.write_bytes(b'partial')
    _train(parse(tmp_path, '--quiet', '--epochs', '2', '--resume'))
    assert not orphan.exists() and 'removed 1 temporary file' in capsys.readouterr().err


def test_non_finite_loss_says_what_is_on_disk(tmp_path):
    with pytest.raises(NonFiniteLossError, match='at step 2: training stopped; no checkpoint was saved yet'):
        _train(parse(tmp_path, '--quiet', '--epochs', '2'), bad_step=2)
    with pytest.raises(NonFiniteLossError, match=r'at step 5: .*newest checkpoint is .*epoch_000\.pt'):
        _train(parse(tmp_path, '--quiet', '--epochs', '2', run_name='later'), bad_step=5)


def test_checkpoints_of_the_earlier_layouts_are_read(tmp_path, capsys):
    net = nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    old_ilcacm = {'model': net.state_dict(), 'optimizer': opt.state_dict(), 'scheduler': None, 'epoch': 0,
                  'step': 3, 'config': {}, 'rng': [], 'kind': 'ilcacm'}
    save_checkpoint(tmp_path / 'ilcacm.pt', old_ilcacm)
    state = read_checkpoint(tmp_path / 'ilcacm.pt')
    assert set(state['model']) == {'ilcacm'} and set(state['optimizer']) == {'adamw'} and state['scheduler'] == {}
    assert torch.equal(state['model']['ilcacm']['weight'], net.weight) and 'earlier checkpoint layout' in \
        capsys.readouterr().err
    opt.param_groups[0]['initial_lr'] = 0.1
    old_wsdec = {'model': {'cg': net.state_dict()}, 'optimizer': {'cg': opt.state_dict()},
                 'scheduler': {'milestones': [1, 2], 'gamma': 0.1, 'last_epoch': 2}, 'epoch': 1, 'step': 3,
                 'config': {}, 'rng': [], 'kind': 'wsdec_cg'}
    save_checkpoint(tmp_path / 'wsdec.pt', old_wsdec)
    schedule = read_checkpoint(tmp_path / 'wsdec.pt')['scheduler']['cg']
    fresh = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD(net.parameters(), lr=0.1), lambda e: 0.1 ** min(e, 2))
    fresh.load_state_dict(schedule)
    assert fresh.last_epoch == 2 and fresh.get_last_lr() == pytest.approx([1e-3])


@pytest.mark.parametrize('name', ['../escape', '/abs', 'a/b', '..'])
def test_a_run_name_cannot_leave_the_runs_folder(tmp_path, name):
    with pytest.raises(RunFolderError, match='--run-name .* cannot be a folder of --runs-dir'):
        Run(parse(tmp_path, run_name=name), 'tiny')
    assert sorted(p.name for p in tmp_path.iterdir()) == []
