"""Scorer end to end with the official Java jars (PTB tokenizer, METEOR 1.5). One shared METEOR process."""
import hashlib
import json
import shutil
import subprocess

import pytest
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from third_party.densevid_eval import cli, evaluate
from third_party.densevid_eval.meteor import Meteor, aggregate_groups, aggregate_stats, ptb_tokenize, stats_matrix

pytestmark = [pytest.mark.java, pytest.mark.skipif(shutil.which('java') is None, reason='no Java runtime')]

REF = {  # disjoint GT segments whose sentences share no word
    'v1': {'duration': 30.0, 'timestamps': [[0.0, 10.0], [12.0, 20.0]],
           'sentences': ['A man plays the red guitar.', 'Two dogs chase one ball outside.']},
    'v2': {'duration': 20.0, 'timestamps': [[2.0, 8.0], [9.0, 18.0]],
           'sentences': ['She slices fresh tomatoes quickly.', 'Kids jump into cold water.']},
    'v3': {'duration': 15.0, 'timestamps': [[0.0, 15.0]], 'sentences': ['People are dancing in a hall.']},
}
REF_2 = {'v1': {'duration': 30.0, 'timestamps': [[0.0, 12.0]], 'sentences': ['a person is playing music']}}

ODD = {'version': 'V0', 'external_data': {}, 'results': {
    'v1': [{'sentence': 'a man plays a guitar', 'timestamp': [1.0, 9.5]},
           {'sentence': 'a man plays a guitar', 'timestamp': [1.0, 9.5]},           # duplicate
           {'sentence': 'dogs run after a ball', 'timestamp': [20.0, 12.5]},       # start > end
           {'sentence': 'caf\u00e9 music, "loud"!', 'timestamp': [0.0, 40.0]},     # non-ASCII, beyond duration
           {'sentence': 'nothing here', 'timestamp': [25.0, 29.0]}],               # matches nothing
    'v2': [],                                                                        # empty list
    'zz': [{'sentence': 'not in the references', 'timestamp': [0, 1]}]}}            # v3 missing


@pytest.fixture(scope='module')
def meteor():
    with Meteor() as m:
        yield m


def perfect_submission():
    return {'results': {vid: [{'sentence': s, 'timestamp': t} for s, t in zip(a['sentences'], a['timestamps'])]
                        for vid, a in REF.items()}}


def test_ptb_tokenize_matches_pycocoevalcap():
    texts = ['A man, a plan: "canal"!', '', 'abc123!@#', "It's (really) -- good...", '  spaced   out  ']
    coco = PTBTokenizer().tokenize({i: [{'caption': t}] for i, t in enumerate(texts)})
    assert ptb_tokenize(texts) == [coco[i][0] for i in range(len(texts))]
    assert ptb_tokenize(['a\rb c']) == ptb_tokenize(['a b c'])  # line breaks cannot shift later lines
    # the tokenizer looks past the line end (hence dense.tokenize_like_official keeps the official lists)
    assert ptb_tokenize(['with a capital T.', 'The man'])[0] == 'with a capital t'
    assert ptb_tokenize(['with a capital T.', 'the man'])[0] == 'with a capital t.'


def test_meteor_batched_requests_are_consistent(meteor):
    # pycocoevalcap's Meteor itself is compared in test_batched_equals_official_loop (the loop runs it)
    hyps = ['a man plays guitar', 'dogs ||| run', 'the the the', 'a woman is cooking food', 'x']
    refs = [['a man is playing a guitar'], ['two dogs run'], ['abc123 @ #'], ['a woman cooks'], ['y']]
    per_segment = meteor.score_pairs(hyps, refs)
    singles = meteor.aggregate([[s] for s in meteor.stats(hyps, refs)])
    assert per_segment == [agg for agg, _ in singles] == [seg[0] for _, seg in singles]
    assert per_segment[0] > per_segment[2] == 0.0 and per_segment[1] > 0.0
    assert meteor.stats(['dogs run'], [['two dogs run']]) == meteor.stats(['dogs ||| run'], [['two dogs run']])


