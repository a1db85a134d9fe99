"""The registry of every experiment of the suite: which runs produce which table row (spec wsdec §1, §4;
spec ilcacm §4-§6, §10.8; spec published_results §6).

Two layers:

* `STEPS`: one script invocation each (a training run, or an evaluation), identified by a base run name.
  A step reads the checkpoints of the steps it `needs` (e.g. `wsdec_final` reads `wsdec_cg_pretrain`'s), so a
  run is shared by every experiment that uses it and is never trained twice.
* `EXPERIMENTS`: one entry per row of the papers' tables (id = the published row id of `utils.published` where
  one exists): its label, paper table, training steps, evaluation step, and which metrics file of the
  evaluation's run folder fills which table row.

Commands are argv lists built from a `Profile`: `full` = the paper defaults of each script (real data under
`data/`, or `--data-root`), `quick` = tiny models and one or two epochs on the synthetic data, so that every row
runs end to end on 2 CPU cores. A step's run folder is `<runs_dir>/<prefix><step>_s<seed>` (prefix `quick_` /
`synthetic_` for the non-ActivityNet profiles, so profiles never reuse each other's runs).
"""
import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path

from utils.published import NOT_RECOVERED, row_ids


class RegistryError(ValueError):
    """An unknown experiment id, or an inconsistent registry."""


DENSE, LOCALIZATION = 'dense_captioning', 'sentence_localization'
DEFAULT_SEEDS = {'WSDEC': 233, 'ILCACM': 42}      # each original's seed (spec wsdec §4, ilcacm §4.1)
SYNTHETIC_SIZES = {'quick': 'tiny', 'full': 'anet'}


@dataclass(frozen=True)
class Profile:
    """How commands are built: `name` 'full' | 'quick', `dataset` 'anet' | 'synthetic'."""
    name: str = 'full'
    dataset: str = 'anet'
    data_root: str | None = None       # None: ActivityNet files under data/ (utils.run.data_paths)
    runs_dir: str = 'runs'
    python: str = sys.executable

    def __post_init__(self):
        if self.name not in ('full', 'quick'):
            raise RegistryError(f"profile {self.name!r}: expected 'full' or 'quick'")
        if self.dataset not in ('anet', 'synthetic'):
            raise RegistryError(f"dataset {self.dataset!r}: expected 'anet' or 'synthetic'")

    @property
    def quick(self) -> bool:
        return self.name == 'quick'

    @property
    def prefix(self) -> str:
        """Run-name prefix: '' for the paper setting, else the profile / dataset it ran on."""
        if self.quick:
            return 'quick_' if self.dataset == 'synthetic' else f'quick_{self.dataset}_'
        return '' if self.dataset == 'anet' else f'{self.dataset}_'

    def dataset_label(self) -> str:
        """The `dataset` field of the table protocols (utils.published.Protocol)."""
        if self.dataset == 'anet':
            return 'ActivityNet Captions val'
        root = Path(self.data_root).name if self.data_root else '?'
        return f'synthetic data root "{root}"'


# --------------------------------------------------------------------------------------------- steps
# Quick-profile sizes (2 CPU cores): small GRUs / Transformers, one or two epochs of a few batches.
WSDEC_QUICK = ('--hidden-dim', '64', '--batch-size', '8', '--max-steps-per-epoch', '3', '--keep-checkpoints', '1',
               '--quiet')
# the captioners get enough steps to caption something (30 epochs of the tiny set's 3 batches, lr 1e-3 from 25)
WSDEC_QUICK_CAPTIONER = WSDEC_QUICK + ('--lr-step', '25')
WSDEC_QUICK_EVAL = ('--quiet',)
ILCACM_QUICK = ('--decoder', 'word', '--word-min-count', '1', '--gpt2-layers', '1', '--gpt2-dim', '32',
                '--gpt2-heads', '2', '--enc-layers', '1', '--enc-heads', '2', '--enc-ff', '64', '--mask-ff', '64',
                '--cap-epochs', '1', '--batch-size', '8', '--lr', '1e-3', '--num-beams', '2', '--keep-checkpoints', '1',
                '--quiet')


