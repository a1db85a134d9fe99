"""ILCACM model pieces: token layouts (spec ilcacm §2.6, §11), masks and diversity loss (§3.4, §4.3), the label
layout of the captioner (§3.2), mode routing (§3.3) and paragraph parsing (§5.1)."""
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from models.ilcacm.factory import build_model
from models.ilcacm.losses import diversity_loss
from models.ilcacm.mask_generator import (EventCountError, MaskGenerator, random_events, soft_temporal_mask,
                                          uniform_events)
from models.ilcacm.model import split_paragraph
from models.ilcacm.word_decoder import WordTokenizer
from utils.ilcacm_data import ILCACMDataset, dense_target, make_collate, negative_target, positive_target

CPU = torch.device('cpu')
BPE_DIR = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'gpt2_bpe'
TINY_GPT2 = Path(__file__).resolve().parent / 'fixtures' / 'tiny_gpt2'  # vocabulary 64, n_embd 32, init range 0.5
SENTENCES = ['A man runs on a track.', 'He jumps over a bar.', 'The crowd cheers.']
TINY = dict(decoder='word', gpt2_layers=2, gpt2_heads=2, gpt2_dim=32, enc_layers=1, enc_heads=2, enc_ff=64,
            mask_ff=64, num_queries=16, max_frames=8, dropout=0.0, tau=2.0, gamma=0.8, mask_shape='gaussian',
            mask_mode='learned', seed=0, word_min_count=1)


@pytest.fixture
def bpe():
    if not (BPE_DIR / 'merges.txt').is_file():
        pytest.skip(f'{BPE_DIR} not found (real GPT-2 BPE vocabulary)')
    from models.ilcacm.text_decoder import BPECaptionTokenizer
    return BPECaptionTokenizer(BPE_DIR)


class FakeFeatures:
    dim = 12

    def get(self, vid):
        return torch.arange(20 * self.dim, dtype=torch.float32).reshape(20, self.dim).numpy() / 100 + len(vid)


def tiny_model(**overrides):
    torch.manual_seed(0)
    tokenizer = WordTokenizer.build(SENTENCES, min_count=1)
    return build_model({**TINY, **overrides}, tokenizer, feature_dim=FakeFeatures.dim), tokenizer


def tiny_batch(tokenizer, counts=(3, 1)):
    ann = {f'v{i}': {'duration': 10.0 + i, 'sentences': SENTENCES[:n], 'timestamps': [[0, 1]] * n}
           for i, n in enumerate(counts)}
    dataset = ILCACMDataset(ann, FakeFeatures(), tokenizer, max_frames=8)
    return make_collate(tokenizer)([dataset[i] for i in range(len(dataset))])


# ---------------------------------------------------------------- token layouts
def test_bpe_prompts_are_five_tokens_with_count_ids(bpe):
    digits = {**{n: 15 + n for n in range(10)}, 10: 940, 11: 1157, 12: 1065}
    for n, d in digits.items():
        assert bpe.prompt('full', n) == [50258, d, 2995, 25, 220]
        assert bpe.prompt('mask', n) == [50259, d, 2995, 25, 220]


def test_bpe_target_layouts(bpe):
    ids = [bpe.encode_sentence(s) for s in SENTENCES]
    assert ids[0][0] == bpe.bpe.encode('A')[0] and all(not bpe.bpe.decode(s[:1]).startswith(' ') for s in ids)
    assert positive_target(ids[1], bpe.separator, bpe.eos_id) == ids[1] + [220, 50256]
    assert dense_target(ids, bpe.separator, bpe.eos_id) == ids[0] + [220] + ids[1] + [220] + ids[2] + [50256]
    assert negative_target(ids, 1, bpe.separator, bpe.eos_id) == ids[0] + [220] + ids[2] + [220, 50256]
    assert negative_target(ids[:1], 0, bpe.separator, bpe.eos_id) == [50256]
    assert dense_target([[7] * 2000], bpe.separator, bpe.eos_id) == [7] * 1023 + [50256]
    assert bpe.decode(ids[0] + [220, 50256, 50257, 50257]) == 'A man runs on a track. '  # stripped by the caller


