"""What every evaluation shares, whatever the method: the evaluation's run folder, the submission file, scoring
under a named protocol of the scorer (third_party/densevid_eval; spec evaluation §1.3-1.5), and the collapse
diagnostics stored beside the scores (utils/diagnostics.py)."""
import json
import sys
from pathlib import Path

from third_party.densevid_eval import PROTOCOLS, evaluate, evaluate_localization, format_table, save_result
from utils.annotations import load_annotations
from utils.checkpoint import atomic_path
from utils.diagnostics import submission_diagnostics, warnings
from utils.run import Run


def checkpoint_run_dir(path) -> Path | None:
    """`runs/<name>/` of a checkpoint `runs/<name>/checkpoints/X.pt` (None elsewhere)."""
    path = Path(path).resolve()
    return path.parent.parent if path.parent.name == 'checkpoints' else None


def checkpoint_run_name(path) -> str:
    """The run folder name of `runs/<name>/checkpoints/X.pt`, else the file's stem."""
    path = Path(path).resolve()
    return path.parent.parent.name if path.parent.name == 'checkpoints' else path.stem


def eval_run(args, kind: str, checkpoint, prefix: str = 'eval') -> Run:
    """runs/<run-name>/ (default `<prefix>_<checkpoint's run name>`); an existing folder is an error unless
    --resume (utils.run.Run), so choose a new --run-name to evaluate again."""
    if args.run_name is None:
        args.run_name = f"{prefix}_{checkpoint_run_name(checkpoint)}"
    return Run(args, kind)


def references(paths) -> list:
    """val_1 and val_2 of a data root (val_2 only where it exists, e.g. not for YouCook2 roots)."""
    return [paths.val_1] + ([paths.val_2] if paths.val_2.exists() else [])


def write_submission(run, name: str, submission: dict) -> Path:
    """`<run>/predictions/<name>.json`, written atomically; prints what it holds."""
    run.start()
    path = run.predictions_dir / f'{name}.json'
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(submission))
    results = submission['results']
    print(f"predictions: {path} ({sum(len(v) for v in results.values())} entries, {len(results)} videos)")
    return path


def score(metrics_dir, name: str, submission, refs, protocols=('wsdec',), meteor=None, show=True,
          diagnostics: dict | None = None) -> dict:
    """Score `submission` under each protocol; save `<metrics_dir>/<name>.json` (one protocol) or
    `<name>_<protocol>.json` (several), with the collapse diagnostics of the predictions (plus the method's own,
    `diagnostics`) under `diagnostics`; print the tables if `show`, and the warnings. Returns {protocol: result}."""
    results = json.loads(Path(submission).read_text())['results']
    found = submission_diagnostics(results, load_annotations(refs[0])) | (diagnostics or {})
    found['warnings'] = warnings(found)
    out = {}
    for protocol in protocols:
        options = PROTOCOLS[protocol]
        result = evaluate(submission, [str(r) for r in refs], meteor=meteor, **options)
        result['diagnostics'] = found
        suffix = '' if len(protocols) == 1 else f'_{protocol}'
        save_result(result, Path(metrics_dir) / f'{name}{suffix}.json')
        if show:
            if len(protocols) > 1:
                print(f'== {protocol} protocol (toolkit {options["toolkit"]}, missing videos: {options["missing"]}) ==')
            print(format_table(result), flush=True)
        out[protocol] = result
    for line in found['warnings']:
        print(f"warning: {name}: {line}", file=sys.stderr)
    return out


def score_localization(run, name: str, submission) -> dict:
    """R@1 at 0.1/0.3/0.5/0.7/0.9 and per-sentence mIoU (spec evaluation §3.6)."""
    result = evaluate_localization(submission)
    save_result(result, run.metrics_dir / f'{name}.json')
    print(format_table(result))
    return result
