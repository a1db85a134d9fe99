"""Beam search vs transformers 4.44.1 `generate` goldens (tests/fixtures/make_hf_goldens.py) and the naive
reference (spec ilcacm §5.1, §5.3, §11)."""
import json
from pathlib import Path

import pytest
import torch

from models.ilcacm.generation import BeamHypotheses, beam_search, no_repeat_ngram_mask
from scripts.benchmark_ilcacm_reference import beam_search_naive
from models.ilcacm.gpt2 import GPT2

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOLDEN = json.loads((FIXTURES / "generation_goldens.json").read_text())
CASES = {c["name"]: c for c in GOLDEN["cases"]}


@pytest.fixture(scope="module")
def tiny():
    return GPT2.from_pretrained(FIXTURES / "tiny_gpt2").eval()


def run(search, model, case):
    settings = dict(case["settings"])
    return search(model, torch.tensor(case["inputs_embeds"]), torch.tensor(case["attention_mask"]), **settings)


@pytest.mark.parametrize("name", sorted(CASES))
def test_beam_search_equals_hf_generate(tiny, name):
    assert run(beam_search, tiny, CASES[name]).tolist() == CASES[name]["output"]


@pytest.mark.parametrize("name", ["ones", "right_pad"])
def test_naive_reference_equals_hf_generate(tiny, name):
    assert run(beam_search_naive, tiny, CASES[name]).tolist() == CASES[name]["output"]


def test_goldens_exercise_the_interesting_paths():
    """The fixture cases cover early finishing, padding of finished items and runs to max_new_tokens."""
    eos, pad = 7, 63
    ones = CASES["ones"]["output"]
    assert [row.count(pad) for row in ones] == [10, 7, 0] and ones[2][-1] == eos
    assert all(eos not in row for row in CASES["min_equals_max"]["output"])   # min = max: eos never allowed
    assert len(CASES["long"]["output"][0]) < 40                                # all done before max_new_tokens


def test_output_contract(tiny):
    case = CASES["ones"]
    settings = case["settings"]
    out = run(beam_search, tiny, case)
    for row in out.tolist():
        assert settings["eos_token_id"] not in row[:settings["min_new_tokens"]]
        if settings["eos_token_id"] in row:
            end = row.index(settings["eos_token_id"])
            assert set(row[end + 1:]) <= {settings["pad_token_id"]}
        for i in range(len(row) - 4):  # no 4-gram twice among the generated tokens
            if settings["eos_token_id"] in row[i:i + 4]:
                break
            assert all(row[i:i + 4] != row[j:j + 4] for j in range(i + 1, len(row) - 3))


def test_batched_equals_one_by_one_at_ilcacm_vocabulary():
    torch.manual_seed(0)
    model = GPT2.from_config(n_layer=1, n_head=2, n_embd=8, vocab_size=50260, n_positions=32).eval()
    embeds = torch.randn(3, 5, 8)
    kwargs = dict(max_new_tokens=6, min_new_tokens=2)  # defaults: eos 50256, pad 50257, 4 beams, 4-grams
    batched = beam_search(model, embeds, torch.ones(3, 5, dtype=torch.long), **kwargs)
    assert torch.equal(batched, beam_search_naive(model, embeds, None, **kwargs))
    for b in range(3):
        single = beam_search(model, embeds[b:b + 1], None, **kwargs)
        assert torch.equal(single[0], batched[b, :single.shape[1]])


def test_no_repeat_ngram_mask_hand_case():
    generated = torch.tensor([[1, 2, 3, 1, 2], [4, 4, 4, 4, 4]])
    banned = no_repeat_ngram_mask(generated, 3, vocab_size=6)
    assert banned[0].nonzero().flatten().tolist() == [3]       # "1 2" was followed by 3
    assert banned[1].nonzero().flatten().tolist() == [4]
    assert not no_repeat_ngram_mask(generated, 6, vocab_size=6).any()
    assert not no_repeat_ngram_mask(generated[:, :0], 4, vocab_size=6).any()


def test_beam_hypotheses_keep_the_n_best_and_stop_rule():
    hyps = BeamHypotheses(num_beams=2, length_penalty=1.0, early_stopping=False, max_length=10)
    hyps.add([1], -2.0, generated_len=2)      # score -1.0
    hyps.add([2, 3], -6.0, generated_len=3)   # -2.0
    hyps.add([4], -1.0, generated_len=2)      # -0.5 evicts -2.0
    assert sorted(s for s, _ in hyps.beams) == [-1.0, -0.5] and hyps.worst_score == -1.0
    assert hyps.best() == [4]
    assert not hyps.is_done(best_sum_logprobs=-1.0, cur_len=2)  # a running beam may still reach -0.5
    assert hyps.is_done(best_sum_logprobs=-3.0, cur_len=2)      # worst -1.0 >= best reachable -1.5
    assert not BeamHypotheses(2, 1.0, False, 10).is_done(0.0, 1)  # fewer than num_beams finished


def test_argument_errors(tiny):
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(tiny, torch.zeros(1, 2, 32), None, num_beams=1, max_new_tokens=3)
    with pytest.raises(ValueError, match="attention_mask"):
        beam_search(tiny, torch.zeros(1, 2, 32), torch.ones(1, 3), max_new_tokens=3)
