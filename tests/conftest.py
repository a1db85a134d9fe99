"""Shared fixtures: a tiny synthetic data root, and the project's shared folder of real data."""
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
