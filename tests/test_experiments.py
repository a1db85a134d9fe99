"""The experiment registry (utils/experiments.py) and the table runner (scripts/reproduce_tables.py)."""
import json
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

from utils import experiments as ex
from utils.experiments import BY_ID, EXPERIMENTS, STEPS, Experiment, Job, Profile, RegistryError, Step, TableRow

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'scripts'))
import reproduce_tables  # noqa: E402

QUICK = Profile('quick', 'synthetic', 'data/synthetic_tiny', 'runs')
FULL = Profile('full', 'anet', None, 'runs')


# ------------------------------------------------------------------------------------------ registry
def test_every_published_experiment_row_has_an_entry():
    ids = ex.published_experiment_ids()
    assert {'wsdec/final', 'ilcacm/full', 'wsdec/no_regression', 'ilcacm/mask_hard'} <= set(ids)
    assert not [i for i in ids if i not in BY_ID]
    ex.check_registry()


def test_every_row_id_of_the_registry_is_published_or_not_recovered():
    from utils.published import NOT_RECOVERED, row_ids
    known = set(row_ids()) | set(NOT_RECOVERED)
    assert {row.row_id for e in EXPERIMENTS for row in e.rows} <= known
    assert BY_ID['wsdec/sl_weak'].rows[0].row_id == 'wsdec/final'  # compared with IRON's WS-DEC row


def test_every_script_of_the_registry_exists():
    missing = sorted({s.script for s in STEPS.values() if not (REPO / s.script).is_file()})
    assert not missing, f'scripts named by utils/experiments.py but absent: {missing}'


def test_unknown_step_and_cycles_are_reported(monkeypatch):
    monkeypatch.setitem(STEPS, 'a', Step('a', 'x.py', True, ('f',), inputs=(('--in', 'b'),)))
    monkeypatch.setitem(STEPS, 'b', Step('b', 'x.py', True, ('f',), inputs=(('--in', 'a'),)))
    cyclic = Experiment('t/x', 'x', 'WSDEC', ex.DENSE, '', ('a',), 'a', (), 'C3D')
    with pytest.raises(RegistryError, match='dependency cycle: a -> b -> a'):
        ex.resolve_steps([cyclic])
    monkeypatch.setitem(STEPS, 'a', Step('a', 'x.py', True, ('f',), inputs=(('--in', 'nope'),)))
    with pytest.raises(RegistryError, match="needs unknown step 'nope'"):
        ex.resolve_steps([cyclic])


# ------------------------------------------------------------------------------- dependencies, --only
def test_dependencies_come_first_and_shared_runs_run_once():
    names = [j.step.name for j in ex.plan(ex.select(['wsdec/final', 'wsdec/sl_weak', 'wsdec/no_classification',
                                                     'wsdec/pretrained_cg_random']), None, QUICK)]
    assert names.count('wsdec_cg_pretrain') == 1 and names.count('wsdec_final') == 1
    assert names.index('wsdec_cg_pretrain') < names.index('wsdec_final') < names.index('eval_wsdec_final')
    assert names.index('wsdec_final') < names.index('loc_wsdec_final')
    assert names.index('wsdec_cg_pretrain') < names.index('wsdec_noclass')


def test_only_pulls_in_dependencies():
    names = {j.step.name for j in ex.plan(ex.select(['wsdec/two_stage']), None, QUICK)}
    assert names == {'wsdec_sl', 'wsdec_cg', 'eval_wsdec_twostage'}
    names = {j.step.name for j in ex.plan(ex.select(['ilcacm/oracle_count']), None, QUICK)}
    assert names == {'ilcacm', 'eval_ilcacm_oracle_count'}


def test_select_globs_and_unknown_ids():
    assert {e.id for e in ex.select(['ilcacm/*'])} == {e.id for e in EXPERIMENTS if e.paper == 'ILCACM'}
    assert len(ex.select(None)) == len(EXPERIMENTS)
    with pytest.raises(RegistryError, match=r"unknown experiment id\(s\) \['wsdec/nope'\]"):
        ex.select(['wsdec/final', 'wsdec/nope'])