def test_word_tokenizer_layouts():
    tok = WordTokenizer.build(SENTENCES + ["The man's bar, again: yes."], min_count=1)
    assert tok.prompt('full', 3) == [3, tok.word_to_id['3'], tok.word_to_id['events'], tok.word_to_id[':']]
    assert tok.prompt('mask', 1)[0] == tok.mask_id == 4
    ids = tok.encode_sentence("The man's bar, again: yes.")
    assert [tok.words[i] for i in ids] == ['the', 'man', "'", 's', 'bar', ',', 'again', ':', 'yes', '.']
    assert tok.decode(ids + [tok.eos_id, 0, 0]) == "the man's bar, again: yes."
    assert tok.encode_sentence('Zebra.') == [tok.unk_id, tok.word_to_id['.']]
    words = [tok.encode_sentence(s) for s in SENTENCES[:2]]
    assert dense_target(words, tok.separator, tok.eos_id) == words[0] + words[1] + [tok.eos_id]
    assert WordTokenizer.build(['a a b.'], min_count=2).words[-1] == 'a'


def test_collate_stacks_targets_in_video_then_annotation_order():
    _, tok = tiny_model()
    batch = tiny_batch(tok, counts=(3, 1))
    assert batch.num_sents == [3, 1] and batch.video.shape == (2, 8, 12) and batch.video_mask.all()
    assert batch.positive_tokens.shape[0] == batch.negative_tokens.shape[0] == 4
    first = tok.encode_sentence(SENTENCES[0]) + [tok.eos_id]
    assert batch.positive_tokens[0, :len(first)].tolist() == first
    assert batch.positive_tokens[3, :len(first)].tolist() == first  # video 2's only sentence
    assert batch.negative_tokens[3].tolist()[0] == tok.eos_id       # n = 1: the negative target is just eos
    assert batch.timestamps.shape == (4, 2)


# ---------------------------------------------------------------- masks and losses
def test_gaussian_mask_values_and_gradient():
    c = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.4], dtype=torch.float64, requires_grad=True)
    m = soft_temporal_mask(c, w, 11, tau=2.0)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(m[0], torch.exp(-(t - 0.5) ** 2 / (2 * 0.2 ** 2)))
    assert m[0, 5] == 1 and math.isclose(m[0, 3].item(), math.exp(-0.5))  # c - w/2 = 0.3 = t[3]: e^-1/2
    assert torch.autograd.gradcheck(lambda c, w: soft_temporal_mask(c, w, 11), (c, w))


def test_cauchy_and_hard_masks():
    c, w = torch.tensor([0.3]), torch.tensor([0.2])
    cauchy = soft_temporal_mask(c, w, 11, shape='cauchy')
    assert cauchy.max() == 1 and cauchy[0, 3] == 1 and math.isclose(cauchy[0, 4].item(), 0.01 / (0.01 + 0.01),
                                                                     rel_tol=1e-5)
    hard = soft_temporal_mask(c, torch.tensor([0.25]), 11, shape='hard')  # [0.175, 0.425]
    assert hard[0].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]


def test_diversity_loss_hand_values_and_single_event_guard():
    same = torch.tensor([[1., 0, 0], [1., 0, 0]])
    orthogonal = torch.tensor([[1., 0, 0], [0., 1, 0]])
    assert math.isclose(diversity_loss(same, [2]).item(), 0.2, rel_tol=1e-6)       # relu(1 - 0.8)
    assert diversity_loss(orthogonal, [2]).item() == 0
    single = torch.tensor([[0.5, 1., 0]], requires_grad=True)
    both = diversity_loss(torch.cat([same, single]), [2, 1])
    assert math.isclose(both.item(), 0.1, rel_tol=1e-6)  # mean over the 2 videos, the n = 1 video adds 0
    both.backward()
    assert torch.isfinite(single.grad).all()