@dataclass(frozen=True)
class Step:
    """One script invocation. `inputs` = (flag, step) pairs: the flag gets that step's `checkpoints/last.pt`.
    `done` = glob patterns (relative to the output folder; `{last}` = the final epoch, 3 digits) that all
    match once the step has finished. `writes_into` = a step whose run folder this one writes into (scripts
    without their own run folder, e.g. evaluate_ilcacm.py); such a step takes no run flags."""
    name: str
    script: str
    train: bool
    done: tuple[str, ...]
    inputs: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    epochs: tuple[int, int] | None = None      # (full, quick); passed as --epochs
    quick: tuple[str, ...] = ()
    writes_into: str | None = None

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([step for _, step in self.inputs]
                                   + ([self.writes_into] if self.writes_into else [])))

    def n_epochs(self, profile: Profile) -> int | None:
        return None if self.epochs is None else self.epochs[profile.quick]

    def done_patterns(self, profile: Profile) -> tuple[str, ...]:
        epochs = self.n_epochs(profile)
        return tuple(p.format(last=f'{(epochs or 1) - 1:03d}') for p in self.done)


FINAL_CKPT = 'checkpoints/epoch_{last}.pt'


def _wsdec_train(name, script, epochs, *, inputs=(), args=(), quick=WSDEC_QUICK) -> Step:
    return Step(name, f'train_script/{script}', True, (FINAL_CKPT,), inputs, args, epochs, quick)


def _wsdec_eval(name, script, inputs, done, args=(), quick=WSDEC_QUICK_EVAL) -> Step:
    return Step(name, script, False, (done,), inputs, args, None, quick)


def _ilcacm_train(name, args=(), inputs=()) -> Step:
    # train_ilcacm.py evaluates the final model itself (spec ilcacm §4.1.8): metrics/final_{ilcacm,wsdec}.json
    return Step(name, 'train_script/train_ilcacm.py', True, (FINAL_CKPT, 'metrics/final_ilcacm.json'), inputs,
                args, (20, 2), ILCACM_QUICK)


def _ilcacm_variant(name, args) -> Step:
    """An ablation that differs from the model in stage-2 flags only: it starts from the model's stage 1
    (train_ilcacm.py --stage1-from; the same result as training it from scratch, half the epochs)."""
    return _ilcacm_train(name, args, inputs=(('--stage1-from', 'ilcacm'),))


def _ilcacm_eval(name, count_mode) -> Step:
    # evaluate_ilcacm.py writes <run>/metrics/<checkpoint stem>_<count mode>_<protocol>.json into the training run
    return Step(name, 'eval_script/evaluate_ilcacm.py', False, (f'metrics/last_{count_mode}_ilcacm.json',),
                (('--checkpoint', 'ilcacm'),), ('--count-mode', count_mode), None, (), writes_into='ilcacm')


