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
runs end to end on 2 CPU cores, `shaped` = small models sized for CPU on data shaped like the real datasets (the
real annotation files with synthetic features: `SHAPED_DATA`, issue 14). A step's run folder is
`<runs_dir>/<prefix><step>_s<seed>` (the prefix names the profile and the data, so profiles never reuse each
other's runs). Each experiment belongs to a dataset family, ActivityNet or YouCook2; a profile runs its family's.
"""
import fnmatch
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from utils.published import NOT_RECOVERED, row_ids


class RegistryError(ValueError):
    """An unknown experiment id, or an inconsistent registry."""


DENSE, LOCALIZATION = 'dense_captioning', 'sentence_localization'
DEFAULT_SEEDS = {'WSDEC': 233, 'ILCACM': 42}      # each original's seed (spec wsdec §4, ilcacm §4.1)
SYNTHETIC_SIZES = {'quick': 'tiny', 'full': 'anet'}
PROFILES = ('full', 'quick', 'shaped')
DATASETS = ('anet', 'synthetic', 'anet-shaped', 'youcook2', 'yc2-shaped')
YOUCOOK2_DATASETS = ('youcook2', 'yc2-shaped')


@dataclass(frozen=True)
class ShapedData:
    """A data root built from real annotation files with synthetic features (utils/synthetic.py): the first
    `max_videos` train and `max_val_videos` val_1 videos, features at `signal_to_noise` (the signal model)."""
    annotations: str                          # relative to the repository root
    max_videos: int | None
    max_val_videos: int | None
    signal_to_noise: float                    # make_synthetic_dataset.py --signal-to-noise

    def root_name(self, dataset: str, max_videos: int | None = None, signal_to_noise: float | None = None) -> str:
        """`anet_shaped_1000`; another signal than the default adds `_snr<S>` (`anet_shaped_1000_snr16`), so data
        roots and run names of different signals never mix."""
        n = max_videos or self.max_videos
        snr = self.signal_to_noise if signal_to_noise is None else signal_to_noise
        suffix = '' if snr == self.signal_to_noise else f'_snr{snr:g}'
        return f'{dataset.replace("-", "_")}{"" if n is None else f"_{n}"}{suffix}'


@dataclass(frozen=True)
class Profile:
    """How commands are built: `name` 'full' | 'quick' | 'shaped', `dataset` one of DATASETS."""
    name: str = 'full'
    dataset: str = 'anet'
    data_root: str | None = None       # None: ActivityNet files under data/ (utils.run.data_paths)
    runs_dir: str = 'runs'
    python: str = sys.executable
    max_videos: int | None = None      # shaped data: the number of training videos (default SHAPED_DATA's)
    signal_to_noise: float | None = None   # shaped data: the signal model's strength (default SHAPED_DATA's)

    def __post_init__(self):
        if self.name not in PROFILES:
            raise RegistryError(f"profile {self.name!r}: expected one of {PROFILES}")
        if self.dataset not in DATASETS:
            raise RegistryError(f"dataset {self.dataset!r}: expected one of {DATASETS}")

    @property
    def quick(self) -> bool:
        return self.name == 'quick'

    @property
    def family(self) -> str:
        return 'youcook2' if self.dataset in YOUCOOK2_DATASETS else 'activitynet'

    @property
    def prefix(self) -> str:
        """Run-name prefix: '' for the paper setting, else the profile / data it ran on."""
        if self.name == 'shaped':
            return SHAPED_DATA[self.dataset].root_name(self.dataset, self.max_videos, self.signal_to_noise) + '_'
        if self.quick:
            return 'quick_' if self.dataset == 'synthetic' else f'quick_{self.dataset}_'
        return '' if self.dataset == 'anet' else f'{self.dataset}_'

    def dataset_label(self) -> str:
        """The `dataset` field of the table protocols (utils.published.Protocol)."""
        if self.dataset in ('anet', 'youcook2') and not self.data_root:
            return 'ActivityNet Captions val' if self.dataset == 'anet' else 'YouCook2 val'
        root = Path(self.data_root).name if self.data_root else '?'
        kind = {'anet-shaped': 'ActivityNet-shaped synthetic', 'yc2-shaped': 'YouCook2-shaped synthetic',
                'youcook2': 'YouCook2'}.get(self.dataset, 'synthetic')
        return f'{kind} data root "{root}"'


# --------------------------------------------------------------------------------------------- steps
# Quick-profile sizes (2 CPU cores): small GRUs / Transformers, one or two epochs of a few batches.
WSDEC_QUICK = ('--hidden-dim', '64', '--batch-size', '8', '--max-steps-per-epoch', '3', '--keep-checkpoints', '1',
               '--quiet')
# the captioners get enough steps to caption something (30 epochs of the tiny set's 3 batches, lr 1e-3 from 25)
WSDEC_QUICK_CAPTIONER = WSDEC_QUICK + ('--lr-step', '25')
WSDEC_QUICK_EVAL = ('--quiet',)
ILCACM_QUICK = ('--decoder', 'word', '--word-min-count', '1', '--gpt2-layers', '1', '--gpt2-dim', '32',
                '--gpt2-heads', '2', '--enc-layers', '1', '--enc-heads', '2', '--enc-ff', '64', '--mask-ff', '64',
                '--cap-epochs', '1', '--batch-size', '8', '--loss-groups', '1', '--lr', '1e-3', '--num-beams', '2',
                '--keep-checkpoints', '1', '--quiet')
# Shaped-profile sizes (issue 14; README "Results measured so far"): the paper's schedules and batches, smaller
# networks (WSDEC GRUs of 128, ILCACM's word-level decoder 2 x 128), fewer epochs (ILCACM: 10 of stage 1, 2 of stage 2,
# whose steps cost about 8 times a stage-1 step); the pretrained captioner keeps every epoch's checkpoint (its video
# reliance over the epochs). ILCACM's batch of 16 makes 2 loss groups of 8 videos, the authors' per-process share
# (spec ilcacm §4.4).
WSDEC_SHAPED = ('--hidden-dim', '128', '--embedding-dim', '128', '--keep-checkpoints', '1', '--quiet')
WSDEC_SHAPED_CAPTIONER = ('--hidden-dim', '128', '--embedding-dim', '128', '--quiet')
ILCACM_SHAPED = ('--decoder', 'word', '--word-min-count', '2', '--gpt2-layers', '2', '--gpt2-dim', '128',
                 '--gpt2-heads', '4', '--enc-layers', '2', '--enc-heads', '4', '--enc-ff', '256', '--mask-ff', '256',
                 '--cap-epochs', '10', '--batch-size', '16', '--loss-groups', '2', '--lr', '5e-4',
                 '--keep-checkpoints', '1', '--quiet')
# the ~1-hour size by default (`--max-videos` for more); signal-to-noise 8 by default (`--signal-to-noise` for
# another): see utils/synthetic.py "Signal model"
SHAPED_DATA = {
    'anet-shaped': ShapedData('../shared/data/activitynet_captions', 1000, 300, 8.0),
    'yc2-shaped': ShapedData('../shared/data/youcook2', None, 150, 8.0),
}


@dataclass(frozen=True)
class Step:
    """One script invocation. `inputs` = (flag, step) pairs: the flag gets that step's `checkpoints/last.pt`.
    `done` = glob patterns (relative to the output folder; `{last}` = the final epoch, 3 digits) that all
    match once the step has finished. `writes_into` = a step whose run folder this one writes into (scripts
    without their own run folder, e.g. evaluate_ilcacm.py); such a step takes no run flags. `epochs` and
    `profile_args` by profile name; `family_args` by dataset family (e.g. ILCACM's 100 frames on YouCook2)."""
    name: str
    script: str
    train: bool
    done: tuple[str, ...]
    inputs: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    epochs: tuple[tuple[str, int], ...] = ()          # (profile, --epochs) pairs
    profile_args: tuple[tuple[str, tuple[str, ...]], ...] = ()
    writes_into: str | None = None
    family_args: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([step for _, step in self.inputs]
                                   + ([self.writes_into] if self.writes_into else [])))

    def n_epochs(self, profile: Profile) -> int | None:
        return dict(self.epochs).get(profile.name)

    def extra_args(self, profile: Profile) -> tuple[str, ...]:
        return dict(self.profile_args).get(profile.name, ()) + dict(self.family_args).get(profile.family, ())

    def done_patterns(self, profile: Profile) -> tuple[str, ...]:
        epochs = self.n_epochs(profile)
        return tuple(p.format(last=f'{(epochs or 1) - 1:03d}') for p in self.done)


FINAL_CKPT = 'checkpoints/epoch_{last}.pt'


def _epochs(full, quick, shaped):
    return (('full', full), ('quick', quick), ('shaped', shaped))


def _wsdec_train(name, script, epochs, *, inputs=(), args=(), quick=WSDEC_QUICK, shaped=WSDEC_SHAPED) -> Step:
    return Step(name, f'train_script/{script}', True, (FINAL_CKPT,), inputs, args, _epochs(*epochs),
                (('quick', quick), ('shaped', shaped)))


def _wsdec_eval(name, script, inputs, done, args=(), quick=WSDEC_QUICK_EVAL) -> Step:
    return Step(name, script, False, (done,), inputs, args, (), (('quick', quick), ('shaped', WSDEC_QUICK_EVAL)))


ILCACM_YOUCOOK2 = (('youcook2', ('--dataset', 'youcook2')),)   # 100 frames (spec ilcacm §8.4)


def _ilcacm_train(name, args=(), inputs=()) -> Step:
    # train_ilcacm.py evaluates the final model itself (spec ilcacm §4.1.8): metrics/final_{ilcacm,wsdec}.json
    return Step(name, 'train_script/train_ilcacm.py', True, (FINAL_CKPT, 'metrics/final_ilcacm.json'), inputs,
                args, _epochs(20, 2, 12), (('quick', ILCACM_QUICK), ('shaped', ILCACM_SHAPED)),
                family_args=ILCACM_YOUCOOK2)


def _ilcacm_variant(name, args) -> Step:
    """An ablation that differs from the model in stage-2 flags only: it starts from the model's stage 1
    (train_ilcacm.py --stage1-from; the same result as training it from scratch, half the epochs)."""
    return _ilcacm_train(name, args, inputs=(('--stage1-from', 'ilcacm'),))


def _ilcacm_eval(name, count_mode, args=(), suffix='') -> Step:
    # evaluate_ilcacm.py writes <run>/metrics/<checkpoint stem>_<count mode>_<protocol>.json into the training run
    return Step(name, 'eval_script/evaluate_ilcacm.py', False, (f'metrics/last_{count_mode}{suffix}_ilcacm.json',),
                (('--checkpoint', 'ilcacm'),), ('--count-mode', count_mode, *args), writes_into='ilcacm')


CG_PRETRAIN = (('--checkpoint-cg', 'wsdec_cg_pretrain'),)
DENSE_METRICS = 'metrics/dense_n*_seed*_val_1.json'
STEPS: dict[str, Step] = {s.name: s for s in (
    # WSDEC training (spec wsdec §4.1-4.3; epochs = each script's default)
    _wsdec_train('wsdec_cg_pretrain', 'train_cg_pretrain.py', (100, 30, 20), quick=WSDEC_QUICK_CAPTIONER,
                 shaped=WSDEC_SHAPED_CAPTIONER),
    _wsdec_train('wsdec_final', 'train_final.py', (25, 2, 10), inputs=CG_PRETRAIN,
                 quick=WSDEC_QUICK + ('--sl-batch-size', '4')),       # quick: epoch 0 = SL phase, 1 = CG phase
    # the fix flag of issue 14 for a segment-blind pretrained captioner: pretraining on caption-order splits
    _wsdec_train('wsdec_cg_pretrain_caption_order', 'train_cg_pretrain.py', (100, 30, 20),
                 args=('--pretrain-segment', 'caption-order'), quick=WSDEC_QUICK_CAPTIONER,
                 shaped=WSDEC_SHAPED_CAPTIONER),
    _wsdec_train('wsdec_final_caption_order', 'train_final.py', (25, 2, 10),
                 inputs=(('--checkpoint-cg', 'wsdec_cg_pretrain_caption_order'),),
                 quick=WSDEC_QUICK + ('--sl-batch-size', '4')),
    _wsdec_train('wsdec_noregress', 'train_final.py', (25, 2, 10), inputs=CG_PRETRAIN,
                 args=('--regressor-scale', '0'), quick=WSDEC_QUICK + ('--sl-batch-size', '4')),
    _wsdec_train('wsdec_noclass', 'train_baseline_regressor.py', (100, 2, 10), inputs=CG_PRETRAIN),
    _wsdec_train('wsdec_cg', 'train_cg.py', (100, 30, 20), quick=WSDEC_QUICK_CAPTIONER),
    _wsdec_train('wsdec_sl', 'train_sl.py', (100, 2, 20)),
    # WSDEC evaluation (spec wsdec §4.4-4.5)
    _wsdec_eval('eval_wsdec_cg_pretrain', 'eval_script/evaluate_pretrain.py', (('--checkpoint', 'wsdec_cg_pretrain'),),
                'metrics/pretrain_random_seed*_val_1.json'),
    _wsdec_eval('eval_wsdec_cg_pretrain_caption_order', 'eval_script/evaluate_pretrain.py',
                (('--checkpoint', 'wsdec_cg_pretrain_caption_order'),), 'metrics/pretrain_random_seed*_val_1.json'),
    _wsdec_eval('eval_wsdec_final', 'eval_script/evaluate.py', (('--checkpoint', 'wsdec_final'),), DENSE_METRICS),
    _wsdec_eval('eval_wsdec_final_segment_blind', 'eval_script/evaluate.py', (('--checkpoint', 'wsdec_final'),),
                'metrics/dense_n*_seed*_val_1_segment_blind.json', args=('--segment-blind',)),
    _wsdec_eval('eval_wsdec_final_caption_order', 'eval_script/evaluate.py',
                (('--checkpoint', 'wsdec_final_caption_order'),), DENSE_METRICS),
    _wsdec_eval('eval_wsdec_final_caption_order_segment_blind', 'eval_script/evaluate.py',
                (('--checkpoint', 'wsdec_final_caption_order'),), 'metrics/dense_n*_seed*_val_1_segment_blind.json',
                args=('--segment-blind',)),
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
    # the fix of issue 14 for masks that shrink while the captioner does not read the video
    _ilcacm_variant('ilcacm_diversity_warmup', ('--diversity-warmup', '1')),
    # ILCACM inference-only baselines on the trained model (spec ilcacm §10.4, §10.8; issue 14)
    _ilcacm_eval('eval_ilcacm_oracle_count', 'oracle'),
    _ilcacm_eval('eval_ilcacm_equal_split', 'equal-split'),
    _ilcacm_eval('eval_ilcacm_segment_blind', 'paragraph', ('--segment-blind',), suffix='_segment-blind'),
    # the prior (issue 14): one constant segment and caption fitted on the training split, both protocols
    Step('baseline_prior', 'eval_script/evaluate_prior.py', False, ('metrics/prior_val_1_ilcacm.json',),
         profile_args=(('quick', ('--quiet',)), ('shaped', ('--quiet',)))),
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
    features: str              # 'C3D' | 'CLIP' | 'none' (table protocol)
    family: str = 'activitynet'   # 'activitynet' | 'youcook2': the datasets whose profiles run it

    @property
    def steps(self) -> tuple[str, ...]:
        return self.train + (self.eval,)


def _exp(id_, label, paper, table, paper_table, train, eval_, metrics, features, row_id=None) -> Experiment:
    return Experiment(id_, label, paper, table, paper_table, tuple(train), eval_,
                      (TableRow(row_id or id_, label, metrics),), features)


def _on_youcook2(experiment: Experiment, id_: str) -> Experiment:
    """The same experiment on a YouCook2 data root (ILCACM with 100 frames), as row `id_`."""
    return replace(experiment, id=id_, family='youcook2', paper_table=YC2_TABLE,
                   rows=tuple(replace(r, row_id=id_, label=r.label + ' (YouCook2)')
                              for r in experiment.rows))


WSDEC_DC = 'WSDEC dense-captioning table (ActivityNet Captions val; ablations: spec published_results §6.1)'
WSDEC_SL = 'WSDEC sentence-localization table (spec published_results §3)'
ILCACM_T1 = 'ILCACM Table 1 (spec ilcacm §9)'
ILCACM_ABL = 'ILCACM ablations / baselines (spec ilcacm §10.8, published_results §6.2; numbers not recovered)'
LOC_METRICS = 'metrics/localization_val_1.json'
BASELINES = 'Baselines that expose degenerate solutions (issue 14): the prior and segment-blind captioning'
FIX_FLAGS = 'Fix flags for a collapse of the original (issue 14; README "Faithful by default, fixed by flag")'
YC2_TABLE = 'YouCook2 (SBS Table 2, SAIL re-runs; spec published_results §2.2)'


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
    _ilcacm_ablation('diversity_warmup', 'ILCACM, L_div held for the first stage-2 epoch (--diversity-warmup 1)'),
    # baselines beside every method (issue 14)
    _exp('wsdec/prior', 'Prior: one constant segment + the most frequent training caption', 'WSDEC', DENSE,
         BASELINES, [], 'baseline_prior', 'metrics/prior_val_1_wsdec.json', 'none'),
    _exp('wsdec/segment_blind', 'WSDEC final model, segment-blind captions (whole-video caption for every event)',
         'WSDEC', DENSE, BASELINES, ['wsdec_final'], 'eval_wsdec_final_segment_blind',
         'metrics/dense_n*_seed*_val_1_segment_blind.json', 'C3D'),
    _exp('wsdec/caption_order', 'WSDEC, captioner pretrained on caption-order splits (--pretrain-segment '
         'caption-order)', 'WSDEC', DENSE, FIX_FLAGS, ['wsdec_final_caption_order'], 'eval_wsdec_final_caption_order',
         DENSE_METRICS, 'C3D'),
    _exp('wsdec/caption_order_segment_blind', 'WSDEC with caption-order pretraining, segment-blind captions',
         'WSDEC', DENSE, BASELINES, ['wsdec_final_caption_order'], 'eval_wsdec_final_caption_order_segment_blind',
         'metrics/dense_n*_seed*_val_1_segment_blind.json', 'C3D'),
    _exp('wsdec/caption_order_pretrained_cg_random', 'WSDEC with caption-order pretraining: pretrained captioner + '
         'random segments', 'WSDEC', DENSE, BASELINES, ['wsdec_cg_pretrain_caption_order'],
         'eval_wsdec_cg_pretrain_caption_order', 'metrics/pretrain_random_seed*_val_1.json', 'C3D'),
    _exp('ilcacm/prior', 'Prior: one constant segment + the most frequent training caption', 'ILCACM', DENSE,
         BASELINES, [], 'baseline_prior', 'metrics/prior_val_1_ilcacm.json', 'none'),
    _exp('ilcacm/segment_blind', 'ILCACM, segment-blind captions (the unmasked video\'s caption for every event)',
         'ILCACM', DENSE, BASELINES, ['ilcacm'], 'eval_ilcacm_segment_blind',
         'metrics/last_paragraph_segment-blind_ilcacm.json', 'CLIP'),
)
BY_ID = {e.id: e for e in EXPERIMENTS}
EXPERIMENTS += tuple(_on_youcook2(BY_ID[source], id_) for source, id_ in (
    ('ilcacm/full', 'ilcacm/youcook2'), ('ilcacm/uniform_masks', 'ilcacm/youcook2_uniform_masks'),
    ('ilcacm/random_segments', 'ilcacm/youcook2_random_segments'), ('ilcacm/equal_split', 'ilcacm/youcook2_equal_split'),
    ('ilcacm/segment_blind', 'ilcacm/youcook2_segment_blind'), ('ilcacm/prior', 'ilcacm/youcook2_prior'),
    ('wsdec/final', 'wsdec/youcook2'), ('wsdec/pretrained_cg_random', 'wsdec/youcook2_pretrained_cg_random'),
    ('wsdec/segment_blind', 'wsdec/youcook2_segment_blind'), ('wsdec/prior', 'wsdec/youcook2_prior')))
BY_ID = {e.id: e for e in EXPERIMENTS}

# The learning checks of issue 14 (utils/learning_checks.py; tables/learning_checks.md): each method row against
# the rows that a method which ignores the video (or the segments) would tie.
LEARNING_CHECKS: dict[str, tuple[str, ...]] = {
    'wsdec/final': ('wsdec/prior', 'wsdec/segment_blind', 'wsdec/pretrained_cg_random'),
    'wsdec/caption_order': ('wsdec/prior', 'wsdec/caption_order_segment_blind',
                            'wsdec/caption_order_pretrained_cg_random', 'wsdec/pretrained_cg_random', 'wsdec/final'),
    'ilcacm/full': ('ilcacm/prior', 'ilcacm/segment_blind', 'ilcacm/random_segments', 'ilcacm/uniform_masks',
                    'ilcacm/equal_split'),
    'ilcacm/youcook2': ('ilcacm/youcook2_prior', 'ilcacm/youcook2_segment_blind', 'ilcacm/youcook2_random_segments',
                        'ilcacm/youcook2_uniform_masks', 'ilcacm/youcook2_equal_split'),
    'wsdec/youcook2': ('wsdec/youcook2_prior', 'wsdec/youcook2_segment_blind',
                       'wsdec/youcook2_pretrained_cg_random'),
}

# Published rows that are not experiments of this registry, and why.
NOT_EXPERIMENTS: dict[str, str] = {}


def published_experiment_ids() -> list[str]:
    """Row ids of utils.published that name an experiment of this suite (comparison rows excluded)."""
    ids = dict.fromkeys(list(row_ids()) + list(NOT_RECOVERED))
    return [i for i in ids if not i.startswith('compare/') and i not in NOT_EXPERIMENTS]


# --------------------------------------------------------------------------------------- resolution
def select(patterns: list[str] | None = None, family: str | None = None) -> list[Experiment]:
    """Experiments whose id equals or glob-matches one of `patterns` ('wsdec/*'); all when None; only those of
    dataset `family` ('activitynet' | 'youcook2') when given."""
    pool = [e for e in EXPERIMENTS if family is None or e.family == family]
    if not patterns:
        return pool
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(e.id, p) for e in pool)]
    if unknown:
        raise RegistryError(f"unknown experiment id(s) {unknown}{f' for {family} data' if family else ''}; known: "
                            f"{', '.join(e.id for e in pool)} (globs such as 'wsdec/*' work too)")
    return [e for e in pool if any(fnmatch.fnmatchcase(e.id, p) for p in patterns)]


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
        if step.n_epochs(profile) is not None:
            argv += ['--epochs', str(step.n_epochs(profile))]
        argv += list(step.args) + list(step.extra_args(profile))
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


def metrics_files_by_seed(experiment: Experiment, row: TableRow, seeds: list[int] | None,
                          profile: Profile) -> list[tuple[int, Path]]:
    """(seed, metrics file) pairs of a table row, over the seeds (files sorted within a seed)."""
    out = []
    for seed in seeds_for(experiment, seeds):
        job = Job(STEPS[experiment.eval], seed, profile)
        out += [(seed, path) for path in sorted(job.output_dir.glob(row.metrics))]
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
    unknown = [i for m, bs in LEARNING_CHECKS.items() for i in (m, *bs) if i not in BY_ID]
    if unknown:
        raise RegistryError(f'LEARNING_CHECKS names unknown experiment(s) {unknown}')
