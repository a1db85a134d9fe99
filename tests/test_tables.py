"""Published numbers (utils/published.py) and result tables (utils/tables.py)."""
import json
import math

import pytest

from utils.published import (ILCACM_PROTOCOL, NOT_RECOVERED, RECORDS, WSDEC_PROTOCOL, Protocol,
                             UnknownPublishedNumber, published, published_row, row_ids)
from utils.tables import (DENSE_CAPTIONING, SENTENCE_LOCALIZATION, TableError, build_table, mean_std,
                          normalise_metrics, to_latex, to_markdown, write_tables)

WSDEC_OURS = {'toolkit': '2018', 'missing': 'zero', 'features': 'C3D', 'dataset': 'ActivityNet Captions val'}


def _wsdec_row(**over):
    row = {'row_id': 'wsdec/final', 'label': 'WSDEC final', 'protocol': WSDEC_OURS,
           'metrics': [{'metrics': {'METEOR': 6.0, 'CIDEr': 18.0, 'Bleu_4': 1.0}, 'meta': {}},
                       {'METEOR': 6.4, 'CIDEr': 20.0, 'Bleu_4': 1.5, 'R@1_0.1': 60.0}]}
    return {**row, **over}


# ---- published numbers ----------------------------------------------------------------------------------

def test_published_headline_numbers_match_the_spec():
    assert published('wsdec/final', 'METEOR').value == 6.30
    assert published('wsdec/final', 'CIDEr').value == 18.77
    assert published('wsdec/final', 'R@1@0.5').value == 23.34
    assert published('ilcacm/full', 'SODA_c').value == 6.08
    assert published('ilcacm/full', 'F1').value == 56.20
    assert published('ilcacm/youcook2', 'CIDEr').value == 13.49
    assert published('wsdec/final', 'METEOR').protocol == WSDEC_PROTOCOL
    assert published('ilcacm/full', 'CIDEr').protocol == ILCACM_PROTOCOL


def test_published_confidence_and_sources():
    assert published('wsdec/final', 'Bleu_1').confidence == 'unconfirmed'      # recalled B@1-3
    assert published('wsdec/final', 'Bleu_4').confidence == 'confirmed'
    assert published('wsdec/final', 'mIoU').confidence == 'unconfirmed'
    assert 'SBS Table 1' in published('ilcacm/full', 'METEOR').source
    assert 'IRON' in published('wsdec/final', 'R@1@0.1').source
    assert 'harmonic mean' in published('wsdec/final', 'F1').note


def test_ilcacm_f1_is_the_harmonic_mean_of_published_p_and_r():
    p, r = published('ilcacm/full', 'Precision').value, published('ilcacm/full', 'Recall').value
    assert 2 * p * r / (p + r) == pytest.approx(published('ilcacm/full', 'F1').value, abs=0.005)


def test_no_invented_numbers_for_ablations():
    for row in ('wsdec/no_regression', 'ilcacm/pos_only', 'ilcacm/uniform_masks', 'wsdec/two_stage'):
        assert row in NOT_RECOVERED and row not in row_ids() and published_row(row) == {}
        with pytest.raises(UnknownPublishedNumber, match='not recovered|not found|no numbers'):
            published(row, 'CIDEr')
    with pytest.raises(UnknownPublishedNumber, match="no published 'SODA_c' for row 'wsdec/final'"):
        published('wsdec/final', 'SODA_c')
    assert all(r.confidence in ('confirmed', 'unconfirmed') and r.value > 0 for r in RECORDS)


def test_protocol_differences():
    assert WSDEC_PROTOCOL.differences(WSDEC_PROTOCOL) == []
    assert WSDEC_PROTOCOL.differences(ILCACM_PROTOCOL) == ['toolkit', 'missing', 'features']
    assert Protocol('2018', '?', 'C3D', 'x').differences(Protocol('2018', '?', 'C3D', 'x')) == ['missing']
    assert WSDEC_PROTOCOL.differences(ILCACM_PROTOCOL, ('dataset',)) == []


# ---- table maths ----------------------------------------------------------------------------------------

def test_mean_std_is_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([6.0]) == (6.0, None)


def test_normalise_metrics_aliases_and_bleu_mean():
    flat = normalise_metrics({'metrics': {'Bleu_1': 4, 'Bleu_2': 3, 'Bleu_3': 2, 'Bleu_4': 1, 'R@1_0.3': 40,
                                          'R1@0.5': 20, 'R@1': {'0.1': 60}}, 'meta': {'toolkit': '2018'}})
    assert flat['Bleu_mean'] == 2.5
    assert (flat['R@1@0.1'], flat['R@1@0.3'], flat['R@1@0.5']) == (60, 40, 20)


def test_build_table_means_stds_and_differences():
    table = build_table([_wsdec_row()], DENSE_CAPTIONING)
    row, = table['rows']
    assert row['ours']['METEOR']['mean'] == pytest.approx(6.2)
    assert row['ours']['METEOR']['std'] == pytest.approx(math.sqrt(0.08))       # sample std of 6.0, 6.4
    assert row['ours']['CIDEr']['values'] == [18.0, 20.0]
    assert row['difference']['METEOR'] == pytest.approx(6.2 - 6.30)
    assert row['difference']['CIDEr'] == pytest.approx(19.0 - 18.77)
    assert 'ROUGE_L' not in row['difference']                                     # not measured
    assert row['protocol_mismatch'] == [] and row['protocol'] == 'P1'
    assert row['published']['METEOR']['protocol'] == 'P1'                      # same protocol, same label


