"""The evaluation entry points on tiny checkpoints of every kind (layout of the WSDEC training scripts)."""
import json
import shutil

import pytest
import torch

from eval_script import evaluate
from eval_script.evaluate import dispatch
from models.wsdec.evaluation import evaluate_dense, evaluate_localization, evaluate_twostage, random_test
from models.wsdec.factory import build_models_from_config
from models.wsdec.runs import SetupError
from utils.cli import main as cli
from utils.run import RunFolderError
from utils.annotations import load_annotations
from utils.checkpoint import save_checkpoint
from utils.features import MissingFeaturesError
from utils.vocab import Vocabulary

PARTS = {'wsdec_final': ('cg', 'sl'), 'wsdec_noregress': ('cg', 'sl'), 'wsdec_noclass': ('cg', 'sl'),
         'wsdec_cg_pretrain': ('cg',), 'wsdec_cg': ('cg',), 'wsdec_sl': ('sl',)}


pytestmark = pytest.mark.usefixtures('single_thread')


def tiny_config(vocab_size, kind):
    shared = dict(vocab_size=vocab_size, hidden_dim=8, sent_embedding_dim=8, video_feature_dim=500, rnn_dropout=0.0)
    sl = {'wsdec_noclass': {'type': 'regressor', **shared},
          'wsdec_noregress': {'type': 'anchor', **shared, 'regressor_scale': 0.0}}.get(
        kind, {'type': 'anchor', **shared, 'regressor_scale': 0.3})
    config = {'cg': {**shared, 'max_cap_length': 5}, 'sl': sl}
    return {part: config[part] for part in PARTS[kind]}


@pytest.fixture(scope='module')
def ckpts(tiny_data, tmp_path_factory):
    """{kind: path} of tiny random checkpoints, as `runs/<kind>/checkpoints/last.pt`; config['data'] = tiny_data."""
    root = tmp_path_factory.mktemp('wsdec_ckpts')
    vocab = Vocabulary.build(load_annotations(tiny_data.train))
    torch.manual_seed(0)
    paths = {}
    for kind in PARTS:
        models_config = tiny_config(len(vocab), kind)
        models = build_models_from_config(models_config)
        paths[kind] = root / 'runs' / kind / 'checkpoints' / 'last.pt'
        save_checkpoint(paths[kind], {
            'model': {name: m.state_dict() for name, m in models.items()},
            'config': {'batch_size': 32, 'models': models_config, 'vocab': vocab.id_to_word,
                       'inference': {'refine_round': 1, 'iou_thres': 0.9},
                       'data': {'val_1': str(tiny_data.val_1), 'val_2': str(tiny_data.val_2),
                                'c3d': str(tiny_data.c3d)}},
            'kind': kind, 'epoch': 0, 'step': 0})
    return paths


def run_dir_args(tmp_path, name='ev'):
    return ['--runs-dir', str(tmp_path), '--run-name', name, '--device', 'cpu', '--quiet']


def submission(tmp_path, name='ev'):
    (path,) = (tmp_path / name / 'predictions').glob('*.json')
    return json.loads(path.read_text())


@pytest.mark.parametrize('kind', ['wsdec_final', 'wsdec_noregress', 'wsdec_noclass'])
def test_dense_kinds(ckpts, tmp_path, kind, capsys):
    assert dispatch(['--checkpoint', str(ckpts[kind]), '--no-score', '--n_rand', '4', '--batch-size', '3']
                    + run_dir_args(tmp_path)) is None
    out = capsys.readouterr().out
    assert 'n_rand=4 (checkpoint/default 15)' in out  # overrides are announced
    sub = submission(tmp_path)
    assert sub['params']['kind'] == kind and sub['params']['n_rand'] == 4
    assert all(1 <= len(v) <= 4 for v in sub['results'].values())
    assert json.loads((tmp_path / 'ev' / 'config.json').read_text())['kind'] == f'eval_{kind}'