def test_python_aggregate_equals_java_eval(meteor):
    # exact, stem, synonym and paraphrase matches, function words, a perfect segment (its chunk is not
    # summed), no match at all (NaN -> 0), garbage, repeated words; checked on every group of the full val_1
    # protocol too (17,768 groups, 103,745 segments, all equal)
    hyps = ['a man plays guitar', 'x y z', 'the the', 'a woman is cooking food', 'dogs running quickly',
            'a person speaks to the camera', 'he is riding a bike down the street', 'q', 'the a of']
    refs = [['a man is playing a guitar'], ['x y z'], ['abc123 ! @ #'], ['a woman cooks'], ['a dog runs fast'],
            ['a man talks into the camera'], ['a boy rides his bicycle along a road'], ['q q q'], ['of the a']]
    stats = meteor.stats(hyps, refs)
    groups = [stats, stats[:2], stats[1:2], stats[2:3], stats[3:], stats[::2], stats[1::3] * 2, stats[-1:]]
    java = meteor.aggregate(groups)
    assert [aggregate_stats(g) for g in groups] == [agg for agg, _ in java]
    assert [aggregate_stats([s]) for s in stats] == java[0][1]
    rows = {line: i for i, line in enumerate(stats)}  # the vectorised path of the batched scorer
    assert aggregate_groups(stats_matrix(stats), [[rows[s] for s in g] for g in groups]) == [a for a, _ in java]


@pytest.mark.slow
def test_batched_equals_official_loop(meteor):
    # 2021 garbage (seeded random strings drawn in the official order) and the skip policy; the 2018/zero
    # protocol is compared on real val_1 by scripts/benchmark_scorer.py
    args = dict(tious=(0.3, 0.9), toolkit='2021', missing='skip', seed=3)
    fast = evaluate(ODD, [REF, REF_2], meteor=meteor, **args)
    loop = evaluate(ODD, [REF, REF_2], fast=False, **args)
    assert fast['metrics'] == loop['metrics'] and fast['per_tiou'] == loop['per_tiou']
    meta = fast['meta']
    assert meta['n_videos_scored'] == 2
    assert meta['warnings']['duplicate_predictions'] == 1 and meta['warnings']['start_after_end'] == 1
    assert meta['warnings']['videos_not_in_references'] == 1 and meta['warnings']['empty_prediction_lists'] == 1


def test_perfect_submission_hand_values(meteor):
    result = evaluate(perfect_submission(), [REF], meteor=meteor)
    m = result['metrics']
    assert m['Recall'] == pytest.approx(100) and m['Precision'] == pytest.approx(100)
    assert m['Bleu_1'] == pytest.approx(100) and m['Bleu_4'] == pytest.approx(100, abs=1e-4)
    assert m['ROUGE_L'] == pytest.approx(100)
    # v1, v2: 2 identical pairs sharing no n-gram -> CIDEr-D 10 each; v3: one pair -> 0 (spec evaluation §3.3)
    assert m['CIDEr'] == pytest.approx(100 * (10 + 10 + 0) / 3)
    assert m['METEOR'] > 90
    assert m['F1'] == pytest.approx(100) and m['SODA_c'] is None


def test_missing_policies_and_toolkits(meteor):
    sub = perfect_submission()
    del sub['results']['v3']
    sub['results']['v1'].append({'sentence': 'a cat sleeps', 'timestamp': [25.0, 29.0]})  # matches nothing
    zero = evaluate(sub, [REF], meteor=meteor, toolkit='2018', missing='zero')
    skip = evaluate(sub, [REF], meteor=meteor, toolkit='2018', missing='skip')
    for k in ('Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr', 'Recall', 'Precision'):
        assert zero['metrics'][k] == pytest.approx(skip['metrics'][k] * 2 / 3)  # v3 scores 0 under 'zero'
    assert (zero['meta']['n_videos_scored'], skip['meta']['n_videos_skipped']) == (3, 1)
    new = evaluate(sub, [REF], meteor=meteor, toolkit='2021', missing='zero')
    # spec evaluation §3.3: only METEOR moves; 'abc123!@#' is 4 METEOR tokens, a random string 1
    assert new['metrics']['METEOR'] > zero['metrics']['METEOR']
    for k in ('Bleu_1', 'Bleu_4', 'ROUGE_L', 'CIDEr', 'Recall', 'Precision'):
        assert new['metrics'][k] == pytest.approx(zero['metrics'][k])
    assert new['meta']['garbage']['seed'] == 0 and zero['meta']['garbage']['seed'] is None


