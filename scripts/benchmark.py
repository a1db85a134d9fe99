"""Speed and memory of the suite in one report: the scorer, WSDEC, ILCACM and feature-extraction benchmarks, each
measured against its own in-run reference (the official per-video scorer loop, the original step-by-step
recurrences, a naive ILCACM, extraction one frame / window at a time), plus the absolute figures labelled with the
device they were measured on.

    python scripts/benchmark.py [scorer|wsdec|ilcacm|extraction|all] [--quick] [--out-dir runs/benchmarks]

Each part is `scripts/benchmark_<part>.py`'s `run(quick) -> dict`. A part whose module is absent is reported as
missing; a part that raises is reported as failed (exit status 1). Writes runs/benchmarks/benchmark_<which>
[_quick].{json,md} and prints the Markdown.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import datetime
import importlib
import json
import os
import platform
import time
import traceback

import torch

from utils import cli

PARTS = ('scorer', 'wsdec', 'ilcacm', 'extraction')
RATIO_WORDS = ('speedup', 'ratio')              # keys holding "reference time / our time"
SKIPPED_KEYS = ('settings', 'setting_')         # workload parameters, not measurements


def cpu_model() -> str:
    try:
        for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
            if line.lower().startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or 'unknown CPU'


def device_info() -> dict:
    """What the absolute figures were measured on."""
    info = {'cpu': cpu_model(), 'cpu_cores': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
            'torch': torch.__version__, 'python': platform.python_version(), 'cuda': torch.cuda.is_available()}
    if info['cuda']:
        info['gpu'] = torch.cuda.get_device_name(0)
    if hasattr(os, 'getloadavg'):
        info['load_average_1min'] = round(os.getloadavg()[0], 2)
    return info


def device_label(info: dict) -> str:
    text = f"{info['cpu']} ({info['cpu_cores']} cores, {info['torch_threads']} torch threads)"
    return text + (f", GPU {info['gpu']}" if info.get('gpu') else ', no CUDA')


def flatten(value, prefix='') -> dict:
    """{'a.b.c': number} of every numeric leaf (booleans and strings kept as they are)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f'{prefix}.{key}' if prefix else str(key)))
        return out
    if isinstance(value, (list, tuple)):
        return {}
    return {prefix: value}


def split_figures(result: dict) -> tuple[dict, dict, dict]:
    """(ratios, absolute figures, other leaves such as flags and notes) of one part's result."""
    ratios, absolute, other = {}, {}, {}
    for key, value in flatten(result).items():
        leaf = key.rsplit('.', 1)[-1]
        if any(s in key for s in SKIPPED_KEYS):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            (ratios if any(w in leaf for w in RATIO_WORDS) else absolute)[key] = value
        else:
            other[key] = value
    return ratios, absolute, other


def run_part(name: str, quick: bool) -> dict:
    """{'status': 'ok'|'missing'|'failed'|'skipped', 'seconds', 'result' | 'error'}."""
    module_name = f'scripts.benchmark_{name}'
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name in (module_name, 'scripts'):
            return {'status': 'missing', 'error': f'{module_name.replace(".", "/")}.py not found'}
        return {'status': 'failed', 'error': f'import: {error}'}
    start, threads = time.time(), torch.get_num_threads()
    try:
        result = module.run(quick)
    except Exception as error:  # one part failing must not hide the others
        return {'status': 'failed', 'seconds': time.time() - start, 'error': f'{type(error).__name__}: {error}',
                'traceback': traceback.format_exc()}
    finally:
        torch.set_num_threads(threads)  # a part may change it (benchmark_wsdec does); the next one starts clean
    status = 'skipped' if isinstance(result, dict) and result.get('skipped') else 'ok'
    return {'status': status, 'seconds': time.time() - start, 'result': result}


def fmt(value) -> str:
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(value)


def markdown(report: dict) -> str:
    lines = [f"# Benchmarks ({'quick' if report['quick'] else 'full'})", '',
             f"Measured {report['date']} on {device_label(report['device'])}; "
             f"1-min load average at start {report['device'].get('load_average_1min', '?')}. "
             'Ratios are reference time / our time within the same run (same machine, same workload); '
             'absolute figures hold only for this device.', '']
    for name, part in report['parts'].items():
        lines.append(f"## {name}: {part['status']}" + (f" ({part['seconds']:.0f} s)" if 'seconds' in part else ''))
        if part['status'] in ('missing', 'failed'):
            lines += ['', f"{part['error']}", '']
            continue
        if part['status'] == 'skipped':
            lines += ['', str(part['result']['skipped']), '']
            continue
        ratios, absolute, other = split_figures(part['result'])
        lines += ['', '| measure | value |', '|---|---:|']
        lines += [f'| **{k}** (ratio vs reference) | **{fmt(v)}×** |' for k, v in ratios.items()]
        lines += [f'| {k} | {fmt(v)} |' for k, v in absolute.items()]
        lines += [f'| {k} | {fmt(v)} |' for k, v in other.items()]
        lines.append('')
    return '\n'.join(lines)


def part_main(doc: str, run, summary, quick_help: str, argv=None) -> None:
    """The command line of one part (`scripts/benchmark_<part>.py [--quick] [--device] [--out FILE]`)."""
    parser = cli.parser(doc)
    parser.add_argument('--quick', action='store_true', help=quick_help)
    parser.add_argument('--device', default='auto', help='auto, cpu or cuda')
    parser.add_argument('--out', default=None, help='also write the results to this JSON file')
    args = parser.parse_args(argv)
    results = run(args.quick, args.device)
    print(summary(results))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(results, indent=1, default=str) + '\n')


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument('which', nargs='?', choices=PARTS + ('all',), default='all')
    parser.add_argument('--quick', action='store_true', help='the parts\' small workloads')
    parser.add_argument('--out-dir', default='runs/benchmarks')
    args = parser.parse_args(argv)
    parts = PARTS if args.which == 'all' else (args.which,)
    report = {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'quick': args.quick,
              'device': device_info(), 'parts': {}}
    for name in parts:
        print(f'benchmark {name} ...', file=sys.stderr, flush=True)
        report['parts'][name] = run_part(name, args.quick)
    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"benchmark_{args.which}{'_quick' if args.quick else ''}"
    text = markdown(report)
    (out_dir / f'{stem}.json').write_text(json.dumps(report, indent=1, default=str) + '\n')
    (out_dir / f'{stem}.md').write_text(text + '\n')
    print(text)
    print(f'written: {out_dir / stem}.json, {out_dir / stem}.md')
    return 1 if any(p['status'] == 'failed' for p in report['parts'].values()) else 0


if __name__ == '__main__':
    sys.exit(main())
