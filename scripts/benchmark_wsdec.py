"""Benchmark WSDEC training steps and dense-captioning inference against the original way of computing them.

    python scripts/benchmark_wsdec.py [--quick] [--device all|cpu|cuda] [--threads N] [--out results.json]

Workload at ActivityNet sizes (spec wsdec §2.2, §3, §6.5): full-size models (hidden 512, vocabulary 6000),
random 500-d features, captions of ~12 tokens. Video lengths follow ActivityNet Captions' training videos: durations
drawn from their quantiles (DURATION_QUANTILES_S), at 30/8/2 = 1.875 C3D steps per second after `[::2]`, so a
video has 220 steps on average and a batch of 32 is padded to about twice that (its longest video).
* CG-phase step (`cycle_step`, batch 32): forward_diff, teacher-forced caption, re-localization, backward, SGD;
  measured again on a batch of 200-300-step videos (uniform lengths, little padding) as a second workload.
* SL-phase step (`classification_step`, batch 6): localizer forward + beam search over the 15 anchors of every
  video + CE step; METEOR is replaced by a constant scorer here and timed separately (Java, when present).
* Dense captioning per video (spec §4.4): 15 random segments → captions → localize → filter/merge → re-caption.
The reference runs the same weights the original way (models/wsdec/reference.py): recurrent layers stepped in
a Python loop over time over every padded step, the attention's W applied to every step, beam search one segment
and one hypothesis at a time. `--quick` shrinks the batches
and repetitions (both sides get the same workload). Peak memory: process max RSS on CPU, max allocated on GPU.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import contextlib
import json
import resource
import shutil
import time
import types

import torch
import torch.nn.functional as F

from utils import cli
from models.layers.attention import BilinearAttention
from models.layers.gru_encoder import LayerStates
from models.wsdec import build_models_from_config
from models.wsdec.anchors import anchors
from models.wsdec.inference import gen_random_segments, refine_temporal_segments
from scripts.benchmark_wsdec_reference import beam_search_one_by_one
from utils.wsdec_data import WSDECBatch
from models.wsdec.steps import (classification_step, cycle_parameter_groups, cycle_step, first_argmax,
                                  localizer_inputs, sgd)

VOCAB, FEATURE_DIM, STEPS, CAPTION_TOKENS = 6000, 500, 250, 12
SETTINGS = {False: dict(cg_batch=32, sl_batch=6, videos=3, repeats=3, uniform_lengths=True),
            True: dict(cg_batch=4, sl_batch=2, videos=1, repeats=1, uniform_lengths=False)}  # BatchNorm needs 2 rows
# Durations (s) of ActivityNet Captions' 10,009 training videos (train_modified.json) at these percentiles;
# sampling by linear interpolation reproduces their mean (117 s) and the padding of random batches of 32.
DURATION_PERCENTILES = (0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 96, 97, 98,
                        99, 99.5, 99.9, 100)
DURATION_QUANTILES_S = (1.6, 18.2, 30.3, 40.5, 51.8, 61.6, 70.5, 80.4, 91.1, 102.4, 113.9, 124.7, 136.2, 147.7,
                        160.3, 172.6, 184.6, 197.0, 210.6, 224.1, 227.0, 230.2, 233.5, 236.6, 238.0, 306.6, 755.1)
STEPS_PER_SECOND = 30 / 8 / 2  # C3D: one feature per 8 frames at ~30 fps (spec §2.2), then [::2]


def full_size_models(device):
    torch.manual_seed(0)
    config = {'cg': dict(vocab_size=VOCAB, video_feature_dim=FEATURE_DIM),
              'sl': dict(type='anchor', vocab_size=VOCAB, video_feature_dim=FEATURE_DIM)}
    return {name: m.to(device) for name, m in build_models_from_config(config).items()}


def activitynet_lengths(n_videos, generator):
    """Steps of `n_videos` videos whose durations follow ActivityNet Captions' training videos."""
    percentile = torch.rand(n_videos, generator=generator, dtype=torch.float64) * 100
    p, q = torch.tensor(DURATION_PERCENTILES, dtype=torch.float64), torch.tensor(DURATION_QUANTILES_S, dtype=torch.float64)
    upper = torch.searchsorted(p, percentile, right=True).clamp(1, len(p) - 1)
    fraction = (percentile - p[upper - 1]) / (p[upper] - p[upper - 1])
    seconds = q[upper - 1] + fraction * (q[upper] - q[upper - 1])
    return torch.ceil(seconds * STEPS_PER_SECOND).long().clamp(min=2)


