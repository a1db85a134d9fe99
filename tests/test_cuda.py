"""The CUDA paths against the CPU paths (skipped without a GPU).

On a GPU the encoders run cuDNN's GRU over packed rows where the CPU runs the fused GRU, the ILCACM steps run under
bf16 autocast, and beam search keeps its state on the device. Each check runs the same weights and inputs on both
devices: fp32 results must agree to float rounding (TF32 off), bf16 ones to bf16 rounding, and searches must pick
the same tokens. `SUITE_TEST_DEVICE=cpu` runs these checks CPU against CPU (to test the tests without a GPU).
"""
import copy
import os
from types import SimpleNamespace

import pytest
import torch

from models.ilcacm.generation import beam_search
from scripts.benchmark_ilcacm_reference import beam_search_naive
from models.ilcacm.gpt2 import GPT2
from models.layers.gru_encoder import SequenceEncoder
from tests.test_ilcacm_model import tiny_batch as ilcacm_tiny_batch, tiny_model as ilcacm_tiny_model
from tests.test_wsdec_training import collated_tiny_batch, no_dropout, tiny_models as wsdec_tiny_models
from utils.checkpoint import capture_rng_state, load_checkpoint, save_checkpoint

DEVICE = os.environ.get('SUITE_TEST_DEVICE') or ('cuda' if torch.cuda.is_available() else None)
pytestmark = pytest.mark.skipif(DEVICE is None, reason='no CUDA device')
CPU = torch.device('cpu')


@pytest.fixture(autouse=True)
def no_tf32():
    """fp32 matmuls and cuDNN RNNs in full fp32 (TF32 would differ from the CPU by ~1e-3)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def device():
    return torch.device(DEVICE)


def close(a, b, rtol, atol):
    torch.testing.assert_close(a.detach().cpu().to(b.dtype), b.detach().cpu(), rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------------------ WSDEC
def test_packed_gru_encoder_equals_cpu_values_and_gradients():
    torch.manual_seed(0)
    cpu = SequenceEncoder(12, 16, num_layers=2, use_residual=True).double()
    dev = copy.deepcopy(cpu).to(device())
    x = torch.randn(4, 9, 12, dtype=torch.float64)
    lengths = torch.tensor([9, 3, 7, 1])
    weights = torch.randn(4, 9, 16, dtype=torch.float64)

    def run(encoder, where):
        xs = x.clone().to(where).requires_grad_()
        out, states = encoder.encode(xs, lengths.to(where))
        last = states.at(lengths.to(where) - 1)
        ((out * weights.to(where)).sum() + (last ** 2).sum()).backward()
        return out, last, xs.grad, [p.grad for p in encoder.parameters()]

    expected, got = run(cpu, CPU), run(dev, device())
    for e, g in zip(expected[:3] + tuple(expected[3]), got[:3] + tuple(got[3])):
        close(g, e, rtol=1e-9, atol=1e-10)
    assert not got[0][1, 3:].any()  # zeros at padded steps


@pytest.fixture(scope='module')
def wsdec_batch(tiny_data):
    return collated_tiny_batch(tiny_data, 4)


def wsdec_pair(vocab_size):
    """The tiny WSDEC models without dropout, on the CPU and (a copy) on the device."""
    cpu = {name: no_dropout(m) for name, m in wsdec_tiny_models(vocab_size).items()}
    return cpu, {name: copy.deepcopy(m).to(device()) for name, m in cpu.items()}


def test_wsdec_cycle_step_equals_cpu(wsdec_batch, monkeypatch):
    from models.wsdec import steps as wsdec_steps
    from models.wsdec.steps import cycle_parameter_groups, cycle_step, sgd
    monkeypatch.setattr(wsdec_steps, 'CYCLE_NOISE', 0.0)  # the only random draw left
    batch, vocab = wsdec_batch
    results = []
    for models, where in zip(wsdec_pair(len(vocab)), (CPU, device())):
        opt = sgd(cycle_parameter_groups(models['sl'], models['cg'], 1e-2), 1e-2)
        metrics = [cycle_step(models['cg'], models['sl'], batch.to(where), opt, grad_clip=5.0) for _ in range(2)]
        results.append((metrics, models))
    (cpu_metrics, cpu_models), (dev_metrics, dev_models) = results
    for c, d in zip(cpu_metrics, dev_metrics):
        for key in ('loss', 'loss_cap', 'loss_rec'):
            close(d[key], c[key], rtol=1e-4, atol=1e-6)
        assert d['miou'] == pytest.approx(c['miou'], abs=1e-4)
    for name in cpu_models:
        for (key, c), d in zip(cpu_models[name].state_dict().items(), dev_models[name].state_dict().values()):
            close(d, c, rtol=1e-4, atol=1e-5)


def test_wsdec_sl_phase_and_dense_captioning_equal_cpu(wsdec_batch):
    """Beam search over the 15 anchors (pseudo-labels), the CE step, and the dense-captioning procedure pick the
    same captions and segments on both devices."""
    from models.wsdec.config import InferenceOptions
    from models.wsdec.inference import dense_captions, initial_segments
    from models.wsdec.steps import classification_step, sgd
    batch, vocab = wsdec_batch

    def scorer(hyps, refs):  # depends on the generated captions
        return [len(h) % 7 / 7 for h in hyps]

    outputs = []
    for models, where in zip(wsdec_pair(len(vocab)), (CPU, device())):
        b = batch.to(where)
        metrics = classification_step(models['sl'], models['cg'], b, sgd(models['sl'].parameters(), 1e-2), vocab,
                                      scorer)
        models['sl'].eval()
        models['cg'].eval()
        options = InferenceOptions()
        S0 = initial_segments(len(b.keys), options.n_rand, torch.Generator().manual_seed(233), False)
        with torch.no_grad():
            dense = dense_captions(models['cg'], models['sl'], b, S0, options, vocab)
        outputs.append((metrics, dense))
    (cpu_metrics, cpu_dense), (dev_metrics, dev_dense) = outputs
    assert dev_metrics['label_mean'] == cpu_metrics['label_mean']
    close(dev_metrics['loss'], cpu_metrics['loss'], rtol=1e-4, atol=1e-6)
    assert cpu_dense and list(dev_dense) == list(cpu_dense)
    for vid, entries in cpu_dense.items():
        assert [e['sentence'] for e in dev_dense[vid]] == [e['sentence'] for e in entries]
        for e, d in zip(entries, dev_dense[vid]):
            assert d['timestamp'] == pytest.approx(e['timestamp'], abs=1e-3)


# ----------------------------------------------------------------------------------------------- ILCACM
def ilcacm_args(**kw):
    return SimpleNamespace(**{'no_diversity': False, 'single_step': False, 'loss': 'pos+neg', 'clip': 1.0,
                              'loss_groups': 1, **kw})


def ilcacm_steps(model, batch, where, stages=('caption', 'localize'), adam=True):
    """`train_step` of each stage in turn (stage 2: two clipped optimiser steps); SGD with `adam=False` (Adam's first
    steps move a parameter by ±lr whatever its gradient's size, so near-zero gradients would not compare)."""
    from models.ilcacm.steps import cosine_schedule, train_step
    opt = (torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01) if adam
           else torch.optim.SGD(model.parameters(), lr=0.1))
    sched = cosine_schedule(opt, 10, 0.0)
    return [train_step(model, model, [batch.to(where)], opt, sched, stage, ilcacm_args(), where) for stage in stages]


