"""Collapse diagnostics (utils/diagnostics.py), video reliance of both captioners, the prior and the segment-blind
baselines (issue 14), on hand-made inputs and tiny models."""
import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from utils.baselines import best_constant_segment, constant_segment_f1, most_frequent_caption, prior_results, \
    relative_events
from utils.diagnostics import paragraph_diagnostics, submission_diagnostics, training_log_summary, warnings

REFS = {'v_a': {'duration': 100.0, 'timestamps': [[0, 50], [50, 100]], 'sentences': ['a', 'b']},
        'v_b': {'duration': 10.0, 'timestamps': [[0, 10]], 'sentences': ['c']}}


def test_submission_diagnostics_by_hand():
    results = {'v_a': [{'sentence': 'A man runs.', 'timestamp': [0, 20]}, {'sentence': 'a man runs', 'timestamp': [40, 41]}],
               'v_b': [{'sentence': 'A dog.', 'timestamp': [2, 8]}]}
    d = submission_diagnostics(results, REFS)
    assert (d['videos'], d['events'], d['distinct_captions']) == (2, 3, 2)   # case and the full stop do not count
    assert d['top_caption'] == 'a man runs' and d['top_caption_fraction'] == pytest.approx(2 / 3)
    assert d['one_caption_videos_fraction'] == 1.0 and d['single_event_videos_fraction'] == 0.5
    assert (d['events_per_video'], d['reference_events_per_video']) == (1.5, 1.5)
    centres, widths = [0.1, 0.405, 0.5], [0.2, 0.01, 0.6]
    assert d['centre_mean_std'][0] == pytest.approx(sum(centres) / 3)
    assert d['width_mean_std'][0] == pytest.approx(sum(widths) / 3)
    assert d['centre_histogram'] == [0, 1, 0, 0, 1, 1, 0, 0, 0, 0] and d['width_histogram'][0] == 1
    assert d['narrow_fraction'] == pytest.approx(1 / 3)          # 0.01 < 1/32
    found = warnings(d)
    assert any('one caption for 67% of the events' in w for w in found)
    assert any('every event has the same caption' in w for w in found)


def test_warnings_name_each_collapse_and_stay_quiet_otherwise():
    healthy = {'videos': 10, 'events': 30, 'distinct_captions': 25, 'distinct_fraction': 25 / 30, 'top_caption': 'x',
               'top_caption_fraction': 0.1, 'one_caption_videos_fraction': 0.1, 'narrow_fraction': 0.0,
               'centre_mean_std': (0.5, 0.2), 'width_mean_std': (0.3, 0.2), 'events_per_video': 3.0,
               'reference_events_per_video': 3.5, 'reliance': 0.5}
    assert warnings(healthy) == []
    collapsed = {**healthy, 'narrow_fraction': 0.9, 'centre_mean_std': (0.9, 0.01), 'width_mean_std': (0.03, 0.01),
                 'events_per_video': 1.0, 'reliance': 0.001, 'train_label_tied_mean': 0.9,
                 'paragraphs': 10, 'stated_equals_split_fraction': 0.2}
    text = ' | '.join(warnings(collapsed))
    for fragment in ('narrower than 1/32', 'the same segment everywhere', '1.00 predicted events per video',
                     'hardly reads the video', 'decided by a tie', 'stated event count in only 20%'):
        assert fragment in text


def test_paragraph_and_training_log_summaries(tmp_path):
    paragraphs = {'v_a': {'paragraph': '3 events: A man runs. He jumps.', 'sentences': ['A man runs.', 'He jumps.']},
                  'v_b': {'paragraph': '2 events: A dog. It barks.', 'sentences': ['A dog.', 'It barks.']},
                  'v_c': {'paragraph': '1 events: Nothing.', 'sentences': ['Nothing.']}}
    d = paragraph_diagnostics(paragraphs)
    assert (d['stated_count_mean'], d['split_count_mean']) == (2.0, pytest.approx(5 / 3))
    assert d['stated_equals_split_fraction'] == pytest.approx(2 / 3) and d['single_sentence_fraction'] == \
        pytest.approx(1 / 3) and d['distinct_paragraphs'] == 3
    log = tmp_path / 'log.jsonl'
    rows = [{'step': 1, 'epoch': 0, 'label_tied': 1.0}, {'step': 2, 'epoch': 0, 'label_tied': 0.5},
            {'step': 3, 'epoch': 1, 'loss': 2.0}, {'step': 4, 'epoch': 5, 'label_tied': 0.0}]
    log.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    s = training_log_summary(log)
    assert (s['train_label_tied_mean'], s['train_label_tied_first_epoch'], s['train_label_tied_last_epoch']) == \
        (0.5, 0.75, 0.0)
    assert training_log_summary(tmp_path / 'none.jsonl') == {}


