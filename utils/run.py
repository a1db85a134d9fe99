"""Run folders, the one checkpoint format, the one resume path, devices (DESIGN.md "Data flow").

A training script does, in this order (utils/engine.py runs the loop):

    with Run(args, kind='wsdec_final') as run:      # checks runs/<run-name>/ and locks it; creates nothing yet
        ... data, models, optimisers ...             # a failure here leaves no run folder behind
        state = run.resume_state()                   # --resume: the newest intact checkpoint, else None
        engine.fit(run, ...)                         # run.start(): folder, config.json, log.jsonl, TensorBoard

Run folder `runs/<run-name>/`: `config.json` (the parsed flags + `kind`), `log.jsonl` (one JSON line per
`run.log`), `tensorboard/`, `checkpoints/{last,epoch_NNN}.pt`, `predictions/`, `metrics/`.

* Existing-run protection: a folder that already holds a `config.json` is refused unless `--resume`; `--resume`
  needs that folder and a config that differs at most in `RESUMABLE_CHANGES` (e.g. a larger `--epochs`).
* One process per run folder: `Run` takes an exclusive lock file `runs/.<run-name>.lock` (created with O_EXCL,
  holding the owner's pid and host) and removes it on exit; a second process is refused. A lock left by a
  process that no longer exists is reported; `--clear-stale-lock` removes it.
* Epochs count from 0; the checkpoint of epoch `e` is saved after epoch `e` ends, a resumed run starts at `e + 1`,
  and `log.jsonl` / TensorBoard drop what was logged after the checkpoint's step (no doubled curves).
* A damaged checkpoint is named with the newest intact `epoch_NNN.pt` to `--resume-from`; temporary files left
  by a write that was killed are removed when the run starts.

Checkpoint (`make_checkpoint`, format 2): `{'format', 'model': {part: state_dict}, 'optimizer': {name: sd},
'scheduler': {name: sd}, 'epoch', 'step', 'config', 'rng': [state per process], 'kind', ...extra}` of plain
tensors and JSON-able values, read with `torch.load(weights_only=True)`. `upgrade_checkpoint` reads the
earlier layouts (ILCACM's single model, WSDEC's hand-written schedule) in memory.
"""
import atexit
import contextlib
import datetime
import json
import os
import shutil
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from utils.checkpoint import atomic_path, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from utils.distributed import all_gather_object, barrier, get_rank, get_world_size, is_main_process, unwrap
from utils.features import write_skipped_videos
from utils.paths import video_id_problem

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_FORMAT = 2

# Flags that may change between a run and its --resume continuation: they do not alter what is learnt
# (epochs only extends the schedule; device changes only float rounding).
RESUMABLE_CHANGES = ('resume', 'resume_from', 'clear_stale_lock', 'quiet', 'epochs', 'num_workers', 'device',
                     'keep_checkpoints', 'debug')

# Flags added after runs had been made, with the value every earlier run had without the flag (the original's
# behaviour): a run whose config.json lacks one resumes when the flag keeps that value.
IMPLIED_BY_EARLIER_RUNS = {'pretrain_segment': 'whole-video', 'pseudo_label_ties': 'first', 'diversity_warmup': 0}


class RunFolderError(ValueError):
    """The run folder conflicts with the request (exists without --resume, locked, damaged checkpoint...)."""


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