def test_pretrain_kind(ckpts, tmp_path, tiny_data):
    dispatch(['--checkpoint', str(ckpts['wsdec_cg_pretrain']), '--no-score'] + run_dir_args(tmp_path))
    val = load_annotations(tiny_data.val_1)
    results = submission(tmp_path)['results']
    assert results.keys() == val.keys()
    for vid, (entry,) in results.items():  # one caption per video, the GT fields are real GT
        assert entry['gt_timestamp'] in [pytest.approx(t) for t in val[vid]['timestamps']]


def test_cg_kind(ckpts, tmp_path, tiny_data):
    dispatch(['--checkpoint', str(ckpts['wsdec_cg']), '--no-score'] + run_dir_args(tmp_path))
    val = load_annotations(tiny_data.val_1)
    results = submission(tmp_path)['results']
    assert {vid: len(v) for vid, v in results.items()} == {vid: len(a['sentences']) for vid, a in val.items()}


@pytest.mark.parametrize('kind', ['wsdec_sl', 'wsdec_final'])
def test_localization(ckpts, tmp_path, tiny_data, kind):
    argv = ['--checkpoint', str(ckpts[kind])] + run_dir_args(tmp_path)
    result = dispatch(argv) if kind == 'wsdec_sl' else evaluate_localization(argv)  # the supervised SL goes through the dispatcher
    n_sentences = sum(len(a['sentences']) for a in load_annotations(tiny_data.val_1).values())
    assert result['meta']['n_sentences'] == n_sentences
    saved = json.loads((tmp_path / 'ev' / 'metrics' / 'localization_val_1.json').read_text())
    assert saved['metrics'] == pytest.approx(result['metrics'])


def test_random_localization_baseline(ckpts, tmp_path, tiny_data):
    run = evaluate_localization
    base = ['--checkpoint', str(ckpts['wsdec_cg_pretrain']), '--random-baseline']
    everything = run(base + run_dir_args(tmp_path, 'a'))
    legacy = run(base + ['--legacy-one-sentence-per-video'] + run_dir_args(tmp_path, 'b'))
    val = load_annotations(tiny_data.val_1)
    assert everything['meta']['n_sentences'] == sum(len(a['sentences']) for a in val.values())
    assert legacy['meta']['n_sentences'] == len(val)
    with pytest.raises(SetupError, match='--random-baseline only'):
        run(['--checkpoint', str(ckpts['wsdec_sl']), '--legacy-one-sentence-per-video'] + run_dir_args(tmp_path, 'c'))


def test_twostage(ckpts, tmp_path, capsys):
    evaluate_twostage(['--sl-checkpoint', str(ckpts['wsdec_sl']), '--cg-checkpoint', str(ckpts['wsdec_cg']), '--no-score']
        + run_dir_args(tmp_path))
    out = capsys.readouterr().out
    assert 'n_rand=-1' in out and 'iou_thres=0.8' in out and 'none overridden' in out
    params = submission(tmp_path)['params']
    assert (params['n_rand'], params['iou_thres']) == (-1, 0.8)


def test_legacy_shuffled_eval_drops_last_batch(ckpts, tmp_path, tiny_data):
    dispatch(['--checkpoint', str(ckpts['wsdec_cg']), '--no-score', '--legacy-shuffled-eval', '--batch-size', '3']
             + run_dir_args(tmp_path))
    n = len(load_annotations(tiny_data.val_1))
    assert len(submission(tmp_path)['results']) == n - n % 3


