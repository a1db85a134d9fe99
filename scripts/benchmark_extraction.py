"""Benchmark feature extraction from video (models/extractors/pipeline.py) against a one-at-a-time reference.

    python scripts/benchmark_extraction.py [--quick] [--device auto|cpu|cuda] [--out results.json]

Models at paper size with random weights: CLIP ViT-L/14 (ILCACM; 224 x 224 frames at 1 fps) and the Sports-1M
C3D + PCA to 500 (WSDEC; 16-frame windows every 8 frames); `--quick`: ViT-B/32 and a C3D a quarter as wide.
* model: the extractor's batched forward over N units (frames / windows) of a synthetic video, `batch` at a time,
  against the same forward one unit at a time (on the first few units); frames/s, the ratio, and the largest
  difference between the two outputs (the same work, so the same numbers up to float rounding).
* pipeline: `extract()` on synthetic videos (decoding in 2 worker threads, batched model) against the reference
  pipeline: the same decoding and model in one thread, one unit at a time; video frames decoded per second.
On CUDA the model runs in float32 (the default) and, for CLIP, also in bf16.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from models.extractors.c3d import SPORTS1M_CHANNELS, STRIDE, C3D, C3DExtractor, load_mean
from models.extractors.clip import CLIPImageEncoder, CLIPVisionConfig, ClipExtractor
from scripts.benchmark import part_main
from models.extractors.pipeline import NpyStore, extract, extract_video
from utils.run import resolve_device
from utils.video import decode, write_synthetic_video

VIT_L14 = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           patch_size=14, projection_dim=768)
VIT_B32 = CLIPVisionConfig(projection_dim=512)


@dataclass(frozen=True)
class Settings:
    clip: CLIPVisionConfig = VIT_L14
    c3d_width: int = 1                     # C3D channels divided by this
    clip_frames: int = 16                  # units in the batched model measurement
    c3d_windows: int = 8
    single_units: int = 4                  # units run one at a time by the reference
    batch: int = 16
    videos: int = 2                        # synthetic videos of the pipeline measurement
    video_seconds: int = 8
    video_size: tuple = (320, 240)
    repeats: int = 2                       # each measurement: the best of this many runs


FULL = Settings()
QUICK = Settings(clip=VIT_B32, c3d_width=4, clip_frames=8, c3d_windows=4, single_units=2, batch=8, videos=2,
                 video_seconds=3, video_size=(160, 120))


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int):
    """(best seconds of `repeats` runs, the last output): the best run is the least disturbed by other load."""
    best = float('inf')
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def build_extractors(s: Settings, device, dtype=torch.float32):
    torch.manual_seed(0)
    clip = ClipExtractor(CLIPImageEncoder(s.clip), device, dtype)
    channels = tuple(c // s.c3d_width for c in SPORTS1M_CHANNELS)
    fc_dim = 4096 // s.c3d_width
    pca = (np.zeros(fc_dim, np.float32), np.random.default_rng(0).standard_normal((fc_dim, 500)).astype(np.float32))
    c3d = C3DExtractor(C3D('caffe', channels, fc_dim), pca, load_mean('channel'), device, dtype)
    return clip, c3d


def units_of(extractor, video, n):
    units = []
    while len(units) < n:              # repeat the video's units when it has fewer
        units += list(extractor.units(video))
    return np.stack(units[:n])


def bench_model(extractor, units: np.ndarray, s: Settings, device, frames_per_unit: int) -> dict:
    """Batched forward vs one unit at a time: units/s, video frames/s, ratio, output agreement."""
    extractor(units[:2])                                                      # warm-up
    seconds, batched = timed(lambda: np.concatenate([extractor(units[i:i + s.batch])
                                                     for i in range(0, len(units), s.batch)]), device, s.repeats)
    single_seconds, single = timed(lambda: np.concatenate([extractor(units[i:i + 1])
                                                           for i in range(s.single_units)]), device, s.repeats)
    rate, single_rate = len(units) / seconds, s.single_units / single_seconds
    return {'units': len(units), 'units_per_s': rate, 'frames_per_s': rate * frames_per_unit,
            'one_at_a_time': {'units': s.single_units, 'units_per_s': single_rate,
                              'frames_per_s': single_rate * frames_per_unit},
            'speedup': rate / single_rate,
            'max_abs_difference': float(np.abs(batched[:s.single_units] - single).max())}


def reference_pipeline(extractor, videos) -> None:
    """Decode and run the model in one thread, one unit at a time."""
    for video in videos:
        extract_video(video, extractor, batch_size=1)


def bench_pipeline(extractor, videos, s: Settings, device) -> dict:
    frames = sum(sum(1 for _ in decode(v)) for v in videos)
    def batched():
        with tempfile.TemporaryDirectory() as out:
            return extract(videos, extractor, NpyStore(out), s.batch, workers=2, progress=False)

    seconds, report = timed(batched, device, s.repeats)
    assert not report.failed, report.failed
    ref_seconds, _ = timed(lambda: reference_pipeline(extractor, videos), device, s.repeats)
    return {'videos': len(videos), 'video_frames': frames, 'frames_per_s': frames / seconds,
            'one_at_a_time': {'frames_per_s': frames / ref_seconds}, 'speedup': ref_seconds / seconds}


def bench_device(device, s: Settings) -> dict:
    load_start = os.getloadavg()[0]
    clip, c3d = build_extractors(s, device)
    with tempfile.TemporaryDirectory() as d:
        w, h = s.video_size
        videos = [write_synthetic_video(pathlib.Path(d) / f'v{i}.mp4', 25 * s.video_seconds, width=w, height=h)
                  for i in range(s.videos)]
        results = {'device': f'GPU {torch.cuda.get_device_name(device)}' if device.type == 'cuda'
                   else f'CPU, {torch.get_num_threads()} threads', 'settings': asdict(s)}
        results['clip_model'] = bench_model(clip, units_of(clip, videos[0], s.clip_frames), s, device, 1)
        results['c3d_model'] = bench_model(c3d, units_of(c3d, videos[0], s.c3d_windows), s, device, STRIDE)
        if device.type == 'cuda':
            clip_bf16, _ = build_extractors(s, device, torch.bfloat16)
            results['clip_model_bf16'] = bench_model(clip_bf16, units_of(clip, videos[0], s.clip_frames), s,
                                                     device, 1)
        results['clip_pipeline'] = bench_pipeline(clip, videos, s, device)
        results['c3d_pipeline'] = bench_pipeline(c3d, videos[:1], s, device)
    results['load_average_1min'] = {'start': load_start, 'end': os.getloadavg()[0]}
    return results


def run(quick: bool = False, device: str = 'auto') -> dict:
    dev = resolve_device(device)
    s = QUICK if quick else FULL
    if dev.type == 'cuda':                 # a GPU takes bigger workloads
        s = replace(s, clip_frames=4 * s.clip_frames, c3d_windows=4 * s.c3d_windows, batch=4 * s.batch)
    return bench_device(dev, s)


def summary(r: dict) -> str:
    lines = [f"extraction benchmark on {r['device']} (1-min load {r['load_average_1min']['start']:.1f})"]
    for name in ('clip_model', 'clip_model_bf16', 'c3d_model', 'clip_pipeline', 'c3d_pipeline'):
        if name in r:
            x = r[name]
            lines.append(f"{name}: {x['frames_per_s']:.2f} frames/s; one at a time "
                         f"{x['one_at_a_time']['frames_per_s']:.2f} frames/s; ratio {x['speedup']:.2f}x"
                         + (f"; max |batched - single| {x['max_abs_difference']:.2e}" if 'max_abs_difference' in x
                            else ''))
    return '\n'.join(lines)


if __name__ == '__main__':
    part_main(__doc__, run, summary, 'ViT-B/32, a narrow C3D, few frames')