def test_ilcacm_fp32_steps_equal_cpu(monkeypatch):
    """Without autocast the device's stage-1 and stage-2 updates equal the CPU's (masks, both clipped steps)."""
    import contextlib
    from models.ilcacm import steps
    monkeypatch.setattr(steps, 'autocast', lambda device: contextlib.nullcontext())
    model, tokenizer = ilcacm_tiny_model()
    batch = ilcacm_tiny_batch(tokenizer)
    twin = copy.deepcopy(model).to(device())
    expected, got = ilcacm_steps(model, batch, CPU, adam=False), ilcacm_steps(twin, batch, device(), adam=False)
    for e, g in zip(expected, got):
        assert g.keys() == e.keys()
        for key in e:
            assert g[key] == pytest.approx(e[key], rel=1e-4, abs=1e-6), key
    for (name, e), g in zip(model.state_dict().items(), twin.state_dict().values()):
        close(g, e, rtol=1e-4, atol=1e-5)


def test_ilcacm_bf16_autocast_steps_track_fp32():
    """The training script's own path (bf16 autocast on CUDA): losses within bf16 rounding of the fp32 ones,
    finite gradient norms, every trained parameter moved and kept in fp32."""
    model, tokenizer = ilcacm_tiny_model()
    batch = ilcacm_tiny_batch(tokenizer)
    fp32 = ilcacm_steps(copy.deepcopy(model), batch, CPU, stages=('caption',))[0]
    twin = copy.deepcopy(model).to(device())
    before = {k: v.detach().clone() for k, v in twin.named_parameters()}
    got = ilcacm_steps(twin, batch, device())
    assert got[0]['loss_full'] == pytest.approx(fp32['loss_full'], rel=2e-2)
    for metrics in got:
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert all(not torch.equal(p, before[k]) for k, p in twin.named_parameters() if p.requires_grad)
    assert all(p.dtype == torch.float32 for p in twin.parameters())


