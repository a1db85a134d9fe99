"""Benchmark ILCACM training and inference against a naive implementation, and extrapolate the paper's schedule.

    python scripts/benchmark_ilcacm.py [--quick] [--device auto|cpu|cuda] [--out results.json]

Workload at ActivityNet shapes (spec ilcacm §2.4, §3, §4.4, §5): 32×768 features, a distilgpt2-sized GPT-2
(6 layers, 768 wide, 12 heads, vocabulary 50,260) with random weights, ~3.7 captions of ~15 tokens per video
(paragraphs ~60 tokens), batch 8 on CPU (fp32) and 64 on CUDA (bf16 autocast).
* Stage-1 step and stage-2 step: `train_step` of models/ilcacm/steps.py (AdamW, clip 1.0; stage 2 takes
  two clipped optimiser steps per batch, spec §4.3). Naive reference: the same steps with every caption sequence
  run through the captioner one at a time (no padding, no batching), as a straightforward implementation would.
* Inference per video (spec §5.1-5.2): full-mode paragraph + masks + one re-caption per event, beam 4. Naive
  reference: one video at a time, beam search without KV cache (`beam_search_naive`). The event counts are the
  batch's caption counts, and generation always runs to a fixed length (a random GPT-2 never emits eos), set to
  the typical output length: ~60 paragraph tokens, ~16 caption tokens (`--quick`: 20 and 10).
Extrapolations: the 20-epoch schedule (10,009 videos × (10 stage-1 + 10 stage-2 epochs)) and inference on 4,917
videos, from the measured throughput, next to the targets (30 min training on one H100, 2 min inference).
Peak memory: process max RSS on CPU (cumulative: it never decreases), max allocated per phase on CUDA.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import contextlib
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass, replace
from types import SimpleNamespace
from unittest import mock

import torch

from models.ilcacm import captioner as captioner_module
from models.ilcacm.factory import build_model
from models.ilcacm.steps import cosine_schedule, supervised_tokens, train_step
from scripts.benchmark import part_main
from scripts.benchmark_ilcacm_reference import beam_search_naive
from utils.ilcacm_data import dense_target, ilcacm_collate, negative_target, positive_target
from utils.run import autocast, resolve_device

TRAIN_VIDEOS, EPOCHS_PER_STAGE, TEST_VIDEOS = 10_009, 10, 4_917  # spec ilcacm §4.1, §4.4; val_1
TARGETS_S = {'training': 30 * 60, 'inference': 2 * 60}          # the targets (one H100)


@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run (model shape, workload, repetitions)."""
    batch: int = 8
    train_steps: int = 2           # timed steps per stage (after one warm-up step)
    naive_train_steps: int = 1
    infer_videos: int = 8
    naive_infer_videos: int = 2
    paragraph_tokens: int = 60     # generated tokens of a full-mode paragraph (spec §5.1: max 128)
    caption_tokens: int = 16       # generated tokens of a re-caption (spec §5.2: max 32)
    num_beams: int = 4
    frames: int = 32
    feature_dim: int = 768
    gpt2_layers: int = 6
    gpt2_dim: int = 768
    heads: int = 12
    vocab: int = 50_260
    enc_layers: int = 6
    enc_ff: int = 2048
    mask_ff: int = 1024
    sentence_tokens: int = 15      # mean caption length in BPE tokens
    mean_captions: float = 3.7


FULL = Settings()
QUICK = replace(FULL, batch=2, train_steps=1, infer_videos=2, naive_infer_videos=1, paragraph_tokens=20,
                caption_tokens=10)


class BenchTokenizer:
    """The BPE caption tokenizer's ids and prompt layout (spec §2.6: [mode, n, " events", ":", " "]) for a
    vocabulary of any size; decode writes the ids, so equal strings mean equal tokens."""

    separator = [220]

    def __init__(self, vocab):
        self.vocab = vocab
        self.eos_id, self.pad_id, self.full_id, self.mask_id = range(vocab - 4, vocab)

    def __len__(self):
        return self.vocab

    def prompt(self, mode, n):
        return [self.full_id if mode == 'full' else self.mask_id, 15 + n, 2995 % self.vocab, 25, 220]

    def decode(self, ids):
        return ' '.join(str(i) for i in ids if i not in (self.eos_id, self.pad_id))