CG_PRETRAIN = (('--checkpoint-cg', 'wsdec_cg_pretrain'),)
DENSE_METRICS = 'metrics/dense_n*_seed*_val_1.json'
STEPS: dict[str, Step] = {s.name: s for s in (
    # WSDEC training (spec wsdec §4.1-4.3; epochs = each script's default)
    _wsdec_train('wsdec_cg_pretrain', 'train_cg_pretrain.py', (100, 30), quick=WSDEC_QUICK_CAPTIONER),
    _wsdec_train('wsdec_final', 'train_final.py', (25, 2), inputs=CG_PRETRAIN,
                 quick=WSDEC_QUICK + ('--sl-batch-size', '4')),       # quick: epoch 0 = SL phase, 1 = CG phase
    _wsdec_train('wsdec_noregress', 'train_final.py', (25, 2), inputs=CG_PRETRAIN, args=('--regressor-scale', '0'),
                 quick=WSDEC_QUICK + ('--sl-batch-size', '4')),
    _wsdec_train('wsdec_noclass', 'train_baseline_regressor.py', (100, 2), inputs=CG_PRETRAIN),
    _wsdec_train('wsdec_cg', 'train_cg.py', (100, 30), quick=WSDEC_QUICK_CAPTIONER),
    _wsdec_train('wsdec_sl', 'train_sl.py', (100, 2)),
    # WSDEC evaluation (spec wsdec §4.4-4.5)
    _wsdec_eval('eval_wsdec_cg_pretrain', 'eval_script/evaluate_pretrain.py', (('--checkpoint', 'wsdec_cg_pretrain'),),
                'metrics/pretrain_random_seed*_val_1.json'),
    _wsdec_eval('eval_wsdec_final', 'eval_script/evaluate.py', (('--checkpoint', 'wsdec_final'),), DENSE_METRICS),
    _wsdec_eval('eval_wsdec_noregress', 'eval_script/evaluate.py', (('--checkpoint', 'wsdec_noregress'),),
                DENSE_METRICS),
    _wsdec_eval('eval_wsdec_noclass', 'eval_script/evaluate.py', (('--checkpoint', 'wsdec_noclass'),), DENSE_METRICS),
    _wsdec_eval('eval_wsdec_cg', 'eval_script/evaluate_cg.py', (('--checkpoint', 'wsdec_cg'),),
                'metrics/gt_segments_val_1.json'),
    _wsdec_eval('eval_wsdec_twostage', 'eval_script/evaluate_twostage.py',
                (('--sl-checkpoint', 'wsdec_sl'), ('--cg-checkpoint', 'wsdec_cg')), 'metrics/twostage_*_val_1.json'),
    _wsdec_eval('loc_wsdec_final', 'eval_script/evaluate_localization.py', (('--checkpoint', 'wsdec_final'),),
                'metrics/localization_val_1.json'),
    _wsdec_eval('loc_wsdec_sl', 'eval_script/evaluate_localization.py', (('--checkpoint', 'wsdec_sl'),),
                'metrics/localization_val_1.json'),
    _wsdec_eval('loc_wsdec_random', 'eval_script/evaluate_localization.py',
                (('--checkpoint', 'wsdec_cg_pretrain'),), 'metrics/localization_random_seed*_val_1.json',
                args=('--random-baseline',)),
    _wsdec_eval('random_test_wsdec_final', 'scripts/run_random_test.py', (('--checkpoint', 'wsdec_final'),),
                'random_test.json', quick=WSDEC_QUICK_EVAL + ('--seeds', '233', '346')),
    # ILCACM: the model and the ablations that change training (spec ilcacm §4, §10.8, published_results §6.2)
    _ilcacm_train('ilcacm'),
    _ilcacm_variant('ilcacm_uniform_masks', ('--mask-mode', 'uniform')),
    _ilcacm_variant('ilcacm_random_segments', ('--mask-mode', 'random')),
    _ilcacm_variant('ilcacm_pos_only', ('--loss', 'pos')),
    _ilcacm_variant('ilcacm_neg_only', ('--loss', 'neg')),
    _ilcacm_variant('ilcacm_no_diversity', ('--no-diversity',)),
    _ilcacm_variant('ilcacm_mask_cauchy', ('--mask-shape', 'cauchy')),
    _ilcacm_variant('ilcacm_mask_hard', ('--mask-shape', 'hard')),
    # ILCACM inference-only baselines on the trained model (spec ilcacm §10.4, §10.8)
    _ilcacm_eval('eval_ilcacm_oracle_count', 'oracle'),
    _ilcacm_eval('eval_ilcacm_equal_split', 'equal-split'),
)}


# ---------------------------------------------------------------------------------------- experiments
@dataclass(frozen=True)
class TableRow:
    """A row of a results table: every file matching `metrics` (glob, relative to the evaluation step's
    output folder), over every seed, is one value set of the row (mean ± std over them)."""
    row_id: str
    label: str
    metrics: str


@dataclass(frozen=True)
class Experiment:
    id: str
    label: str
    paper: str                 # 'WSDEC' | 'ILCACM'
    table: str                 # DENSE | LOCALIZATION (the table of runs/tables/ it fills)
    paper_table: str           # where the original reports it (or would)
    train: tuple[str, ...]     # training steps (their own `inputs` are pulled in too)
    eval: str                  # the step whose output folder holds the metrics
    rows: tuple[TableRow, ...]
    features: str              # 'C3D' | 'CLIP' (table protocol)

    @property
    def steps(self) -> tuple[str, ...]:
        return self.train + (self.eval,)