def random_batch(n_videos, device, seed=0, uniform_lengths=False):
    """One sentence per video (ANetDataSample), EOS-padded captions; video lengths as ActivityNet's
    (`activitynet_lengths`), or uniform in STEPS ± 50 with `uniform_lengths`."""
    g = torch.Generator().manual_seed(seed)
    lengths = (torch.randint(STEPS - 50, STEPS + 51, (n_videos,), generator=g) if uniform_lengths
               else activitynet_lengths(n_videos, g))
    t = int(lengths.max())
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).float()
    cap_len = torch.randint(CAPTION_TOKENS - 4, CAPTION_TOKENS + 5, (n_videos,), generator=g)
    caption = torch.ones(n_videos, int(cap_len.max()), dtype=torch.long)
    for n, c in enumerate(cap_len.tolist()):
        caption[n, 0] = 0
        caption[n, 1:c - 1] = torch.randint(2, VOCAB, (c - 2,), generator=g)
    cap_mask = (torch.arange(caption.size(1)).unsqueeze(0) < cap_len.unsqueeze(1)).float().unsqueeze(2)
    start = torch.rand(n_videos, generator=g) * 60
    return WSDECBatch(
        video=torch.randn(n_videos, t, FEATURE_DIM, generator=g) * mask.unsqueeze(2),
        video_length=torch.stack([lengths.float(), lengths.float() / STEPS_PER_SECOND], dim=1),
        video_mask=mask.unsqueeze(2),
        caption=caption, caption_length=cap_len, caption_mask=cap_mask, caption_gather_idx=torch.arange(n_videos),
        raw_timestamp=torch.stack([start, start + 30], dim=1), timestamp_idx=torch.zeros(n_videos, 2),
        keys=tuple(f'v{n}' for n in range(n_videos))).to(device)


# ------------------------------------------------------------------------------- the original way
def _looped_encoder(self, x, lengths=None):
    """`RNNSeqEncoder` as released: every layer advanced one time step per call, in a Python loop, padded steps
    included (`lengths` is ignored); `SequenceEncoder.encode`'s return form (`LayerStates` of padded tensors)."""
    hidden = [None] * len(self.rnn_cell)
    steps = []
    for t in range(x.size(1)):
        inp = x[:, t:t + 1]
        for k, gru in enumerate(self.rnn_cell):
            if k > 0:
                inp = F.dropout(inp, self.rnn_cell.dropout, self.training)
            inp, hidden[k] = gru(inp, hidden[k])
        steps.append(torch.stack([h[0] for h in hidden]))
    hidden_all = torch.stack(steps, dim=2)
    outputs = hidden_all[-1]
    if self.use_residual:
        outputs = outputs + (self.linear(x) if hasattr(self, 'linear') else x)
    return outputs, LayerStates([(layer, None, 0) for layer in hidden_all], x.size(0))


def _two_looped_calls(self, x, lengths=None):
    """The cycle step's two localizer calls encode the video separately in the original (no shared work)."""
    return self.encode(x), self.encode(x)


def _projected_attention(self, features, query, mask):
    """`AttentionType0` as released: W applied to every step's feature, then the dot product with the query."""
    score = torch.einsum('ntq,nq->nt', self.linear(features), query) * self.scale
    score = score.masked_fill(mask == 0, float('-inf'))
    return torch.einsum('nt,ntf->nf', torch.softmax(score, dim=1), features)


def _looped_decoder(original):
    """Teacher forcing one word at a time (the original decoder loop)."""
    def forward(self, words, context, hidden):
        logps = []
        for t in range(words.size(1)):
            logp, hidden = original(words[:, t:t + 1], context, hidden)
            logps.append(logp)
        return torch.cat(logps, dim=1), hidden
    return forward


@contextlib.contextmanager
def original_way(models):
    """Patch the models' recurrent modules to the step-by-step computation and the attention to the original's
    association (same weights, same maths)."""
    patched = []
    for model in models.values():
        for module in model.modules():
            if isinstance(module, BilinearAttention):
                module.forward = types.MethodType(_projected_attention, module)
                patched.append(module)
            if hasattr(module, 'rnn_cell') and hasattr(module, 'use_residual'):
                module.encode = types.MethodType(_looped_encoder, module)
                module.encode_twice = types.MethodType(_two_looped_calls, module)  # the original encodes twice
                patched.append(module)
        if hasattr(model, 'decoder'):
            model.decoder.forward = types.MethodType(_looped_decoder(model.decoder.forward), model.decoder)
            patched.append(model.decoder)
    try:
        yield
    finally:
        for module in patched:
            for name in ('forward', 'encode', 'encode_twice'):
                if name in vars(module):
                    delattr(module, name)