# ---------------------------------------------------------------------------------------- seeds
def test_seed_naming_and_default_seeds():
    jobs = ex.plan(ex.select(['wsdec/pretrained_cg_random', 'ilcacm/full']), None, QUICK)
    assert {j.run_name for j in jobs} == {'quick_wsdec_cg_pretrain_s233', 'quick_eval_wsdec_cg_pretrain_s233',
                                          'quick_ilcacm_s42'}
    jobs = ex.plan(ex.select(['wsdec/final']), [1, 2], FULL)
    assert [j.run_name for j in jobs] == ['wsdec_cg_pretrain_s1', 'wsdec_final_s1', 'eval_wsdec_final_s1',
                                          'wsdec_cg_pretrain_s2', 'wsdec_final_s2', 'eval_wsdec_final_s2']
    assert Profile('full', 'synthetic').prefix == 'synthetic_' and Profile('quick', 'anet').prefix == 'quick_anet_'


# ------------------------------------------------------------------------------------ commands
def test_full_commands_are_the_paper_defaults():
    job = Job(STEPS['wsdec_final'], 7, FULL)
    assert job.command()[1:] == ['train_script/train_final.py', '--runs-dir', 'runs', '--run-name', 'wsdec_final_s7',
                                 '--seed', '7', '--checkpoint-cg', 'runs/wsdec_cg_pretrain_s7/checkpoints/last.pt',
                                 '--epochs', '25']
    assert Job(STEPS['wsdec_noregress'], 7, FULL).command()[-2:] == ['--regressor-scale', '0']
    assert '--epochs 20' in shlex.join(Job(STEPS['ilcacm'], 42, FULL).command())


def test_quick_commands_are_small_and_take_the_data_root():
    argv = Job(STEPS['wsdec_final'], 233, QUICK).command(resume=True)
    assert argv[2:4] == ['--data-root', 'data/synthetic_tiny']
    assert argv[argv.index('--epochs') + 1] == '2' and argv[argv.index('--hidden-dim') + 1] == '64'
    assert argv[-1] == '--resume'
    argv = Job(STEPS['eval_ilcacm_oracle_count'], 42, QUICK).command()
    assert '--run-name' not in argv and argv[-2:] == ['--count-mode', 'oracle']
    assert argv[argv.index('--checkpoint') + 1] == 'runs/quick_ilcacm_s42/checkpoints/last.pt'
    assert Job(STEPS['eval_ilcacm_oracle_count'], 42, QUICK).output_dir == Path('runs/quick_ilcacm_s42')