# ------------------------------------------------------------------------------------------------- the prior
def test_constant_segment_f1_by_hand():
    events = relative_events(REFS)   # v_a: [0, .5], [.5, 1]; v_b: [0, 1]
    # [0, 0.5]: IoU 1 and 0 in v_a, 0.5 in v_b. At tau 0.3: P = (1 + 1) / 2, R = (1/2 + 1) / 2 = 0.75
    f1 = {0.3: 2 * 1 * 0.75 / 1.75, 0.5: 2 * 0.5 * 0.25 / 0.75, 0.7: 2 * 0.5 * 0.25 / 0.75, 0.9: 2 * 0.5 * 0.25 / 0.75}
    assert constant_segment_f1((0.0, 0.5), events) == pytest.approx(sum(f1.values()) / 4)


def test_best_constant_segment_and_caption():
    train = {f'v{i}': {'duration': 10.0, 'timestamps': [[2, 6]], 'sentences': ['Hi.', ' Same words. ']}
             for i in range(3)}
    train['v3'] = {'duration': 10.0, 'timestamps': [[2, 6]], 'sentences': ['Same words.']}
    best = best_constant_segment(train)
    assert (best['centre'], best['width'], best['start'], best['end']) == (0.4, 0.4, pytest.approx(0.2),
                                                                          pytest.approx(0.6))
    assert best['train_f1'] == pytest.approx(1.0)
    assert most_frequent_caption(train) == ('Same words.', 4)
    results = prior_results({'x': {'duration': 50.0}}, best, 'Same words.')
    assert results == {'x': [{'sentence': 'Same words.', 'timestamp': [10.0, 30.0]}]}


@pytest.mark.java
def test_prior_script_end_to_end(tiny_data, tmp_path):
    if shutil.which('java') is None:
        pytest.skip('Java is needed for METEOR')
    from utils.baselines import evaluate_prior
    out = evaluate_prior(['--data-root', str(tiny_data.root), '--runs-dir', str(tmp_path), '--run-name', 'prior'])
    assert set(out) == {'wsdec', 'ilcacm'}
    saved = json.loads((tmp_path / 'prior' / 'metrics' / 'prior_val_1_ilcacm.json').read_text())
    assert saved['diagnostics']['distinct_captions'] == 1
    assert any('one caption' in w for w in saved['diagnostics']['warnings'])


# ----------------------------------------------------------------------------------- reliance, segment-blind
def _wsdec_tiny(tiny_data):
    from models.wsdec.factory import build_models_from_config
    from utils.annotations import load_annotations
    from utils.features import open_features
    from utils.vocab import Vocabulary
    from utils.wsdec_data import WSDECDataset, wsdec_collate
    vocab = Vocabulary.build(load_annotations(tiny_data.train))
    dataset = WSDECDataset(load_annotations(tiny_data.val_1), open_features(tiny_data.c3d), vocab)
    batches = [wsdec_collate([dataset[i] for i in range(s, min(s + 4, len(dataset)))]) for s in range(0, 8, 4)]
    torch.manual_seed(0)
    cg = build_models_from_config({'cg': dict(vocab_size=len(vocab), hidden_dim=8, sent_embedding_dim=8,
                                              video_feature_dim=500, rnn_dropout=0.0, max_cap_length=5)})['cg']
    return cg.eval(), batches, vocab


