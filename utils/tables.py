"""The papers' result tables: our runs (mean ± std over seeds) beside the published numbers.

Input rows: ``{'row_id', 'label', 'protocol', 'metrics': [dict per seed]}`` where ``protocol`` is a
`utils.published.Protocol` (or a dict of its fields) and each metrics dict is the scorer's output or its
``metrics`` part (values ×100). Every number carries a protocol label (P1, P2, ...) explained in the caption;
a row whose protocol differs from (or cannot be verified equal to) its published number's is marked † with a
footnote naming the fields, so numbers from different protocols are never compared silently
(spec evaluation §1.2, §5). Unconfirmed published numbers (spec published_results §0) are marked ‡.

`build_table` returns a JSON-able dict; Markdown and LaTeX are rendered from that dict only.
"""
import html
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from utils.published import NOT_RECOVERED, Protocol, published_row


class TableError(ValueError):
    """A row given to the table builder is malformed."""


@dataclass(frozen=True)
class TableLayout:
    name: str
    title: str
    columns: tuple[tuple[str, str], ...]          # (metric key, column header)
    protocol_fields: tuple[str, ...]              # fields that must agree for a comparison


DENSE_CAPTIONING = TableLayout(
    'dense_captioning', 'Dense video captioning',
    (('Bleu_1', 'B@1'), ('Bleu_2', 'B@2'), ('Bleu_3', 'B@3'), ('Bleu_4', 'B@4'), ('METEOR', 'METEOR'),
     ('CIDEr', 'CIDEr'), ('ROUGE_L', 'ROUGE-L'), ('SODA_c', 'SODA_c'), ('Recall', 'R'),
     ('Precision', 'P'), ('F1', 'F1')),
    Protocol.FIELDS)
# spec evaluation §3.6: R@1 has no toolkit version or missing-video policy
SENTENCE_LOCALIZATION = TableLayout(
    'sentence_localization', 'Weakly supervised sentence localization',
    (('R@1@0.1', 'R@1 IoU>0.1'), ('R@1@0.3', 'R@1 IoU>0.3'), ('R@1@0.5', 'R@1 IoU>0.5'), ('mIoU', 'mIoU')),
    ('features', 'dataset'))
LAYOUTS = (DENSE_CAPTIONING, SENTENCE_LOCALIZATION)
# YouCook2's BLEU@N (spec published_results §2.2); a column only when a published row has it
BLEU_MEAN = ('Bleu_mean', 'BLEU@N')

MISMATCH, UNCONFIRMED = '†', '‡'
_R_AT_1 = re.compile(r'^R@?1\D*?(0?\.\d+)$')