def test_localization_table_uses_only_localization_rows():
    table = build_table([_wsdec_row()], SENTENCE_LOCALIZATION)
    row, = table['rows']
    assert row['ours']['R@1@0.1'] == {'mean': 60.0, 'std': None, 'n': 1, 'values': [60.0]}
    assert row['difference']['R@1@0.1'] == pytest.approx(60.0 - 62.71)
    assert row['protocol_mismatch'] == []              # toolkit / missing do not apply to R@1
    only_dense = _wsdec_row(metrics=[{'METEOR': 6.0}])
    assert build_table([only_dense], SENTENCE_LOCALIZATION)['rows'] == []


def test_protocol_mismatch_is_flagged():
    ours = {**WSDEC_OURS, 'features': 'CLIP'}
    row = {'row_id': 'ilcacm/full', 'label': 'ILCACM', 'protocol': ours, 'metrics': [{'METEOR': 8.0}]}
    table = build_table([row])
    built, = table['rows']
    assert built['protocol_mismatch'] == ['toolkit', 'missing']
    assert built['protocol'] != built['published']['METEOR']['protocol']
    md = to_markdown(table)
    assert '| ILCACM† | P1 |' in md and '-0.48†' in md
    assert '† ILCACM (ilcacm/full): protocol differs from the published number\'s on toolkit, missing' in md
    assert 'P2 = toolkit 2021, missing videos skip, CLIP features' in md
    assert '$^\\dagger$' in to_latex(table)


def test_rows_without_published_numbers_get_a_footnote_not_a_number():
    row = {'row_id': 'ilcacm/pos_only', 'label': 'pos only', 'protocol': WSDEC_OURS, 'metrics': [{'CIDEr': 30}]}
    table = build_table([row])
    assert table['rows'][0]['published'] == {} and table['rows'][0]['difference'] == {}
    assert any('pos only (ilcacm/pos_only): nothing to compare with' in f for f in table['footnotes'])
    assert '└ published' not in to_markdown(table)


def test_markdown_content():
    md = to_markdown(build_table([_wsdec_row()]))
    header = '| Method | Protocol | n | B@1 | B@2 | B@3 | B@4 | METEOR | CIDEr | ROUGE-L | SODA_c | R | P | F1 |'
    assert header in md
    assert '| WSDEC final | P1 | 2 | — | — | — | 1.25 ± 0.35 | 6.20 ± 0.28 | 19.00 ± 1.41 |' in md
    assert '| └ published | P1 |  | 12.41‡ | 5.50‡ | 2.62‡ | 1.27 | 6.30 | 18.77 | 12.55 | — |' in md
    assert '| └ Δ (ours − published) |  |  | — | — | — | -0.02 | -0.10 | +0.23 |' in md
    assert '‡ published number UNCONFIRMED' in md


def test_latex_is_booktabs_and_escaped():
    tex = to_latex(build_table([_wsdec_row(label='WSDEC_final & 50%')]))
    assert tex.count('\\toprule') == tex.count('\\bottomrule') == 1
    assert '\\begin{tabular}{llrrrrrrrrrrrr}' in tex
    assert 'WSDEC\\_final \\& 50\\%' in tex and '$6.20 \\pm 0.28$' in tex and 'SODA\\_c' in tex
    assert '12.41$^\\ddagger$' in tex and '$\\Delta$' in tex
    body = tex.split('\\midrule')[1]
    assert '—' not in body and '±' not in body                                   # unicode replaced


def test_youcook2_adds_bleu_mean_column():
    row = {'row_id': 'ilcacm/youcook2', 'label': 'YC2', 'protocol': {**WSDEC_OURS, 'dataset': 'YouCook2 val'},
           'metrics': [{'Bleu_1': 4, 'Bleu_2': 3, 'Bleu_3': 2, 'Bleu_4': 1, 'CIDEr': 13.0}]}
    table = build_table([row])
    assert table['columns'][-1] == {'metric': 'Bleu_mean', 'header': 'BLEU@N'}
    assert table['rows'][0]['difference']['Bleu_mean'] == pytest.approx(2.5 - 2.59)


def test_bad_rows_are_rejected():
    with pytest.raises(TableError, match=r"row 'wsdec/final' lacks field\(s\) \['protocol'\]"):
        build_table([{'row_id': 'wsdec/final', 'label': 'x', 'metrics': [{}]}])
    with pytest.raises(TableError, match='non-empty list'):
        build_table([_wsdec_row(metrics=[])])
    with pytest.raises(TableError, match="unknown protocol field"):
        build_table([_wsdec_row(protocol={'toolkt': '2018'})])


def test_write_tables(tmp_path):
    paths = write_tables([_wsdec_row()], tmp_path / 'tables')
    assert sorted(p.name for p in paths) == sorted(f'{t}.{s}' for t in ('dense_captioning', 'sentence_localization')
                                                   for s in ('md', 'tex', 'json'))
    data = json.loads((tmp_path / 'tables' / 'dense_captioning.json').read_text())
    assert data['rows'][0]['published']['CIDEr']['value'] == 18.77
    assert data['protocols']['P1']['toolkit'] == '2018'
    loc = json.loads((tmp_path / 'tables' / 'sentence_localization.json').read_text())
    assert loc['protocols']['P1']['description'] == 'C3D features, ActivityNet Captions val'