def test_batched_diversity_loss_and_sort_equal_the_per_video_loops():
    """L_div and the per-video sort are computed for all videos at once; the spec's per-video loops, written here,
    give the same values and gradients (ties sorted stably, one-event videos adding 0)."""
    from models.ilcacm.mask_generator import sort_events
    torch.manual_seed(0)
    counts = [3, 1, 4, 2, 1]
    masks = torch.rand(sum(counts), 7, dtype=torch.float64, requires_grad=True)
    masks.data[5] = masks.data[4]  # two identical masks in one video

    def per_video_loss(m):
        losses = []
        for v in m.split(counts):
            if len(v) < 2:
                losses.append(v.sum() * 0)
                continue
            unit = v / v.norm(dim=1, keepdim=True)
            sim = unit @ unit.t()
            losses.append(torch.relu(sim[~torch.eye(len(v), dtype=torch.bool)] - 0.5).mean())
        return torch.stack(losses).mean()

    expected, = torch.autograd.grad(per_video_loss(masks), masks)
    loss = diversity_loss(masks, counts, gamma=0.5)
    got, = torch.autograd.grad(loss, masks)
    assert loss.item() > 0 and math.isclose(loss.item(), per_video_loss(masks).item(), rel_tol=1e-12)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12)

    centers = torch.tensor([0.5, 0.2, 0.2, 0.9, 0.1, 0.3, 0.3, 0.0, 0.7, 0.6, 0.4], dtype=torch.float64,
                           requires_grad=True)
    widths = torch.arange(11, dtype=torch.float64, requires_grad=True)
    c, w = sort_events(centers, widths, counts)
    loop_c, loop_w = [], []
    for cv, wv in zip(centers.split(counts), widths.split(counts)):
        cv, order = torch.sort(cv, stable=True)
        loop_c.append(cv)
        loop_w.append(wv[order])
    assert torch.equal(c, torch.cat(loop_c)) and torch.equal(w, torch.cat(loop_w))
    assert w.tolist() == [1, 2, 0, 3, 7, 4, 5, 6, 9, 8, 10]
    weights = torch.randn(2, 11, dtype=torch.float64)
    grads = torch.autograd.grad((weights[0] * c + weights[1] * w).sum(), (centers, widths))
    loop = torch.autograd.grad((weights[0] * torch.cat(loop_c) + weights[1] * torch.cat(loop_w)).sum(),
                               (centers, widths))
    assert all(torch.equal(a, b) for a, b in zip(grads, loop))


def test_mask_generator_sorts_and_ignores_padded_queries():
    torch.manual_seed(0)
    gen = MaskGenerator(d_model=16, nhead=2, dim_feedforward=32, max_frames=8, num_queries=5).eval()
    frames = torch.randn(2, 8, 16)
    events, div = gen(frames, [4, 2])
    assert events.masks.shape == (6, 8) and events.counts == [4, 2]
    assert (events.centers[:4].diff() >= 0).all() and (events.centers[4:].diff() >= 0).all()
    assert torch.equal(events.lefts, (events.centers - events.widths / 2).clamp(0, 1))
    alone, _ = gen(frames[1:], [2])  # padded queries of a batch neither attend nor are attended to
    assert torch.allclose(alone.centers, events.centers[4:], atol=1e-6)
    with pytest.raises(EventCountError, match='only 5 queries'):
        gen(frames, [6, 1])


def test_uniform_and_random_events():
    c, w = uniform_events([4, 1])
    assert c.tolist() == [0.125, 0.375, 0.625, 0.875, 0.5] and w.tolist() == [0.25] * 4 + [1.0]
    c, w = random_events([3, 2], torch.Generator().manual_seed(0))
    assert (c[:3].diff() >= 0).all() and ((0 <= w) & (w <= 1)).all()


# ---------------------------------------------------------------- captioner and modes
def test_caption_loss_equals_hf_label_layout():
    """labels = [-100] * (T + 1) + ids[1:] (pad -> -100), loss = CE(logits[:, :-1], labels[:, 1:]) (spec §11)."""
    model, tok = tiny_model()
    model.eval()
    batch = tiny_batch(tok)
    frames = model.frames(batch.video)
    prompts = model.prompts('full', batch.num_sents, 'cpu')
    ce_seq, tokens_seq = model.captioner.caption_loss(frames, batch.video_mask, prompts, batch.dense_tokens)
    ids = torch.cat([prompts, batch.dense_tokens], 1)
    labels = torch.cat([torch.full((2, 9), -100), ids[:, 1:]], 1)
    labels[:, 9:][ids[:, 1:] == tok.pad_id] = -100
    embeds = torch.cat([model.captioner.video_encoder(frames), model.captioner.gpt2_model.embed(ids)], 1)
    attention = torch.cat([batch.video_mask, torch.ones_like(prompts, dtype=torch.bool),
                           batch.dense_tokens != tok.pad_id], 1)
    logits = model.captioner.gpt2_model(inputs_embeds=embeds, attention_mask=attention)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, len(tok)), labels[:, 1:].reshape(-1), ignore_index=-100,
                               reduction='none').reshape(2, -1)  # per token, 0 at ignored positions
    torch.testing.assert_close(ce_seq, expected.sum(1), rtol=1e-5, atol=1e-5)  # each sequence's summed CE
    assert torch.equal(tokens_seq, (labels != -100).sum(1))
    assert tokens_seq.sum() == 2 * 3 + (batch.dense_tokens != tok.pad_id).sum()