def test_shaped_profiles_build_their_data_and_run_their_family(tmp_path):
    args = reproduce_tables.parse_args(['--dataset', 'anet-shaped', '--max-videos', '1000', '--runs-dir', 'r'])
    profile, build = reproduce_tables.profile_from_args(args)
    assert (profile.name, profile.family, build, profile.prefix) == ('shaped', 'activitynet', 'shaped',
                                                                     'anet_shaped_1000_')
    command = reproduce_tables.data_command(profile, build)
    assert command[command.index('--annotations') + 1] == '../shared/data/activitynet_captions'
    assert command[command.index('--max-videos') + 1] == '1000' and '--signal-to-noise' in command
    assert Path(profile.data_root).name == 'anet_shaped_1000'
    # another signal strength: its own data root and run names, the flag passed to the data builder
    strong, _ = reproduce_tables.profile_from_args(reproduce_tables.parse_args(
        ['--dataset', 'anet-shaped', '--signal-to-noise', '16', '--runs-dir', 'r']))
    assert Path(strong.data_root).name == 'anet_shaped_1000_snr16' and strong.prefix == 'anet_shaped_1000_snr16_'
    command = reproduce_tables.data_command(strong, build)
    assert command[command.index('--signal-to-noise') + 1] == '16'
    assert reproduce_tables.profile_from_args(reproduce_tables.parse_args(
        ['--dataset', 'anet-shaped', '--signal-to-noise', '8']))[0].prefix == 'anet_shaped_1000_'   # the default
    for argv, message in ((['--dataset', 'synthetic', '--signal-to-noise', '16'], 'is for --dataset anet-shaped'),
                          (['--dataset', 'anet-shaped', '--signal-to-noise', '0'], 'expected a positive number'),
                          (['--dataset', 'anet-shaped', '--signal-to-noise', 'inf'], 'expected a positive number'),
                          (['--dataset', 'synthetic', '--max-videos', '9'], '--max-videos is for --dataset')):
        with pytest.raises(RegistryError, match=message):
            reproduce_tables.profile_from_args(reproduce_tables.parse_args(argv))
    yc2, build = reproduce_tables.profile_from_args(reproduce_tables.parse_args(['--dataset', 'yc2-shaped']))
    assert yc2.family == 'youcook2' and '--max-videos' not in reproduce_tables.data_command(yc2, build)
    youcook2 = {e.id for e in ex.select(None, 'youcook2')}
    assert {'ilcacm/youcook2', 'wsdec/youcook2', 'ilcacm/youcook2_prior'} <= youcook2
    assert not youcook2 & {e.id for e in ex.select(None, 'activitynet')}
    argv = Job(STEPS['ilcacm'], 42, yc2).command()
    assert argv[-2:] == ['--dataset', 'youcook2'] and argv[argv.index('--epochs') + 1] == '12'
    assert '--dataset' not in Job(STEPS['wsdec_final'], 233, yc2).command()
    with pytest.raises(RegistryError, match="unknown experiment id.*for youcook2 data"):
        ex.select(['wsdec/final'], 'youcook2')


def test_baseline_rows_sit_beside_every_method():
    for method in ('wsdec', 'ilcacm'):
        assert {f'{method}/prior', f'{method}/segment_blind'} <= set(BY_ID)
    assert BY_ID['wsdec/prior'].eval == BY_ID['ilcacm/prior'].eval == 'baseline_prior'   # one run, two protocols
    assert Job(STEPS['eval_wsdec_final_segment_blind'], 233, FULL).command()[-1] == '--segment-blind'
    # the fix-flag rows of WSDEC (issue 14): their own pretraining, with the flag; their own segment-blind row
    shaped = Profile('shaped', 'anet-shaped', 'd', 'r')
    pretrain = Job(STEPS['wsdec_cg_pretrain_caption_order'], 233, shaped).command()
    assert pretrain[pretrain.index('--pretrain-segment') + 1] == 'caption-order'
    final = Job(STEPS['wsdec_final_caption_order'], 233, shaped).command()
    assert 'anet_shaped_1000_wsdec_cg_pretrain_caption_order_s233' in final[final.index('--checkpoint-cg') + 1]
    assert BY_ID['wsdec/caption_order_segment_blind'].train == BY_ID['wsdec/caption_order'].train
    random = Job(STEPS['eval_wsdec_cg_pretrain_caption_order'], 233, shaped).command()   # its own random row
    assert 'anet_shaped_1000_wsdec_cg_pretrain_caption_order_s233' in random[random.index('--checkpoint') + 1]
    assert 'wsdec/caption_order_pretrained_cg_random' in ex.LEARNING_CHECKS['wsdec/caption_order']


