"""Run folders, common command-line flags, devices and resuming (DESIGN.md "Data flow").

A training script does, in this order (DETR's main.py shape; each experiment keeps its own loop):

    args = parser.parse_args()                       # parser built with add_common_args(...)
    init_distributed(args.device); seed_everything(args.seed + get_rank())
    run = Run(args, kind='wsdec_final')              # runs/<run-name>/
    model, optimizer, scheduler = ...
    start_epoch, step = resume_or_start(run, model, optimizer, scheduler)
    for epoch in range(start_epoch, args.epochs):
        set_epoch(loader, epoch)
        for batch in run.progress(loader, f'epoch {epoch}'):
            ...; check_finite(loss, step); run.log(step, {'loss': loss})
        run.save_checkpoint(make_checkpoint(model, optimizer, scheduler, epoch, step, run.config, run.kind), epoch)
    run.close()

Run folder `runs/<run-name>/`: `config.json` (the parsed flags + `kind`), `log.jsonl` (one JSON line per
`run.log`), `tensorboard/`, `checkpoints/{last,epoch_NNN}.pt`, `predictions/`, `metrics/`.
Existing-run protection: starting a run whose folder already holds a `config.json` is an error unless
`--resume` is given; `--resume` requires that folder and a config that differs at most in
`RESUMABLE_CHANGES` (e.g. a larger `--epochs` to extend training). Epochs count from 0; the
checkpoint of epoch `e` is saved after epoch `e` ends and a resumed run starts at epoch `e + 1`.
"""
import contextlib
import json
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from utils.checkpoint import (NonFiniteLossError, atomic_path, capture_rng_state, check_finite,
                              load_checkpoint, restore_rng_state, save_checkpoint, seed_everything,
                              seed_worker)
from utils.distributed import all_gather_object, barrier, get_rank, get_world_size, is_main_process, unwrap

# Scripts may import everything run-related from here.
__all__ = ['DataPaths', 'data_paths', 'add_common_args', 'Run', 'RunFolderError', 'DeviceError',
           'RESUMABLE_CHANGES', 'make_checkpoint', 'resume_or_start', 'restore_training_state', 'resolve_device',
           'autocast',
           'NonFiniteLossError', 'check_finite', 'seed_everything', 'seed_worker']

REPO_ROOT = Path(__file__).resolve().parents[1]

# Flags that may change between a run and its --resume continuation: they do not alter what is learnt
# (epochs only extends the schedule; device changes only float rounding).
RESUMABLE_CHANGES = ('resume', 'quiet', 'epochs', 'num_workers', 'device', 'keep_checkpoints')


class RunFolderError(ValueError):
    """The run folder conflicts with the request (exists without --resume, or --resume finds nothing)."""


class DeviceError(ValueError):
    """`--device` names a device that this machine does not have."""


@dataclass
class DataPaths:
    root: Path
    train: Path
    val_1: Path
    val_2: Path
    c3d: Path
    clip_dir: Path


def data_paths(data_root: str | None) -> DataPaths:
    """Files of a data root `DIR/captions/{train,val_1,val_2}.json`, `DIR/features/c3d.hdf5`,
    `DIR/features/clip/`; `None` gives the ActivityNet layout under the repository's `data/`."""
    if data_root is None:
        data = REPO_ROOT / 'data'
        captions = data / 'densecap'
        return DataPaths(data, captions / 'train.json', captions / 'val_1.json', captions / 'val_2.json',
                         data / 'anet_v1.3.c3d.hdf5', data / 'clip_features')
    root = Path(data_root)
    captions, features = root / 'captions', root / 'features'
    return DataPaths(root, captions / 'train.json', captions / 'val_1.json', captions / 'val_2.json',
                     features / 'c3d.hdf5', features / 'clip')


