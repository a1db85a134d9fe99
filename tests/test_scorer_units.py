"""Scorer pieces without Java: tIoU, pairing rules, P/R, garbage, proposal cap, SODA DP, F1, errors, R@1."""
import json
import math
import random
import string
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from third_party.densevid_eval import SubmissionError, evaluate, evaluate_localization, format_table
from third_party.densevid_eval import cli, meteor
from third_party.densevid_eval.dense import (GARBAGE_2018, GarbageReference, VideoOverlaps, detection_scores,
                                             gt_video_ids, scored_video_ids)
from third_party.densevid_eval.scorer import _summarise
from third_party.densevid_eval.soda import dp_alignment, video_prf
from third_party.densevid_eval.submission import cap_proposals, submission_warnings
from third_party.densevid_eval.tiou import tiou, tiou_matrix
from utils.annotations import AnnotationError, load_annotations

REF_A = {'v1': {'duration': 20.0, 'timestamps': [[0.0, 10.0], [10.0, 20.0]], 'sentences': ['a b', 'c d']},
         'v2': {'duration': 10.0, 'timestamps': [[0.0, 5.0]], 'sentences': ['e f']}}
REF_B = {'v1': {'duration': 20.0, 'timestamps': [[0.0, 4.0]], 'sentences': ['g h']}}


def entry(sentence, start, end):
    return {'sentence': sentence, 'timestamp': [start, end]}


# ---------- tIoU (spec evaluation §3.2) ----------

def test_tiou_hand_values():
    assert tiou([0, 10], [5, 15]) == pytest.approx(5 / 15)
    assert tiou([0, 10], [0, 10]) == pytest.approx(1.0) and tiou([0, 10], [0, 10]) < 1.0  # the 1e-8 guard
    assert tiou([0, 2], [3, 5]) == 0.0
    assert tiou([0, 10], [2, 4]) == pytest.approx(0.2)
    assert tiou([10, 0], [0, 10]) == 0.0  # start > end: no intersection, scored as the official formula says


def test_tiou_matrix_is_bit_identical_to_scalar():
    rng = random.Random(0)
    preds = [[rng.uniform(-5, 60), rng.uniform(-5, 60)] for _ in range(40)]  # includes start > end
    gts = [[rng.uniform(0, 50), rng.uniform(0, 60)] for _ in range(7)]
    m = tiou_matrix(preds, gts)
    assert m.shape == (40, 7)
    assert all(m[i, j] == tiou(preds[i], gts[j]) for i in range(40) for j in range(7))
    assert tiou_matrix([], gts).shape == (0, 7)


# ---------- pairing (spec evaluation §3.3 steps 2-3) and P/R (§3.4) ----------

def test_caption_pairing_uses_ge_and_detection_uses_gt():
    video = VideoOverlaps([entry('p', 0.0, 5.0)], [REF_A], 'v1')
    boundary = tiou([0.0, 5.0], [0.0, 10.0])
    items = video.caption_pairs(boundary, GarbageReference('2018', None))
    assert items == [('p', 'a b')]  # IoU == tau is paired (>=)
    assert video.precision_recall(boundary) == (0.0, 0.0)  # but not detected (>)
    assert video.caption_pairs(math.nextafter(boundary, 1), GarbageReference('2018', None)) == [('p', GARBAGE_2018)]


def test_pairing_order_and_garbage_2018():
    video = VideoOverlaps([entry('p0', 0.0, 4.0), entry('p1', 30.0, 40.0), entry('p2', 0.0, 10.0)],
                          [REF_A, REF_B], 'v1')
    items = video.caption_pairs(0.3, GarbageReference('2018', None))
    # p0 overlaps a b (0.4) and g h (1.0); p1 nothing; p2 a b (1.0) and g h (0.4): file order, then GT order
    assert items == [('p0', 'a b'), ('p0', 'g h'), ('p1', 'abc123!@#'), ('p2', 'a b'), ('p2', 'g h')]