# ------------------------------------------------------------------------------ run-folder status
def test_finished_partial_and_missing_run_folders(tmp_path):
    profile = Profile('quick', 'synthetic', 'd', str(tmp_path))
    train = Job(STEPS['wsdec_sl'], 233, profile)
    assert train.status() == 'missing'
    (train.run_dir / 'checkpoints').mkdir(parents=True)
    (train.run_dir / 'stdout.log').write_text('')
    assert train.status() == 'missing'                       # a log alone is not a run
    (train.run_dir / 'config.json').write_text('{}')
    assert train.status() == 'partial' and not train.resumable()
    (train.run_dir / 'checkpoints' / 'last.pt').write_text('')
    (train.run_dir / 'checkpoints' / 'epoch_000.pt').write_text('')
    assert train.status() == 'partial' and train.resumable()
    assert reproduce_tables.prepare(train)[0][-1] == '--resume'
    (train.run_dir / 'checkpoints' / 'epoch_001.pt').write_text('')  # quick: 2 epochs
    assert train.status() == 'finished'

    evaluation = Job(STEPS['eval_wsdec_final'], 233, profile)
    (evaluation.run_dir / 'metrics').mkdir(parents=True)
    (evaluation.run_dir / 'config.json').write_text('{}')
    assert evaluation.status() == 'partial' and evaluation.resumable()
    (evaluation.run_dir / 'metrics' / 'dense_n15_seed233_val_1.json').write_text('{}')
    assert evaluation.status() == 'finished'

    shared = Job(STEPS['eval_ilcacm_equal_split'], 42, profile)
    (shared.output_dir / 'metrics').mkdir(parents=True)
    (shared.output_dir / 'config.json').write_text('{}')
    assert shared.status() == 'missing'                       # the training run's config is not its own
    (shared.output_dir / 'metrics' / 'last_equal-split_ilcacm.json').write_text('{}')
    assert shared.status() == 'finished'


def test_a_training_without_checkpoint_restarts_cleanly(tmp_path):
    job = Job(STEPS['wsdec_cg'], 233, Profile('quick', 'synthetic', 'd', str(tmp_path)))
    (job.run_dir / 'tensorboard').mkdir(parents=True)
    (job.run_dir / 'config.json').write_text('{}')
    (job.run_dir / 'stdout.log').write_text('first attempt\n')
    argv, what = reproduce_tables.prepare(job)
    assert what == 'restart (no checkpoint)' and '--resume' not in argv
    assert sorted(p.name for p in job.run_dir.iterdir()) == ['stdout.log']


# ------------------------------------------------------------------------------------- dry run
def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    runs = tmp_path / 'runs'
    code = reproduce_tables.main(['--dataset', 'synthetic', '--quick', '--dry-run', '--runs-dir', str(runs),
                                  '--data-root', str(tmp_path / 'data'), '--only', 'wsdec/final'])
    out = capsys.readouterr().out
    assert code == 0 and not runs.exists() and not (tmp_path / 'data').exists()
    assert '1 experiments, 3 runs; profile quick, dataset synthetic (tiny)' in out
    assert 'make_synthetic_dataset.py --out' in out
    assert 'quick_wsdec_cg_pretrain_s233: missing' in out
    assert f'--checkpoint {runs}/quick_wsdec_final_s233/checkpoints/last.pt' in out


def test_runs_made_on_another_data_root_are_not_reused(tmp_path, capsys):
    runs, argv = tmp_path / 'runs', ['--dataset', 'synthetic', '--quick', '--dry-run', '--only', 'wsdec/final']
    made = runs / 'quick_wsdec_cg_pretrain_s233'
    made.mkdir(parents=True)
    (made / 'config.json').write_text(json.dumps({'data_root': str(tmp_path / 'first')}))
    args = argv + ['--runs-dir', str(runs)]
    assert reproduce_tables.main(args + ['--data-root', str(tmp_path / 'first')]) == 0   # the same root: planned
    with pytest.raises(RegistryError, match=f'{made}: made on data root {tmp_path}/first, this invocation uses '
                                            f'{tmp_path}/second; give another --runs-dir'):
        reproduce_tables.main(args + ['--data-root', str(tmp_path / 'second')])
    capsys.readouterr()


def test_list_names_every_experiment(capsys):
    assert reproduce_tables.main(['--list']) == 0
    out = capsys.readouterr().out
    assert all(e.id in out for e in EXPERIMENTS)