def constant_scorer(hyps, refs):
    return [0.0] * len(hyps)


def reference_sl_step(sl, cg, batch, optimizer):
    """SL-phase step with one-by-one beam search over the anchors (METEOR replaced by a constant)."""
    sl.train()
    cg.eval()
    score, _, _ = sl(*localizer_inputs(batch))
    n, a = batch.caption.size(0), 15
    beam_search_one_by_one(cg, batch.video, batch.video_length, batch.video_mask,
                           anchors().to(batch.video.device).repeat(n, 1), batch.caption_gather_idx.repeat_interleave(a))
    labels = torch.tensor(first_argmax([[0.0] * a] * n), device=batch.video.device)
    loss = F.cross_entropy(score, labels)
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    optimizer.step()


@torch.no_grad()
def dense_captioning(cg, sl, batch, one_by_one=False):
    """spec §4.4 for one video: 15 random segments, caption, localize, filter/merge, re-caption."""
    cg.eval()
    sl.eval()
    segments = gen_random_segments(15).to(batch.video.device)
    gather = torch.zeros(15, dtype=torch.long, device=batch.video.device)
    video = (batch.video, batch.video_length, batch.video_mask)

    def caption(seg, rows):
        if one_by_one:
            lists = beam_search_one_by_one(cg, *video, seg, rows)
            width = max(map(len, lists))
            tokens = torch.ones(len(lists), width, dtype=torch.long, device=seg.device)
            for i, ids in enumerate(lists):
                tokens[i, :len(ids)] = torch.tensor(ids)
            lengths = torch.tensor(list(map(len, lists)), device=seg.device)
            mask = (torch.arange(width, device=seg.device).unsqueeze(0) < lengths.unsqueeze(1)).long()
            return tokens, lengths, mask
        return cg(*video, seg, rows)

    tokens, lengths, mask = caption(segments, gather)
    relocated = sl(*video, tokens, lengths, mask, gather, mode='eval')
    kept = refine_temporal_segments(segments.unsqueeze(0), relocated.unsqueeze(0))[0]
    if len(kept):
        caption(kept, torch.zeros(len(kept), dtype=torch.long, device=kept.device))