def test_gpt2_bf16_logits_and_kv_cache_on_the_device():
    torch.manual_seed(0)
    model = GPT2.from_config(n_layer=2, n_head=12, n_embd=768, vocab_size=50260, n_positions=64).eval()
    twin = copy.deepcopy(model).to(device())
    embeds = torch.randn(3, 20, 768) * 0.1
    mask = torch.ones(3, 20, dtype=torch.long)
    mask[1, 15:] = 0  # right padding
    with torch.no_grad():
        expected = model(inputs_embeds=embeds, attention_mask=mask)
        fp32 = twin(inputs_embeds=embeds.to(device()), attention_mask=mask.to(device()))
        close(fp32, expected, rtol=1e-4, atol=1e-4)
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=DEVICE.startswith('cuda')):
            bf16 = twin(inputs_embeds=embeds.to(device()), attention_mask=mask.to(device()))
        rel = (bf16.float().cpu() - expected).norm() / expected.norm()
        assert rel < 2e-2
        # the cache: 12 steps at once, then 8 one at a time, equal the whole sequence
        full = twin(inputs_embeds=embeds[:1].to(device()))
        logits, past = twin(inputs_embeds=embeds[:1, :12].to(device()), use_cache=True)
        steps = [logits]
        for t in range(12, 20):
            logits, past = twin(inputs_embeds=embeds[:1, t:t + 1].to(device()), past_key_values=past, use_cache=True)
            steps.append(logits)
        close(torch.cat(steps, 1), full.cpu(), rtol=1e-4, atol=1e-4)


def test_beam_search_on_the_device_equals_cpu_and_the_naive_search():
    torch.manual_seed(0)
    model = GPT2.from_config(n_layer=1, n_head=2, n_embd=16, vocab_size=50260, n_positions=64).eval()
    twin = copy.deepcopy(model).to(device())
    embeds = torch.randn(3, 6, 16)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[2, 4:] = 0
    kwargs = dict(max_new_tokens=8, min_new_tokens=3)
    expected = beam_search(model, embeds, mask, **kwargs)
    got = beam_search(twin, embeds.to(device()), mask.to(device()), **kwargs)
    assert got.device.type == device().type and torch.equal(got.cpu(), expected)
    assert torch.equal(beam_search_naive(twin, embeds.to(device()), mask.to(device()), **kwargs).cpu(), expected)
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=DEVICE.startswith('cuda')):
        bf16 = beam_search(twin, embeds.to(device()), mask.to(device()), **kwargs).cpu()
    assert bf16.shape[0] == 3 and bf16.shape[1] <= 8 and ((bf16 >= 0) & (bf16 < 50260)).all()


def test_ilcacm_inference_on_the_device_equals_cpu():
    """Paragraphs, masks and re-captions (spec ilcacm §5) in fp32: the same strings and event boundaries."""
    model, tokenizer = ilcacm_tiny_model()
    model.eval()
    batch = ilcacm_tiny_batch(tokenizer)
    twin = copy.deepcopy(model).to(device())
    out = []
    for m, where in ((model, CPU), (twin, device())):
        b = batch.to(where)
        paragraphs = m.paragraphs(b.video, b.video_mask, max_new_tokens=12, min_new_tokens=2)
        events, captions = m.localize_and_caption(b.video, b.video_mask, b.num_sents, max_new_tokens=6)
        out.append((paragraphs, captions, events.masks.cpu()))
    assert out[1][0] == out[0][0] and out[1][1] == out[0][1]
    close(out[1][2], out[0][2], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_written_from_the_device_loads_on_the_cpu(tmp_path):
    model, _ = ilcacm_tiny_model()
    twin = copy.deepcopy(model).to(device())
    save_checkpoint(tmp_path / 'x.pt', {'model': twin.state_dict(), 'rng': capture_rng_state()})
    state = load_checkpoint(tmp_path / 'x.pt')
    assert all(v.device == CPU for v in state['model'].values())
    model.load_state_dict(state['model'])
    for (k, v), w in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(v, w.cpu()), k
    assert (state['rng']['cuda'] is not None) == torch.cuda.is_available()


def test_ilcacm_attention_never_runs_cudnn_attention():
    """cuDNN attention plans every new shape (~9 ms of host time each): ILCACM's transformers keep off it
    (models/layers/sdpa.py), in training and in cached generation."""
    from torch.profiler import ProfilerActivity, profile
    model, tokenizer = ilcacm_tiny_model()
    twin = copy.deepcopy(model).to(device())
    batch = ilcacm_tiny_batch(tokenizer).to(device())
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=DEVICE.startswith('cuda')):
            twin(batch, 'pos')['ce'].backward()
            twin.eval()
            twin.paragraphs(batch.video, batch.video_mask, max_new_tokens=4, min_new_tokens=1)
    names = {event.key for event in prof.key_averages()}
    assert any('scaled_dot_product' in name for name in names)
    assert not any('cudnn_attention' in name for name in names), sorted(n for n in names if 'attention' in n)
