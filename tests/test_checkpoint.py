"""utils/checkpoint.py: atomic weights-only checkpoints, RNG capture/restore, seeding, non-finite losses."""
import math
import pickle
import random

import numpy as np
import pytest
import torch

from utils.checkpoint import (NonFiniteLossError, capture_rng_state, check_finite, load_checkpoint,
                              restore_rng_state, save_checkpoint, seed_everything)


class Unpicklable:
    def __reduce__(self):
        raise pickle.PicklingError('refusing to pickle')


class Arbitrary:
    """A class that weights_only loading must refuse."""


def _draws():
    return (random.random(), random.gauss(0, 1), float(np.random.rand()), float(np.random.randn()),
            torch.rand(3).tolist(), torch.randn(2).tolist())


def test_save_then_load_roundtrip(tmp_path):
    path = tmp_path / 'ck' / 'a.pt'
    obj = {'w': torch.arange(6.).view(2, 3), 'epoch': 3, 'name': 'x', 'lst': [1, 2.5, None], 'nested': {'k': 1}}
    save_checkpoint(path, obj)
    back = load_checkpoint(path)
    assert torch.equal(back['w'], obj['w']) and back['epoch'] == 3 and back['lst'] == [1, 2.5, None]
    assert back['nested'] == {'k': 1} and back['name'] == 'x'
    assert sorted(p.name for p in path.parent.iterdir()) == ['a.pt']


def test_failed_save_keeps_old_file_and_leaves_no_tmp(tmp_path):
    path = tmp_path / 'last.pt'
    save_checkpoint(path, {'step': 1, 'w': torch.ones(3)})
    with pytest.raises(pickle.PicklingError):
        save_checkpoint(path, {'step': 2, 'w': torch.zeros(100_000), 'bad': Unpicklable()})
    assert load_checkpoint(path)['step'] == 1
    assert [p.name for p in tmp_path.iterdir()] == ['last.pt']
    # a failed first save leaves nothing at all
    with pytest.raises(pickle.PicklingError):
        save_checkpoint(tmp_path / 'new.pt', {'bad': Unpicklable()})
    assert [p.name for p in tmp_path.iterdir()] == ['last.pt']


def test_load_is_weights_only(tmp_path):
    path = tmp_path / 'evil.pt'
    torch.save({'obj': Arbitrary()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)


def test_rng_state_roundtrip_through_weights_only_file(tmp_path):
    seed_everything(5)
    _draws()
    random.gauss(0, 1)  # leave a cached gaussian in Python's generator
    np.random.randn()   # and possibly in NumPy's
    save_checkpoint(tmp_path / 'rng.pt', capture_rng_state())
    expected = _draws()
    _draws()
    restore_rng_state(torch.load(tmp_path / 'rng.pt', weights_only=True))
    assert _draws() == expected


def test_rng_state_holds_only_plain_values():
    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        else:
            assert x is None or isinstance(x, (torch.Tensor, int, float, str)), type(x)
    state = capture_rng_state()
    walk(state)
    assert set(state) == {'python', 'numpy', 'torch', 'cuda'}
    assert state['python']['state'].shape == (625,) and state['numpy']['keys'].shape == (624,)


def test_seed_everything_is_reproducible():
    seed_everything(123)
    a = _draws()
    seed_everything(123)
    assert _draws() == a
    seed_everything(124)
    assert _draws() != a


@pytest.mark.parametrize('bad', [math.nan, math.inf, -math.inf])
def test_check_finite_raises_with_step(bad):
    with pytest.raises(NonFiniteLossError) as err:
        check_finite(torch.tensor([1.0, bad]), step=417)
    message = str(err.value)
    assert 'step 417' in message and 'nothing was saved for this step' in message
    with pytest.raises(NonFiniteLossError, match='step 3: training stopped; no checkpoint was saved yet'):
        check_finite(torch.tensor(bad), step=3, saved='no checkpoint was saved yet')


def test_check_finite_accepts_finite_loss():
    check_finite(torch.tensor(3.5, requires_grad=True) * 2, step=1)
