"""Checkpoint files, random-number-generator states and seeding (DESIGN.md "Checkpoints").

A checkpoint is a dict of plain tensors and JSON-able values
`{'model', 'optimizer', 'scheduler', 'epoch', 'step', 'config', 'rng', 'kind'}` (built by
`utils.run.make_checkpoint`), written atomically and read back with `torch.load(weights_only=True)`,
so loading a checkpoint never executes pickled code.
"""
import contextlib
import os
import random
from pathlib import Path

import numpy as np
import torch


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: training stops without saving (DESIGN.md "Errors")."""


def check_finite(loss: torch.Tensor, step: int, saved: str | None = None) -> None:
    """Raise `NonFiniteLossError` naming `step` if `loss` holds a NaN or an infinity; `saved` says what the
    run has on disk (`Run.saved_checkpoints`).

    Under DDP call it on the all-reduced loss so that every process stops at the same step.
    """
    if not bool(torch.isfinite(loss.detach()).all()):
        value = loss.detach().float().flatten()[:4].tolist()
        raise NonFiniteLossError(f"non-finite loss {value} at step {step}: training stopped; "
                                 f"{saved or 'nothing was saved for this step'}")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it replaces `path`, on failure it is removed.

    Readers therefore see either the old complete file or the new complete file, never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(path, obj: dict) -> None:
    """Write `obj` to `path` atomically (temporary file + `os.replace`)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path, map_location='cpu') -> dict:
    """Read a checkpoint written by `save_checkpoint`, allowing only tensors and plain values."""
    return torch.load(path, map_location=map_location, weights_only=True)


def capture_rng_state() -> dict:
    """The states of Python's `random`, NumPy's global generator, torch CPU and the current CUDA device,
    as tensors and numbers only (so the checkpoint stays `weights_only`-loadable)."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        'python': {'version': py_version, 'state': torch.tensor(py_internal, dtype=torch.int64),
                   'gauss_next': py_gauss},
        'numpy': {'name': np_name, 'keys': torch.from_numpy(np_keys.astype(np.int64)),
                  'pos': int(np_pos), 'has_gauss': int(np_has_gauss), 'cached_gaussian': float(np_gauss)},
        'torch': torch.get_rng_state(),
        'cuda': torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }


def restore_rng_state(state: dict) -> None:
    """Inverse of `capture_rng_state`. A CUDA state is restored only when CUDA is available."""
    py = state['python']
    random.setstate((py['version'], tuple(py['state'].tolist()), py['gauss_next']))
    npy = state['numpy']
    np.random.set_state((npy['name'], npy['keys'].numpy().astype(np.uint32), npy['pos'],
                         npy['has_gauss'], npy['cached_gaussian']))
    torch.set_rng_state(state['torch'])
    if state['cuda'] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device).

    Under DDP pass `seed + rank` (as DETR does) so dropout masks differ between processes; the model's
    initial weights still agree because DDP broadcasts rank 0's parameters.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: seed Python and NumPy from the per-worker torch seed.

    torch already gives each worker `base_seed + worker_id`; `base_seed` comes from the loader's
    generator, which `utils.distributed.set_epoch` reseeds per (seed, rank, epoch).
    """
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)