def _exp(id_, label, paper, table, paper_table, train, eval_, metrics, features, row_id=None) -> Experiment:
    return Experiment(id_, label, paper, table, paper_table, tuple(train), eval_,
                      (TableRow(row_id or id_, label, metrics),), features)


WSDEC_DC = 'WSDEC dense-captioning table (ActivityNet Captions val; ablations: spec published_results §6.1)'
WSDEC_SL = 'WSDEC sentence-localization table (spec published_results §3)'
ILCACM_T1 = 'ILCACM Table 1 (spec ilcacm §9)'
ILCACM_ABL = 'ILCACM ablations / baselines (spec ilcacm §10.8, published_results §6.2; numbers not recovered)'
LOC_METRICS = 'metrics/localization_val_1.json'


def _ilcacm_ablation(name, label) -> Experiment:
    return _exp(f'ilcacm/{name}', label, 'ILCACM', DENSE, ILCACM_ABL, [f'ilcacm_{name}'], f'ilcacm_{name}',
                'metrics/final_ilcacm.json', 'CLIP')


EXPERIMENTS: tuple[Experiment, ...] = (
    _exp('wsdec/pretrained_cg_random', 'WSDEC: pretrained captioner + random segments', 'WSDEC', DENSE, WSDEC_DC,
         ['wsdec_cg_pretrain'], 'eval_wsdec_cg_pretrain', 'metrics/pretrain_random_seed*_val_1.json', 'C3D'),
    _exp('wsdec/final', 'WSDEC final model', 'WSDEC', DENSE, WSDEC_DC, ['wsdec_final'], 'eval_wsdec_final',
         DENSE_METRICS, 'C3D'),
    _exp('wsdec/no_regression', 'WSDEC w/o regression', 'WSDEC', DENSE, WSDEC_DC, ['wsdec_noregress'],
         'eval_wsdec_noregress', DENSE_METRICS, 'C3D'),
    _exp('wsdec/no_classification', 'WSDEC w/o classification', 'WSDEC', DENSE, WSDEC_DC, ['wsdec_noclass'],
         'eval_wsdec_noclass', DENSE_METRICS, 'C3D'),
    _exp('wsdec/supervised_cg_gt', 'Supervised captioner on GT segments', 'WSDEC', DENSE, WSDEC_DC, ['wsdec_cg'],
         'eval_wsdec_cg', 'metrics/gt_segments_val_1.json', 'C3D'),
    _exp('wsdec/two_stage', 'Two-stage: supervised localizer + captioner', 'WSDEC', DENSE, WSDEC_DC,
         ['wsdec_sl', 'wsdec_cg'], 'eval_wsdec_twostage', 'metrics/twostage_*_val_1.json', 'C3D'),
    Experiment('wsdec/random_test', 'WSDEC robustness to random segments', 'WSDEC', DENSE,
               'WSDEC robustness study (scripts/run_random_test.sh; spec wsdec §1)', ('wsdec_final',),
               'random_test_wsdec_final',
               tuple(TableRow('wsdec/random_test', f'WSDEC final, n_rand={n} (seeds of the random segments)',
                              f'metrics/dense_n{n}_seed*_val_1.json') for n in (10, 15, 20)), 'C3D'),
    _exp('wsdec/sl_random', 'Sentence localization: random segments', 'WSDEC', LOCALIZATION, WSDEC_SL,
         ['wsdec_cg_pretrain'], 'loc_wsdec_random', 'metrics/localization_random_seed*_val_1.json', 'C3D'),
    # the weakly supervised localizer is the final model's: its published row is wsdec/final (spec §3)
    _exp('wsdec/sl_weak', 'Sentence localization: WSDEC (weakly supervised)', 'WSDEC', LOCALIZATION, WSDEC_SL,
         ['wsdec_final'], 'loc_wsdec_final', LOC_METRICS, 'C3D', row_id='wsdec/final'),
    _exp('wsdec/sl_supervised', 'Sentence localization: supervised localizer', 'WSDEC', LOCALIZATION, WSDEC_SL,
         ['wsdec_sl'], 'loc_wsdec_sl', LOC_METRICS, 'C3D'),
    Experiment('ilcacm/full', 'ILCACM', 'ILCACM', DENSE, ILCACM_T1, ('ilcacm',), 'ilcacm',
               (TableRow('ilcacm/full', 'ILCACM', 'metrics/final_ilcacm.json'),
                # the same predictions under the WSDEC protocol (DESIGN.md principle 2: one protocol, stamped)
                TableRow('ilcacm/full', 'ILCACM, scored under the WSDEC protocol', 'metrics/final_wsdec.json')),
               'CLIP'),
    _ilcacm_ablation('uniform_masks', 'ILCACM with fixed uniform masks'),
    _ilcacm_ablation('random_segments', 'ILCACM with random segments'),
    _exp('ilcacm/equal_split', 'ILCACM stage 1 only: paragraph on equal segments', 'ILCACM', DENSE, ILCACM_ABL,
         ['ilcacm'], 'eval_ilcacm_equal_split', 'metrics/last_equal-split_ilcacm.json', 'CLIP'),
    _exp('ilcacm/oracle_count', 'ILCACM with the ground-truth event count', 'ILCACM', DENSE, ILCACM_ABL,
         ['ilcacm'], 'eval_ilcacm_oracle_count', 'metrics/last_oracle_ilcacm.json', 'CLIP'),
    _ilcacm_ablation('pos_only', 'ILCACM, positive loss only'),
    _ilcacm_ablation('neg_only', 'ILCACM, negative loss only'),
    _ilcacm_ablation('no_diversity', 'ILCACM without the diversity loss'),
    _ilcacm_ablation('mask_cauchy', 'ILCACM with Cauchy masks'),
    _ilcacm_ablation('mask_hard', 'ILCACM with hard masks'),
)
BY_ID = {e.id: e for e in EXPERIMENTS}

