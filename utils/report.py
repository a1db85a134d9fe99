"""Self-contained HTML reports of run folders: metrics tables, collapse diagnostics (issue 14), training curves,
per-tIoU charts, event timelines.

`render_report(run_dir)` writes `runs/<name>/report.html`; `render_index(runs_dir)` writes `runs/index.html`.
The pages need no network and no external file: CSS is inline and every chart is an inline SVG (captions of
timeline bars are SVG <title> tooltips). A run folder holds `config.json`, `predictions/*.json` (submission
format) and `metrics/*.json` (scorer output whose `meta` names the reference files, spec evaluation §5).
"""
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from third_party.densevid_eval.tiou import tiou
from utils.annotations import load_annotations
from utils.published import NOT_RECOVERED, Protocol, row_ids
from utils.tables import LAYOUTS, build_table, normalise_metrics, to_html


class ReportError(ValueError):
    """A run folder cannot be reported on; the message names the file."""


MATCH_TIOU = 0.5          # timeline colours: matched when tIoU > 0.5 (detection rule, spec evaluation §3.4)
TIMELINE_WIDTH = 1180     # svg width of a timeline
TRACK_X0 = 110            # x of time 0 (left of it: the row labels)
TRACK_WIDTH = 1050        # pixels for the whole video duration
BAR_HEIGHT, LANE_GAP = 11, 3
HEADLINE = (('METEOR', 'METEOR'), ('CIDEr', 'CIDEr'), ('SODA_c', 'SODA_c'), ('Bleu_4', 'B@4'), ('F1', 'F1'),
            ('R@1@0.5', 'R@1@0.5'), ('mIoU', 'mIoU'))

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px 32px;color:#1d2329;
background:#fff;max-width:1240px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2e7;padding-bottom:3px}
h3{font-size:14px;margin:16px 0 2px}.muted{color:#66707a}code{background:#f2f4f6;padding:0 3px;border-radius:3px}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 8px;border-bottom:1px solid #e6e9ec;text-align:right;
white-space:nowrap}td:first-child,th:first-child{text-align:left}th{background:#f4f6f8;font-weight:600}
caption{caption-side:top;text-align:left;color:#4a545e;padding:4px 0;font-size:12.5px;max-width:1180px}
tr.published td{color:#55606b}tr.delta td{color:#55606b;font-style:italic;border-bottom:2px solid #cfd5db}
ul.footnotes{font-size:12.5px;color:#4a545e;margin:4px 0 0;padding-left:18px}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:1px 12px;font-size:12.5px;margin:4px 0}
dl.meta dt{color:#66707a}dl.meta dd{margin:0}.legend span{display:inline-block;margin-right:14px;font-size:12.5px}
.legend i{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle}
svg text{font-family:system-ui,Helvetica,Arial,sans-serif}.warn{color:#a94442}
"""
COLOURS = {('reference', True): '#2f78b7', ('reference', False): '#aab3bc',
           ('predicted', True): '#2e9d4f', ('predicted', False): '#d9534f'}
SERIES_COLOURS = ('#2f78b7', '#e08a2c', '#2e9d4f', '#8e5ec4')


@dataclass
class RunData:
    dir: Path
    config: dict
    metrics: dict[str, dict] = field(default_factory=dict)       # file stem -> scorer result
    predictions: dict[str, dict] = field(default_factory=dict)   # file stem -> submission
    log: list[dict] = field(default_factory=list)                # log.jsonl rows


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f'{path}: cannot read JSON ({err})') from err
    if not isinstance(data, dict):
        raise ReportError(f'{path}: expected a JSON object, got {type(data).__name__}')
    return data


def load_run(run_dir) -> RunData:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f'{run_dir}: no such run folder')
    config = _read_json(run_dir / 'config.json') if (run_dir / 'config.json').exists() else {}
    run = RunData(run_dir, config)
    log = run_dir / 'log.jsonl'
    if log.is_file():
        try:
            run.log = [json.loads(line) for line in log.read_text(encoding='utf-8').splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise ReportError(f'{log}: not JSON lines ({err})') from err
    for path in sorted((run_dir / 'metrics').glob('*.json')):
        run.metrics[path.stem] = _read_json(path)
    for path in sorted((run_dir / 'predictions').glob('*.json')):
        data = _read_json(path)
        if 'results' not in data and 'version' not in data:
            continue   # not a submission (e.g. ILCACM's stage-1 paragraphs {vid: ...}): nothing to draw
        if not isinstance(data.get('results'), dict):
            raise ReportError(f'{path}: field "results" missing or not an object')
        run.predictions[path.stem] = data
    return run


# ---- what a run measured and under which protocol -------------------------------------------------------

def run_row_id(config: dict, override: str | None = None) -> str | None:
    """Published row the run reproduces: --row, else config 'row_id', else config 'kind' if it is a row id."""
    known = set(row_ids()) | set(NOT_RECOVERED)
    return override or config.get('row_id') or (config.get('kind') if config.get('kind') in known else None)


def run_protocol(config: dict, meta: dict) -> Protocol:
    """Protocol of one metrics file (spec evaluation §5): toolkit and missing policy from the scorer's meta,
    features and dataset from the run config ('?' when not recorded)."""
    kind = str(config.get('kind', '')).lower()
    features = config.get('features') or ('CLIP' if 'ilcacm' in kind else 'C3D' if 'wsdec' in kind else '?')
    data_root = config.get('data_root')
    # a data root names the data actually used (ILCACM's config 'dataset' is only its frame-count preset)
    dataset = (f'data root "{Path(data_root).name}"' if data_root
               else config.get('dataset') or 'ActivityNet Captions val')
    return Protocol(toolkit=str(meta.get('toolkit', '?')),
                    missing=str(meta.get('missing', meta.get('missing_policy', '?'))),
                    features=str(features), dataset=str(dataset))


def run_rows(run: RunData, row_id: str | None = None) -> list[dict]:
    """One table row per metrics file of the run (label: run name · file)."""
    rid = run_row_id(run.config, row_id) or run.dir.name
    return [{'row_id': rid, 'label': f'{run.dir.name} · {stem}',
             'protocol': run_protocol(run.config, result.get('meta', {})), 'metrics': [result]}
            for stem, result in run.metrics.items()]


def find_references(run: RunData, override=None) -> tuple[dict[str, dict], list[str]]:
    """Reference annotations {file name: annotations} from --references or the metrics' meta, and
    the problems met (paths not found)."""
    stamped = (ref.get('path') if isinstance(ref, dict) else ref           # scorer meta: [{'path', 'n_videos'}]
               for r in run.metrics.values() for ref in r.get('meta', {}).get('references', []))
    paths = list(override or dict.fromkeys(p for p in stamped if isinstance(p, str)))
    found, problems = {}, []
    for p in paths:
        candidates = [Path(p)] if Path(p).is_absolute() else [Path.cwd() / p, run.dir / p, run.dir.parents[1] / p]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            problems.append(f'reference file {p} not found (looked in: {", ".join(map(str, candidates))})')
        else:
            found[Path(p).name] = load_annotations(hit)
    return found, problems


# ---- timelines ------------------------------------------------------------------------------------------

def _lanes(events: list[dict]) -> list[list[dict]]:
    """Greedy interval packing: events sorted by start go to the first lane that is free."""
    lanes: list[list[dict]] = []
    for ev in sorted(events, key=lambda e: (e['start'], e['end'])):
        lane = next((ln for ln in lanes if ln[-1]['end'] <= ev['start']), None)
        if lane is None:
            lane = []
            lanes.append(lane)
        lane.append(ev)
    return lanes


def time_to_x(t: float, duration: float) -> float:
    """x pixel of time t (clamped into the video) on a timeline."""
    return TRACK_X0 + TRACK_WIDTH * min(max(t, 0.0), duration) / duration


def _ticks(duration: float) -> list[float]:
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 3600, 1e9) if duration / s <= 12)
    return [i * step for i in range(int(duration // step) + 1)]


def _event_svg(ev: dict, y: float, duration: float) -> str:
    x0, x1 = time_to_x(ev['start'], duration), time_to_x(ev['end'], duration)
    tip = (f'{ev["source"]} [{ev["start"]:.1f}–{ev["end"]:.1f} s] {ev["sentence"]} '
           f'(best tIoU {ev["best"]:.2f})')
    return (f'<rect class="event {ev["role"]} {"matched" if ev["matched"] else "unmatched"}" '
            f'x="{x0:.2f}" y="{y:.1f}" width="{max(x1 - x0, 1.0):.2f}" height="{BAR_HEIGHT}" rx="2" '
            f'fill="{COLOURS[ev["role"], ev["matched"]]}" data-start="{ev["start"]}" data-end="{ev["end"]}">'
            f'<title>{html.escape(tip)}</title></rect>')


def _events(entries, role, source, others) -> list[dict]:
    out = []
    for start, end, sentence in entries:
        best = max((tiou((start, end), o) for o in others), default=0.0)
        out.append({'start': start, 'end': end, 'sentence': sentence, 'role': role, 'source': source,
                    'best': best, 'matched': best > MATCH_TIOU})
    return out


def timeline_svg(duration: float, references: dict[str, list], predicted: list) -> str:
    """One video: a band per annotator and one for the predictions; entries are (start, end, sentence)."""
    pred_segments = [(s, e) for s, e, _ in predicted]
    gt_segments = [(s, e) for entries in references.values() for s, e, _ in entries]
    bands = [(name, _events(entries, 'reference', name, pred_segments)) for name, entries in references.items()]
    bands.append(('predicted', _events(predicted, 'predicted', 'predicted', gt_segments)))
    y, body = 26, []
    for name, events in bands:
        lanes = _lanes(events) or [[]]
        height = len(lanes) * (BAR_HEIGHT + LANE_GAP)
        body.append(f'<rect x="{TRACK_X0}" y="{y - 2}" width="{TRACK_WIDTH}" height="{height + 2}" fill="#f6f8fa"/>'
                    f'<text x="{TRACK_X0 - 8}" y="{y + height / 2 + 4:.1f}" text-anchor="end" font-size="12">'
                    f'{html.escape(name)} ({len(events)})</text>')
        for i, lane in enumerate(lanes):
            body += [_event_svg(ev, y + i * (BAR_HEIGHT + LANE_GAP), duration) for ev in lane]
        y += height + 10
    axis = [f'<line x1="{TRACK_X0}" y1="18" x2="{TRACK_X0 + TRACK_WIDTH}" y2="18" stroke="#8a949e"/>']
    for t in _ticks(duration):
        x = time_to_x(t, duration)
        axis.append(f'<line x1="{x:.2f}" y1="14" x2="{x:.2f}" y2="{y - 6}" stroke="#e3e7eb"/>'
                    f'<text x="{x:.2f}" y="11" text-anchor="middle" font-size="10" fill="#66707a">{t:g}s</text>')
    return (f'<svg class="timeline" width="{TIMELINE_WIDTH}" height="{y}" '
            f'viewBox="0 0 {TIMELINE_WIDTH} {y}">{"".join(axis)}{"".join(body)}</svg>')


def sample_videos(results: dict, references: dict[str, dict], n: int) -> list[str]:
    """Up to n predicted videos spread evenly over the sorted ids, preferring those with references."""
    with_refs = sorted(v for v in results if any(v in ann for ann in references.values()))
    pool = with_refs or sorted(results)
    if len(pool) <= n:
        return pool
    return [pool[round(i * (len(pool) - 1) / (n - 1))] for i in range(n)] if n > 1 else pool[:1]


def _video_section(vid: str, entries: list[dict], references: dict[str, dict]) -> str:
    predicted = [(float(e['timestamp'][0]), float(e['timestamp'][1]), str(e.get('sentence', ''))) for e in entries]
    refs = {name: list(zip([float(t[0]) for t in ann[vid]['timestamps']], [float(t[1]) for t in ann[vid]['timestamps']],
                           ann[vid]['sentences']))
            for name, ann in references.items() if vid in ann}
    durations = [ann[vid]['duration'] for ann in references.values() if vid in ann]
    duration = float(durations[0]) if durations else max([e for _, e, _ in predicted] + [1.0])
    note = '' if durations else ' <span class="warn">(no reference: duration = last predicted end)</span>'
    return (f'<h3>{html.escape(vid)} <span class="muted">— {duration:.1f} s, {len(predicted)} predicted, '
            f'{sum(len(r) for r in refs.values())} reference events</span>{note}</h3>'
            + timeline_svg(duration, refs, predicted))


# ---- charts ---------------------------------------------------------------------------------------------

def per_tiou_series(result: dict) -> tuple[list[float], dict[str, list[float]]]:
    """(tIoUs, {Recall|Precision|F1: values}) from a scorer result's per_tiou, keyed either tIoU → metric → value
    or metric → tIoU → value; F1(τ) = 2PR/(P+R) when absent (spec evaluation §3.4)."""
    per = result.get('per_tiou') or {}
    try:
        by_tiou = {float(t): m for t, m in per.items()}
    except ValueError:
        by_tiou = {}
        for metric, values in per.items():
            if isinstance(values, dict):
                for t, v in values.items():
                    by_tiou.setdefault(float(t), {})[metric] = v
    tious = sorted(t for t, m in by_tiou.items() if isinstance(m, dict) and 'Recall' in m and 'Precision' in m)
    series = {k: [float(by_tiou[t][k]) for t in tious] for k in ('Recall', 'Precision')}
    series['F1'] = [float(by_tiou[t]['F1']) if 'F1' in by_tiou[t] else
                    (2 * p * r / (p + r) if p + r else 0.0) for t, p, r in zip(tious, series['Precision'],
                                                                             series['Recall'])]
    return tious, series


def bar_chart_svg(groups: list[str], series: dict[str, list[float]], y_max: float = 100.0,
                  x_title: str = 'tIoU') -> str:
    """Grouped bar chart (values ×100) with axis, grid, value labels and legend."""
    width, height, left, top, bottom = 560, 260, 44, 26, 40
    plot_w, plot_h = width - left - 12, height - top - bottom
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    parts = []
    step = next(m * 10 ** k for k in range(-2, 9) for m in (1, 2, 5) if m * 10 ** k >= y_max / 5)
    for i in range(int(y_max / step) + 1):
        v = i * step
        y = top + plot_h * (1 - v / y_max)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e3e7eb"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="#66707a">{v:g}</text>')
    for g, name in enumerate(groups):
        gx = left + g * group_w
        parts.append(f'<text x="{gx + group_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                     f'font-size="11">{html.escape(name)}</text>')
        for s, (label, values) in enumerate(series.items()):
            v = min(max(values[g], 0.0), y_max)
            x, h = gx + group_w * 0.1 + s * bar_w, plot_h * v / y_max
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                         f'height="{h:.1f}" fill="{SERIES_COLOURS[s % 4]}"><title>{html.escape(label)} @ '
                         f'{html.escape(name)}: {values[g]:.2f}</title></rect>'
                         f'<text x="{x + bar_w / 2 - 1:.1f}" y="{top + plot_h - h - 3:.1f}" text-anchor="middle" '
                         f'font-size="9" fill="#3b444d">{values[g]:.1f}</text>')
    legend = ''.join(f'<rect x="{left + 8 + i * 90}" y="6" width="12" height="10" fill="{SERIES_COLOURS[i % 4]}"/>'
                     f'<text x="{left + 24 + i * 90}" y="15" font-size="11">{html.escape(k)}</text>'
                     for i, k in enumerate(series))
    axis = (f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#8a949e"/>'
            f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" font-size="11" '
            f'fill="#66707a">{html.escape(x_title)}</text>')
    return (f'<svg class="chart" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">{legend}{"".join(parts)}{axis}</svg>')


def _charts(run: RunData) -> str:
    out = []
    for stem, result in run.metrics.items():
        tious, series = per_tiou_series(result)
        if tious:
            out.append(f'<h3>{html.escape(stem)}: precision / recall per tIoU</h3>'
                       + bar_chart_svg([f'{t:g}' for t in tious], series))
        flat = normalise_metrics(result)
        taus = sorted(float(k[4:]) for k in flat if k.startswith('R@1@'))
        if taus:
            out.append(f'<h3>{html.escape(stem)}: sentence localization R@1 per IoU threshold</h3>'
                       + bar_chart_svg([f'{t:g}' for t in taus], {'R@1': [flat[f'R@1@{t:g}'] for t in taus]},
                                       x_title='IoU threshold'))
    return ''.join(out) or '<p class="muted">No per-tIoU results in the metrics files.</p>'


def line_chart_svg(series: dict[str, list[tuple[float, float]]], x_title: str = 'step') -> str:
    """Lines through (x, y) points, one per series, on shared axes labelled with their ranges."""
    width, height, left, top, bottom = 560, 200, 54, 22, 34
    plot_w, plot_h = width - left - 12, height - top - bottom
    points = [p for values in series.values() for p in values]
    if not points:
        return ''
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def xy(p):
        return left + plot_w * (p[0] - x0) / (x1 - x0), top + plot_h * (1 - (p[1] - y0) / (y1 - y0))
    lines = []
    for i, (name, values) in enumerate(series.items()):
        path = ' '.join(f'{x:.1f},{y:.1f}' for x, y in map(xy, values))
        lines.append(f'<polyline class="curve" fill="none" stroke="{SERIES_COLOURS[i % 4]}" '
                     f'stroke-width="{1 if i == 0 else 2}" points="{path}"><title>{html.escape(name)}</title>'
                     f'</polyline><rect x="{left + 8 + i * 130}" y="4" width="12" height="8" '
                     f'fill="{SERIES_COLOURS[i % 4]}"/><text x="{left + 24 + i * 130}" y="12" font-size="11">'
                     f'{html.escape(name)}</text>')
    axis = (f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#c9d0d6"/>'
            f'<text x="{left - 6}" y="{top + 8}" text-anchor="end" font-size="10" fill="#66707a">{y1:.4g}</text>'
            f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="10" fill="#66707a">{y0:.4g}</text>'
            f'<text x="{left}" y="{top + plot_h + 14}" font-size="10" fill="#66707a">{x0:g}</text>'
            f'<text x="{left + plot_w}" y="{top + plot_h + 14}" text-anchor="end" font-size="10" '
            f'fill="#66707a">{x1:g}</text><text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" '
            f'font-size="11" fill="#66707a">{html.escape(x_title)}</text>')
    return f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}">{axis}{"".join(lines)}</svg>'


def training_curves(log: list[dict]) -> str:
    """Every scalar of log.jsonl: its value at each step and its mean over each epoch (at the epoch's last step)."""
    names = sorted({k for row in log for k in row if k not in ('step', 'split', 'epoch')})
    out = []
    for name in names:
        rows = [r for r in log if name in r]
        per_step = [(float(r['step']), float(r[name])) for r in rows]
        epochs: dict[float, list] = {}
        for r in rows:
            epochs.setdefault(r.get('epoch', 0), []).append(r)
        per_epoch = [(float(max(x['step'] for x in group)), sum(float(x[name]) for x in group) / len(group))
                     for _, group in sorted(epochs.items())]
        split = rows[0].get('split', 'train')
        out.append(f'<h3>{html.escape(split)}/{html.escape(name)}</h3>'
                   + line_chart_svg({'per step': per_step, 'epoch mean': per_epoch}))
    return ''.join(out) or '<p class="muted">No log.jsonl in the run folder.</p>'


DIAGNOSTIC_SCALARS = ('events', 'distinct_captions', 'distinct_fraction', 'top_caption', 'top_caption_fraction',
                      'one_caption_videos_fraction', 'single_event_videos_fraction', 'events_per_video',
                      'reference_events_per_video', 'centre_mean_std', 'width_mean_std', 'narrow_fraction')


def diagnostics_section(run: RunData) -> str:
    """The collapse diagnostics of each metrics file: warnings, the measured values, centre and width histograms."""
    out, seen = [], set()
    for stem, result in run.metrics.items():
        d = result.get('diagnostics')
        key = json.dumps(d, sort_keys=True, default=str) if d else None
        if not d or key in seen:   # both protocols of one submission carry the same diagnostics
            continue
        seen.add(key)
        out.append(f'<h3>{html.escape(stem)}</h3>')
        out += [f'<p class="warn">warning: {html.escape(w)}</p>' for w in d.get('warnings', [])]
        if not d.get('warnings'):
            out.append('<p class="muted">no sign of a collapse</p>')
        shown = {k: d[k] for k in DIAGNOSTIC_SCALARS if k in d}
        shown.update({k: v for k, v in d.items() if k.startswith(('nll_', 'reliance', 'train_', 'stated', 'split_',
                                                                  'paragraphs', 'distinct_paragraphs'))})
        out.append(_meta_list({k: (round(v, 4) if isinstance(v, float) else v) for k, v in shown.items()}))
        for name in ('centre', 'width'):
            counts = d.get(f'{name}_histogram')
            if counts:
                bins = [f'{i / len(counts):.1f}' for i in range(len(counts))]
                out.append(f'<h3>{html.escape(stem)}: predicted {name}s (fraction of the video)</h3>'
                           + bar_chart_svg(bins, {'events': [float(c) for c in counts]},
                                           y_max=max(max(counts), 1) * 1.15, x_title=f'{name} (bin start)'))
    return ''.join(out) or '<p class="muted">No diagnostics in the metrics files.</p>'


# ---- pages ----------------------------------------------------------------------------------------------

def _meta_list(items: dict) -> str:
    rows = ''.join(f'<dt>{html.escape(str(k))}</dt><dd>{html.escape(json.dumps(v) if not isinstance(v, str) else v)}'
                   f'</dd>' for k, v in items.items())
    return f'<dl class="meta">{rows}</dl>'


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{CSS}</style></head><body>{body}</body></html>\n')


def _legend() -> str:
    names = {('reference', True): f'reference event covered by a prediction (tIoU > {MATCH_TIOU})',
             ('reference', False): 'reference event not covered',
             ('predicted', True): f'predicted event matching a reference (tIoU > {MATCH_TIOU})',
             ('predicted', False): 'predicted event matching none'}
    return '<p class="legend">' + ''.join(f'<span><i style="background:{COLOURS[k]}"></i>{v}</span>'
                                          for k, v in names.items()) + '</p>'


def render_report(run_dir, references=None, row_id: str | None = None, n_videos: int = 6) -> Path:
    """Writes `<run_dir>/report.html` and returns its path."""
    run = load_run(run_dir)
    rows = run_rows(run, row_id)
    tables = [to_html(t) for t in (build_table(rows, layout) for layout in LAYOUTS) if t['rows']]
    refs, problems = find_references(run, references)
    config_keys = ('kind', 'row_id', 'seed', 'data_root', 'epochs', 'batch_size')
    body = [f'<h1>Run <code>{html.escape(run.dir.name)}</code></h1>',
            _meta_list({k: run.config[k] for k in config_keys if run.config.get(k) is not None}),
            '<h2>Metrics</h2>', ''.join(tables) or '<p class="muted">No metrics files.</p>']
    body += [f'<h3>{html.escape(stem)}: evaluation protocol</h3>'
             + (_meta_list(r['meta']) if r.get('meta') else '<p class="warn">no meta recorded in this file</p>')
             for stem, r in run.metrics.items()]
    body += ['<h2>Collapse diagnostics</h2>', diagnostics_section(run), '<h2>Training curves</h2>',
             training_curves(run.log), '<h2>Per-tIoU results</h2>', _charts(run), '<h2>Sample timelines</h2>',
             _legend()]
    body += [f'<p class="warn">{html.escape(p)}</p>' for p in problems]
    for stem, submission in run.predictions.items():
        results = submission['results']
        body.append(f'<h3>predictions/{html.escape(stem)}.json: {len(results)} videos</h3>')
        body += [_video_section(vid, results[vid], refs) for vid in sample_videos(results, refs, n_videos)]
    path = run.dir / 'report.html'
    path.write_text(_page(f'Run {run.dir.name}', ''.join(body)), encoding='utf-8')
    return path


def headline(run: RunData) -> dict[str, float]:
    """The first value of each headline metric over the run's metrics files (sorted by name)."""
    out = {}
    for result in run.metrics.values():
        for key, value in normalise_metrics(result).items():
            out.setdefault(key, value)
    return out


def render_index(runs_dir) -> Path:
    """Writes `<runs_dir>/index.html`: one line per run folder with its headline metrics."""
    runs_dir = Path(runs_dir)
    head = ''.join(f'<th>{h}</th>' for h in ['Run', 'Kind', 'Row', 'Toolkit', 'Missing']
                   + [h for _, h in HEADLINE] + ['Report'])
    lines = []
    for d in sorted(p for p in runs_dir.iterdir() if (p / 'config.json').exists() or (p / 'metrics').is_dir()):
        run = load_run(d)
        meta = next((r.get('meta', {}) for r in run.metrics.values() if 'toolkit' in r.get('meta', {})), {})
        values = headline(run)
        report = (f'<a href="{html.escape(d.name)}/report.html">report</a>' if (d / 'report.html').exists()
                  else '<span class="muted">none</span>')
        cells = [f'<code>{html.escape(d.name)}</code>', html.escape(str(run.config.get('kind', '?'))),
                 html.escape(str(run_row_id(run.config) or '—')), html.escape(str(meta.get('toolkit', '—'))),
                 html.escape(str(meta.get('missing', meta.get('missing_policy', '—'))))]
        cells += [f'{values[k]:.2f}' if k in values else '—' for k, _ in HEADLINE] + [report]
        lines.append('<tr>' + ''.join(f'<td>{c}</td>' for c in cells) + '</tr>')
    body = (f'<h1>Runs in <code>{html.escape(str(runs_dir))}</code></h1>'
            f'<p class="muted">Values ×100, first metrics file of each run; see each report for protocols.</p>'
            f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>')
    path = runs_dir / 'index.html'
    path.write_text(_page('Runs', body), encoding='utf-8')
    return path