def add_common_args(parser, *, epochs: int, batch_size: int, seed: int, run_name: str):
    """Add the flags every training script shares; the keyword values are the experiment's defaults."""
    parser.add_argument('--data-root', default=None,
                        help='data root with captions/ and features/ (default: ActivityNet files in data/)')
    parser.add_argument('--run-name', default=run_name, help='run folder name under --runs-dir')
    parser.add_argument('--runs-dir', default='runs', help='folder holding the run folders')
    parser.add_argument('--epochs', type=int, default=epochs)
    parser.add_argument('--batch-size', type=int, default=batch_size,
                        help='global batch size (split between torchrun processes)')
    parser.add_argument('--seed', type=int, default=seed)
    parser.add_argument('--device', default='auto', help="'auto' (cuda if available, else cpu), cpu, cuda, cuda:N")
    parser.add_argument('--resume', action='store_true',
                        help='continue the run in runs/<run-name>/ from checkpoints/last.pt')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    parser.add_argument('--num-workers', type=int, default=0, help='DataLoader worker processes')
    parser.add_argument('--missing-features', choices=('error', 'skip'), default='error',
                        help='videos with annotations but no features: stop with an error, or skip them')
    parser.add_argument('--keep-checkpoints', type=int, default=0, metavar='K',
                        help='keep only the K newest checkpoints/epoch_NNN.pt (last.pt is always kept); '
                             '0 keeps every epoch, as the originals did')
    return parser