# Published rows that are not experiments of this registry, and why.
NOT_EXPERIMENTS = {
    'wsdec/youcook2': 'a SAIL re-run on YouCook2; no YouCook2 features in this suite (spec published_results §2.2)',
    'ilcacm/youcook2': 'YouCook2 is not supported by the released code; no YouCook2 features (spec ilcacm §8.4)',
}


def published_experiment_ids() -> list[str]:
    """Row ids of utils.published that name an experiment of this suite (comparison rows excluded)."""
    ids = dict.fromkeys(list(row_ids()) + list(NOT_RECOVERED))
    return [i for i in ids if not i.startswith('compare/') and i not in NOT_EXPERIMENTS]


# --------------------------------------------------------------------------------------- resolution
def select(patterns: list[str] | None = None) -> list[Experiment]:
    """Experiments whose id equals or glob-matches one of `patterns` ('wsdec/*'); all when None."""
    if not patterns:
        return list(EXPERIMENTS)
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(e.id, p) for e in EXPERIMENTS)]
    if unknown:
        raise RegistryError(f"unknown experiment id(s) {unknown}; known: {', '.join(BY_ID)} "
                            f"(globs such as 'wsdec/*' work too)")
    return [e for e in EXPERIMENTS if any(fnmatch.fnmatchcase(e.id, p) for p in patterns)]


def resolve_steps(experiments: list[Experiment]) -> list[Step]:
    """Every step the experiments need, dependencies first (each step once)."""
    order: dict[str, Step] = {}

    def visit(name: str, path: tuple[str, ...]):
        if name in path:
            raise RegistryError(f"dependency cycle: {' -> '.join(path + (name,))}")
        if name not in STEPS:
            raise RegistryError(f"step {path[-1] if path else '?'!r} needs unknown step {name!r}")
        for dep in STEPS[name].needs:
            visit(dep, path + (name,))
        order.setdefault(name, STEPS[name])

    for experiment in experiments:
        for name in experiment.steps:
            visit(name, ())
    return list(order.values())


def seeds_for(experiment: Experiment, seeds: list[int] | None) -> list[int]:
    """`seeds`, or the seed of the experiment's original code when none were asked for."""
    return list(seeds) if seeds else [DEFAULT_SEEDS[experiment.paper]]


