"""Every entry point: bad input gives one line `error: ...` naming the culprit and exit status 2, no traceback
(issue 16 item 7); `--debug` shows the traceback; `--help` shows a default for every flag (issue 15)."""
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NONE = '/nonexistent_suite_input'
TRAIN = ['--data-root', NONE, '--runs-dir', NONE + '_runs']
CASES = {   # script: (argv, a fragment the one line must hold)
    'train_script/train_cg_pretrain.py': (TRAIN, f'{NONE}/captions/train.json: annotation file not found'),
    'train_script/train_cg.py': (TRAIN, 'annotation file not found'),
    'train_script/train_sl.py': (TRAIN, 'annotation file not found'),
    'train_script/train_final.py': (TRAIN + ['--checkpoint-cg', NONE + '.pt'], f'{NONE}.pt: checkpoint file not found'),
    'train_script/train_baseline_regressor.py': (TRAIN + ['--checkpoint_cg', NONE + '.pt'], 'checkpoint file not found'),
    'train_script/train_ilcacm.py': (TRAIN + ['--decoder', 'word'], 'annotation file not found'),
    'eval_script/evaluate.py': (['--checkpoint', NONE + '.pt'], 'checkpoint file not found'),
    'eval_script/evaluate_cg.py': (['--checkpoint', NONE + '.pt'], 'checkpoint file not found'),
    'eval_script/evaluate_pretrain.py': (['--checkpoint', NONE + '.pt'], 'checkpoint file not found'),
    'eval_script/evaluate_localization.py': (['--checkpoint', NONE + '.pt'], 'checkpoint file not found'),
    'eval_script/evaluate_twostage.py': (['--sl-checkpoint', NONE + '.pt', '--cg-checkpoint', NONE + '.pt'],
                                         'checkpoint file not found'),
    'eval_script/evaluate_ilcacm.py': (['--checkpoint', NONE + '.pt'], 'checkpoint file not found'),
    'eval_script/evaluate_prior.py': (['--data-root', NONE], 'annotation file not found'),
    'scripts/run_random_test.py': (['--checkpoint', NONE + '.pt'], 'checkpoint file not found'),
    'scripts/make_synthetic_dataset.py': (['--out', NONE + '_out', '--annotations', NONE], f'{NONE}: no train.json'),
    'scripts/build_vocab.py': (['--train', NONE + '.json', '--stats'], 'annotation file not found'),
    'scripts/convert_features.py': (['--to', 'npy', '--input', NONE + '.h5', '--output', NONE + '_npy'],
                                    'hdf5 file not found'),
    'scripts/convert_wsdec_checkpoint.py': (['--input', NONE + '.ckp', '--output', NONE + '.pt'], NONE + '.ckp'),
    'scripts/convert_ilcacm_checkpoint.py': (['--input', NONE + '.safetensors', '--output', NONE + '.pt'], NONE),
    'scripts/extract_features.py': (['--videos', NONE, '--out', NONE + '_out', '--features', 'clip'], NONE),
    'scripts/caption_video.py': ([NONE + '.mp4', '--checkpoint', NONE + '.pt'], 'no such video file or folder'),
    'scripts/make_report.py': (['--run', NONE], NONE),
    'scripts/video_reliance.py': (['--checkpoint', NONE + '.pt'], 'checkpoint file not found'),
    'scripts/caption_headroom.py': (['--submission', NONE + '.json', '--references', NONE + '.json', '--out', NONE + '_out'],
                                    f'{NONE}.json: submission file not found'),
    'scripts/reproduce_tables.py': (['--only', 'wsdec/nope', '--dry-run'], "unknown experiment id(s) ['wsdec/nope']"),
}


def _run(script, argv):
    return subprocess.run([sys.executable, str(REPO / script), *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope='module')
def outcomes():
    with ThreadPoolExecutor(2) as pool:
        done = pool.map(lambda item: (item[0], _run(item[0], item[1][0])), CASES.items())
        return dict(done)


@pytest.mark.parametrize('script', sorted(CASES))
def test_expected_errors_are_one_line_with_exit_status_2(outcomes, script):
    done, fragment = outcomes[script], CASES[script][1]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith('error: ') and 'Traceback' not in done.stderr, done.stderr[-2000:]
    assert fragment in lines[0]


def test_debug_shows_the_traceback():
    done = _run('eval_script/evaluate.py', ['--checkpoint', NONE + '.pt', '--debug'])
    assert done.returncode == 1 and 'Traceback' in done.stderr and 'RunFolderError' in done.stderr


@pytest.fixture(scope='module')
def helps():
    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(lambda script: (script, _run(script, ['--help'])), sorted(CASES)))


@pytest.mark.parametrize('script', sorted(CASES))
def test_help_shows_a_default_for_every_flag(helps, script):
    done = helps[script]
    assert done.returncode == 0
    options = re.findall(r'^\s{2}(-{1,2}[\w-]+)(.*?)(?=^\s{2}-|\Z)', done.stdout, re.M | re.S)
    assert options
    for flag, text in options:
        if flag in ('-h', '--help'):
            continue
        assert 'default' in text or '(required)' in text, f'{script} {flag}: {text.strip()[:120]}'
    assert '_' not in ''.join(flag for flag, _ in options).replace('--', '')   # kebab-case only