def test_garbage_2021_is_seeded_lowercase_10_to_20():
    garbage = GarbageReference('2021', 7)
    draws = [garbage() for _ in range(3)]
    rng = random.Random(7)
    expected = []
    for _ in range(3):
        n = rng.randint(10, 20)
        expected.append(''.join(rng.choice(string.ascii_lowercase) for _ in range(n)))
    assert draws == expected
    assert all(10 <= len(d) <= 20 and d.isalpha() and d.islower() for d in draws)
    assert GarbageReference('2021', 7)() == draws[0] != GarbageReference('2021', 8)()


def test_precision_recall_max_over_files_independently():
    # file A: 2 GTs, file B: 1 GT. Predictions: one matches A[0] and B[0], one matches nothing.
    video = VideoOverlaps([entry('p0', 0.0, 9.0), entry('p1', 50.0, 60.0)], [REF_A, REF_B], 'v1')
    p, r = video.precision_recall(0.3)
    # A: P = 1/2, R = 1/2; B: p0 vs [0,4] IoU 4/9 > 0.3 -> P = 1/2, R = 1/1
    assert (p, r) == (0.5, 1.0)
    missing = VideoOverlaps(None, [REF_A], 'v1')
    empty = VideoOverlaps([], [REF_A], 'v1')
    assert missing.precision_recall(0.3) == (0, 0.0) and empty.precision_recall(0.3) == (0.0, 0.0)
    scores = detection_scores([video, missing], [0.3, 0.5])
    assert scores['Precision'][0] == 0.25 and scores['Recall'][0] == 0.5


def test_missing_policies_choose_videos():
    preds = {'v2': [], 'zz': []}
    assert scored_video_ids([REF_A, REF_B], preds, 'zero') == ['v1', 'v2']
    assert scored_video_ids([REF_A, REF_B], preds, 'skip') == ['v2']
    with pytest.raises(ValueError, match='missing'):
        scored_video_ids([REF_A], preds, 'drop')


def test_videos_come_in_the_reference_files_order():
    """Not the official `set` order (hash-dependent): the first file's ids, then the next file's new ones."""
    first = {vid: REF_A['v1'] for vid in ('v_z', 'v_b', 'v_m')}
    second = {vid: REF_A['v1'] for vid in ('v_a', 'v_m', 'v_c')}
    assert gt_video_ids([first, second]) == ['v_z', 'v_b', 'v_m', 'v_a', 'v_c']


def test_proposal_cap_and_warning_counts():
    results = {'v1': [entry('x', 0, 1)] * 5 + [entry('y', 8, 3), entry('z', -1, 30)], 'v2': [],
               'zz': [entry('q', 0, 1)]}
    capped = cap_proposals(results, 3)
    assert [len(v) for v in capped.values()] == [3, 0, 1] and capped['v1'] == results['v1'][:3]
    w = submission_warnings({'results': results}, results, [REF_A], 3)
    assert w['videos_over_proposal_cap'] == 1 and w['proposals_dropped_by_cap'] == 4
    assert w['start_after_end'] == 1 and w['outside_video_duration'] == 1
    assert w['duplicate_predictions'] == 4 and w['empty_prediction_lists'] == 1
    assert w['videos_not_in_references'] == 1 and w['missing_version_or_external_data'] == 1


# ---------- averages and F1 conventions (spec evaluation §3.4) ----------

def test_summary_f1_conventions():
    row = dict.fromkeys(['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr'], 0.1)
    fractions = [dict(row, Precision=0.6, Recall=0.2), dict(row, Precision=0.2, Recall=0.4)]
    metrics, per_tiou = _summarise(fractions, (0.3, 0.7))
    assert metrics['Precision'] == pytest.approx(40.0) and metrics['Recall'] == pytest.approx(30.0)
    assert metrics['F1'] == pytest.approx(2 * 40 * 30 / 70)
    f1s = [2 * 60 * 20 / 80, 2 * 20 * 40 / 60]
    assert per_tiou['0.3']['F1'] == pytest.approx(f1s[0])
    assert metrics['F1_mean_tiou'] == pytest.approx(sum(f1s) / 2)
    assert metrics['METEOR'] == pytest.approx(10.0)


# ---------- SODA_c dynamic programme (spec evaluation §3.5) ----------