def normalise_metrics(result: dict) -> dict[str, float]:
    """Flat metric -> value from a scorer result (or its ``metrics``); R@1 keys spelled ``R@1@0.1``,
    nested ``{'R@1': {'0.1': v}}`` flattened, ``Bleu_mean`` derived from B@1–B@4."""
    flat = {}
    for key, value in result.get('metrics', result).items():
        if isinstance(value, dict) and key.replace('@', '').upper() == 'R1':
            flat.update({f'R@1@{float(t):g}': v for t, v in value.items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            match = _R_AT_1.match(key)
            flat[f'R@1@{float(match.group(1)):g}' if match else key] = float(value)
    bleus = [flat.get(f'Bleu_{n}') for n in range(1, 5)]
    if 'Bleu_mean' not in flat and None not in bleus:
        flat['Bleu_mean'] = sum(bleus) / 4
    return flat


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n−1); std is None for a single seed."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _as_protocol(value, row_id) -> Protocol:
    if isinstance(value, Protocol):
        return value
    if isinstance(value, dict):
        unknown = set(value) - set(Protocol.FIELDS)
        if unknown:
            raise TableError(f'row {row_id!r}: unknown protocol field(s) {sorted(unknown)}; '
                             f'expected {Protocol.FIELDS}')
        return Protocol(**{k: str(v) for k, v in value.items()})
    raise TableError(f'row {row_id!r}: field "protocol" must be a Protocol or a dict, got {type(value).__name__}')


def _check_row(row: dict) -> None:
    missing = {'row_id', 'label', 'protocol', 'metrics'} - set(row)
    if missing:
        raise TableError(f'row {row.get("row_id", "?")!r} lacks field(s) {sorted(missing)}')
    if not isinstance(row['metrics'], list) or not row['metrics']:
        raise TableError(f'row {row["row_id"]!r}: field "metrics" must be a non-empty list (one dict per seed)')


class _ProtocolLabels:
    """Assigns P1, P2, ... to protocols in order of first use."""

    def __init__(self, fields: tuple[str, ...]):
        self.fields = fields
        self.labels: dict[Protocol, str] = {}

    def __call__(self, protocol: Protocol) -> str:
        return self.labels.setdefault(protocol, f'P{len(self.labels) + 1}')

    def as_json(self) -> dict:
        return {label: {**asdict(p), 'description': p.describe(self.fields)} for p, label in self.labels.items()}


def _table_row(row: dict, layout: TableLayout, columns, label_of, footnotes: list[str]) -> dict | None:
    _check_row(row)
    row_id, protocol = row['row_id'], _as_protocol(row['protocol'], row['row_id'])
    seeds = [normalise_metrics(m) for m in row['metrics']]
    ours = {}
    for metric, _ in columns:
        values = [s[metric] for s in seeds if metric in s]
        if values:
            mean, std = mean_std(values)
            ours[metric] = {'mean': mean, 'std': std, 'n': len(values), 'values': values}
    if not ours:
        return None
    published = {m: r for m, r in published_row(row_id, layout.name).items() if m in dict(columns)}
    mismatch = [f for f in layout.protocol_fields
                if any(f in protocol.differences(r.protocol, layout.protocol_fields) for r in published.values())]
    if mismatch:
        theirs = {r.protocol for r in published.values()}
        footnotes.append(f'{MISMATCH} {row["label"]} ({row_id}): protocol differs from the published '
                         f'number\'s on {", ".join(mismatch)} (ours {label_of(protocol)}, published '
                         f'{", ".join(sorted(label_of(p) for p in theirs))}); the differences are not '
                         f'like-for-like.')
    elif not published:
        reason = NOT_RECOVERED.get(row_id, 'the spec has no published number for this row in this table')
        footnotes.append(f'{row["label"]} ({row_id}): nothing to compare with; {reason}.')
    footnotes.extend(f'Published {row_id} {r.metric}: {r.note}.' for r in published.values() if r.note)
    return {
        'row_id': row_id, 'label': row['label'], 'protocol': label_of(protocol), 'n_seeds': len(seeds),
        'ours': ours,
        'published': {m: {'value': r.value, 'source': r.source, 'confidence': r.confidence,
                          'protocol': label_of(r.protocol), 'note': r.note} for m, r in published.items()},
        'difference': {m: ours[m]['mean'] - published[m].value for m in published if m in ours},
        'protocol_mismatch': mismatch,
    }


def build_table(rows: list[dict], layout: TableLayout = DENSE_CAPTIONING) -> dict:
    """The table as a JSON-able dict (rows without any of the layout's metrics are left out)."""
    columns = list(layout.columns)
    if any(BLEU_MEAN[0] in published_row(r.get('row_id', ''), layout.name) for r in rows):
        columns.append(BLEU_MEAN)
    label_of, footnotes = _ProtocolLabels(layout.protocol_fields), []
    built = [t for t in (_table_row(r, layout, columns, label_of, footnotes) for r in rows) if t]
    if any(p['confidence'] == 'unconfirmed' for row in built for p in row['published'].values()):
        footnotes.append(f'{UNCONFIRMED} published number UNCONFIRMED in the spec (recalled or second-hand; '
                         f'spec published_results §0).')
    protocols = label_of.as_json()
    caption = (f'Ours: mean ± sample std (n−1) over seeds (column n); values ×100. '
               f'Published: the number in the cited source; Δ = ours − published. Protocols: '
               + '; '.join(f'{k} = {v["description"]}' for k, v in protocols.items()) + '.')
    return {'table': layout.name, 'title': layout.title, 'caption': caption,
            'columns': [{'metric': m, 'header': h} for m, h in columns],
            'protocols': protocols, 'rows': built, 'footnotes': footnotes}


def _fmt(x: float) -> str:
    return f'{x:.2f}'


def _cells(row: dict, columns: list[dict], tex: bool) -> list[tuple[str, list[str]]]:
    """(first-column text, cells) of the ours / published / Δ lines of one row."""
    pm = ' \\pm ' if tex else ' ± '
    none = '---' if tex else '—'
    dagger = '$^\\dagger$' if tex else MISMATCH
    ddagger = '$^\\ddagger$' if tex else UNCONFIRMED
    flag = dagger if row['protocol_mismatch'] else ''

    def ours(m):
        o = row['ours'].get(m)
        if o is None:
            return none
        text = _fmt(o['mean']) + ('' if o['std'] is None else pm + _fmt(o['std']))
        return f'${text}$' if tex and o['std'] is not None else text

    def pub(m):
        p = row['published'].get(m)
        return none if p is None else _fmt(p['value']) + (ddagger if p['confidence'] == 'unconfirmed' else '')

    def diff(m):
        d = row['difference'].get(m)
        return none if d is None else f'{d:+.2f}' + flag

    ms = [c['metric'] for c in columns]
    label = _escape(row['label']) if tex else row['label']
    lines = [(label + flag, [row['protocol'], str(row['n_seeds'])] + [ours(m) for m in ms])]
    if row['published']:
        pub_protocols = ', '.join(sorted({p['protocol'] for p in row['published'].values()}))
        indent, delta = ('\\quad ', '$\\Delta$ (ours $-$ published)') if tex else ('└ ', 'Δ (ours − published)')
        lines.append((indent + 'published', [pub_protocols, ''] + [pub(m) for m in ms]))
        lines.append((indent + delta, ['', ''] + [diff(m) for m in ms]))
    return lines


def to_markdown(table: dict) -> str:
    headers = ['Method', 'Protocol', 'n'] + [c['header'] for c in table['columns']]
    out = [f'**{table["title"]}.** {table["caption"]}', '', '| ' + ' | '.join(headers) + ' |',
           '|' + '---|' * 3 + '---:|' * len(table['columns'])]
    for row in table['rows']:
        for first, cells in _cells(row, table['columns'], tex=False):
            out.append('| ' + ' | '.join([first] + cells) + ' |')
    out += [''] + [f'- {f}' for f in table['footnotes']]
    return '\n'.join(out) + '\n'


def to_html(table: dict) -> str:
    """The table as an HTML fragment (<table> with caption and footnotes), for the run reports."""
    esc = html.escape
    head = ''.join(f'<th>{esc(h)}</th>' for h in ['Method', 'Protocol', 'n'] + [c['header'] for c in table['columns']])
    body = []
    for row in table['rows']:
        for i, (first, cells) in enumerate(_cells(row, table['columns'], tex=False)):
            kind = ('ours', 'published', 'delta')[i]
            body.append(f'<tr class="{kind}"><td>{esc(first)}</td>' + ''.join(f'<td>{esc(c)}</td>' for c in cells)
                        + '</tr>')
    notes = ''.join(f'<li>{esc(f)}</li>' for f in table['footnotes'])
    return (f'<table class="metrics"><caption><b>{esc(table["title"])}.</b> {esc(table["caption"])}</caption>'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            + (f'<ul class="footnotes">{notes}</ul>' if notes else ''))


_TEX_SPECIAL = {'\\': r'\textbackslash{}', '&': r'\&', '%': r'\%', '$': r'\$', '#': r'\#', '_': r'\_',
                '{': r'\{', '}': r'\}', '~': r'\textasciitilde{}', '^': r'\textasciicircum{}',
                '±': r'$\pm$', '−': '$-$', 'Δ': r'$\Delta$', MISMATCH: r'$^\dagger$', UNCONFIRMED: r'$^\ddagger$',
                '≈': r'$\approx$', '§': r'\S{}', '–': '--', '²': r'$^2$', '>': r'$>$', '“': '``', '”': "''",
                '—': '---', '×': r'$\times$'}


def _escape(text: str) -> str:
    return ''.join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: dict) -> str:
    """A booktabs table (needs \\usepackage{booktabs})."""
    n = len(table['columns'])
    headers = ['Method', 'Prot.', '$n$'] + [_escape(c['header']) for c in table['columns']]
    caption = _escape(f'{table["title"]}. {table["caption"]}')
    out = ['\\begin{table}[t]', '\\centering', '\\small', f'\\caption{{{caption}}}',
           f'\\label{{tab:{table["table"]}}}', f'\\begin{{tabular}}{{llr{"r" * n}}}', '\\toprule',
           ' & '.join(headers) + ' \\\\', '\\midrule']
    for i, row in enumerate(table['rows']):
        if i:
            out.append('\\midrule')
        for first, cells in _cells(row, table['columns'], tex=True):
            out.append(' & '.join([first] + cells) + ' \\\\')
    out += ['\\bottomrule', '\\end{tabular}']
    if table['footnotes']:
        out += ['\\par\\footnotesize'] + [_escape(f) + '\\\\' for f in table['footnotes']]
    out.append('\\end{table}')
    return '\n'.join(out) + '\n'


def write_tables(rows: list[dict], out_dir='runs/tables') -> list[Path]:
    """Writes {dense_captioning,sentence_localization}.{md,tex,json} under `out_dir`; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for layout in LAYOUTS:
        table = build_table(rows, layout)
        for suffix, text in (('md', to_markdown(table)), ('tex', to_latex(table)),
                             ('json', json.dumps(table, indent=2, ensure_ascii=False) + '\n')):
            path = out_dir / f'{layout.name}.{suffix}'
            path.write_text(text, encoding='utf-8')
            written.append(path)
    return written