def test_wsdec_video_reliance(tiny_data):
    from models.wsdec.caption_generator import caption_loss
    from models.wsdec.inference import video_reliance
    from models.wsdec.steps import gt_segments
    cg, batches, _ = _wsdec_tiny(tiny_data)
    out = video_reliance(cg, batches, torch.device('cpu'))
    with torch.no_grad():  # nll_own by hand: the per-sentence caption loss times N, over the tokens after BOS
        total = sum(float(caption_loss(cg(b.video, b.video_length, b.video_mask, gt_segments(b), b.caption_gather_idx,
                                          sent=b.caption)[0], b.caption, b.caption_mask)) * b.caption.size(0)
                    for b in batches)
        tokens = sum(float(b.caption_mask.reshape(b.caption.shape)[:, 1:].sum()) for b in batches)
    assert out['nll_own'] == pytest.approx(total / tokens, rel=1e-5)
    assert out['reliance'] == pytest.approx(out['nll_other'] - out['nll_own'])
    assert len({round(out[k], 6) for k in ('nll_own', 'nll_zero', 'nll_other')}) == 3   # a random CG: all differ
    for p in list(cg.video_encoder.parameters()):   # a captioner that cannot see the video
        torch.nn.init.zeros_(p)
    blind = video_reliance(cg, batches, torch.device('cpu'))
    assert blind['nll_own'] == pytest.approx(blind['nll_zero']) == pytest.approx(blind['nll_other'])
    assert abs(blind['reliance']) < 1e-6 and any('hardly reads' in w for w in warnings(blind))


def test_wsdec_segment_blind_keeps_segments_and_shares_the_whole_video_caption(tiny_data):
    from models.wsdec.inference import segment_blind, whole_video_captions
    cg, batches, vocab = _wsdec_tiny(tiny_data)
    with torch.no_grad():
        whole = whole_video_captions(cg, batches[0], vocab)
    results = {vid: [{'sentence': 'x', 'timestamp': [0, 1]}, {'sentence': 'y', 'timestamp': [1, 2]}] for vid in whole}
    blind = segment_blind(results, whole)
    for vid, entries in blind.items():
        assert [e['timestamp'] for e in entries] == [[0, 1], [1, 2]]
        assert {e['sentence'] for e in entries} == {whole[vid][0]['sentence']}


def test_ilcacm_video_reliance_and_segment_blind(tiny_data):
    from models.ilcacm.config import resolve_model_args, training_parser
    from models.ilcacm.factory import build_model, build_tokenizer
    from models.ilcacm.inference import predict, video_reliance
    from utils.annotations import load_annotations
    from utils.features import open_features
    from utils.ilcacm_data import ILCACMDataset
    args = resolve_model_args(training_parser().parse_args(
        ['--decoder', 'word', '--word-min-count', '1', '--gpt2-layers', '1', '--gpt2-dim', '16', '--gpt2-heads', '2',
         '--enc-layers', '1', '--enc-heads', '2', '--enc-ff', '16', '--mask-ff', '16', '--eval-batch-size', '4',
         '--num-beams', '2']))
    train = load_annotations(tiny_data.train)
    tokenizer = build_tokenizer(vars(args), [s for a in train.values() for s in a['sentences']])
    torch.manual_seed(0)
    model = build_model(vars(args), tokenizer, 768)
    val = load_annotations(tiny_data.val_1)
    dataset = ILCACMDataset(val, open_features(tiny_data.clip_dir), tokenizer, max_frames=args.max_frames)
    out = video_reliance(model, dataset, torch.device('cpu'), args)
    assert {'nll_full_own', 'nll_full_zero', 'nll_full_other', 'nll_pos_own', 'reliance_full', 'reliance_pos'} <= \
        set(out)
    assert out['reliance_pos'] == pytest.approx(out['nll_pos_other'] - out['nll_pos_own'])
    paragraphs = {vid: {'sentences': ['A.', 'B.', 'C.']} for vid in val}
    blind = predict(model, dataset, paragraphs, torch.device('cpu'), SimpleNamespace(**{**vars(args),
                                                                                          'count_mode': 'paragraph',
                                                                                          'segment_blind': True}))
    masked = predict(model, dataset, paragraphs, torch.device('cpu'), SimpleNamespace(**{**vars(args),
                                                                                           'count_mode': 'paragraph'}))
    for vid in val:
        assert len({e['sentence'] for e in blind[vid]}) == 1
        assert [e['timestamp'] for e in blind[vid]] == [e['timestamp'] for e in masked[vid]]