def test_soda_dp_hand_example():
    C = [[0.9, 0.5, 0.0],
         [0.8, 0.1, 0.7]]
    # order-preserving: (g0,p0)+(g1,p2) = 1.6 beats (g0,p1)+(g1,p2) = 1.2; crossing (g1,p0)+(g0,p1) is illegal
    assert dp_alignment(C) == pytest.approx(1.6)
    assert dp_alignment([[0.3]]) == 0.3
    assert dp_alignment([[0.2, 0.6, 0.1]]) == 0.6  # one gold: best single column
    p, r, f = video_prf(np.ones((2, 3)), np.array(C))
    assert (p, r) == pytest.approx((1.6 / 3, 1.6 / 2)) and f == pytest.approx(2 * p * r / (p + r))
    assert video_prf(np.zeros((2, 0)), np.zeros((2, 0))) == (0.0, 0.0, 0.0)
    assert video_prf(np.zeros((1, 1)), np.ones((1, 1))) == (0.0, 0.0, 0.0)


# ---------- bad input (spec evaluation §3.1, DESIGN "Errors") ----------

@pytest.mark.parametrize('results, message', [
    ({'v1': {'sentence': 'a'}}, "video 'v1': expected a list"),
    ({'v1': ['a man']}, "video 'v1': entry 0: expected an object"),
    ({'v1': [{'timestamp': [0, 1]}]}, "video 'v1': entry 0: missing field 'sentence'"),
    ({'v1': [entry('a', 0, 1), {'sentence': 3, 'timestamp': [0, 1]}]}, "video 'v1': entry 1: field 'sentence'"),
    ({'v1': [entry('a', float('nan'), 1)]}, "video 'v1': entry 0: field 'timestamp' must hold finite numbers"),
    ({'v1': [entry('a', '0', 1)]}, "video 'v1': entry 0: field 'timestamp' must hold finite numbers"),
    ({'v1': [{'sentence': 'a', 'timestamp': [1]}]}, "video 'v1': entry 0: field 'timestamp' must be a"),
    ({'v1': [{'sentence': 'a'}]}, "video 'v1': entry 0: missing field 'timestamp'"),
])
def test_malformed_submission_errors(results, message):
    with pytest.raises(SubmissionError, match=message.replace('(', r'\(').replace('[', r'\[')):
        evaluate({'results': results}, [REF_A])


def test_invalid_json_and_missing_results(tmp_path, capsys):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"results": ')
    with pytest.raises(SubmissionError, match='bad.json: not valid JSON'):
        evaluate(bad, [REF_A])
    with pytest.raises(SubmissionError, match="'results' is missing"):
        evaluate({'version': 'V0'}, [REF_A])
    assert cli.main(['-s', str(bad), '-r', str(bad)]) == 2
    assert 'not valid JSON' in capsys.readouterr().err


def test_no_java_gives_install_instructions(monkeypatch):
    monkeypatch.setattr(meteor.shutil, 'which', lambda name: None)
    with pytest.raises(meteor.JavaNotFoundError, match='apt-get install default-jre-headless'):
        evaluate({'results': {'v1': [entry('a', 0, 1)]}}, [REF_A])
    with pytest.raises(meteor.JavaNotFoundError):
        meteor.ptb_tokenize(['a'])


def test_skip_with_no_overlap_is_an_error():
    with pytest.raises(SubmissionError, match='none of its 1 videos'):
        evaluate({'results': {'zz': []}}, [REF_A], missing='skip')


def test_cli_protocol_presets():
    parse = cli.build_parser().parse_args
    assert cli._options(parse(['-s', 'x'])) == {'toolkit': '2018', 'missing': 'zero', 'soda': False}
    assert cli._options(parse(['-s', 'x', '--protocol', 'ilcacm'])) == {'toolkit': '2021', 'missing': 'skip',
                                                                        'soda': True}
    assert cli._options(parse(['-s', 'x', '--protocol', 'ilcacm', '--missing', 'zero']))['missing'] == 'zero'
    assert parse(['-s', 'x']).references == ['data/densecap/val_1.json', 'data/densecap/val_2.json']


# ---------- sentence localization (spec evaluation §3.6) ----------

