"""Run reports (utils/report.py, scripts/make_report.py) on a hand-written fake run folder."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from utils.report import (MATCH_TIOU, TRACK_WIDTH, TRACK_X0, ReportError, load_run, per_tiou_series, render_index,
                          render_report)

ROOT = Path(__file__).resolve().parents[1]
REFS_1 = {
    'v_alpha': {'duration': 100.0, 'timestamps': [[0.0, 20.0], [30.0, 60.0], [50.0, 100.0]],
                'sentences': ['A man walks in.', 'He lifts a weight.', 'He drops it & <smiles>.']},
    'v_beta': {'duration': 40.0, 'timestamps': [[5.0, 15.0]], 'sentences': ['A dog runs.']},
}
REFS_2 = {'v_alpha': {'duration': 100.0, 'timestamps': [[0.0, 50.0]], 'sentences': ['A man trains.']}}
PREDICTIONS = {'version': 'VERSION 1.0', 'external_data': {'used': True, 'details': 'C3D'}, 'results': {
    'v_alpha': [{'sentence': 'a man is walking', 'timestamp': [0.0, 25.0]},     # tIoU 0.8 with [0, 20]
                {'sentence': 'a man lifts', 'timestamp': [70.0, 80.0]}],     # best tIoU 0.2: unmatched
    'v_beta': [{'sentence': 'a dog', 'timestamp': [6.0, 14.0]}]}}
METRICS = {
    'metrics': {'Bleu_1': 11.0, 'Bleu_2': 5.0, 'Bleu_3': 2.5, 'Bleu_4': 1.25, 'METEOR': 6.5, 'ROUGE_L': 12.0,
                'CIDEr': 19.0, 'Recall': 30.0, 'Precision': 60.0, 'F1': 40.0, 'F1_mean_tiou': 39.0},
    'per_tiou': {'0.3': {'Recall': 50.0, 'Precision': 80.0}, '0.5': {'Recall': 35.0, 'Precision': 65.0},
                 '0.7': {'Recall': 25.0, 'Precision': 55.0}, '0.9': {'Recall': 10.0, 'Precision': 40.0}},
    'meta': {'toolkit': '2018', 'missing_policy': 'zero',                 # as third_party/densevid_eval stamps it
             'references': [{'path': 'refs/val_1.json', 'n_videos': 2}, {'path': 'refs/val_2.json', 'n_videos': 1}],
             'tious': [0.3, 0.5, 0.7, 0.9], 'n_videos_scored': 2},
}


def make_fake_run(runs_dir: Path, name='wsdec_fake') -> Path:
    run = runs_dir / name
    for sub in ('predictions', 'metrics'):
        (run / sub).mkdir(parents=True)
    (run / 'refs').mkdir()
    (run / 'config.json').write_text(json.dumps({'kind': 'wsdec/final', 'seed': 233, 'data_root': None}))
    (run / 'refs' / 'val_1.json').write_text(json.dumps(REFS_1))
    (run / 'refs' / 'val_2.json').write_text(json.dumps(REFS_2))
    (run / 'predictions' / 'val.json').write_text(json.dumps(PREDICTIONS))
    (run / 'metrics' / 'val.json').write_text(json.dumps(METRICS))
    return run


@pytest.fixture
def report(tmp_path):
    run = make_fake_run(tmp_path / 'runs')
    return run, render_report(run).read_text()


def _events(page: str) -> list[dict]:
    pattern = re.compile(r'<rect class="event (\w+) (\w+)" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"[^>]*'
                         r'data-start="([\d.]+)" data-end="([\d.]+)"><title>([^<]*)</title>')
    return [dict(role=m[0], state=m[1], x=float(m[2]), width=float(m[3]), start=float(m[4]), end=float(m[5]),
                 title=m[6]) for m in pattern.findall(page)]


def test_report_is_self_contained(report):
    _, page = report
    assert page.startswith('<!DOCTYPE html>') and '<style>' in page and '<svg' in page
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', page, re.I)
    assert '<link' not in page and '<img' not in page and '@import' not in page and 'url(' not in page


def test_timeline_bars_are_proportional_to_time(report):
    events = _events(report[1])
    assert len(events) == 3 + 1 + 2 + 1 + 1          # v_alpha: val_1, val_2, predicted; v_beta: val_1, predicted
    for ev in events:                                 # v_alpha lasts 100 s, v_beta 40 s
        duration = 40.0 if 'dog' in ev['title'] else 100.0
        assert ev['x'] == pytest.approx(TRACK_X0 + TRACK_WIDTH * ev['start'] / duration, abs=0.01)
        assert ev['width'] == pytest.approx(TRACK_WIDTH * (ev['end'] - ev['start']) / duration, abs=0.01)


def test_timeline_colours_follow_matching_at_tiou_half(report):
    by_title = {ev['title'].split(']')[1].split('(best')[0].strip(): ev for ev in _events(report[1])}
    assert by_title['a man is walking']['state'] == 'matched'             # tIoU 20/25 = 0.8
    assert by_title['a man lifts']['state'] == 'unmatched'                # best tIoU 10/50 = 0.2
    assert by_title['A man walks in.']['state'] == 'matched'
    assert by_title['He lifts a weight.']['state'] == 'unmatched'
    assert by_title['A man trains.']['state'] == 'unmatched'              # [0,50] vs [0,25]: 0.5 is not > 0.5
    assert 'He drops it &amp; &lt;smiles&gt;.' in by_title                 # captions escaped inside <title>
    assert MATCH_TIOU == 0.5


def test_report_shows_metrics_beside_published_and_protocol(report):
    page = report[1]
    assert '6.50' in page and '6.30' in page and '+0.20' in page           # METEOR ours, published, Δ
    assert 'P1 = toolkit 2018, missing videos zero, C3D features, ActivityNet Captions val' in page
    assert '†' not in page.split('<h2>Per-tIoU')[0].split('<tbody>')[1].split('</tbody>')[0]


def test_per_tiou_series_both_orientations():
    tious, series = per_tiou_series(METRICS)
    assert tious == [0.3, 0.5, 0.7, 0.9]
    assert series['F1'][0] == pytest.approx(2 * 50 * 80 / 130)
    transposed = {'per_tiou': {'Recall': {'0.5': 35.0}, 'Precision': {'0.5': 65.0}, 'F1': {'0.5': 45.0}}}
    assert per_tiou_series(transposed) == ([0.5], {'Recall': [35.0], 'Precision': [65.0], 'F1': [45.0]})


def test_references_override_and_plain_string_paths(tmp_path):
    run = make_fake_run(tmp_path)
    metrics = {**METRICS, 'meta': {**METRICS['meta'], 'references': ['refs/val_1.json']}}
    (run / 'metrics' / 'val.json').write_text(json.dumps(metrics))
    assert len(_events(render_report(run).read_text())) == 3 + 2 + 1 + 1
    assert len(_events(render_report(run, references=[str(run / 'refs' / 'val_2.json')]).read_text())) == 1 + 2


def test_missing_references_are_reported_not_fatal(tmp_path):
    run = make_fake_run(tmp_path)
    shutil.rmtree(run / 'refs')
    page = render_report(run).read_text()
    assert 'reference file refs/val_1.json not found' in page
    assert len(_events(page)) == 3                                         # predictions still drawn


def test_bad_submission_names_the_file(tmp_path):
    run = make_fake_run(tmp_path)
    (run / 'predictions' / 'val.json').write_text(json.dumps({'version': 'x'}))
    with pytest.raises(ReportError, match=r'predictions/val\.json: field "results"'):
        render_report(run)


def test_index_lists_runs_with_headline_metrics(tmp_path):
    runs = tmp_path / 'runs'
    render_report(make_fake_run(runs, 'a_run'))
    make_fake_run(runs, 'b_run')
    page = render_index(runs).read_text()
    assert page.index('a_run') < page.index('b_run')
    assert '<a href="a_run/report.html">' in page and '6.50' in page and '19.00' in page
    assert not re.search(r'(src|href)\s*=\s*["\']?https?:', page)


def test_make_report_cli(tmp_path):
    run = make_fake_run(tmp_path / 'runs')
    out = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'make_report.py'), '--run', str(run),
                          '--index', str(tmp_path / 'runs')], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert (run / 'report.html').exists() and (tmp_path / 'runs' / 'index.html').exists()


def _chromium():
    return shutil.which('chromium') or shutil.which('chromium-browser')


@pytest.mark.skipif(_chromium() is None, reason='chromium not installed')
def test_report_renders_in_headless_chromium(report, tmp_path):
    run, _ = report
    shot = tmp_path / 'shot.png'
    subprocess.run([_chromium(), '--headless', '--no-sandbox', '--disable-gpu', f'--screenshot={shot}',
                    '--window-size=1400,2000', (run / 'report.html').as_uri()],
                   capture_output=True, timeout=60, check=False)
    assert shot.exists() and shot.stat().st_size > 30_000                 # a blank page is ~10 kB
    data = shot.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'


def test_non_submission_prediction_files_are_not_drawn(tmp_path):
    """ILCACM's stage-1 paragraph file lives in predictions/ but is {vid: {...}}, not a submission."""
    run = make_fake_run(tmp_path)
    (run / 'predictions' / 'stage1_paragraphs.json').write_text(
        json.dumps({'v_alpha': {'paragraph': '2 events: a. b.', 'sentences': ['a.', 'b.'], 'duration': 100.0}}))
    assert 'stage1_paragraphs' not in load_run(run).predictions
    assert render_report(run).exists()


