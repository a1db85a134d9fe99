"""WSDEC test-time procedures (models/wsdec/inference.py) on tiny random models and the tiny synthetic data."""

import pytest
import torch

from models.wsdec.anchors import anchors
from models.wsdec.factory import build_models_from_config
from third_party.densevid_eval import evaluate_localization
from third_party.densevid_eval.submission import load_results
from utils.annotations import load_annotations
from utils.features import open_features
from utils.vocab import Vocabulary
from utils.wsdec_data import WSDECDataset, wsdec_collate
from models.wsdec.config import InferenceOptions, resolve_options
from models.wsdec.inference import (aggregate_runs, build_submission, caption_gt_segments, dense_captioning,
                                    dense_captions, flatten_segments, initial_segments, localize_sentences,
                                    pretrain_random_captions, random_localization, random_test_markdown)


pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def setup(tiny_data):
    """(annotations of val_1, vocab, [batches of 3 videos], {'cg', 'sl'} tiny random models in eval mode)."""
    vocab = Vocabulary.build(load_annotations(tiny_data.train))
    val = load_annotations(tiny_data.val_1)
    dataset = WSDECDataset(val, open_features(tiny_data.c3d), vocab)
    batches = [wsdec_collate([dataset[i] for i in range(s, min(s + 3, len(dataset)))])
               for s in range(0, len(dataset), 3)]
    shared = dict(vocab_size=len(vocab), hidden_dim=8, sent_embedding_dim=8, video_feature_dim=500, rnn_dropout=0.0)
    torch.manual_seed(0)
    models = build_models_from_config({'cg': {**shared, 'max_cap_length': 5},
                                       'sl': {'type': 'anchor', **shared, 'regressor_scale': 0.3}})
    for m in models.values():
        m.eval()
    return val, vocab, batches, models


class ScriptedLocalizer:
    """Returns preset `(c, w)` rows, whatever the captions: controls the drop/merge geometry."""

    def __init__(self, rows):
        self.rows, self.calls = torch.tensor(rows), []

    def __call__(self, video, video_length, video_mask, sent, sent_length, sent_mask, gather, mode):
        assert mode == 'eval'
        self.calls.append(gather.tolist())
        return self.rows


def one_video(batch):
    """The first video of a batch as a batch of its own."""
    return type(batch)(**{**batch.__dict__, 'video': batch.video[:1], 'video_length': batch.video_length[:1],
                          'video_mask': batch.video_mask[:1], 'keys': batch.keys[:1]})


def flat(pairs):
    """[[s, e], ...] → [s, e, ...] (pytest.approx compares flat sequences only)."""
    return [x for pair in pairs for x in pair]


def se(cw):
    return [cw[0] - cw[1] / 2, cw[0] + cw[1] / 2]


# ---------------------------------------------------------------- initial segments
def test_initial_segments_shared_per_batch_or_per_video_and_anchors():
    g = torch.Generator().manual_seed(233)
    shared = initial_segments(4, 15, g, per_video=False)
    assert shared.shape == (4, 15, 2) and torch.equal(shared[0], shared[3])
    g233 = torch.Generator().manual_seed(233)  # gen_random_ts: all 15 centres, then all 15 widths (spec §4.4)
    assert torch.equal(shared[0], torch.cat([torch.rand(15, 1, generator=g233), torch.rand(15, 1, generator=g233)], 1))
    assert ((shared >= 0) & (shared < 1)).all()
    per_video = initial_segments(4, 15, torch.Generator().manual_seed(233), per_video=True)
    assert torch.equal(per_video[0], shared[0]) and not torch.equal(per_video[0], per_video[1])
    for per in (False, True):
        assert torch.equal(initial_segments(2, -1, g, per)[1], anchors())


def test_n_rand_minus_one_uses_the_checkpoints_anchor_list(tiny_data, tmp_path):
    """`--n-rand -1` starts from the localizer's stored `anchor_list` (the original reads params['anchor_list'],
    spec wsdec §3.3, §4.4), not from the built-in list: a checkpoint with three anchors of its own."""
    from models.wsdec.evaluation import sl_anchors
    own = [[0.1, 0.2], [0.5, 0.4], [0.9, 0.2]]
    state = {'config': {'models': {'sl': {'anchor_list': own}}}}
    stored = sl_anchors(state)
    assert torch.equal(stored, torch.tensor(own))
    segments = initial_segments(3, -1, torch.Generator().manual_seed(0), False, stored)
    assert segments.shape == (3, 3, 2) and all(torch.equal(s, torch.tensor(own)) for s in segments)
    assert sl_anchors({'config': {'models': {'cg': {}}}}) is None   # no localizer: the built-in anchors