def test_localization_r_at_1_strict_and_miou(tmp_path, capsys):
    results = {'v1': [{'timestamp': [0, 10], 'gt_timestamp': [0, 10]},      # IoU ~1
                      {'timestamp': [0, 5], 'gt_timestamp': [0, 10]}],      # IoU ~0.5 (just below: 1e-8 guard)
               'v2': [{'timestamp': [0, 1], 'gt_timestamp': [2, 3], 'sentence': 's'}]}  # IoU 0
    out = evaluate_localization({'results': results})
    m = out['metrics']
    assert m['R@1_0.1'] == pytest.approx(200 / 3) and m['R@1_0.5'] == pytest.approx(100 / 3)
    assert m['R@1_0.9'] == pytest.approx(100 / 3)
    assert m['mIoU'] == pytest.approx(100 * (1 + 0.5) / 3, abs=1e-5)
    assert out['meta']['n_sentences'] == 3
    exact = evaluate_localization({'results': {'v': [{'timestamp': [0, 5], 'gt_timestamp': [0, 10]}]}},
                                  tious=(tiou([0, 5], [0, 10]),))
    assert list(exact['metrics'].values())[0] == 0.0  # strict >
    with pytest.raises(SubmissionError, match="entry 0: missing field 'gt_timestamp'"):
        evaluate_localization({'results': {'v': [{'timestamp': [0, 1]}]}})
    path = tmp_path / 'loc.json'
    path.write_text(json.dumps({'results': results}))
    assert cli.main(['-s', str(path), '--localization', '-o', str(tmp_path / 'o.json')]) == 0
    assert 'R@1_0.5' in capsys.readouterr().out
    assert json.loads((tmp_path / 'o.json').read_text())['metrics']['R@1_0.3'] == pytest.approx(200 / 3)
    assert 'sentence localization' in format_table(out)