def build_benchmark_model(s: Settings, device):
    torch.manual_seed(0)
    config = {'dropout': 0.1, 'enc_heads': s.heads, 'enc_ff': s.enc_ff, 'enc_layers': s.enc_layers,
              'max_frames': s.frames, 'mask_ff': s.mask_ff, 'num_queries': 16, 'tau': 2.0, 'gamma': 0.8,
              'mask_shape': 'gaussian', 'mask_mode': 'learned', 'seed': 42}
    arch = {'n_layer': s.gpt2_layers, 'n_head': s.heads, 'n_embd': s.gpt2_dim, 'vocab_size': s.vocab,
            'n_positions': 1024}
    tokenizer = BenchTokenizer(s.vocab)
    return build_model(config, tokenizer, s.feature_dim, arch=arch).to(device), tokenizer


def random_batch(s: Settings, tokenizer, n_videos, seed):
    """A collated batch (utils/ilcacm_data.py layouts) of random features and captions: 3 or 4 captions per video
    (mean 3.7), 11-19 tokens each (mean 15)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for v in range(n_videos):
        n = 4 if torch.rand((), generator=g) < s.mean_captions - 3 else 3
        lengths = torch.randint(s.sentence_tokens - 4, s.sentence_tokens + 5, (n,), generator=g).tolist()
        ids = [torch.randint(0, tokenizer.eos_id, (k,), generator=g).tolist() for k in lengths]
        sep, eos = tokenizer.separator, tokenizer.eos_id
        items.append({'vid': f'v_{seed}_{v}', 'duration': 120.0, 'sentences': ['.'] * n,
                      'video': torch.randn(s.frames, s.feature_dim, generator=g),
                      'positive': [positive_target(x, sep, eos) for x in ids],
                      'negative': [negative_target(ids, k, sep, eos) for k in range(n)],
                      'dense': dense_target(ids, sep, eos), 'timestamps': []})
    return ilcacm_collate(items, tokenizer.pad_id)


# ------------------------------------------------------------------------------------------- naive references
@contextlib.contextmanager
def one_sequence_at_a_time(model):
    """Naive training: the captioner runs each caption sequence alone, unpadded (same per-sequence CE and tokens)."""
    captioner, batched = model.captioner, model.captioner.caption_loss
    pad = captioner.tokenizer.pad_id

    def looped(frames, frame_mask, prompts, targets):
        ce, tokens = [], []
        for i in range(frames.shape[0]):
            length = int((targets[i] != pad).sum())
            c, t = batched(frames[i:i + 1], frame_mask[i:i + 1], prompts[i:i + 1], targets[i:i + 1, :length])
            ce.append(c)
            tokens.append(t)
        return torch.cat(ce), torch.cat(tokens)

    captioner.caption_loss = looped
    try:
        yield
    finally:
        del captioner.caption_loss


@torch.no_grad()
def infer(model, batch, s: Settings, device, amp=True):
    """Spec §5 for a batch: paragraphs, then masks and one caption per event (counts = the batch's); bf16 autocast
    on CUDA unless `amp` is False."""
    model.eval()
    with autocast(device) if amp else contextlib.nullcontext():
        paragraphs = model.paragraphs(batch.video, batch.video_mask, num_beams=s.num_beams,
                                      max_new_tokens=s.paragraph_tokens, min_new_tokens=min(8, s.paragraph_tokens))
        _, captions = model.localize_and_caption(batch.video, batch.video_mask, batch.num_sents,
                                                 num_beams=s.num_beams, max_new_tokens=s.caption_tokens,
                                                 min_new_tokens=min(4, s.caption_tokens))
    return paragraphs, captions


def infer_naive(model, batch, s: Settings, device, amp=True):
    """Naive inference: one video at a time, beam search without KV cache."""
    paragraphs, captions = [], []
    with mock.patch.object(captioner_module, 'beam_search', beam_search_naive):
        for b in range(len(batch.vids)):
            one = replace(batch, vids=batch.vids[b:b + 1], video=batch.video[b:b + 1],
                          video_mask=batch.video_mask[b:b + 1], num_sents=batch.num_sents[b:b + 1])
            p, c = infer(model, one, s, device, amp)
            paragraphs += p
            captions += c
    return paragraphs, captions


# ----------------------------------------------------------------------------------------------- measuring
def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _reset_peak(device):
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device):
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed(fn, device):
    """(seconds, result) of fn()."""
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def bench_training(model, tokenizer, s: Settings, device, stage):
    """Throughput of `train_step` in `stage` ('caption' = stage 1, 'localize' = stage 2), fast and naive."""
    modes = ('full',) if stage == 'caption' else ('pos', 'neg')
    # one loss group: any batch size; the grouping does not change the work
    args = SimpleNamespace(no_diversity=False, single_step=False, loss='pos+neg', clip=1.0, loss_groups=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01)
    scheduler = cosine_schedule(optimizer, 1000, 0.05)
    batches = [random_batch(s, tokenizer, s.batch, seed=100 + i).to(device)
               for i in range(1 + s.train_steps + s.naive_train_steps)]
    model.train()

    def steps(group):
        for batch in group:
            train_step(model, model, [batch], optimizer, scheduler, stage, args, device)

    def rates(seconds, group):
        videos = sum(len(b.vids) for b in group)
        tokens = sum(supervised_tokens(model, b, m) for b in group for m in modes)
        sequences = sum(len(b.vids) if stage == 'caption' else 2 * sum(b.num_sents) for b in group)
        return {'steps': len(group), 'seconds_per_step': seconds / len(group), 'videos_per_s': videos / seconds,
                'tokens_per_s': tokens / seconds, 'sequences_per_step': sequences / len(group)}

    steps(batches[:1])  # warm-up
    _reset_peak(device)
    fast_group, naive_group = batches[1:1 + s.train_steps], batches[1 + s.train_steps:]
    seconds, _ = timed(lambda: steps(fast_group), device)
    result = {**rates(seconds, fast_group), 'peak_mib': peak_mib(device)}
    _reset_peak(device)
    with one_sequence_at_a_time(model):
        seconds, _ = timed(lambda: steps(naive_group), device)
    result['naive'] = {**rates(seconds, naive_group), 'peak_mib': peak_mib(device)}
    result['speedup'] = result['videos_per_s'] / result['naive']['videos_per_s']
    return result


def bench_inference(model, tokenizer, s: Settings, device):
    batch = random_batch(s, tokenizer, s.infer_videos, seed=7).to(device)
    if device.type == 'cuda':  # warm-up at full size: lazily loaded kernels and allocator growth are one-off costs
        infer(model, random_batch(s, tokenizer, s.infer_videos, seed=8).to(device), s, device)
    else:
        warm = replace(batch, video=batch.video[:1], video_mask=batch.video_mask[:1], num_sents=batch.num_sents[:1])
        infer(model, warm, replace(s, paragraph_tokens=2, caption_tokens=2), device)
    _reset_peak(device)
    seconds, fast = timed(lambda: infer(model, batch, s, device), device)
    result = {'videos': s.infer_videos, 'seconds': seconds, 'videos_per_s': s.infer_videos / seconds,
              'peak_mib': peak_mib(device)}
    n = s.naive_infer_videos
    few = replace(batch, vids=batch.vids[:n], video=batch.video[:n], video_mask=batch.video_mask[:n],
                  num_sents=batch.num_sents[:n])
    _reset_peak(device)
    seconds, naive = timed(lambda: infer_naive(model, few, s, device), device)
    n_captions = sum(few.num_sents)
    result['naive'] = {'videos': n, 'seconds': seconds, 'videos_per_s': n / seconds, 'peak_mib': peak_mib(device)}
    result['speedup'] = result['videos_per_s'] / result['naive']['videos_per_s']
    same = fast[0][:n] == naive[0] and fast[1][:n_captions] == naive[1]
    if device.type == 'cuda':  # under bf16 the batched and one-at-a-time searches round differently: check in fp32
        result['tokens_identical_bf16'] = same
        same = infer(model, few, s, device, amp=False) == infer_naive(model, few, s, device, amp=False)
    result['tokens_identical'] = same  # fp32 (the CPU's precision)
    return result


def device_label(device):
    if device.type == 'cuda':
        return f'GPU {torch.cuda.get_device_name(device)}'
    model_name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                model_name = line.split(':', 1)[1].strip()
                break
    return f'CPU {model_name}, {torch.get_num_threads()} threads'


def extrapolate(results, label, quick):
    """Whole-schedule times from measured throughput (fast and naive), next to the targets."""
    s1, s2, inf = results['train_stage1'], results['train_stage2'], results['inference']

    def training(kind):
        rate1 = s1['videos_per_s'] if kind == 'fast' else s1['naive']['videos_per_s']
        rate2 = s2['videos_per_s'] if kind == 'fast' else s2['naive']['videos_per_s']
        return TRAIN_VIDEOS * EPOCHS_PER_STAGE * (1 / rate1 + 1 / rate2)

    out = {'label': f'{label} extrapolation' + (' (--quick: short generation, under-estimates inference)'
                                                 if quick else ''),
           'training_20_epochs_s': training('fast'), 'training_20_epochs_naive_s': training('naive'),
           'training_target_s': TARGETS_S['training'], 'training_target': '<= 30 min on one H100',
           'inference_4917_videos_s': TEST_VIDEOS / inf['videos_per_s'],
           'inference_4917_videos_naive_s': TEST_VIDEOS / inf['naive']['videos_per_s'],
           'inference_target_s': TARGETS_S['inference'], 'inference_target': '<= 2 min'}
    out['training_meets_target'] = out['training_20_epochs_s'] <= TARGETS_S['training']
    out['inference_meets_target'] = out['inference_4917_videos_s'] <= TARGETS_S['inference']
    return out


def bench_device(device, s: Settings, quick=False):
    """Every measurement on one device with the sizes `s`."""
    load_start = os.getloadavg()[0]
    model, tokenizer = build_benchmark_model(s, device)
    label = device_label(device)
    results = {'device': label, 'precision': 'bf16 autocast' if device.type == 'cuda' else 'fp32',
               'torch': torch.__version__, 'settings': asdict(s),
               'parameters': sum(p.numel() for p in model.parameters())}
    results['train_stage1'] = bench_training(model, tokenizer, s, device, 'caption')
    results['train_stage2'] = bench_training(model, tokenizer, s, device, 'localize')
    results['inference'] = bench_inference(model, tokenizer, s, device)
    results['extrapolation'] = extrapolate(results, label, quick)
    results['load_average_1min'] = {'start': load_start, 'end': os.getloadavg()[0]}  # other processes' share
    return results


def settings_for(device, quick):
    s = QUICK if quick else FULL
    if device.type == 'cuda':  # spec §4.4: batch 64 on one GPU
        s = replace(s, batch=64, infer_videos=64, train_steps=s.train_steps + 2)
    return s


def run(quick: bool = False, device: str = 'auto') -> dict:
    dev = resolve_device(device)
    return bench_device(dev, settings_for(dev, quick), quick)


def summary(r):
    e = r['extrapolation']
    lines = [f"ILCACM benchmark on {r['device']} ({r['precision']}, batch {r['settings']['batch']}; "
             f"1-min load average {r['load_average_1min']['start']:.1f} -> {r['load_average_1min']['end']:.1f})"]
    for name in ('train_stage1', 'train_stage2'):
        t = r[name]
        lines.append(f"{name}: {t['videos_per_s']:.2f} videos/s, {t['tokens_per_s']:.0f} tokens/s "
                     f"({t['seconds_per_step']:.2f} s/step); naive {t['naive']['videos_per_s']:.2f} videos/s; "
                     f"ratio {t['speedup']:.2f}x; peak {t['peak_mib']:.0f} MiB")
    i = r['inference']
    lines.append(f"inference: {i['videos_per_s']:.3f} videos/s; naive {i['naive']['videos_per_s']:.3f} videos/s; "
                 f"ratio {i['speedup']:.1f}x; tokens identical (fp32): {i['tokens_identical']}; peak {i['peak_mib']:.0f} MiB")
    lines.append(f"{e['label']}: training 20 epochs {e['training_20_epochs_s'] / 3600:.1f} h "
                 f"(naive {e['training_20_epochs_naive_s'] / 3600:.1f} h; target {e['training_target']}), "
                 f"inference 4,917 videos {e['inference_4917_videos_s'] / 60:.1f} min "
                 f"(naive {e['inference_4917_videos_naive_s'] / 60:.1f} min; target {e['inference_target']})")
    return '\n'.join(lines)


def main(argv=None):
    part_main(__doc__, run, summary, 'batch 2, one timed step, 2 videos, short generation', argv)


if __name__ == '__main__':
    main()
