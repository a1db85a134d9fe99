"""The learning checks of issue 14 (utils/learning_checks.py): method rows against their degenerate baselines."""
import json

import pytest

from utils.experiments import BY_ID, LEARNING_CHECKS
from utils.learning_checks import compare, learning_checks, to_markdown, write_learning_checks


def row(row_id, seeds, meteor, f1=None):
    """A table row as scripts/reproduce_tables.py builds it: one scorer result (values x100) per seed."""
    f1 = f1 or [50.0] * len(seeds)
    return {'row_id': row_id, 'label': row_id.upper(), 'seeds': list(seeds),
            'metrics': [{'metrics': {'METEOR': m, 'F1': f}} for m, f in zip(meteor, f1)]}


def test_unpaired_and_paired_verdicts():
    method = row('m', [1, 2, 3], [5.4, 5.6, 5.3])
    blind = row('b', [1, 2, 3], [5.2, 5.35, 5.0])     # the same model, captions of the whole video
    c = compare(method, blind, 'METEOR')
    assert c['gap'] == pytest.approx(0.25) and c['std'] == pytest.approx(0.175, abs=1e-3)
    assert c['verdict'] == 'ahead'                     # 0.25 < 3 x 0.175
    assert c['paired']['seeds'] == [1, 2, 3] and c['paired']['differences'] == pytest.approx([0.2, 0.25, 0.3])
    assert c['paired']['std'] == pytest.approx(0.05) and c['paired']['verdict'] == '> 3σ'
    # a constant baseline: its std is 0, the method's std decides
    prior = row('p', [1, 2, 3], [2.2, 2.2, 2.2])
    assert compare(method, prior, 'METEOR')['verdict'] == '> 3σ'
    assert compare(prior, method, 'METEOR')['verdict'] == 'level or below'


def test_one_seed_gives_no_verdict_and_unmatched_seeds_no_pairing():
    one = row('m', [1], [6.0])
    assert compare(one, row('b', [1, 2], [5.0, 5.1]), 'METEOR')['verdict'] == 'n/a'
    c = compare(row('m', [1, 2], [6.0, 6.1]), row('b', [3, 4], [5.0, 5.1]), 'METEOR')
    assert c['verdict'] == '> 3σ' and c['paired'] is None
    assert compare(row('m', [1, 2], [6.0, 6.1]), {'row_id': 'x', 'label': 'X', 'seeds': [1],
                                                   'metrics': [{'metrics': {'F1': 50.0}}]}, 'METEOR') is None


def test_pairs_of_the_registry_and_the_written_files(tmp_path):
    assert all(i in BY_ID for m, bs in LEARNING_CHECKS.items() for i in (m, *bs))
    rows = [row('wsdec/final', [1, 2], [4.4, 4.3], [37.5, 37.6]), row('wsdec/prior', [1, 2], [2.2, 2.2], [46.8, 46.8]),
            row('ilcacm/prior', [1, 2], [2.0, 2.0])]
    found = learning_checks(rows, LEARNING_CHECKS)
    assert [(c['method_id'], c['baseline_id']) for c in found] == [('wsdec/final', 'wsdec/prior')]
    assert found[0]['metrics']['METEOR']['verdict'] == '> 3σ'
    assert found[0]['metrics']['F1']['verdict'] == 'level or below'   # below the prior in F1, shown as such
    md, js = write_learning_checks(rows, LEARNING_CHECKS, tmp_path / 'tables')
    assert 'WSDEC/FINAL | WSDEC/PRIOR' in md.read_text() and '-9.25' in md.read_text()
    assert json.loads(js.read_text())[0]['metrics']['F1']['gap'] == pytest.approx(-9.25)
    assert '(no method with a finished baseline row)' in to_markdown([])