def test_flatten_segments_keeps_video_order():
    segments, gather = flatten_segments([torch.zeros(2, 2), torch.zeros(0, 2), torch.ones(3, 2)])
    assert segments.shape == (5, 2) and gather.tolist() == [0, 0, 2, 2, 2]


# ---------------------------------------------------------------- drop rule and merge, hand-computed
S0 = [[0.25, 0.5], [0.26, 0.5], [0.75, 0.2]]          # (s, e): [0, .5], [.01, .51], [.65, .85]
S1_MOVED = [[0.7, 0.2], [0.71, 0.2], [0.2, 0.1]]      # [.6, .8], [.61, .81], [.15, .25]: all IoU(S1, S0) = 0


def test_legacy_drop_rule_drops_consistent_proposals(setup):
    _, vocab, batches, models = setup
    batch = one_video(batches[0])
    sl = ScriptedLocalizer(S0)  # re-localized exactly where it started: IoU ~ 1 > 0.2
    assert dense_captions(models['cg'], sl, batch, torch.tensor([S0]), InferenceOptions(), vocab) == {}
    kept = dense_captions(models['cg'], sl, batch, torch.tensor([S0]), InferenceOptions(legacy_drop=False), vocab)
    # corrected rule keeps them; rows 0 and 1 overlap with IoU 0.49/0.51 = 0.96 > 0.9 and merge into the hull
    duration = float(batch.video_length[0, 1])
    stamps = [e['timestamp'] for e in kept[batch.keys[0]]]
    assert flat(stamps) == pytest.approx(flat([[0.0, 0.51 * duration], [0.65 * duration, 0.85 * duration]]), rel=1e-5)


def test_moved_proposals_survive_and_merge_above_iou_thres(setup):
    _, vocab, batches, models = setup
    batch = one_video(batches[0])
    sl = ScriptedLocalizer(S1_MOVED)
    out = dense_captions(models['cg'], sl, batch, torch.tensor([S0]), InferenceOptions(), vocab)[batch.keys[0]]
    duration = float(batch.video_length[0, 1])
    # [.6,.8] and [.61,.81]: IoU .19/.21 = 0.905 > 0.9 → hull [.6, .81]; [.15, .25] appended
    assert flat(e['timestamp'] for e in out) == pytest.approx(
        flat([[0.6 * duration, 0.81 * duration], [0.15 * duration, 0.25 * duration]]), rel=1e-5)
    assert all(isinstance(e['sentence'], str) for e in out)
    out = dense_captions(models['cg'], ScriptedLocalizer(S1_MOVED), batch, torch.tensor([S0]),
                         InferenceOptions(iou_thres=0.95), vocab)[batch.keys[0]]
    assert len(out) == 3  # no merge at a stricter threshold


def test_refine_round_zero_keeps_initial_segments(setup):
    _, vocab, batches, models = setup
    batch = one_video(batches[0])
    sl = ScriptedLocalizer(S0)
    out = dense_captions(models['cg'], sl, batch, torch.tensor([S0]), InferenceOptions(refine_round=0), vocab)
    assert sl.calls == [] and len(out[batch.keys[0]]) == 3


# ---------------------------------------------------------------- the whole pipeline on tiny data
@pytest.mark.parametrize('n_rand', [15, -1])
def test_dense_captioning_submission(setup, n_rand):
    val, vocab, batches, models = setup
    options = InferenceOptions(n_rand=n_rand)
    results = dense_captioning(models['cg'], models['sl'], batches, options, vocab, torch.device('cpu'))
    assert set(results) <= set(val)
    for vid, entries in results.items():
        assert 1 <= len(entries) <= 15
        for e in entries:
            s, t = e['timestamp']
            assert 0.0 <= s <= t <= val[vid]['duration'] + 1e-4
            assert isinstance(e['sentence'], str) and '<bos>' not in e['sentence']
    submission = build_submission(results, {'n_rand': n_rand})
    assert submission['external_data'] == {'used': True, 'details': 'provided C3D feature'}
    parsed, _, _ = load_results(submission)  # the scorer's own validation
    assert parsed.keys() == results.keys()
    again = dense_captioning(models['cg'], models['sl'], batches, options, vocab, torch.device('cpu'))
    assert again == results  # seeded: reproducible