def test_bad_inputs(ckpts, tmp_path, tiny_data, capsys):
    with pytest.raises(RunFolderError, match='checkpoint file not found'):
        dispatch(['--checkpoint', str(tmp_path / 'none.pt')])
    state = torch.load(ckpts['wsdec_cg'], weights_only=True)
    save_checkpoint(tmp_path / 'odd.pt', {**state, 'kind': 'mystery'})
    with pytest.raises(RunFolderError, match="unknown checkpoint kind 'mystery'"):
        dispatch(['--checkpoint', str(tmp_path / 'odd.pt')])
    with pytest.raises(SystemExit) as exit_info:  # the CLI: one line on stderr, status 2
        cli(dispatch, ['--checkpoint', str(tmp_path / 'odd.pt')])
    assert exit_info.value.code == 2 and 'mystery' in capsys.readouterr().err
    with pytest.raises(SetupError, match="without the model part"):
        evaluate_dense(['--checkpoint', str(ckpts['wsdec_cg'])])
    save_checkpoint(tmp_path / 'novocab.pt', {**state, 'config': {**state['config'], 'vocab': None}})
    with pytest.raises(SetupError, match='pass --vocab'):
        dispatch(['--checkpoint', str(tmp_path / 'novocab.pt')] + run_dir_args(tmp_path))
    # a val_1 video without features: named, with the --missing-features flag
    root = tmp_path / 'data'
    shutil.copytree(tiny_data.root, root)
    val = load_annotations(root / 'captions' / 'val_1.json')
    val['v_nofeatures'] = next(iter(val.values()))
    (root / 'captions' / 'val_1.json').write_text(json.dumps(val))
    argv = ['--checkpoint', str(ckpts['wsdec_cg']), '--no-score', '--data-root', str(root)]
    with pytest.raises(MissingFeaturesError, match='v_nofeatures.*--missing-features skip'):
        dispatch(argv + run_dir_args(tmp_path, 'm'))
    with pytest.warns(UserWarning, match='v_nofeatures'):
        dispatch(argv + ['--missing-features', 'skip'] + run_dir_args(tmp_path, 'm2'))


def test_ilcacm_kinds_are_delegated(ckpts, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(evaluate, 'evaluate_ilcacm', lambda argv: calls.append(argv) or {'ok': True})
    state = torch.load(ckpts['wsdec_cg'], weights_only=True)
    save_checkpoint(tmp_path / 'ilcacm.pt', {**state, 'kind': 'ilcacm'})
    assert dispatch(['--checkpoint', str(tmp_path / 'ilcacm.pt')]) == {'ok': True}
    assert calls == [['--checkpoint', str(tmp_path / 'ilcacm.pt')]]


@pytest.mark.java
def test_scored_dense_evaluation_and_random_test(ckpts, tmp_path, capsys):
    result = dispatch(['--checkpoint', str(ckpts['wsdec_final']), '--n-rand', '3'] + run_dir_args(tmp_path))
    meta = result['meta']
    assert (meta['toolkit'], meta['missing_policy']) == ('2018', 'zero')
    assert [r['path'].split('/')[-1] for r in meta['references']] == ['val_1.json', 'val_2.json']
    saved = json.loads((tmp_path / 'ev' / 'metrics' / 'dense_n3_seed233_val_1.json').read_text())
    assert saved['metrics']['METEOR'] == pytest.approx(result['metrics']['METEOR'])
    assert 'toolkit 2018' in capsys.readouterr().out

    summary = random_test(['--checkpoint', str(ckpts['wsdec_final']), '--n-rand', '2', '--seeds', '1', '2']
                  + run_dir_args(tmp_path, 'rt'))
    assert [(r['n_rand'], r['seed']) for r in summary['runs']] == [(2, 1), (2, 2)]
    meteor = [r['metrics']['METEOR'] for r in summary['runs']]
    assert summary['table']['2']['METEOR']['mean'] == pytest.approx(sum(meteor) / 2)
    assert (tmp_path / 'rt' / 'metrics' / 'dense_n2_seed2_val_1.json').exists()
    markdown = (tmp_path / 'rt' / 'random_test.md').read_text().splitlines()
    assert markdown[0].startswith('| n_rand | seeds | Bleu_1') and markdown[2].startswith('| 2 | 2 |')