# ------------------------------------------------------------------------- end to end, fake steps
FAKE_TRAIN = '''
import json, pathlib, sys
args = sys.argv[1:]
get = lambda flag: args[args.index(flag) + 1]
run = pathlib.Path(get('--runs-dir')) / get('--run-name')
(run / 'checkpoints').mkdir(parents=True, exist_ok=True)
with open(pathlib.Path(__file__).with_suffix('.calls'), 'a') as f:
    f.write(' '.join(args) + '\\n')
crash = pathlib.Path(__file__).with_name('crash_' + get('--run-name'))
if (run / 'config.json').exists() and '--resume' not in args:
    sys.exit('run folder exists: pass --resume')
(run / 'config.json').write_text('{"kind": "fake"}')
(run / 'checkpoints' / 'last.pt').write_text('x')
if crash.exists():
    crash.unlink()
    sys.exit('interrupted')
(run / 'checkpoints' / f"epoch_{int(get('--epochs')) - 1:03d}.pt").write_text('x')
'''
FAKE_EVAL = '''
import json, pathlib, sys
args = sys.argv[1:]
get = lambda flag: args[args.index(flag) + 1]
assert pathlib.Path(get('--checkpoint')).is_file(), 'no checkpoint'
run = pathlib.Path(get('--runs-dir')) / get('--run-name')
(run / 'metrics').mkdir(parents=True, exist_ok=True)
(run / 'config.json').write_text('{"kind": "fake_eval"}')
seed = int(get('--seed'))
result = {'metrics': {'METEOR': float(seed), 'CIDEr': 10.0 + seed},
          'meta': {'toolkit': '2018', 'missing_policy': 'zero'}}
(run / 'metrics' / 'scores.json').write_text(json.dumps(result))
print('scored')
'''


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    scripts = tmp_path / 'fake'
    scripts.mkdir()
    (scripts / 'train.py').write_text(FAKE_TRAIN)
    (scripts / 'eval.py').write_text(FAKE_EVAL)
    (scripts / 'fail.py').write_text('import sys; print("boom"); sys.exit(3)')
    train = Step('fake_train', str(scripts / 'train.py'), True, (ex.FINAL_CKPT,), epochs=(('full', 3), ('quick', 2)))
    evaluation = Step('fake_eval', str(scripts / 'eval.py'), False, ('metrics/scores.json',),
                      inputs=(('--checkpoint', 'fake_train'),))
    broken = Step('fake_broken', str(scripts / 'fail.py'), True, (ex.FINAL_CKPT,), epochs=(('full', 1), ('quick', 1)))
    after_broken = Step('fake_after', str(scripts / 'eval.py'), False, ('metrics/scores.json',),
                        inputs=(('--checkpoint', 'fake_broken'),))
    steps = {s.name: s for s in (train, evaluation, broken, after_broken)}
    experiments = (
        Experiment('wsdec/final', 'Fake final', 'WSDEC', ex.DENSE, '', ('fake_train',), 'fake_eval',
                   (TableRow('wsdec/final', 'Fake final', 'metrics/scores.json'),), 'C3D'),
        Experiment('wsdec/no_regression', 'Fake broken', 'WSDEC', ex.DENSE, '', ('fake_broken',), 'fake_after',
                   (TableRow('wsdec/no_regression', 'Fake broken', 'metrics/scores.json'),), 'C3D'),
    )
    monkeypatch.setattr(ex, 'STEPS', steps)
    monkeypatch.setattr(ex, 'EXPERIMENTS', experiments)
    monkeypatch.setattr(ex, 'BY_ID', {e.id: e for e in experiments})
    return scripts