def test_pretrain_baseline_writes_true_gt(setup):
    val, vocab, batches, models = setup
    g = torch.Generator().manual_seed(233)
    out = pretrain_random_captions(models['cg'], batches[0], g, vocab)
    expected = torch.rand(len(batches[0].keys), 2, generator=torch.Generator().manual_seed(233))
    for b, vid in enumerate(batches[0].keys):
        (entry,) = out[vid]
        duration = val[vid]['duration']
        s, e = se(expected[b].tolist())
        assert entry['timestamp'] == pytest.approx([max(s, 0) * duration, min(e, 1) * duration], rel=1e-5)
        assert entry['gt_timestamp'] == pytest.approx(val[vid]['timestamps'][0])
        assert entry['gt_timestamp'] != entry['timestamp']


def test_localization_entries_and_metrics(setup):
    val, vocab, batches, models = setup
    results = {}
    for batch in batches:
        results.update(localize_sentences(models['sl'], batch, vocab))
    assert sum(map(len, results.values())) == sum(len(a['sentences']) for a in val.values())
    for vid, entries in results.items():
        assert flat(e['gt_timestamp'] for e in entries) == pytest.approx(flat(val[vid]['timestamps']))
        assert [e['sentence'] for e in entries] == [vocab.decode(vocab.encode(s)) for s in val[vid]['sentences']]
        assert all(0 <= e['timestamp'][0] <= e['timestamp'][1] <= val[vid]['duration'] for e in entries)
    metrics = evaluate_localization(build_submission(results))['metrics']
    assert set(metrics) == {'R@1_0.1', 'R@1_0.3', 'R@1_0.5', 'R@1_0.7', 'R@1_0.9', 'mIoU'}
    assert 100 >= metrics['R@1_0.1'] >= metrics['R@1_0.5'] >= metrics['R@1_0.9'] >= 0


def test_random_localization_one_segment_per_sentence(setup):
    _, vocab, batches, _ = setup
    out = random_localization(batches[0], torch.Generator().manual_seed(1), vocab)
    assert sum(map(len, out.values())) == len(batches[0].caption)


def test_caption_at_gt_segments(setup):
    val, vocab, batches, models = setup
    out = caption_gt_segments(models['cg'], batches[0], vocab)
    for vid in batches[0].keys:
        assert flat(e['timestamp'] for e in out[vid]) == pytest.approx(flat(val[vid]['timestamps']))


# ---------------------------------------------------------------- options and the robustness table
def test_resolve_options_precedence():
    options, overridden = resolve_options({'iou_thres': 0.8, 'refine_round': 1, 'unrelated': 3},
                                          {'n_rand': 10, 'refine_round': 1, 'rand_seed': None})
    assert (options.n_rand, options.iou_thres, options.refine_round, options.rand_seed) == (10, 0.8, 1, 233)
    assert overridden == {'n_rand': (15, 10)}  # refine_round given but equal: not an override


def test_aggregate_runs_mean_and_sample_std():
    runs = [{'n_rand': 10, 'seed': s, 'metrics': {'METEOR': m, 'SODA_c': None}} for s, m in ((1, 5.0), (2, 7.0), (3, 9.0))]
    runs.append({'n_rand': 15, 'seed': 1, 'metrics': {'METEOR': 6.0}})
    table = aggregate_runs(runs)
    assert table[10]['METEOR']['mean'] == pytest.approx(7.0)
    assert table[10]['METEOR']['std'] == pytest.approx(2.0)  # sqrt((4 + 0 + 4) / 2)
    assert table[15]['METEOR'] == {'mean': 6.0, 'std': None, 'n': 1, 'values': [6.0]}
    assert 'SODA_c' not in table[10]
    md = random_test_markdown(table, ['METEOR', 'CIDEr']).splitlines()
    assert md[2] == '| 10 | 3 | 7.00 ± 2.00 | – |' and md[3] == '| 15 | 1 | 6.00 | – |'