def test_modes_route_gradients():
    model, tok = tiny_model()
    batch = tiny_batch(tok)
    full = model(batch, 'full')
    full['ce'].backward()
    assert model.localizer.tpe.grad is None and model.captioner.video_encoder.vpe.grad is not None
    for mode in ('pos', 'neg'):
        model.zero_grad()
        out = model(batch, mode)
        (out['ce'] + out['div']).backward()
        assert model.localizer.center_fc.weight.grad.abs().sum() > 0, mode
        assert out['tokens'] > 0 and torch.isfinite(out['ce'])


# ---------------------------------------------------------------- seeded initialisation (spec §3.7, §7.2, §11)
def linear_draws(prefix, n_out, n_in, bias=True):
    """nn.Linear(n_in, n_out): kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(n_in)) for the weight, then U(+-1/sqrt(n_in))
    for the bias."""
    bound = 1 / math.sqrt(n_in)
    drawn = {prefix + 'weight': torch.empty(n_out, n_in).uniform_(-bound, bound)}
    if bias:
        drawn[prefix + 'bias'] = torch.empty(n_out).uniform_(-bound, bound)
    return drawn


def attention_draws(prefix, d):
    """nn.MultiheadAttention(d): its out_proj Linear is built first (both drawn), then in_proj_weight is
    Xavier-uniform over (3d, d), U(+-sqrt(6 / (d + 3d))), and both biases are set to 0."""
    out_proj = linear_draws(prefix + 'out_proj.', d, d)
    bound = math.sqrt(6 / (4 * d))
    return {prefix + 'in_proj_weight': torch.empty(3 * d, d).uniform_(-bound, bound),
            prefix + 'in_proj_bias': torch.zeros(3 * d),
            prefix + 'out_proj.weight': out_proj[prefix + 'out_proj.weight'],
            prefix + 'out_proj.bias': torch.zeros(d)}


def layer_norms(prefix, names, d):
    return {f'{prefix}{n}.{p}': (torch.ones(d) if p == 'weight' else torch.zeros(d)) for n in names
            for p in ('weight', 'bias')}


def authors_initial_state(seed, d=32, frames=8, enc_layers=2, enc_ff=48, mask_ff=40, queries=16):
    """The state dict of `ILCACM(tokenizer, args)` (transformers 4.44.1) right after `torch.manual_seed(seed)`, drawn
    in the constructor's order: GPT2LMHeadModel.from_pretrained (no draws), resize_token_embeddings(67) (two full
    (67, d) normal draws, the new rows from the second), VideoEncoder (vpe ~ N(0, 1), one TransformerEncoderLayer
    that nn.TransformerEncoder deep-copies, so every layer starts equal, the output Linear), MaskGenerator (tpe, pe,
    one TransformerDecoderLayer: self-attention, cross-attention, FFN; the centre and width heads)."""
    from utils.weights import load_safetensors
    torch.manual_seed(seed)
    gpt2 = {k.replace('transformer.', 'captioner.gpt2_model.transformer.', 1): t
            for k, t in load_safetensors(TINY_GPT2 / 'model.safetensors').items()}
    torch.empty(67, d).normal_()
    wte = 'captioner.gpt2_model.transformer.wte.weight'
    gpt2[wte] = torch.cat([gpt2[wte], torch.empty(67, d).normal_(0.0, 0.5)[64:]])
    gpt2['captioner.gpt2_model.lm_head.weight'] = gpt2[wte]
    encoder = {'vpe': torch.randn(frames, d), **attention_draws('self_attn.', d), **linear_draws('linear1.', enc_ff, d),
               **linear_draws('linear2.', d, enc_ff), **layer_norms('', ('norm1', 'norm2'), d)}
    layers = {f'encoder.layers.{i}.{k}': t for i in range(enc_layers) for k, t in encoder.items() if k != 'vpe'}
    video_encoder = {'vpe': encoder['vpe'], **layers, **layer_norms('proj.', ('0',), d),
                     **linear_draws('proj.1.', d, d, bias=False)}
    layer = 'mask_decoder.layers.0.'
    localizer = {'tpe': torch.randn(queries, d), 'pe': torch.randn(frames, d),
                 **attention_draws(layer + 'self_attn.', d),
                 **attention_draws(layer + 'multihead_attn.', d), **linear_draws(layer + 'linear1.', mask_ff, d),
                 **linear_draws(layer + 'linear2.', d, mask_ff), **layer_norms(layer, ('norm1', 'norm2', 'norm3'), d),
                 **layer_norms('', ('norm',), d), **linear_draws('center_fc.', 1, d, bias=False),
                 **linear_draws('width_fc.', 1, d, bias=False)}
    return {**gpt2, **{'captioner.video_encoder.' + k: t for k, t in video_encoder.items()},
            **{'localizer.' + k: t for k, t in localizer.items()}}