# ------------------------------------------------------------------------------------- measuring
def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(fn, repeats, device, warmup=True):
    """(seconds per call, peak memory MiB) of `fn()`."""
    if warmup:
        fn()
    _sync(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    seconds = (time.perf_counter() - start) / repeats
    peak = (torch.cuda.max_memory_allocated(device) if device.type == 'cuda'
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    return seconds, peak


def compare(name, ours, reference, repeats, device):
    fast, fast_mem = measure(ours, repeats, device)
    slow, slow_mem = measure(reference, 1, device, warmup=False)
    print(f"[{device}] {name}: {fast:.3f} s, reference {slow:.3f} s ({slow / fast:.1f}x)", file=sys.stderr, flush=True)
    return {f'{name}_s': fast, f'{name}_reference_s': slow, f'{name}_speedup': slow / fast,
            f'{name}_peak_mib': fast_mem, f'{name}_reference_peak_mib': slow_mem}


def bench_device(device, quick):
    s = SETTINGS[quick]
    models = full_size_models(device)
    cg, sl = models['cg'], models['sl']
    cycle_opt = sgd(cycle_parameter_groups(sl, cg, 1e-2), 1e-2)
    sl_opt = sgd(sl.parameters(), 1e-2)
    cg_batch, sl_batch = random_batch(s['cg_batch'], device), random_batch(s['sl_batch'], device, seed=1)
    videos = [random_batch(1, device, seed=2 + v) for v in range(s['videos'])]

    def cg_step():
        cycle_step(cg, sl, cg_batch, cycle_opt, grad_clip=5.0)

    def sl_step():  # METEOR excluded: a constant scorer, captions not turned into strings
        classification_step(sl, cg, sl_batch, sl_opt, _NoDecodeVocab, constant_scorer)

    def infer(one_by_one=False):
        for batch in videos:
            dense_captioning(cg, sl, batch, one_by_one)

    result = {'device': str(device), **{f'setting_{k}': v for k, v in s.items()},
              'cg_batch_steps_mean': float(cg_batch.video_length[:, 0].mean()), 'cg_batch_steps_max': cg_batch.video.size(1)}
    result.update(compare('cg_phase_step', cg_step, lambda: _in_original_way(models, cg_step), s['repeats'], device))
    if s['uniform_lengths']:
        uniform = random_batch(s['cg_batch'], device, uniform_lengths=True)

        def cg_step_uniform():
            cycle_step(cg, sl, uniform, cycle_opt, grad_clip=5.0)

        result.update(compare('cg_phase_step_uniform_lengths', cg_step_uniform,
                              lambda: _in_original_way(models, cg_step_uniform), s['repeats'], device))
    result.update(compare('sl_phase_step', sl_step, lambda: _in_original_way(
        models, lambda: reference_sl_step(sl, cg, sl_batch, sl_opt)), s['repeats'], device))
    result.update(compare('inference_per_video', lambda: infer(), lambda: _in_original_way(models, lambda: infer(True)),
                          s['repeats'], device))
    result['inference_per_video_s'] /= s['videos']
    result['inference_per_video_reference_s'] /= s['videos']
    return result


def _in_original_way(models, fn):
    with original_way(models):
        fn()


class _NoDecodeVocab:
    """Stands in for the vocabulary: METEOR is excluded, so the captions need no strings."""

    @staticmethod
    def decode(ids):
        return ''


def bench_meteor(n_pairs=90):
    """METEOR pseudo-label scoring of one SL batch (6 videos × 15 anchors): startup and per-batch seconds."""
    if shutil.which('java') is None:
        return {'meteor': 'skipped (no java)'}
    from models.wsdec.steps import MeteorPseudoLabelScorer
    scorer = MeteorPseudoLabelScorer()
    hyps = [f'a man is playing the guitar {i % 7} times .' for i in range(n_pairs)]
    refs = [[f'a person plays a guitar in room {i // 15} .'] for i in range(n_pairs)]
    start = time.perf_counter()
    scorer(hyps[:1], refs[:1])
    startup = time.perf_counter() - start
    start = time.perf_counter()
    scorer([h + ' now' for h in hyps], refs)  # unseen strings: includes the PTB tokenizer JVM
    first = time.perf_counter() - start
    start = time.perf_counter()
    scorer([h + ' now' for h in hyps], refs)  # cached tokenization: METEOR only
    cached = time.perf_counter() - start
    scorer.close()
    return {'meteor_startup_s': startup, 'meteor_batch_s': first, 'meteor_batch_cached_tokens_s': cached}


def run(quick: bool = False, threads: int | None = 1, devices: str = 'all') -> dict:
    """All measurements: on the CPU (with `threads` intra-op threads; None keeps torch's default) and on CUDA when
    available (`devices` 'all'), or on one of them ('cpu', 'cuda'); METEOR (Java) unless `quick`. One thread avoids
    oversubscribing a shared machine."""
    if devices not in ('all', 'cpu', 'cuda'):
        raise ValueError(f"devices must be 'all', 'cpu' or 'cuda', got {devices!r}")
    if devices == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('--device cuda: CUDA is not available on this machine')
    if threads is not None:
        torch.set_num_threads(threads)
    results = {}
    if devices in ('all', 'cpu'):
        results['cpu'] = {'threads': torch.get_num_threads(), **bench_device(torch.device('cpu'), quick)}
    if devices in ('all', 'cuda') and torch.cuda.is_available():
        results['cuda'] = {'gpu': torch.cuda.get_device_name(), **bench_device(torch.device('cuda'), quick)}
    if not quick:
        results['meteor'] = bench_meteor()
    return results


def main(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument('--quick', action='store_true', help='smaller batches, one repetition, no METEOR')
    parser.add_argument('--threads', type=int, default=1, help='CPU intra-op threads (0: torch default)')
    parser.add_argument('--device', default='all', choices=('all', 'cpu', 'cuda'),
                        help='all: the CPU, and CUDA when available')
    parser.add_argument('--out', default=None, help='also write the results to this JSON file')
    args = parser.parse_args(argv)
    results = run(args.quick, args.threads or None, args.device)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text + '\n')


if __name__ == '__main__':
    main()