def test_soda_c_end_to_end(meteor):
    sub = perfect_submission()
    sub['results']['v1'] = sub['results']['v1'][::-1]  # sorted by start time before alignment
    sub['results']['v2'] = []                           # present and empty: scores 0
    del sub['results']['v3']                            # absent: not counted by SODA
    result = evaluate(sub, [REF, REF_2], meteor=meteor, soda=True)
    gold = [' '.join(ptb_tokenize([s])) for s in REF['v1']['sentences']]
    self_scores = meteor.score_pairs(gold, [[g] for g in gold])
    # file 1: v1 aligns each gold with its copy (IoU ~1): P = R = F = sum/2; v2 scores 0
    f_v1 = sum(self_scores) / 2
    per_file = result['meta']['soda']['per_reference']
    assert per_file[0]['n_videos'] == 2 and per_file[0]['f1'] == pytest.approx(100 * f_v1 / 2, abs=1e-4)
    assert per_file[1]['n_videos'] == 1
    assert result['metrics']['SODA_c'] == pytest.approx((per_file[0]['f1'] + per_file[1]['f1']) / 2)


# SODA_c line-context cases (issue 17 item 11): the PTB tokenizer keeps the period of "capital T." unless the
# next line starts with a capital (at the end of the input it is kept), so what each call holds decides tokens.
SODA_REF_A = {
    'v1': {'duration': 20.0, 'timestamps': [[0.0, 10.0]], 'sentences': ['He writes a capital T.']},
    'v2': {'duration': 20.0, 'timestamps': [[0.0, 10.0]], 'sentences': ['then he smiles.']},
    'v3': {'duration': 20.0, 'timestamps': [[0.0, 10.0]], 'sentences': ['A man writes a capital T']},
}
SODA_REF_B = {'v1': {'duration': 20.0, 'timestamps': [[0.0, 10.0]], 'sentences': ['He writes a capital T.']}}
SODA_SUBMISSION = {'version': 'V0', 'external_data': {}, 'results': {
    'v1': [{'sentence': 'He writes a capital T.', 'timestamp': [0.0, 10.0]}],
    'v2': [{'sentence': 'Then he smiles.', 'timestamp': [0.0, 10.0]}],
    'v3': [{'sentence': 'A man writes a capital T.', 'timestamp': [0.0, 10.0]}]}}