# ------------------------------------------------------------------------------------------------ the lock
def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """`runs/.<name>.lock`: created with O_EXCL, holds the owner's pid and host; removed by `release`."""

    def __init__(self, run_dir: Path):
        self.path = run_dir.parent / f'.{run_dir.name}.lock'
        self.held = False

    def _owner(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self, run_dir: Path, clear_stale: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._refuse_or_clear(run_dir, clear_stale)
                continue
            with os.fdopen(fd, 'w') as f:
                json.dump({'pid': os.getpid(), 'host': socket.gethostname(), 'argv': sys.argv,
                           'started': datetime.datetime.now().isoformat(timespec='seconds')}, f)
            self.held = True
            atexit.register(self.release)
            return
        raise RunFolderError(f"run folder {run_dir}: could not take the lock {self.path}")

    def _refuse_or_clear(self, run_dir: Path, clear_stale: bool) -> None:
        owner = self._owner()
        pid, host = owner.get('pid'), owner.get('host')
        here = host == socket.gethostname()
        if isinstance(pid, int) and here and _process_alive(pid):
            raise RunFolderError(f"run folder {run_dir} is in use by process {pid} (started "
                                 f"{owner.get('started', '?')}; lock {self.path}); wait for it to end or choose "
                                 f"another --run-name")
        if not clear_stale:
            who = f"process {pid} on {host}" if pid else "an unknown process"
            state = 'no longer exists' if here and pid else 'cannot be checked from this machine'
            raise RunFolderError(f"run folder {run_dir}: stale lock {self.path} left by {who}, which {state}; "
                                 f"pass --clear-stale-lock to remove it")
        print(f"removing the stale lock {self.path} (process {pid} on {host})", file=sys.stderr)
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


# ------------------------------------------------------------------------------------------------ the run
class Run:
    """One run folder. Every process may call every method; only the main process writes."""

    def __init__(self, args, kind: str):
        self.args, self.kind = args, kind
        self.config = run_config(args, kind)
        problem = video_id_problem(args.run_name, suffix='')
        if problem:  # a name such as ../x or /x would put the run folder outside --runs-dir
            raise RunFolderError(f"--run-name {args.run_name!r} cannot be a folder of --runs-dir {args.runs_dir}: "
                                 f"{problem}")
        self.dir = Path(args.runs_dir) / args.run_name
        self.checkpoints_dir = self.dir / 'checkpoints'
        self.predictions_dir = self.dir / 'predictions'
        self.metrics_dir = self.dir / 'metrics'
        self.is_main = is_main_process()
        self.started = False
        self.resume_step = None
        self._skipped = []
        self._log_file = self._writer = None
        self._lock = RunLock(self.dir)
        if self.is_main:
            self._lock.acquire(self.dir, getattr(args, 'clear_stale_lock', False))
        try:
            self._check_folder()
        except BaseException:
            self._lock.release()
            raise
        barrier()  # every process has checked the folder before the main process creates it

    def _check_folder(self) -> None:
        config_path = self.dir / 'config.json'
        if not getattr(self.args, 'resume', False):
            if config_path.exists():
                raise RunFolderError(f"run folder {self.dir} already holds a run ({config_path}); pass "
                                     f"--resume to continue it, or choose a new --run-name")
            return
        if not config_path.exists():
            raise RunFolderError(f"--resume: {config_path} not found, there is no run '{self.args.run_name}' "
                                 f"in {self.dir.parent} to continue (start it without --resume)")
        saved = json.loads(config_path.read_text())
        saved = {**{k: v for k, v in IMPLIED_BY_EARLIER_RUNS.items() if k in self.config}, **saved}
        changed = sorted(k for k in saved.keys() | self.config.keys()
                         if k not in RESUMABLE_CHANGES and saved.get(k) != self.config.get(k))
        if changed:
            diff = ', '.join(f'{k}: {saved.get(k)!r} -> {self.config.get(k)!r}' for k in changed)
            raise RunFolderError(f"--resume: the flags differ from {config_path} ({diff}); only "
                                 f"{', '.join(RESUMABLE_CHANGES)} may change when resuming. Use a new --run-name")

    def start(self) -> 'Run':
        """Create the folder (after setup succeeded): config.json, log.jsonl (cut to the resumed step),
        TensorBoard; remove temporary files of interrupted writes. Idempotent."""
        if self.started:
            return self
        self.started = True
        if not self.is_main:
            return self
        from torch.utils.tensorboard import SummaryWriter  # slow import: main process only
        for sub in (self.checkpoints_dir, self.predictions_dir, self.metrics_dir):
            sub.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()
        with atomic_path(self.dir / 'config.json') as tmp:
            tmp.write_text(json.dumps(self.config, indent=2) + '\n')
        log_path = self.dir / 'log.jsonl'
        if self.resume_step is not None:
            self._truncate_log(log_path, self.resume_step)
        for record in self._skipped:
            write_skipped_videos(self.dir, *record)
        self._log_file = open(log_path, 'a')
        purge = None if self.resume_step is None else self.resume_step + 1
        self._writer = SummaryWriter(log_dir=str(self.dir / 'tensorboard'), purge_step=purge)
        return self

    def record_skipped(self, source, annotations, store) -> None:
        """The videos of `source` that `--missing-features skip` leaves out go to `skipped_videos.json` (written
        when the run folder is created, or now if it exists)."""
        if self.started and self.is_main:
            write_skipped_videos(self.dir, source, annotations, store)
        else:
            self._skipped.append((source, annotations, store))

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of `atomic_path` (`.<name>.<pid>.tmp`): the lock is held, so none is being written."""
        stale = sorted(p for d in (self.dir, self.checkpoints_dir, self.predictions_dir, self.metrics_dir)
                       for p in d.glob('.*.tmp'))
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            print(f"removed {len(stale)} temporary file(s) of an interrupted write: "
                  + ', '.join(str(p) for p in stale), file=sys.stderr)

    @staticmethod
    def _truncate_log(log_path: Path, step: int) -> None:
        """Keep the log lines up to the resumed checkpoint's `step`: the continued run logs the rest again."""
        if not log_path.exists():
            return
        lines = log_path.read_text().splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line).get('step', 0) <= step]
        if len(kept) != len(lines):
            with atomic_path(log_path) as tmp:
                tmp.write_text(''.join(line + '\n' for line in kept))
            print(f"{log_path}: dropped {len(lines) - len(kept)} line(s) logged after step {step} (the resumed "
                  f"checkpoint); they are logged again", file=sys.stderr)

    def log(self, step: int, scalars: dict, split: str = 'train') -> None:
        """Append `{'step', 'split', <scalars>}` to log.jsonl and the scalars to TensorBoard as `split/name`."""
        if not self.is_main:
            return
        self.start()
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
        self.start()
        epoch_path = self.checkpoints_dir / f'epoch_{epoch:03d}.pt'
        save_checkpoint(epoch_path, state)
        with atomic_path(self.checkpoints_dir / 'last.pt') as tmp:
            shutil.copyfile(epoch_path, tmp)
        keep = getattr(self.args, 'keep_checkpoints', 0)
        if keep > 0:
            for old in sorted(self.checkpoints_dir.glob('epoch_*.pt'))[:-keep]:
                old.unlink()

    def saved_checkpoints(self) -> str:
        """What a stopped run leaves behind, in words (for the non-finite-loss message)."""
        epochs = sorted(self.checkpoints_dir.glob('epoch_*.pt'))
        if not epochs:
            return 'no checkpoint was saved yet'
        return f"the newest checkpoint is {epochs[-1]} (also checkpoints/last.pt); nothing after it was saved"

    def resume_state(self) -> dict | None:
        """The checkpoint to continue from under --resume (`--resume-from`, else checkpoints/last.pt), checked to
        be intact and of this run's kind; None without --resume."""
        if not getattr(self.args, 'resume', False):
            return None
        path = self._resume_path()
        try:
            state = load_checkpoint(path)
        except Exception as error:  # noqa: BLE001 (a truncated or corrupt file; reported with a way out)
            raise RunFolderError(f"--resume: {path} is damaged ({type(error).__name__}: "
                                 f"{' '.join(str(error).split())[:200]}); {self._intact_hint(path)}") from None
        state = upgrade_checkpoint(state, path)
        if state.get('kind') != self.kind:
            raise RunFolderError(f"--resume: {path} is a '{state.get('kind')}' checkpoint, "
                                 f"this script trains '{self.kind}'")
        self.resume_step = int(state['step'])
        return state

    def _resume_path(self) -> Path:
        given = getattr(self.args, 'resume_from', None)
        if given is None:
            last = self.checkpoints_dir / 'last.pt'
            if not last.exists():
                raise RunFolderError(f"--resume: {last} not found; the run saved no checkpoint yet "
                                     f"(delete {self.dir} and start again without --resume)")
            return last
        path = Path(given)
        if not path.is_absolute() and not path.exists():
            path = self.dir / given
        if not path.resolve().is_relative_to(self.checkpoints_dir.resolve()):
            raise RunFolderError(f"--resume-from {given}: not a checkpoint of this run (it must lie in "
                                 f"{self.checkpoints_dir})")
        if not path.is_file():
            raise RunFolderError(f"--resume-from {given}: {path} not found")
        return path

    def _intact_hint(self, damaged: Path) -> str:
        for path in sorted(self.checkpoints_dir.glob('epoch_*.pt'), reverse=True):
            if path.resolve() == damaged.resolve():
                continue
            try:
                state = load_checkpoint(path)
            except Exception:  # noqa: BLE001 (damaged too: try the previous one)
                continue
            return (f"the newest intact checkpoint is {path} (epoch {state.get('epoch')}, step {state.get('step')}): "
                    f"continue from it with --resume --resume-from {path}")
        return f"no intact checkpoint in {self.checkpoints_dir}: delete {self.dir} and start again"

    def close(self) -> None:
        if self.is_main:
            if self._log_file is not None:
                self._log_file.close()
                self._writer.close()
                self._log_file = self._writer = None
            self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------------------- checkpoints