class SixtySevenTokens:
    """The tiny GPT-2's 64 tokens + <PAD>, <FULL>, <MASK> (the build reads only the vocabulary size)."""

    def __len__(self):
        return 67


@pytest.mark.parametrize('seed', [42, 7])
def test_seeded_build_draws_the_authors_initialisation(seed):
    config = {**TINY, 'decoder': 'gpt2', 'gpt2_init': 'pretrained', 'gpt2': str(TINY_GPT2), 'enc_layers': 2,
              'enc_heads': 4, 'enc_ff': 48, 'mask_ff': 40, 'dropout': 0.1}
    torch.manual_seed(seed)
    model = build_model(config, SixtySevenTokens(), feature_dim=32)
    after_build = torch.get_rng_state()
    expected = authors_initial_state(seed)
    assert torch.equal(after_build, torch.get_rng_state())  # the same number of draws
    state = model.state_dict()
    assert state.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key


def test_input_projection_only_for_other_feature_widths():
    model, _ = tiny_model()
    assert model.input_proj.in_features == 12 and model.input_proj.out_features == 32
    tokenizer = WordTokenizer.build(SENTENCES, min_count=1)
    assert build_model(TINY, tokenizer, feature_dim=32).input_proj is None


def test_split_paragraph():
    assert split_paragraph('3 events: A man runs. He jumps.  . The end.') == ['A man runs.', 'He jumps.',
                                                                               'The end.']
    assert split_paragraph('no count here. Second') == ['no count here.', 'Second.']
    assert split_paragraph('2 events: ') == ['None.']
    assert len(split_paragraph('. '.join('abcdefghijklmnop'))) == 12


def test_inference_shapes():
    model, tok = tiny_model()
    model.eval()
    batch = tiny_batch(tok)
    paragraphs = model.paragraphs(batch.video, batch.video_mask, max_new_tokens=6, min_new_tokens=2)
    assert len(paragraphs) == 2 and all(isinstance(p, str) for p in paragraphs)
    events, captions = model.localize_and_caption(batch.video, batch.video_mask, [2, 3], max_new_tokens=5)
    assert len(captions) == 5 and events.masks.shape == (5, 8)


@pytest.mark.parametrize('mask_mode,shape', [('uniform', 'gaussian'), ('random', 'cauchy'), ('learned', 'hard')])
def test_baseline_masks_train_the_captioner_only(mask_mode, shape):
    model, tok = tiny_model(mask_mode=mask_mode, mask_shape=shape)
    out = model(tiny_batch(tok), 'pos')
    out['ce'].backward()
    assert model.captioner.video_encoder.vpe.grad is not None and model.localizer.center_fc.weight.grad is None


def test_predict_count_modes():
    from models.ilcacm.inference import predict
    model, tok = tiny_model()
    ann = {f'v{i}': {'duration': 10.0, 'sentences': SENTENCES[:n], 'timestamps': [[0, 1]] * n}
           for i, n in enumerate((3, 2))}
    dataset = ILCACMDataset(ann, FakeFeatures(), tok, max_frames=8)
    paragraphs = {'v0': {'sentences': ['A.', 'B.']}, 'v1': {'sentences': ['C.']}}
    opts = dict(eval_batch_size=2, num_beams=2)
    split = predict(model, dataset, paragraphs, CPU, SimpleNamespace(count_mode='equal-split', **opts))
    assert split['v0'] == [{'sentence': 'A.', 'timestamp': [0.0, 5.0]}, {'sentence': 'B.', 'timestamp': [5.0, 10.0]}]
    assert [len(v) for v in predict(model, dataset, paragraphs, CPU,
                                    SimpleNamespace(count_mode='paragraph', **opts)).values()] == [2, 1]
    oracle = predict(model, dataset, paragraphs, CPU, SimpleNamespace(count_mode='oracle', **opts))
    assert [len(v) for v in oracle.values()] == [3, 2]
    assert all(0 <= e['timestamp'][0] <= e['timestamp'][1] <= 10 for v in oracle.values() for e in v)
