"""Reproduce the papers' tables: run every experiment of utils/experiments.py that is not finished yet, then
write runs/tables/{dense_captioning,sentence_localization}.{md,tex,json}, a report per run and runs/index.html.

    python scripts/reproduce_tables.py --dataset synthetic --quick          # every row, small, CPU (minutes)
    python scripts/reproduce_tables.py --dataset anet-shaped --seeds 233 346 581   # real annotations (CPU, hours)
    python scripts/reproduce_tables.py                                       # paper settings, data/ (GPU)
    python scripts/reproduce_tables.py --only wsdec/final 'ilcacm/*' --seeds 233 346 581
    python scripts/reproduce_tables.py --list | --dry-run

Finished runs (final checkpoint / metrics file present) are reused, interrupted ones continue with --resume, and
runs shared by several rows (e.g. the pretrained captioner) run once; independent runs go side by side with
--jobs (default 2 for --quick). Each step's output goes to its run folder's stdout.log. A failed step does not stop the others (only the steps that need it); the tables are
written for what finished and the exit status is 1.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import json
import math
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from utils import cli
from utils.experiments import (DATASETS, DEFAULT_SEEDS, LEARNING_CHECKS, SHAPED_DATA, SYNTHETIC_SIZES, Job,
                               Profile, RegistryError, metrics_files_by_seed, plan, select)
from utils.learning_checks import write_learning_checks
from utils.published import Protocol
from utils.tables import write_tables

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument('--dataset', choices=DATASETS, default='anet',
                        help='anet / youcook2: the real data (data/ or --data-root); synthetic: the embedded data; '
                             'anet-shaped / yc2-shaped: the real annotation files with synthetic features (issue 14, '
                             'utils/experiments.py SHAPED_DATA); the synthetic kinds are built on first use')
    parser.add_argument('--max-videos', type=int, default=None,
                        help='anet-shaped / yc2-shaped: training videos (default: SHAPED_DATA\'s)')
    parser.add_argument('--signal-to-noise', type=float, default=None, metavar='S',
                        help='anet-shaped / yc2-shaped: the features\' signal strength (utils/synthetic.py, default: '
                             'SHAPED_DATA\'s, 8); another value gets its own data root and run names (..._snr<S>)')
    parser.add_argument('--data-root', default=None,
                        help='data root (captions/, features/); synthetic default: data/synthetic_<size>')
    parser.add_argument('--synthetic-size', choices=('tiny', 'small', 'anet'), default=None,
                        help=f'size of the synthetic data (default: {SYNTHETIC_SIZES})')
    parser.add_argument('--quick', action='store_true', help='tiny models and epochs (utils/experiments.py)')
    parser.add_argument('--seeds', type=int, nargs='+', default=None,
                        help=f'training seeds, one run per seed (default: each paper\'s, {DEFAULT_SEEDS})')
    parser.add_argument('--only', nargs='+', default=None, metavar='ID',
                        help='experiment ids or globs (wsdec/*); the runs they need are included')
    parser.add_argument('--runs-dir', default='runs')
    parser.add_argument('--jobs', type=int, default=None,
                        help='runs at a time (default: 2 with --quick on a machine with 2+ cores, else 1; '
                             'parallel runs get OMP_NUM_THREADS = cores / jobs)')
    parser.add_argument('--dry-run', action='store_true', help='print the plan and the commands; run nothing')
    parser.add_argument('--list', action='store_true', help='list the experiments and exit')
    return parser.parse_args(argv)


def elapsed(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f'{m // 60}:{m % 60:02d}:{s:02d}' if m >= 60 else f'{m}:{s:02d}'


# ------------------------------------------------------------------------------------------- listing
def print_list() -> None:
    for e in select(None):
        print(f'{e.id:28s} {e.label}')
        print(f'{"":28s}   table: {e.table} ({e.paper_table})')
        print(f'{"":28s}   train: {", ".join(e.train)}; eval: {e.eval}; '
              f'metrics: {"; ".join(r.metrics for r in e.rows)}')


# -------------------------------------------------------------------------------------------- data
def from_repo_root(path: str | None) -> str | None:
    """`path` as the scripts (run from the repository root) must see it: unchanged when it is absolute or this
    process runs from the root, else made absolute."""
    if path is None or Path(path).is_absolute() or Path.cwd().resolve() == REPO_ROOT:
        return path
    return str(Path(path).resolve())


def profile_from_args(args) -> tuple[Profile, str | None]:
    """The profile and, for data that is built here, what to build: a synthetic size, or 'shaped'."""
    for flag, value in (('--max-videos', args.max_videos), ('--signal-to-noise', args.signal_to_noise)):
        if value is not None and args.dataset not in SHAPED_DATA:
            raise RegistryError(f'{flag} is for --dataset {" / ".join(SHAPED_DATA)}, not {args.dataset}')
    if args.signal_to_noise is not None and not 0 < args.signal_to_noise < math.inf:
        raise RegistryError(f'--signal-to-noise {args.signal_to_noise:g}: expected a positive number')
    data_root, build = from_repo_root(args.data_root), None
    name = 'quick' if args.quick else 'shaped' if args.dataset in SHAPED_DATA else 'full'
    if args.dataset == 'synthetic':
        build = args.synthetic_size or SYNTHETIC_SIZES['quick' if args.quick else 'full']
        default = Path('data') / f'synthetic_{build}'  # beside the ActivityNet files, in the root's data/
    elif args.dataset in SHAPED_DATA:
        build = 'shaped'
        default = Path('data') / SHAPED_DATA[args.dataset].root_name(args.dataset, args.max_videos,
                                                                     args.signal_to_noise)
    if build is not None:
        data_root = data_root or str(default if Path.cwd().resolve() == REPO_ROOT else REPO_ROOT / default)
    profile = Profile(name, args.dataset, data_root, from_repo_root(args.runs_dir), max_videos=args.max_videos,
                      signal_to_noise=args.signal_to_noise)
    return profile, build


def check_data_roots(jobs: list[Job], profile: Profile) -> None:
    """A run folder of the plan made on another data root than this invocation's would be reused (or resumed) as
    if it were this data's: refuse, naming the folder and both roots."""
    def where(path) -> Path | None:
        return None if path is None else (REPO_ROOT / path).resolve()
    wanted = where(profile.data_root)
    for job in jobs:
        config = job.run_dir / 'config.json'
        if job.step.writes_into or not config.is_file():
            continue
        try:
            recorded = json.loads(config.read_text())
        except (OSError, ValueError) as error:
            raise RegistryError(f'{config}: unreadable run config ({error}); move the run folder away') from None
        if not isinstance(recorded, dict) or 'data_root' not in recorded:
            continue                          # not one of the suite's run configs: nothing to compare
        made_on = recorded['data_root']
        if not isinstance(made_on, (str, type(None))) or where(made_on) != wanted:
            raise RegistryError(f'{job.run_dir}: made on data root {made_on or "data/ (ActivityNet layout)"}, '
                                f'this invocation uses {profile.data_root or "data/ (ActivityNet layout)"}; '
                                f'give another --runs-dir (or move the folder away)')


