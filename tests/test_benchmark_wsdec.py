"""scripts/benchmark_wsdec.py's workload and reference: ActivityNet-like video lengths, and the original way of
computing the cycle step (padded steps, W over every step, two encodings) giving the same step as ours."""
import copy
import dataclasses

import torch

from models.layers.attention import BilinearAttention
from models.wsdec import build_models_from_config
from scripts.benchmark_wsdec import (DURATION_PERCENTILES, DURATION_QUANTILES_S, STEPS_PER_SECOND,
                                     activitynet_lengths, original_way, random_batch)
from models.wsdec.steps import cycle_parameter_groups, cycle_step, sgd


def test_lengths_follow_activitynet_durations():
    lengths = activitynet_lengths(200_000, torch.Generator().manual_seed(0)).double()
    assert abs(float(lengths.mean()) - 117.3 * STEPS_PER_SECOND) < 3  # the training videos' mean, 117.3 s
    for p in (25, 50, 75, 95):
        expected = DURATION_QUANTILES_S[DURATION_PERCENTILES.index(p)] * STEPS_PER_SECOND
        assert abs(float(torch.quantile(lengths[:50_000], p / 100)) - expected) < 4, p
    batch = random_batch(32, torch.device('cpu'))
    valid = batch.video_mask.squeeze(2).sum(1)
    assert torch.equal(valid, batch.video_length[:, 0]) and batch.video.size(1) == int(valid.max())
    assert float(valid.mean()) / batch.video.size(1) < 0.7  # a batch of 32 is padded to its longest video


def test_original_way_gives_the_same_cycle_step():
    """Without dropout, the reference (step loops over every padded step, W over every step, two encodings)
    and ours make the same update; the patches are removed afterwards."""
    torch.manual_seed(0)
    config = {'cg': dict(vocab_size=50, video_feature_dim=12, hidden_dim=16, sent_embedding_dim=16, rnn_dropout=0.0),
              'sl': dict(type='anchor', vocab_size=50, video_feature_dim=12, hidden_dim=16, sent_embedding_dim=16,
                         rnn_dropout=0.0, fc_dropout=0.0)}
    models = build_models_from_config(config)
    twin = copy.deepcopy(models)
    batch = random_batch(4, torch.device('cpu'))
    batch = dataclasses.replace(batch, video=batch.video[..., :12].contiguous(), caption=batch.caption.clamp(max=49))

    def step(m):
        torch.manual_seed(1)
        opt = sgd(cycle_parameter_groups(m['sl'], m['cg'], 1e-2), 1e-2)
        return cycle_step(m['cg'], m['sl'], batch, opt, grad_clip=5.0)['loss']

    ours = step(models)
    with original_way(twin):
        attention = next(m for m in twin['sl'].modules() if isinstance(m, BilinearAttention))
        assert 'forward' in vars(attention)
        reference = step(twin)
    assert 'forward' not in vars(attention)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    for name in ('cg', 'sl'):
        for key, value in models[name].state_dict().items():
            torch.testing.assert_close(value.float(), twin[name].state_dict()[key].float(), rtol=1e-4, atol=1e-6)