def test_the_scorer_folder_works_when_copied_elsewhere(tmp_path, standalone_scorer):
    """Issue 15: `third_party/densevid_eval` imports nothing from the suite. A copy in another folder, with only
    its parent on PYTHONPATH and the suite's packages unimportable, runs its CLI (localization needs no Java;
    reference files are checked before Java is looked for) with the suite's messages."""
    command, env = standalone_scorer
    copy = tmp_path / 'elsewhere' / 'densevid_eval'
    sub = tmp_path / 'loc.json'
    sub.write_text(json.dumps({'results': {'v1': [{'timestamp': [0, 10], 'gt_timestamp': [0, 10]},
                                                  {'timestamp': [0, 10], 'gt_timestamp': [5, 15]}]}}))
    out = tmp_path / 'loc_metrics.json'
    run = subprocess.run(command + ['--localization', '-s', str(sub), '-o', str(out)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    metrics = json.loads(out.read_text())['metrics']  # IoUs 10/(10+1e-8) and 5/(15+1e-8) (spec evaluation §3.2)
    assert metrics['R@1_0.3'] == 100.0 and metrics['R@1_0.5'] == 50.0
    assert metrics['mIoU'] == pytest.approx(100 * (10 / (10 + 1e-8) + 5 / (15 + 1e-8)) / 2)
    as_script = subprocess.run([sys.executable, str(copy / 'evaluate.py'), '--localization', '-s', str(sub)],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert as_script.returncode == 0 and 'R@1_0.5' in as_script.stdout, as_script.stderr

    bad = tmp_path / 'bad_ref.json'
    bad.write_text(json.dumps({'v1': {'duration': -1, 'timestamps': [[0, 1]], 'sentences': ['a']}}))
    with pytest.raises(AnnotationError) as suite_error:
        load_annotations(bad)
    dense = tmp_path / 'dense.json'
    dense.write_text(json.dumps({'results': {'v1': [{'sentence': 'a', 'timestamp': [0, 1]}]}}))
    refused = subprocess.run(command + ['-s', str(dense), '-r', str(bad)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr == f'error: {suite_error.value}\n'
    assert "video 'v1': field 'duration': must be positive" in refused.stderr


def test_meteor_aggregate_from_stats_golden_values():
    # stats lines and EVAL answers of meteor-1.5.jar -l en -norm ('a man plays guitar' / 'a man is playing a
    # guitar', 'the the' / 'abc123 ! @ #', 'x y z' / 'x y z')
    lines = ['4.0 6.0 1.0 3.0 2.0 2.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 1.0 0.0 1.0 2.0 4.0 5.0',
             '2.0 4.0 2.0 0.0 ' + '0.0 ' * 18 + '0.0',
             '3.0 3.0 0.0 0.0 3.0 3.0 ' + '0.0 ' * 14 + '1.0 3.0 3.0']
    assert meteor.aggregate_stats(lines) == 0.3170156506876974
    assert [meteor.aggregate_stats([s]) for s in lines] == [0.39012857811759905, 0.0, 1.0]
    groups = [[0, 1, 2], [0], [1], [2], [2, 2, 0], [1, 2]]  # the batched scorer's vectorised aggregation
    assert meteor.aggregate_groups(meteor.stats_matrix(lines), groups) == \
        [meteor.aggregate_stats([lines[i] for i in g]) for g in groups]
    with pytest.raises(ValueError, match='empty group'):
        meteor.aggregate_groups(meteor.stats_matrix(lines), [[0], []])
    with pytest.raises(meteor.JavaToolError, match='22 values, expected 23'):
        meteor.stats_matrix(lines[:1] + [lines[0].rsplit(' ', 1)[0]])
    assert meteor.MeteorStats.parse(lines[2]).perfect() and not meteor.MeteorStats.parse(lines[0]).perfect()
    with pytest.raises(meteor.JavaToolError, match='22 values, expected 23'):
        meteor.MeteorStats.parse(lines[0].rsplit(' ', 1)[0])


# ---------- batched-path helpers ----------

def test_garbage_split_keeps_one_probe_and_falls_back_when_the_probe_matches():
    from third_party.densevid_eval.dense import GARBAGE_2018_TOKENIZED as G, complete_garbage_stats, split_garbage_pairs
    pairs = [('a b', 'c d'), ('a b', G), ('e f', 'c d'), ('e f', G)]
    to_java, derived = split_garbage_pairs(pairs)
    assert to_java == [('a b', 'c d'), ('e f', 'c d'), ('e f', G)] and derived == [('a b', G)]
    line = '2.0 2.0 0.0 0.0 ' + '0.0 ' * 18 + '0.0'

    class FakeMeteor:
        requests = []

        def stats(self, hyps, refs):
            self.requests.append(hyps)
            return [line.replace('0.0 0.0 0.0', '1.0 1.0 1.0', 1)] * len(hyps)

    matched = line[:16] + '1.0' + line[19:]  # the probe line shows an exact match: derive nothing
    matrix = meteor.stats_matrix([line, line, matched])
    full, order = complete_garbage_stats(matrix, to_java, derived, FakeMeteor())
    assert order == to_java + derived and FakeMeteor.requests == [['a b']] and full.shape == (4, 23)
    full, order = complete_garbage_stats(meteor.stats_matrix([line, line, line]), to_java, derived, FakeMeteor())
    assert FakeMeteor.requests == [['a b']] and (full[3] == full[0]).all()


def _square(x):
    return x * x


def _fail(x):
    raise ValueError(f'bad {x}')


def test_low_priority_worker_result_error_and_no_fork_fallback(monkeypatch):
    from third_party.densevid_eval import dense
    worker = dense.LowPriorityWorker(_square, 7)
    assert (worker._proc is not None) == sys.platform.startswith('linux') and worker.result() == 49
    with pytest.raises(RuntimeError, match='ValueError: bad 3'):
        dense.LowPriorityWorker(_fail, 3).result()
    if dense.LowPriorityWorker.available():  # close() stops a child that is still working
        worker = dense.LowPriorityWorker(time.sleep, 30)
        worker.close()
        assert not worker._proc.is_alive()
    monkeypatch.setattr(dense.multiprocessing, 'get_all_start_methods', lambda: ['spawn'])
    worker = dense.LowPriorityWorker(_square, 5)
    assert worker._proc is None and worker.result() == 25
    with pytest.raises(ValueError, match='bad 4'):  # in-process: the function's own error
        dense.LowPriorityWorker(_fail, 4).result()
    monkeypatch.undo()
    monkeypatch.setattr(dense.multiprocessing, 'current_process', lambda: SimpleNamespace(daemon=True))
    assert not dense.LowPriorityWorker.available()  # a daemonic process may not have children