def data_ready(root: Path) -> bool:
    return all((root / p).exists() for p in ('captions/train.json', 'captions/val_1.json', 'features/c3d.hdf5',
                                             'features/clip'))


def data_command(profile: Profile, build: str) -> list[str]:
    """make_synthetic_dataset.py for the embedded data of size `build`, or the profile's shaped data."""
    command = [profile.python, 'scripts/make_synthetic_dataset.py', '--out', profile.data_root, '--seed', '0']
    if build != 'shaped':
        return command + ['--size', build]
    spec = SHAPED_DATA[profile.dataset]
    sizes = [('--max-videos', profile.max_videos or spec.max_videos), ('--max-val-videos', spec.max_val_videos)]
    snr = spec.signal_to_noise if profile.signal_to_noise is None else profile.signal_to_noise
    return command + ['--annotations', spec.annotations, '--signal-to-noise', f'{snr:g}'] + \
        [str(x) for flag, n in sizes if n is not None for x in (flag, n)]


# ------------------------------------------------------------------------------------------ running
class Console:
    """One line per step: `[i/n] name: what ... result (step time, total time)`."""

    def __init__(self, total: int):
        self.total, self.index, self.start = total, 0, time.time()

    def line(self, name: str, what: str, result: str, seconds: float | None = None) -> None:
        self.index += 1
        took = '' if seconds is None else f' in {elapsed(seconds)}'
        print(f'[{self.index}/{self.total}] {name}: {what} ... {result}{took} '
              f'(total {elapsed(time.time() - self.start)})', flush=True)