# ------------------------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class Job:
    """A step at one seed under one profile: its run folder, output folder and command."""
    step: Step
    seed: int
    profile: Profile

    @property
    def key(self) -> tuple[str, int]:
        return self.step.name, self.seed

    @property
    def run_name(self) -> str:
        return run_name(self.step.name, self.seed, self.profile)

    @property
    def run_dir(self) -> Path:
        return Path(self.profile.runs_dir) / self.run_name

    @property
    def output_dir(self) -> Path:
        """Where the step writes (its own run folder, or the one of `writes_into`)."""
        owner = self.step.writes_into or self.step.name
        return Path(self.profile.runs_dir) / run_name(owner, self.seed, self.profile)

    @property
    def log_path(self) -> Path:
        if self.step.writes_into:
            return self.output_dir / f'stdout_{self.step.name}.log'
        return self.run_dir / 'stdout.log'

    @property
    def deps(self) -> list[tuple[str, int]]:
        return [(name, self.seed) for name in self.step.needs]

    def checkpoint_of(self, step_name: str) -> Path:
        return Path(self.profile.runs_dir) / run_name(step_name, self.seed, self.profile) / 'checkpoints' / 'last.pt'

    def command(self, resume: bool = False) -> list[str]:
        step, profile = self.step, self.profile
        argv = [profile.python, step.script]
        if profile.data_root:
            argv += ['--data-root', str(profile.data_root)]
        if not step.writes_into:
            argv += ['--runs-dir', str(profile.runs_dir), '--run-name', self.run_name, '--seed', str(self.seed)]
        for flag, dep in step.inputs:
            argv += [flag, str(self.checkpoint_of(dep))]
        if step.epochs is not None:
            argv += ['--epochs', str(step.n_epochs(profile))]
        argv += list(step.args) + (list(step.quick) if profile.quick else [])
        if resume:
            argv.append('--resume')
        return argv

    def done_files(self) -> dict[str, list[Path]]:
        return {p: sorted(self.output_dir.glob(p)) for p in self.step.done_patterns(self.profile)}

    def status(self) -> str:
        """'finished' (every done pattern matches), 'partial' (a run folder with config.json, unfinished;
        re-run with --resume) or 'missing'."""
        if all(self.done_files().values()):
            return 'finished'
        if not self.step.writes_into and (self.run_dir / 'config.json').is_file():
            return 'partial'
        return 'missing'

    def resumable(self) -> bool:
        """A partial run continues with --resume: evaluations always (they redo their work), trainings once a
        checkpoint exists (utils.run: --resume needs checkpoints/last.pt)."""
        return not self.step.train or (self.run_dir / 'checkpoints' / 'last.pt').is_file()


def run_name(step_name: str, seed: int, profile: Profile) -> str:
    return f'{profile.prefix}{step_name}_s{seed}'


def plan(experiments: list[Experiment], seeds: list[int] | None, profile: Profile) -> list[Job]:
    """The jobs of `experiments` over the seeds, dependencies first, each (step, seed) once."""
    jobs: dict[tuple[str, int], Job] = {}
    for experiment in experiments:
        for seed in seeds_for(experiment, seeds):
            for step in resolve_steps([experiment]):
                jobs.setdefault((step.name, seed), Job(step, seed, profile))
    ordered, seen = [], set()

    def visit(job: Job):
        if job.key in seen:
            return
        seen.add(job.key)
        for dep in job.deps:
            visit(jobs[dep])
        ordered.append(job)

    for job in jobs.values():
        visit(job)
    return ordered


def metrics_files(experiment: Experiment, row: TableRow, seeds: list[int] | None, profile: Profile) -> list[Path]:
    """The metrics files of a table row, over the seeds (sorted within a seed)."""
    out = []
    for seed in seeds_for(experiment, seeds):
        job = Job(STEPS[experiment.eval], seed, profile)
        out += sorted(job.output_dir.glob(row.metrics))
    return out


def check_registry() -> None:
    """Every step and input exists, every experiment's steps exist, no cycles (raises RegistryError)."""
    for experiment in EXPERIMENTS:
        missing = [s for s in experiment.steps if s not in STEPS]
        if missing:
            raise RegistryError(f'experiment {experiment.id}: unknown step(s) {missing}')
        if experiment.table not in (DENSE, LOCALIZATION):
            raise RegistryError(f'experiment {experiment.id}: unknown table {experiment.table!r}')
    resolve_steps(list(EXPERIMENTS))
