"""scripts/caption_headroom.py: the oracle submissions at a submission's own segments (issue 14)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'scripts'))
import caption_headroom  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFS = {'v_a': {'duration': 100.0, 'timestamps': [[0.0, 30.0], [20.0, 90.0], [80.0, 100.0]],
                'sentences': ['a man opens the door', 'a man paints the wall', 'a man washes the brush']},
        'v_b': {'duration': 10.0, 'timestamps': [[0.0, 10.0]], 'sentences': ['a dog runs']}}
RESULTS = {'v_a': [{'sentence': 'x', 'timestamp': [0.0, 25.0]}, {'sentence': 'y', 'timestamp': [85.0, 100.0]}],
           'v_b': [{'sentence': 'z', 'timestamp': [1.0, 9.0]}],
           'v_c': [{'sentence': 'w', 'timestamp': [0.0, 5.0]}]}


def test_oracle_sentences_by_hand():
    aware, blind, left_out = caption_headroom.oracle_submissions(RESULTS, REFS)
    assert [e['sentence'] for e in aware['v_a']] == ['a man opens the door', 'a man washes the brush']
    # the event [20, 90] overlaps the whole video [0, 100] most: its sentence for every segment of v_a
    assert [e['sentence'] for e in blind['v_a']] == ['a man paints the wall'] * 2
    assert aware['v_b'] == blind['v_b'] == [{'sentence': 'a dog runs', 'timestamp': [1.0, 9.0]}]
    assert [e['timestamp'] for e in aware['v_a']] == [[0.0, 25.0], [85.0, 100.0]]   # the submission's segments
    assert left_out == ['v_c']


def test_tied_overlaps_go_to_the_first_event():
    refs = {'v': {'duration': 10.0, 'timestamps': [[0.0, 4.0], [6.0, 10.0]], 'sentences': ['first', 'second']}}
    aware, blind, _ = caption_headroom.oracle_submissions({'v': [{'sentence': 's', 'timestamp': [4.0, 6.0]}]}, refs)
    assert aware['v'][0]['sentence'] == blind['v'][0]['sentence'] == 'first'


@pytest.mark.java
def test_headroom_end_to_end(tmp_path):
    refs, sub = tmp_path / 'val_1.json', tmp_path / 'sub.json'
    refs.write_text(json.dumps(REFS))
    sub.write_text(json.dumps({'results': RESULTS}))
    summary = caption_headroom.main(['--submission', str(sub), '--references', str(refs), '--out', str(tmp_path / 'h')])
    written = json.loads((tmp_path / 'h' / 'headroom.json').read_text())
    assert written == json.loads(json.dumps(summary))
    assert (written['videos'], written['events'], written['left_out_videos']) == (2, 3, ['v_c'])
    assert written['aware']['METEOR'] > written['blind']['METEOR'] > 0
    assert written['headroom']['METEOR'] == pytest.approx(written['aware']['METEOR'] - written['blind']['METEOR'])
    assert written['aware']['F1'] == written['blind']['F1']            # the same segments
    oracle = json.loads((tmp_path / 'h' / 'oracle_blind.json').read_text())['results']
    assert set(oracle) == {'v_a', 'v_b'}


def test_bad_submission_is_one_error_line(tmp_path):
    refs, sub = tmp_path / 'val_1.json', tmp_path / 'sub.json'
    refs.write_text(json.dumps(REFS))
    sub.write_text(json.dumps({'results': {'v_a': [{'sentence': 'x', 'timestamp': [0, 'late']}]}}))
    done = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'caption_headroom.py'), '--submission', str(sub),
                           '--references', str(refs), '--out', str(tmp_path / 'h')], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count('\n') == 0 and done.stderr.startswith('error: ')
    assert str(sub) in done.stderr and "'v_a'" in done.stderr and 'timestamp' in done.stderr
    sub.write_text(json.dumps({'results': {'v_z': []}}))
    with pytest.raises(ValueError, match='none of its 1 videos'):
        caption_headroom.main(['--submission', str(sub), '--references', str(refs), '--out', str(tmp_path / 'h')])


def test_an_out_that_is_a_file_is_one_error_line(tmp_path):
    refs, sub, taken = tmp_path / 'val_1.json', tmp_path / 'sub.json', tmp_path / 'taken'
    refs.write_text(json.dumps(REFS))
    sub.write_text(json.dumps({'results': RESULTS}))
    taken.write_text('')
    done = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'caption_headroom.py'), '--submission', str(sub),
                           '--references', str(refs), '--out', str(taken)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith('error: ') and str(taken) in done.stderr
    assert 'Traceback' not in done.stderr
