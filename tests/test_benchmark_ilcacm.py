"""scripts/benchmark_ilcacm.py at tiny sizes: the result layout, fast == naive inference tokens, and the naive
training reference computing the same loss sums as the batched captioner."""
from dataclasses import replace

import pytest
import torch

from scripts.benchmark_ilcacm import (QUICK, TARGETS_S, TEST_VIDEOS, bench_device, build_benchmark_model, infer,
                                      infer_naive, one_sequence_at_a_time, random_batch)

TINY = replace(QUICK, batch=2, infer_videos=2, naive_infer_videos=2, paragraph_tokens=6, caption_tokens=4,
               frames=8, feature_dim=24, gpt2_layers=1, gpt2_dim=16, heads=2, vocab=300, enc_layers=1, enc_ff=32,
               mask_ff=32)
CPU = torch.device('cpu')


@pytest.fixture(scope='module')
def tiny():
    return build_benchmark_model(TINY, CPU)


def test_result_keys_and_extrapolation():
    r = bench_device(CPU, TINY)
    assert {'device', 'precision', 'settings', 'parameters', 'train_stage1', 'train_stage2', 'inference',
            'extrapolation', 'load_average_1min'} <= set(r)
    assert r['device'].startswith('CPU') and 'threads' in r['device'] and r['precision'] == 'fp32'
    for stage in ('train_stage1', 'train_stage2'):
        t = r[stage]
        assert {'videos_per_s', 'tokens_per_s', 'seconds_per_step', 'peak_mib', 'naive', 'speedup'} <= set(t)
        assert t['videos_per_s'] > 0 and t['peak_mib'] > 0
        assert t['speedup'] == pytest.approx(t['videos_per_s'] / t['naive']['videos_per_s'])
    assert r['train_stage1']['sequences_per_step'] == 2  # one paragraph per video
    assert r['train_stage2']['sequences_per_step'] >= 2 * 2 * 3  # pos + neg, >= 3 captions per video
    assert r['inference']['tokens_identical'] is True
    e = r['extrapolation']
    assert e['label'].startswith('CPU') and 'extrapolation' in e['label']
    assert e['inference_4917_videos_s'] == pytest.approx(TEST_VIDEOS / r['inference']['videos_per_s'])
    s1, s2 = r['train_stage1']['videos_per_s'], r['train_stage2']['videos_per_s']
    assert e['training_20_epochs_s'] == pytest.approx(10_009 * 10 * (1 / s1 + 1 / s2))
    assert e['training_target_s'] == TARGETS_S['training'] == 1800 and e['inference_target_s'] == 120


def test_fast_and_naive_inference_give_identical_tokens(tiny):
    model, tok = tiny
    batch = random_batch(TINY, tok, 3, seed=5)
    settings = replace(TINY, paragraph_tokens=12, caption_tokens=6)
    fast, naive = infer(model, batch, settings, CPU), infer_naive(model, batch, settings, CPU)
    assert fast == naive
    assert len(fast[0]) == 3 and len(fast[1]) == sum(batch.num_sents)
    assert all(len(p.split()) == 12 for p in fast[0])  # random weights: no eos, generation runs to the end


def test_random_batch_has_activitynet_like_captions(tiny):
    _, tok = tiny
    batch = random_batch(TINY, tok, 40, seed=0)
    assert set(batch.num_sents) <= {3, 4} and 3.5 < sum(batch.num_sents) / 40 < 3.9
    assert batch.positive_tokens.shape[0] == batch.negative_tokens.shape[0] == sum(batch.num_sents)
    lengths = (batch.positive_tokens != tok.pad_id).sum(1) - 2  # minus separator and eos
    assert lengths.min() >= 11 and lengths.max() <= 19


def test_one_sequence_at_a_time_gives_the_batched_loss_sums(tiny):
    model, tok = tiny
    model.eval()  # no dropout: both ways compute the same function
    batch = random_batch(TINY, tok, 2, seed=3)
    with torch.no_grad():
        fast = {mode: model(batch, mode) for mode in ('full', 'pos', 'neg')}
        with one_sequence_at_a_time(model):
            naive = {mode: model(batch, mode) for mode in ('full', 'pos', 'neg')}
    assert 'caption_loss' not in vars(model.captioner)  # the patch is undone
    for mode in fast:
        assert int(naive[mode]['tokens']) == int(fast[mode]['tokens'])
        torch.testing.assert_close(naive[mode]['ce'], fast[mode]['ce'], rtol=1e-4, atol=1e-4)
