"""Pure-torch GPT-2 vs Hugging Face goldens (tests/fixtures/make_hf_goldens.py, transformers 4.44.1):
loading, logits, KV cache, vocabulary resize, saving (spec ilcacm §3.2, §3.7, §7.2, §11)."""
import json
import math
from pathlib import Path

import pytest
import torch

from models.ilcacm.gpt2 import GPT2
from utils.weights import CheckpointFormatError, load_safetensors, save_safetensors

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_DIR = FIXTURES / "tiny_gpt2"
GOLDEN = json.loads((FIXTURES / "gpt2_goldens.json").read_text())


@pytest.fixture()
def tiny():
    return GPT2.from_pretrained(TINY_DIR).eval()


def hf_layout_state(model, prefix="transformer.", old_buffers=False):
    """The model's weights as a HF checkpoint would store them (optionally the pre-4.x causal-mask buffers)."""
    state = {}
    for key, value in model.state_dict().items():
        state[key if key == "lm_head.weight" else prefix + key[len("transformer."):]] = value.clone()
    if old_buffers:
        n = model.config.n_positions
        for i in range(model.config.n_layer):
            state[f"{prefix}h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
            state[f"{prefix}h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return state


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("case", sorted(GOLDEN["forward"]))
def test_logits_match_hf(tiny, case):
    c = GOLDEN["forward"][case]
    inputs = {k: torch.tensor(v) for k, v in c.items() if k != "logits"}
    with torch.no_grad():
        logits = tiny(**inputs)
    assert logits.shape == torch.Size([len(c["logits"]), len(c["logits"][0]), 64])
    assert (logits - torch.tensor(c["logits"])).abs().max().item() <= 1e-4


def test_loaded_model_is_tied_and_strict(tiny):
    assert tiny.lm_head.weight is tiny.transformer.wte.weight
    assert tiny.config.n_layer == 2 and tiny.config.vocab_size == 64
    # the HF file stores no lm_head and prefixed keys
    assert "lm_head.weight" not in load_safetensors(TINY_DIR / "model.safetensors")


@pytest.mark.parametrize("prefix", ["transformer.", ""])
@pytest.mark.parametrize("old_buffers", [False, True])
def test_pytorch_model_bin_with_and_without_prefix(tiny, tmp_path, prefix, old_buffers):
    (tmp_path / "config.json").write_text((TINY_DIR / "config.json").read_text())
    torch.save(hf_layout_state(tiny, prefix, old_buffers), tmp_path / "pytorch_model.bin")
    assert_same_weights(GPT2.from_pretrained(tmp_path), tiny)


def test_safetensors_without_prefix_and_with_lm_head(tiny, tmp_path):
    (tmp_path / "config.json").write_text((TINY_DIR / "config.json").read_text())
    save_safetensors(hf_layout_state(tiny, prefix=""), tmp_path / "model.safetensors")
    loaded = GPT2.from_pretrained(tmp_path)
    assert_same_weights(loaded, tiny)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight


def test_missing_and_misshapen_keys_are_named(tiny, tmp_path):
    (tmp_path / "config.json").write_text((TINY_DIR / "config.json").read_text())
    state = hf_layout_state(tiny)
    del state["transformer.h.1.mlp.c_fc.bias"]
    save_safetensors(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointFormatError, match=r"model.safetensors.*missing 1 .*h\.1\.mlp\.c_fc\.bias"):
        GPT2.from_pretrained(tmp_path)
    state = hf_layout_state(tiny)
    state["transformer.h.0.attn.c_attn.weight"] = state["transformer.h.0.attn.c_attn.weight"].t()
    save_safetensors(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointFormatError, match=r"h\.0\.attn\.c_attn\.weight.*shape \(96, 32\)"):
        GPT2.from_pretrained(tmp_path)
    with pytest.raises(CheckpointFormatError, match="config.json"):
        GPT2.from_pretrained(tmp_path / "nowhere")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_save_pretrained_round_trip(tiny, tmp_path, dtype):
    tiny.save_pretrained(tmp_path, dtype=dtype)
    raw = (tmp_path / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    assert header_len % 8 == 0 and header["__metadata__"] == {"format": "pt"}
    assert header["transformer.h.0.attn.c_attn.weight"]["shape"] == [32, 96]
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == \
        {{torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[dtype]}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["n_embd"] == 32
    loaded = GPT2.from_pretrained(tmp_path)
    for key, value in tiny.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.to(dtype).float()), key


def test_resize_token_embeddings_like_hf_4_44(tiny):
    resize = GOLDEN["resize"]
    old = tiny.transformer.wte.weight.detach().clone()
    torch.manual_seed(resize["seed"])
    tiny.resize_token_embeddings(resize["new_num_tokens"])
    wte = tiny.transformer.wte.weight
    assert tiny.config.vocab_size == 67 and tiny.lm_head.weight is wte
    assert torch.equal(wte[:64], old)
    assert torch.equal(wte[64:], torch.tensor(resize["new_rows"]))  # N(0, initializer_range), same draws as HF
    assert tiny(input_ids=torch.tensor([[66, 1]])).shape == (1, 2, 67)


def test_loading_and_retying_draw_no_random_numbers():
    """HF's from_pretrained builds under no_init_weights and tie_weights only assigns (spec §3.7): the generator is
    where the seed left it."""
    torch.manual_seed(11)
    seeded = torch.get_rng_state()
    model = GPT2.from_pretrained(TINY_DIR)
    assert torch.equal(torch.get_rng_state(), seeded)
    model.tie_weights()
    assert torch.equal(torch.get_rng_state(), seeded) and model.lm_head.weight is model.transformer.wte.weight
    stored = load_safetensors(TINY_DIR / "model.safetensors")
    assert all(torch.equal(t, stored[k]) for k, t in model.state_dict().items() if k != "lm_head.weight")


def test_resize_draws_exactly_what_hf_4_44_draws():
    """transformers 4.44 _get_resized_embeddings: nn.Embedding(67, 32) draws N(0, 1) for every entry, _init_weights
    redraws every entry from N(0, initializer_range = 0.5), then the old rows are copied and lm_head re-tied."""
    torch.manual_seed(123)
    torch.empty(67, 32).normal_()
    expected_rows = torch.empty(67, 32).normal_(0.0, 0.5)[64:]
    expected_state = torch.get_rng_state()
    torch.manual_seed(123)
    model = GPT2.from_pretrained(TINY_DIR, vocab_size=67)
    assert torch.equal(torch.get_rng_state(), expected_state)
    assert torch.equal(model.transformer.wte.weight[64:], expected_rows)
    assert torch.equal(expected_rows, torch.tensor(GOLDEN["resize"]["new_rows"]))  # the restatement is HF's
    assert model.lm_head.weight is model.transformer.wte.weight and model.lm_head.out_features == 67


def test_from_pretrained_resizes_to_ilcacm_vocabulary(tmp_path):
    GPT2.from_config(n_layer=1, n_head=2, n_embd=8, vocab_size=50257, n_positions=16).save_pretrained(tmp_path)
    model = GPT2.from_pretrained(tmp_path, vocab_size=50260)
    assert model.transformer.wte.weight.shape == (50260, 8) and model.lm_head.weight is model.transformer.wte.weight
    assert model.config.vocab_size == 50260


def test_from_config_initialisation_like_hf():
    torch.manual_seed(0)
    model = GPT2.from_config(n_layer=4, n_head=4, n_embd=128, vocab_size=1000, n_positions=64)
    blocks = model.transformer.h
    assert abs(blocks[0].attn.c_attn.weight.std().item() - 0.02) < 1e-3
    assert abs(model.transformer.wte.weight.std().item() - 0.02) < 1e-3
    for proj in (blocks[1].attn.c_proj.weight, blocks[2].mlp.c_proj.weight):
        assert abs(proj.std().item() - 0.02 / math.sqrt(8)) < 1e-3
    assert torch.all(blocks[3].mlp.c_fc.bias == 0) and torch.all(blocks[0].ln_1.weight == 1)
    assert torch.all(model.transformer.ln_f.bias == 0)


def test_kv_cache_equals_full_forward(tiny):
    g = torch.Generator().manual_seed(5)
    embeds = torch.randn(2, 7, 32, generator=g)
    ids = torch.randint(0, 64, (2, 5), generator=g)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1] + [1] * 5, [1] * 12])
    full_embeds = torch.cat([embeds, tiny.embed(ids)], dim=1)
    with torch.no_grad():
        full = tiny(inputs_embeds=full_embeds, attention_mask=mask)
        logits, past = tiny(inputs_embeds=embeds, attention_mask=mask[:, :7], use_cache=True)
        chunk, past = tiny(input_ids=ids[:, :2], attention_mask=mask[:, :9], past_key_values=past,
                           use_cache=True)  # several queries on top of a cache
        steps = [chunk]
        for t in range(2, 5):
            step, past = tiny(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :8 + t], past_key_values=past,
                              use_cache=True)
            steps.append(step)
    cached = torch.cat([logits] + steps, dim=1)
    assert past[0][0].shape == (2, 4, 12, 8)
    valid = mask.bool()  # padded query rows are irrelevant
    assert (cached - full)[valid].abs().max().item() <= 1e-5
    # same with no mask at all (pure causal) and a multi-token chunk on top of the cache
    with torch.no_grad():
        full = tiny(input_ids=ids)
        first, past = tiny(input_ids=ids[:, :2], use_cache=True)
        rest = tiny(input_ids=ids[:, 2:], past_key_values=past)
    assert (torch.cat([first, rest], 1) - full).abs().max().item() <= 1e-5


def test_padding_only_changes_nothing_for_valid_positions(tiny):
    ids = torch.randint(0, 64, (1, 6), generator=torch.Generator().manual_seed(3))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1)
    with torch.no_grad():
        plain = tiny(input_ids=ids)
        right = tiny(input_ids=padded, attention_mask=torch.tensor([[1] * 6 + [0] * 3]))
    assert (right[:, :6] - plain).abs().max().item() <= 1e-5
    assert torch.isfinite(right).all()


def test_forward_argument_errors(tiny):
    with pytest.raises(ValueError, match="exactly one"):
        tiny(input_ids=torch.zeros(1, 2, dtype=torch.long), inputs_embeds=torch.zeros(1, 2, 32))
    with pytest.raises(ValueError, match="n_positions 48"):
        tiny(input_ids=torch.zeros(1, 49, dtype=torch.long))