def test_soda_c_tokenizes_as_the_reference_and_is_deterministic(tmp_path, meteor, standalone_scorer):
    """Spec evaluation §3.5: per reference file the reference tokenizes the predictions of its videos (each
    video's sorted by start) in one PTB call and their golds in another. File A's prediction call is
    [v1, v2, v3] = ['He writes a capital T.', 'Then he smiles.', 'A man writes a capital T.']: v1's 'T.' is
    followed by a capital → 't'; v3's is last → 't.'. Its gold call ['He writes a capital T.', 'then he
    smiles.', 'A man writes a capital T'] gives v1 't.' (lower-case next line). File B holds v1 alone: 't.' on
    both sides. Each video has one gold and one prediction with IoU 10 / (10 + 1e-8) (§3.2), so F = P = R =
    IoU·METEOR(gold as hypothesis, prediction as reference) and SODA_c = mean(mean_A F, mean_B F). The scorer
    must give this value under any PYTHONHASHSEED (run twice in fresh processes, from a copy of the scorer's
    folder that cannot import the suite: issue 15)."""
    pred_a = ['he writes a capital t', 'then he smiles', 'a man writes a capital t.']
    gold_a = ['he writes a capital t.', 'then he smiles', 'a man writes a capital t']
    assert ptb_tokenize([p['sentence'] for v in ('v1', 'v2', 'v3') for p in SODA_SUBMISSION['results'][v]]) == pred_a
    assert ptb_tokenize([SODA_REF_A[v]['sentences'][0] for v in ('v1', 'v2', 'v3')]) == gold_a
    assert ptb_tokenize(['He writes a capital T.']) == ['he writes a capital t.']
    iou = 10.0 / (10.0 + 1e-8)
    f_a = [iou * m for m in meteor.score_pairs(gold_a, [[p] for p in pred_a])]
    f_b = iou * meteor.score_pairs(['he writes a capital t.'], [['he writes a capital t.']])[0]
    expected = 100 * (sum(f_a) / 3 + f_b) / 2
    assert f_a[1] == pytest.approx(iou) and f_b == pytest.approx(iou) and f_a[0] < 0.9 and f_a[2] < 0.9

    sub, ref_a, ref_b = tmp_path / 'sub.json', tmp_path / 'val_1.json', tmp_path / 'val_2.json'
    for path, data in ((sub, SODA_SUBMISSION), (ref_a, SODA_REF_A), (ref_b, SODA_REF_B)):
        path.write_text(json.dumps(data))
    command, env = standalone_scorer
    runs = {seed: subprocess.Popen(command + ['-s', str(sub), '-r', str(ref_a), str(ref_b), '--soda', '--tious', '0.5',
                                              '-o', str(tmp_path / f'metrics_{seed}.json')],
                                   cwd=tmp_path, env={**env, 'PYTHONHASHSEED': seed},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for seed in ('0', '4')}  # concurrent; tokenizing a set's order gave 92.457746 and 99.999999 here
    for seed, run in runs.items():
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    values = [json.loads((tmp_path / f'metrics_{seed}.json').read_text())['metrics']['SODA_c'] for seed in runs]
    assert values[0] == values[1] == pytest.approx(expected, abs=1e-9)


class _Shared:
    """The module's METEOR process, handed to the CLI without being closed by it."""

    def __init__(self, meteor):
        self.meteor = meteor

    def __call__(self):
        return self

    def __getattr__(self, name):
        return getattr(self.meteor, name)

    def close(self):
        pass


def test_cli_writes_stamped_json(tmp_path, capsys, monkeypatch, meteor):
    monkeypatch.setattr('third_party.densevid_eval.scorer.Meteor', _Shared(meteor))
    sub, ref, out = tmp_path / 'sub.json', tmp_path / 'ref.json', tmp_path / 'out' / 'metrics.json'
    sub.write_text(json.dumps(ODD))
    ref.write_text(json.dumps(REF))
    assert cli.main(['-s', str(sub), '-r', str(ref), '--protocol', 'ilcacm', '-o', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'toolkit 2021 (9d4045a)' in printed and 'missing videos: skip' in printed
    result = json.loads(out.read_text())
    meta = result['meta']
    assert (meta['toolkit'], meta['missing_policy'], meta['garbage']['seed']) == ('2021', 'skip', 0)
    assert meta['references'][0]['sha256'] == hashlib.sha256(ref.read_bytes()).hexdigest()
    assert meta['n_videos_in_references'] == 3 and meta['n_videos_scored'] == 2 and meta['max_proposals'] == 1000
    assert set(result['metrics']) == {'Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr',
                                      'Recall', 'Precision', 'F1', 'F1_mean_tiou', 'SODA_c'}
    assert result['metrics']['SODA_c'] is not None and set(result['per_tiou']) == {'0.3', '0.5', '0.7', '0.9'}


def test_derived_garbage_stats_equal_meteor(meteor):
    # (hypothesis, 2018 garbage) pairs get statistics derived from the hypothesis' other pairs; hypotheses that
    # could match a garbage token ('!', '@', '#', 'abc123', any case) are sent to METEOR like any other pair
    from third_party.densevid_eval.dense import GARBAGE_2018_TOKENIZED as G, complete_garbage_stats, split_garbage_pairs
    hyps = ['a man plays the guitar', 'the the of a', 'wow ! great', 'email me @ home', 'abc123 is here',
            'ABC123 shouting', 'a dog runs', "it 's a boy 's toy", '', 'the alphabet basics', 'rock &#33; roll']
    pairs = [(h, 'a person is playing music') for h in hyps] + [(h, G) for h in hyps] + [('only garbage', G)]
    to_java, derived = split_garbage_pairs(pairs)
    assert {h for h, _ in derived} == {'a man plays the guitar', 'the the of a', 'a dog runs', "it 's a boy 's toy",
                                       '', 'the alphabet basics'}
    assert ('only garbage', G) in to_java and ('wow ! great', G) in to_java and ('ABC123 shouting', G) in to_java
    assert ('rock &#33; roll', G) in to_java
    matrix = stats_matrix(meteor.stats([h for h, _ in to_java], [[r] for _, r in to_java]))
    full, order = complete_garbage_stats(matrix, to_java, derived, meteor)
    java = stats_matrix(meteor.stats([h for h, _ in order], [[r] for _, r in order]))
    assert sorted(order) == sorted(pairs) and (full == java).all()
    assert complete_garbage_stats(matrix, to_java, [], meteor)[1] == to_java