def test_training_curves_and_collapse_diagnostics(tmp_path):
    run = make_fake_run(tmp_path / 'runs')
    rows = [{'step': s, 'split': 'train', 'loss': 10.0 - s, 'div': 0.5 / s, 'epoch': (s - 1) // 2} for s in range(1, 5)]
    (run / 'log.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    diagnostics = {'events': 3, 'distinct_captions': 1, 'top_caption': 'a man', 'top_caption_fraction': 1.0,
                   'centre_histogram': [0, 3, 0, 0, 0, 0, 0, 0, 0, 0], 'width_histogram': [3] + [0] * 9,
                   'reliance': 0.001, 'warnings': ['one caption for 100% of the events']}
    (run / 'metrics' / 'val.json').write_text(json.dumps({**METRICS, 'diagnostics': diagnostics}))
    page = render_report(run).read_text()
    assert 'train/loss' in page and 'train/div' in page
    curves = re.findall(r'<polyline class="curve"[^>]*points="([^"]*)"><title>([^<]*)</title>', page)
    assert [name for _, name in curves] == ['per step', 'epoch mean'] * 2
    assert [len(points.split()) for points, _ in curves] == [4, 2, 4, 2]   # 4 steps, 2 epochs
    assert 'warning: one caption for 100% of the events' in page and 'reliance' in page
    assert 'predicted centres (fraction of the video)' in page and 'predicted widths' in page
