"""Shared fixtures: a tiny synthetic data root, and the project's shared folder of real data."""
import os
import shutil
import sys
from pathlib import Path

import pytest

from utils.synthetic import make_synthetic_dataset


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
    """DataPaths of the tiny synthetic dataset (24 train / 8 val videos, features included), seed 0."""
    return make_synthetic_dataset(tmp_path_factory.mktemp('tiny_data'), size='tiny', seed=0)


@pytest.fixture(scope='session')
def shared_dir():
    """The `shared` folder beside the repository root (real annotation files, specs); skip when absent."""
    shared = Path(__file__).resolve().parents[1].parent / 'shared'
    if not shared.is_dir():
        pytest.skip(f'{shared} not found: real-data tests need the shared folder beside the repository')
    return shared


@pytest.fixture(scope='module')
def single_thread():
    """One intra-op thread for a module of tiny-model tests: they gain nothing from threads, which only
    contend on a shared 2-core machine (a tiny dense-captioning run: 0.7 s with 1 thread, 15 s with 2 under load).
    Use with `pytestmark = pytest.mark.usefixtures('single_thread')`."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def standalone_scorer(tmp_path):
    """A copy of `third_party/densevid_eval` in a fresh folder, and an environment whose PYTHONPATH holds only
    the copy's parent: `(command prefix of its CLI, env)`. The prefix runs `python -m densevid_eval` with the
    suite's packages (`utils`, `models`, `third_party`) made unimportable, so any import of them fails."""
    parent = tmp_path / 'elsewhere'
    shutil.copytree(Path(__file__).resolve().parents[1] / 'third_party' / 'densevid_eval', parent / 'densevid_eval',
                    ignore=shutil.ignore_patterns('__pycache__'))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['PYTHONPATH'] = str(parent)
    blocked = ("import runpy, sys; sys.modules.update(utils=None, models=None, third_party=None); "
               "runpy.run_module('densevid_eval', run_name='__main__', alter_sys=True)")
    return [sys.executable, '-c', blocked], env


def pytest_collection_modifyitems(config, items):
    """Tests marked `java` (PTB tokenizer / METEOR 1.5) are skipped, with the reason, when no Java runtime is found."""
    import shutil
    if shutil.which('java') is not None:
        return
    skip = pytest.mark.skip(reason='no Java runtime (needed by the PTB tokenizer and METEOR 1.5; see scripts/setup.sh)')
    for item in items:
        if 'java' in item.keywords:
            item.add_marker(skip)