def make_checkpoint(models: dict, optimizers: dict, schedulers: dict, epoch: int, step: int, config: dict,
                    kind: str, **extra) -> dict:
    """The one checkpoint format (module docstring). `rng` lists every process's RNG state by rank, so under DDP
    this must be called on every process (it gathers them); only the main one saves it."""
    return {'format': CHECKPOINT_FORMAT,
            'model': {name: unwrap(m).state_dict() for name, m in models.items()},
            'optimizer': {name: o.state_dict() for name, o in optimizers.items()},
            'scheduler': {name: s.state_dict() for name, s in schedulers.items()},
            'epoch': epoch, 'step': step, 'config': config,
            'rng': all_gather_object(capture_rng_state()), 'kind': kind, **extra}


def restore_training_state(state: dict, models: dict, optimizers: dict, schedulers: dict) -> tuple[int, int]:
    """Load a checkpoint's models, optimisers, schedulers and this process's RNG states; return (the epoch after
    the checkpoint's, its global step). The one resume path of every training script."""
    for name, model in models.items():
        unwrap(model).load_state_dict(state['model'][name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state['optimizer'][name])
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(state['scheduler'][name])
    rng, world = state['rng'], get_world_size()
    if len(rng) != world:
        warnings.warn(f"resuming a run saved by {len(rng)} processes with {world}: the random streams "
                      f"(dropout, sampling) will not continue exactly")
    restore_rng_state(rng[get_rank() % len(rng)])
    return state['epoch'] + 1, state['step']


def _legacy_wsdec_schedule(old: dict, optimizer_state: dict) -> dict:
    """WSDEC's hand-written `{'milestones', 'gamma', 'last_epoch'}` as the state of the LambdaLR that
    models/wsdec/steps.py `epoch_schedule` builds (lr = initial_lr · gamma^bisect_right(milestones, epoch))."""
    import bisect
    last = int(old['last_epoch'])
    factor = old['gamma'] ** bisect.bisect_right(sorted(old['milestones']), last)
    base = [group['initial_lr'] for group in optimizer_state['param_groups']]
    return {'base_lrs': base, 'last_epoch': last, '_step_count': last + 1, '_is_initial': False,
            '_get_lr_called_within_step': False, '_last_lr': [b * factor for b in base],
            'lr_lambdas': [None] * len(base)}


def upgrade_checkpoint(state: dict, path) -> dict:
    """A checkpoint of an earlier suite version in the current format, in memory (said on stderr when its layout
    changes: ILCACM's single model, optimiser and scheduler; WSDEC's hand-written schedule)."""
    if not isinstance(state, dict) or state.get('format') == CHECKPOINT_FORMAT or 'model' not in state:
        return state
    state = {**state, 'format': CHECKPOINT_FORMAT}
    if all(torch.is_tensor(v) for v in state['model'].values()):  # ILCACM: one model, optimiser, scheduler
        state['model'] = {'ilcacm': state['model']}
        state['optimizer'] = {'adamw': state['optimizer']} if state.get('optimizer') else {}
        state['scheduler'] = {'cosine': state['scheduler']} if state.get('scheduler') else {}
    elif isinstance(state.get('scheduler'), dict) and 'milestones' in state['scheduler']:
        state['scheduler'] = {name: _legacy_wsdec_schedule(state['scheduler'], opt)
                              for name, opt in state['optimizer'].items()}
    else:
        return state
    print(f"note: {path} is in an earlier checkpoint layout; read in the current one (in memory)", file=sys.stderr)
    return state


def read_checkpoint(path) -> dict:
    """A suite checkpoint (any layout, upgraded) or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"{path}: checkpoint file not found")
    try:
        state = load_checkpoint(path)
    except Exception as error:  # noqa: BLE001 (truncated, corrupt, or holding code: refused by weights_only)
        raise RunFolderError(f"{path}: not a readable checkpoint of this suite ({type(error).__name__}: "
                             f"{' '.join(str(error).split())[:200]})") from None
    if not isinstance(state, dict) or 'kind' not in state or 'config' not in state:
        raise RunFolderError(f"{path}: not a checkpoint of this suite (needs the fields 'kind' and 'config')")
    return upgrade_checkpoint(state, path)


# ----------------------------------------------------------------------------------------------- devices
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
