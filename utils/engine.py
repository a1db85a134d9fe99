"""The epoch loop of every training script (DETR's `engine.py` shape; issue 15).

    fit(run, TrainState(models, optimizers, schedulers), epochs, plan, config=..., resume=run.resume_state())

For each epoch from the first one not yet done (`--resume` continues exactly where the checkpoint stopped):
`plan(epoch)` says what the epoch is (`EpochPlan`: its batches, the step function that turns one batch into one
update and returns its metrics, the constant scalars to log, a label). Every step is logged to `log.jsonl` and
TensorBoard (tqdm bar on a terminal), the metrics named in `finite` are checked (a NaN or an infinity stops the run,
saying what is on disk), per-epoch schedulers step, and a checkpoint is saved (`utils.run.make_checkpoint`).
"""
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from utils.checkpoint import check_finite
from utils.run import make_checkpoint, restore_training_state


@dataclass
class TrainState:
    """What a checkpoint holds and a resume restores: named models, optimisers and schedulers.
    `epoch_schedulers`: step the schedulers after every epoch (WSDEC); otherwise the step function does."""
    models: dict
    optimizers: dict
    schedulers: dict = field(default_factory=dict)
    epoch_schedulers: bool = False


@dataclass
class EpochPlan:
    """One epoch: `step(item) -> metrics` for each item of `batches` (a batch, or a group of micro-batches)."""
    batches: Iterable
    step: Callable[[Any], dict]
    desc: str
    total: int | None = None
    scalars: dict = field(default_factory=dict)     # logged with every step (lr, phase)
    finite: tuple = ('loss',)                       # metric names (or prefixes) that must stay finite
    max_steps: int | None = None                    # quick runs: stop the epoch early
    label: str = ''                                 # shown in the epoch's summary line
    end: Callable[[], dict | None] | None = None    # after the batches, before the checkpoint


def _check(metrics: dict, names: tuple, step: int, run) -> None:
    for key, value in metrics.items():
        if key.startswith(names):
            check_finite(torch.as_tensor(value), step, run.saved_checkpoints())


def run_epoch(run, plan: EpochPlan, epoch: int, step: int) -> tuple[int, dict]:
    """Iterate one epoch; returns (global step, mean of each metric over the epoch's steps)."""
    totals, count = {}, 0
    for i, item in enumerate(run.progress(plan.batches, plan.desc, total=plan.total)):
        if plan.max_steps is not None and i >= plan.max_steps:
            break
        metrics = plan.step(item)
        step += 1
        _check(metrics, plan.finite, step, run)
        metrics = {k: float(v) for k, v in metrics.items()}
        run.log(step, {**metrics, **plan.scalars, 'epoch': epoch})
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + v
        count += 1
    return step, {k: v / max(count, 1) for k, v in totals.items()}


def fit(run, state: TrainState, epochs: int, plan: Callable[[int], EpochPlan], *, config: dict,
        resume: dict | None = None, extra: Callable[[int], dict] | None = None,
        on_saved: Callable[[int, dict], None] | None = None) -> int:
    """Train epochs [first not done, epochs); returns the global step. `extra(epoch)` adds fields to the epoch's
    checkpoint; `on_saved(epoch, checkpoint)` runs after it is written."""
    start_epoch, step = (0, 0) if resume is None else restore_training_state(
        resume, state.models, state.optimizers, state.schedulers)
    run.start()
    for epoch in range(start_epoch, epochs):
        epoch_plan = plan(epoch)
        started = time.perf_counter()
        step, means = run_epoch(run, epoch_plan, epoch, step)
        summary = {**epoch_plan.scalars, **means, **((epoch_plan.end() if epoch_plan.end else None) or {})}
        if state.epoch_schedulers:
            with warnings.catch_warnings():  # an optimiser idle for a phase (WSDEC) still follows the schedule
                warnings.filterwarnings('ignore', message='Detected call of `lr_scheduler.step', category=UserWarning)
                for scheduler in state.schedulers.values():
                    scheduler.step()
        checkpoint = make_checkpoint(state.models, state.optimizers, state.schedulers, epoch, step, config,
                                     run.kind, **(extra(epoch) if extra else {}))
        run.save_checkpoint(checkpoint, epoch)
        if on_saved:
            on_saved(epoch, checkpoint)
        if run.is_main and not run.args.quiet:
            values = ', '.join(f'{k} {v:.4f}' for k, v in summary.items() if k != 'epoch')
            print(f"epoch {epoch}{epoch_plan.label} step {step}: {values} "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)
    return step
