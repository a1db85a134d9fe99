"""The extraction benchmark runs end to end on tiny settings and reports ratios against its one-at-a-time
reference with the same numbers (no timing is asserted)."""
from dataclasses import replace

import pytest

from models.extractors.clip import CLIPVisionConfig
from scripts.benchmark import PARTS
from scripts.benchmark_extraction import QUICK, bench_device, summary

pytestmark = pytest.mark.usefixtures('single_thread')
TINY = replace(QUICK, clip=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, image_size=28, patch_size=14, projection_dim=8),
               c3d_width=32, clip_frames=4, c3d_windows=3, single_units=2, batch=2, videos=1, video_seconds=2,
               video_size=(64, 48), repeats=1)


def test_tiny_benchmark_reports_ratios_of_the_same_work():
    import torch
    result = bench_device(torch.device('cpu'), TINY)
    for part in ('clip_model', 'c3d_model', 'clip_pipeline', 'c3d_pipeline'):
        assert result[part]['speedup'] > 0 and result[part]['one_at_a_time']['frames_per_s'] > 0
    assert result['clip_model']['max_abs_difference'] < 1e-4 and result['c3d_model']['max_abs_difference'] < 1e-3
    assert result['c3d_pipeline']['video_frames'] == 50 and 'c3d_pipeline' in summary(result)
    assert 'extraction' in PARTS
