"""GPT-2 BPE tokenizer vs Hugging Face goldens (tests/fixtures/make_hf_goldens.py, transformers 4.44.1) and
hand-checked cases from spec ilcacm §2.5, §2.6, §11."""
import hashlib
import json
from pathlib import Path

import pytest

from utils.tokenization import GPT2Tokenizer, TokenizerError, bytes_to_unicode, pre_tokenize

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
BPE_DIR = SHARED / "data" / "gpt2_bpe"
VAL_1 = SHARED / "data" / "activitynet_captions" / "val_1.json"
GOLDEN = json.loads((FIXTURES / "tokenizer_goldens.json").read_text(encoding="utf-8"))
needs_vocab = pytest.mark.skipif(not (BPE_DIR / "vocab.json").is_file(), reason="real GPT-2 vocabulary absent")


@pytest.fixture(scope="module")
def tok():
    return GPT2Tokenizer.from_pretrained(BPE_DIR)


def normalize(s):  # spec ilcacm §2.2
    s = s.strip().capitalize()
    return s if s.endswith(".") else s + "."


@needs_vocab
def test_sizes_and_special_ids(tok):
    assert (len(tok), tok.vocab_size) == (GOLDEN["len"], GOLDEN["vocab_size"]) == (50260, 50257)
    assert (tok.pad_token_id, tok.eos_token_id) == (GOLDEN["pad_token_id"], GOLDEN["eos_token_id"]) == (50257, 50256)
    assert [tok.token_to_id(t) for t in ("<FULL>", "<MASK>")] == [50258, 50259]


@needs_vocab
def test_activitynet_captions_match_hf(tok):
    for case in GOLDEN["captions"]:
        assert tok.encode(case["raw"]) == case["ids"], case["raw"]
        assert tok.encode(normalize(case["raw"])) == case["normalized_ids"], case["raw"]
        assert tok.encode(normalize(case["raw"]) + " <|endoftext|>") == case["normalized_eos_ids"], case["raw"]


@needs_vocab
@pytest.mark.skipif(not VAL_1.is_file(), reason="ActivityNet val_1.json absent")
def test_every_val_1_sentence_matches_hf(tok):
    data = json.loads(VAL_1.read_text())
    sentences = [s for vid in data for s in data[vid]["sentences"]]
    assert len(sentences) == GOLDEN["val_1_normalized_count"]
    ids = [tok.encode(normalize(s)) for s in sentences]
    digest = hashlib.sha256(json.dumps(ids, separators=(",", ":")).encode()).hexdigest()
    assert digest == GOLDEN["val_1_normalized_sha256"]


@needs_vocab
def test_prompts_and_layouts(tok):
    for text, ids in GOLDEN["prompts"].items():
        assert tok.encode(text) == ids, text
    # spec §11: [mode, d(n), " events", ":", " "] with d(0..9)=15..24, d(10)=940, d(11)=1157, d(12)=1065
    digits = {0: 15, 9: 24, 10: 940, 11: 1157, 12: 1065, 13: 1485, 16: 1433}
    for n, d in digits.items():
        assert tok.encode(f"<FULL>{n} events: ") == [50258, d, 2995, 25, 220]
        assert tok.encode(f"<MASK>{n} events: ") == [50259, d, 2995, 25, 220]
    # spec §2.6: the space before <|endoftext|> is a standalone 220; first words carry no "Ġ"
    assert tok.encode("A man is running. <|endoftext|>")[-3:] == [13, 220, 50256]
    assert tok.encode("A man.")[0] == tok.encode("A")[0] != tok.encode(" A")[0]


@needs_vocab
def test_tricky_strings_match_hf(tok):
    for case in GOLDEN["tricky"]:
        assert tok.encode(case["text"]) == case["ids"], repr(case["text"])


@needs_vocab
def test_decode_matches_hf(tok):
    for case in GOLDEN["decodes"]:
        for skip in (True, False):
            for clean in (True, False):
                expected = case[f"skip{int(skip)}_clean{int(clean)}"]
                got = tok.decode(case["ids"], skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
                assert got == expected, (case["ids"], skip, clean)


@needs_vocab
def test_decode_hand_cases(tok):
    ids = [50258, 18, 2995, 25, 220] + tok.encode("A man is running . He isn't 'here' .") + [220, 50256, 50257]
    assert tok.decode(ids) == "<FULL>3 events: A man is running. He isn't 'here'. "
    assert tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False).endswith(
        " . <|endoftext|><PAD>")
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.decode([50260])


def test_pre_tokenize_pattern():
    assert pre_tokenize("I don't  know   it's\n\n x  ") == \
        ["I", " don", "'t", " ", " know", "  ", " it", "'s", "\n\n", " x", "  "]
    assert pre_tokenize("3 events: ") == ["3", " events", ":", " "]
    assert pre_tokenize("''s ...'s é1") == ["''", "s", " ...'", "s", " é", "1"]
    # only U+0020 is the optional leading space; NBSP is \s, U+001C is not (Python's isspace() says it is)
    assert pre_tokenize("a\u00a0b\x1cc") == ["a", "\u00a0", "b", "\x1c", "c"]


def test_byte_table():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("A")] == "A" and table[0] == chr(256)


def test_bpe_merge_order_on_a_toy_vocabulary(tmp_path):
    vocab = {"<|endoftext|>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "bc": 5, "abc": 6, "Ġ": 7, "Ġa": 8}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nb c\na b\na bc\nĠ a\n")
    tok = GPT2Tokenizer.from_pretrained(tmp_path, pad_token=None, mode_tokens=())
    assert tok.encode("abc") == [6]           # "b c" has the lower rank, then "a bc"
    assert tok.encode("ab ab") == [4, 7, 4]   # in "Ġab", "a b" (rank 1) wins over "Ġ a" (rank 3)
    assert tok.encode(" a") == [8]
    assert tok.decode([4, 7, 4]) == "ab ab"
    assert len(tok) == tok.vocab_size == 9


def test_missing_file_is_named(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({"<|endoftext|>": 0}))
    with pytest.raises(TokenizerError, match="merges.txt"):
        GPT2Tokenizer.from_pretrained(tmp_path)