def subprocess_env(threads: int | None) -> dict:
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    if threads is not None and 'OMP_NUM_THREADS' not in env:  # parallel jobs share the cores
        env['OMP_NUM_THREADS'] = str(threads)
    return env


def start_logged(argv: list[str], log_path: Path, threads: int | None = None):
    """Start `argv` from the repository root, stdout+stderr appended to `log_path`; (process, log file)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, 'a')
    log.write(f'\n$ {shlex.join(argv)}\n')
    log.flush()
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                               env=subprocess_env(threads))
    return process, log


def run_logged(argv: list[str], log_path: Path) -> tuple[int, float]:
    """Run `argv` to the end (see start_logged); (exit status, seconds)."""
    start = time.time()
    process, log = start_logged(argv, log_path)
    with log:
        status = process.wait()
    return status, time.time() - start


def prepare(job: Job) -> tuple[list[str], str]:
    """The command for an unfinished job and what it does: continue a partial run with --resume, or start
    afresh (a training folder without any checkpoint cannot resume: its leftovers are removed)."""
    if job.status() == 'partial':
        if job.resumable():
            return job.command(resume=True), 'resume'
        for child in job.run_dir.iterdir():  # config/log of a run that never saved a checkpoint
            if child.name != 'stdout.log':
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        return job.command(), 'restart (no checkpoint)'
    return job.command(), 'train' if job.step.train else 'evaluate'


def execute(jobs: list[Job], console: Console, parallel: int = 1) -> dict[tuple[str, int], str]:
    """Run the unfinished jobs, at most `parallel` at a time, each once its dependencies are done; a job whose
    dependency failed is skipped. Returns key -> outcome ('finished' | 'reused' | 'failed' | 'skipped')."""
    outcome: dict[tuple[str, int], str] = {}
    pending, running = list(jobs), {}
    threads = max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else None
    while pending or running:
        for job in list(pending):
            blocked = [d for d in job.deps if outcome.get(d) in ('failed', 'skipped')]
            if blocked:
                pending.remove(job)
                outcome[job.key] = 'skipped'
                console.line(job.run_name, 'skip', f'needs {", ".join(f"{s} (seed {k})" for s, k in blocked)}')
            elif all(outcome.get(d) in ('finished', 'reused') for d in job.deps):
                if job.status() == 'finished':
                    pending.remove(job)
                    outcome[job.key] = 'reused'
                    console.line(job.run_name, 'reuse', 'finished earlier')
                elif len(running) < parallel:
                    pending.remove(job)
                    argv, what = prepare(job)
                    running[job.key] = (job, what, time.time(), *start_logged(argv, job.log_path, threads))
        for key, (job, what, start, process, log) in list(running.items()):
            status = process.poll()
            if status is None:
                continue
            log.close()
            del running[key]
            ok = status == 0 and job.status() == 'finished'
            outcome[key] = 'finished' if ok else 'failed'
            result = 'ok' if ok else (f'FAILED (exit {status}; log {job.log_path})' if status else
                                      f'FAILED (exit 0 but no {", ".join(job.step.done_patterns(job.profile))} '
                                      f'in {job.output_dir}; log {job.log_path})')
            console.line(job.run_name, what, result, time.time() - start)
        if running:
            time.sleep(0.2)
    return outcome


# --------------------------------------------------------------------------------------- tables
def table_rows(seeds, profile: Profile) -> list[dict]:
    """utils.tables rows: per registry row, the metrics files of every seed that has them (also rows left
    out by --only this time, when they finished earlier)."""
    rows = []
    for experiment in select(None, profile.family):
        for row in experiment.rows:
            found = metrics_files_by_seed(experiment, row, seeds, profile)
            if not found:
                continue
            files = [f for _, f in found]
            results = [json.loads(f.read_text()) for f in files]
            meta = results[0].get('meta', {})
            protocol = Protocol(toolkit=str(meta.get('toolkit', 'n/a')),
                                missing=str(meta.get('missing_policy', meta.get('missing', 'n/a'))),
                                features=experiment.features, dataset=profile.dataset_label())
            rows.append({'row_id': row.row_id, 'label': row.label, 'protocol': protocol, 'metrics': results,
                         'files': files, 'seeds': [seed for seed, _ in found]})
    return rows


def collapse_warnings(rows: list[dict]) -> list[str]:
    """One line per table row whose metrics files carry collapse warnings (utils/diagnostics.py): how many files
    and the distinct warnings (the run reports hold them all)."""
    out = []
    for row in rows:
        found = [w for result in row['metrics'] for w in result.get('diagnostics', {}).get('warnings', [])]
        if found:
            distinct = list(dict.fromkeys(found))
            out.append(f"{row['label']}: {'; '.join(distinct[:3])}" + (f" (+{len(distinct) - 3} more)"
                                                                        if len(distinct) > 3 else ''))
    return out


def write_reports(jobs: list[Job], experiments, runs_dir: Path) -> list[str]:
    """report.html for each run folder of the plan and runs/index.html; returns the problems met."""
    from utils.report import render_index, render_report
    row_of = {e.eval: e.rows[0].row_id for e in experiments}
    problems = []
    for job in jobs:
        if job.step.writes_into or not (job.run_dir / 'config.json').is_file():
            continue
        try:
            render_report(job.run_dir, row_id=row_of.get(job.step.name))
        except Exception as error:  # a report is a convenience: say why it is missing, keep going
            problems.append(f'report of {job.run_dir}: {error}')
    if runs_dir.is_dir():
        try:
            render_index(runs_dir)
        except Exception as error:
            problems.append(f'{runs_dir / "index.html"}: {error}')
    return problems


# ------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        print_list()
        return 0
    profile, size = profile_from_args(args)
    experiments = select(args.only, profile.family)
    jobs = plan(experiments, args.seeds, profile)
    check_data_roots(jobs, profile)
    build_data = size is not None and not data_ready(Path(profile.data_root))
    print(f'{len(experiments)} experiments, {len(jobs)} runs; profile {profile.name}, dataset {profile.dataset}'
          f'{f" ({size})" if size else ""}, data root {profile.data_root or "data/ (ActivityNet layout)"}, '
          f'runs in {profile.runs_dir}/', flush=True)

    if args.dry_run:
        if build_data:
            print(f'data: missing -> {shlex.join(data_command(profile, size))}')
        for job in jobs:
            status = job.status()
            if status == 'finished':
                print(f'{job.run_name}: finished (reused)')
                continue
            resume = status == 'partial' and job.resumable()
            what = ('missing' if status == 'missing' else 'partial (continues with --resume)' if resume
                    else 'partial without a checkpoint (starts again)')
            print(f'{job.run_name}: {what}\n    {shlex.join(job.command(resume=resume))}')
        return 0

    console = Console(len(jobs) + build_data)
    if build_data:
        log = Path(profile.runs_dir) / 'logs' / f'make_synthetic_{Path(profile.data_root).name}.log'
        status, seconds = run_logged(data_command(profile, size), log)
        console.line(f'data {profile.data_root}', f'build synthetic ({size})',
                     'ok' if status == 0 else f'FAILED (exit {status}; log {log})', seconds)
        if status != 0:
            return 1
    outcome = execute(jobs, console, args.jobs or (min(2, os.cpu_count() or 1) if args.quick else 1))

    runs_dir = Path(profile.runs_dir)
    rows = table_rows(args.seeds, profile)
    written = write_tables(rows, runs_dir / 'tables')
    written += write_learning_checks(rows, LEARNING_CHECKS, runs_dir / 'tables')
    problems = write_reports(jobs, experiments, runs_dir)
    for path in written:
        if path.suffix == '.md':
            print(f'\n{path}:\n{path.read_text()}')
    print(f'tables: {", ".join(str(p) for p in written)}')
    for problem in problems:
        print(f'warning: {problem}')
    for line in collapse_warnings(rows):
        print(f'warning: degenerate? {line}')

    failed = [j for j in jobs if outcome[j.key] in ('failed', 'skipped')]
    print(f'done in {elapsed(time.time() - console.start)}: '
          f'{sum(o == "finished" for o in outcome.values())} ran, {sum(o == "reused" for o in outcome.values())} '
          f'reused, {sum(o == "failed" for o in outcome.values())} failed, '
          f'{sum(o == "skipped" for o in outcome.values())} skipped')
    for job in failed:
        why = 'failed' if outcome[job.key] == 'failed' else 'skipped (a run it needs failed)'
        print(f'  {job.run_name} {why}: log {job.log_path}', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    cli.main(main)