def test_end_to_end_with_fake_steps(fake_registry, tmp_path, capsys):
    runs = tmp_path / 'runs'
    argv = ['--data-root', str(tmp_path / 'data'), '--runs-dir', str(runs), '--seeds', '1', '2']
    (fake_registry / 'crash_fake_train_s1').write_text('')  # seed 1's training stops after a checkpoint

    assert reproduce_tables.main(argv + ['--jobs', '2']) == 1  # a failed experiment: exit status 1
    captured = capsys.readouterr()
    assert 'fake_train_s1: train ... FAILED (exit 1; log' in captured.out
    assert 'fake_eval_s1: skip ... needs fake_train (seed 1)' in captured.out
    assert 'fake_train_s2: train ... ok' in captured.out and 'fake_eval_s2: evaluate ... ok' in captured.out
    assert 'fake_broken_s1: train ... FAILED (exit 3; log' in captured.out
    assert f'fake_broken_s1 failed: log {runs}/fake_broken_s1/stdout.log' in captured.err
    assert 'boom' in (runs / 'fake_broken_s1' / 'stdout.log').read_text()
    table = json.loads((runs / 'tables' / 'dense_captioning.json').read_text())
    assert [(r['row_id'], r['n_seeds']) for r in table['rows']] == [('wsdec/final', 1)]  # seed 2 only so far
    assert (runs / 'tables' / 'sentence_localization.md').is_file()

    assert reproduce_tables.main(argv) == 1            # again: seed 1 resumes, seed 2 is reused
    captured = capsys.readouterr()
    assert 'fake_train_s1: resume ... ok' in captured.out
    assert 'fake_train_s2: reuse ... finished earlier' in captured.out
    calls = (fake_registry / 'train.calls').read_text().splitlines()
    assert len(calls) == 3 and calls[-1].endswith('--resume') and '--run-name fake_train_s1' in calls[-1]
    table = json.loads((runs / 'tables' / 'dense_captioning.json').read_text())
    row = table['rows'][0]
    assert row['n_seeds'] == 2 and row['ours']['METEOR']['values'] == [1.0, 2.0]
    assert row['ours']['METEOR']['mean'] == pytest.approx(1.5)
    assert row['difference']['METEOR'] == pytest.approx(1.5 - 6.30)  # published WSDEC METEOR
    assert 'Fake final' in (runs / 'tables' / 'dense_captioning.md').read_text()
    assert (runs / 'fake_eval_s1' / 'report.html').is_file() and (runs / 'index.html').is_file()

    assert reproduce_tables.main(argv + ['--only', 'wsdec/final']) == 0
    assert 'reuse' in capsys.readouterr().out
    assert len((fake_registry / 'train.calls').read_text().splitlines()) == 3  # nothing trained again


# ------------------------------------------------------------------------------------ benchmark.py
def test_benchmark_report_reads_ratios_and_reports_missing_parts(monkeypatch):
    import benchmark
    assert benchmark.run_part('nonexistent', True) == {'status': 'missing',
                                                        'error': 'scripts/benchmark_nonexistent.py not found'}
    result = {'cpu': {'setting_batch': 4, 'cg_phase_step_s': 0.5, 'cg_phase_step_speedup': 3.0},
              'identical': True, 'inference': {'naive': {'videos_per_s': 0.1}, 'speedup': 12.5}}
    ratios, absolute, other = benchmark.split_figures(result)
    assert ratios == {'cpu.cg_phase_step_speedup': 3.0, 'inference.speedup': 12.5}
    assert absolute == {'cpu.cg_phase_step_s': 0.5, 'inference.naive.videos_per_s': 0.1}
    assert other == {'identical': True}
    info = {'cpu': 'Test CPU', 'cpu_cores': 2, 'torch_threads': 2, 'gpu': 'H100'}
    text = benchmark.markdown({'quick': True, 'date': 'today', 'device': info, 'parts': {
        'wsdec': {'status': 'ok', 'seconds': 1.0, 'result': result},
        'ilcacm': {'status': 'missing', 'error': 'scripts/benchmark_ilcacm.py not found'}}})
    assert 'Test CPU (2 cores, 2 torch threads), GPU H100' in text
    assert '| **inference.speedup** (ratio vs reference) | **12.5×** |' in text
    assert '## ilcacm: missing' in text and 'scripts/benchmark_ilcacm.py not found' in text