def _jsonable(value, key: str):
    """`value` as JSON types (paths become strings, tuples lists); anything else is an error."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, key) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f'{key}.{k}') for k, v in value.items()}
    raise TypeError(f"config value {key}={value!r} ({type(value).__name__}) is not JSON-able")


def run_config(args, kind: str) -> dict:
    """The resolved flags plus the run kind: what config.json and every checkpoint store."""
    return {**{k: _jsonable(v, k) for k, v in sorted(vars(args).items())}, 'kind': kind}


class Run:
    """One run folder. Every process may call every method; only the main process writes."""

    def __init__(self, args, kind: str):
        self.args, self.kind = args, kind
        self.config = run_config(args, kind)
        self.dir = Path(args.runs_dir) / args.run_name
        self.checkpoints_dir = self.dir / 'checkpoints'
        self.predictions_dir = self.dir / 'predictions'
        self.metrics_dir = self.dir / 'metrics'
        self.is_main = is_main_process()
        self._check_folder()
        barrier()  # every process has checked the folder before the main process creates it
        self._log_file = self._writer = None
        if self.is_main:
            self._create_folder()

    def _check_folder(self) -> None:
        config_path = self.dir / 'config.json'
        if not self.args.resume:
            if config_path.exists():
                raise RunFolderError(f"run folder {self.dir} already holds a run ({config_path}); pass "
                                     f"--resume to continue it, or choose a new --run-name")
            return
        if not config_path.exists():
            raise RunFolderError(f"--resume: {config_path} not found, there is no run '{self.args.run_name}' "
                                 f"in {self.dir.parent} to continue (start it without --resume)")
        saved = json.loads(config_path.read_text())
        changed = sorted(k for k in saved.keys() | self.config.keys()
                         if k not in RESUMABLE_CHANGES and saved.get(k) != self.config.get(k))
        if changed:
            diff = ', '.join(f'{k}: {saved.get(k)!r} -> {self.config.get(k)!r}' for k in changed)
            raise RunFolderError(f"--resume: the flags differ from {config_path} ({diff}); only "
                                 f"{', '.join(RESUMABLE_CHANGES)} may change when resuming. Use a new --run-name")

    def _create_folder(self) -> None:
        from torch.utils.tensorboard import SummaryWriter  # slow import: main process only
        for sub in (self.checkpoints_dir, self.predictions_dir, self.metrics_dir):
            sub.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.dir / 'config.json') as tmp:
            tmp.write_text(json.dumps(self.config, indent=2) + '\n')
        self._log_file = open(self.dir / 'log.jsonl', 'a')
        self._writer = SummaryWriter(log_dir=str(self.dir / 'tensorboard'))

    def log(self, step: int, scalars: dict, split: str = 'train') -> None:
        """Append `{'step', 'split', <scalars>}` to log.jsonl and the scalars to TensorBoard as `split/name`."""
        if not self.is_main:
            return
        values = {k: float(v.detach() if isinstance(v, torch.Tensor) else v) for k, v in scalars.items()}
        self._log_file.write(json.dumps({'step': step, 'split': split, **values}) + '\n')
        self._log_file.flush()
        for name, value in values.items():
            self._writer.add_scalar(f'{split}/{name}', value, step)

    def progress(self, iterable, desc: str, total: int | None = None):
        """A tqdm bar over `iterable`, shown only on the main process, on a terminal, without --quiet."""
        hidden = self.args.quiet or not self.is_main or not sys.stderr.isatty()
        return tqdm(iterable, desc=desc, total=total, disable=hidden, leave=False, dynamic_ncols=True)

    def save_checkpoint(self, state: dict, epoch: int) -> None:
        """Write `checkpoints/epoch_{epoch:03d}.pt` then `checkpoints/last.pt`, each atomically."""
        if not self.is_main:
            return
        epoch_path = self.checkpoints_dir / f'epoch_{epoch:03d}.pt'
        save_checkpoint(epoch_path, state)
        with atomic_path(self.checkpoints_dir / 'last.pt') as tmp:
            shutil.copyfile(epoch_path, tmp)
        keep = getattr(self.args, 'keep_checkpoints', 0)
        if keep > 0:
            for old in sorted(self.checkpoints_dir.glob('epoch_*.pt'))[:-keep]:
                old.unlink()

    def resume_state(self) -> dict | None:
        """The content of checkpoints/last.pt when --resume is given (checked to be of this run's kind), else None."""
        if not self.args.resume:
            return None
        last = self.checkpoints_dir / 'last.pt'
        if not last.exists():
            raise RunFolderError(f"--resume: {last} not found; the run saved no checkpoint yet "
                                 f"(delete {self.dir} and start again without --resume)")
        state = load_checkpoint(last)
        if state.get('kind') != self.kind:
            raise RunFolderError(f"--resume: {last} is a '{state.get('kind')}' checkpoint, "
                                 f"this script trains '{self.kind}'")
        return state

    def close(self) -> None:
        if self.is_main:
            self._log_file.close()
            self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_checkpoint(model, optimizer, scheduler, epoch: int, step: int, config: dict, kind: str) -> dict:
    """The checkpoint dict of DESIGN.md "Checkpoints". `rng` lists every process's RNG state by rank,
    so under DDP this must be called on every process (it gathers them); only the main one saves it."""
    return {
        'model': unwrap(model).state_dict(),
        'optimizer': optimizer.state_dict(),
        'scheduler': None if scheduler is None else scheduler.state_dict(),
        'epoch': epoch,
        'step': step,
        'config': config,
        'rng': all_gather_object(capture_rng_state()),
        'kind': kind,
    }


def resume_or_start(run: Run, model, optimizer, scheduler) -> tuple[int, int]:
    """Restore model, optimizer, scheduler and this process's RNG states from last.pt when --resume;
    return (first epoch to run, global step). Without --resume: (0, 0) and nothing changes."""
    state = run.resume_state()
    if state is None:
        return 0, 0
    return restore_training_state(state, model, optimizer, scheduler)


def restore_training_state(state: dict, model, optimizer, scheduler) -> tuple[int, int]:
    """Load a checkpoint's model, optimizer, scheduler and this process's RNG states; return (the epoch after
    the checkpoint's, its global step). Used by --resume and by starts from another run's checkpoint."""
    unwrap(model).load_state_dict(state['model'])
    optimizer.load_state_dict(state['optimizer'])
    if scheduler is not None:
        scheduler.load_state_dict(state['scheduler'])
    rng, world = state['rng'], get_world_size()
    if len(rng) != world:
        warnings.warn(f"resuming a run saved by {len(rng)} processes with {world}: the random streams "
                      f"(dropout, sampling) will not continue exactly")
    restore_rng_state(rng[get_rank() % len(rng)])
    return state['epoch'] + 1, state['step']


def resolve_device(arg: str) -> torch.device:
    """'auto' → this process's CUDA device when CUDA is available, else CPU; otherwise the named device."""
    if arg == 'auto':
        arg = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(arg)
    except RuntimeError as e:
        raise DeviceError(f"--device {arg!r} is not a device name (auto, cpu, cuda, cuda:N): {e}") from None
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {arg}: CUDA is not available on this machine (use --device cpu)")
        if device.index is None:
            device = torch.device('cuda', torch.cuda.current_device())
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA (DESIGN.md principle 4); a no-op context on CPU."""
    if device.type == 'cuda':
        return torch.autocast('cuda', dtype=torch.bfloat16)
    return contextlib.nullcontext()
