"""GPT-2 byte-level BPE tokenizer in pure Python, id-for-id equal to the Hugging Face tokenizer ILCACM builds
(spec ilcacm §2.5, §2.6, §7.3, §11): `AutoTokenizer(distilgpt2)` + pad `<PAD>` (special, 50257) + the non-special
added tokens `<FULL>` (50258) and `<MASK>` (50259).

No `regex` package: the GPT-2 pre-tokenisation pattern
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
is matched by a hand-written scanner over Unicode categories (`pre_tokenize`).
"""
from __future__ import annotations

import json
import unicodedata
from functools import lru_cache
from pathlib import Path


class TokenizerError(ValueError):
    """Unreadable tokenizer files or ids outside the vocabulary."""


EOS_TOKEN = "<|endoftext|>"
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
# Unicode White_Space (what the Rust regex engine of `tokenizers` calls \s); Python's str.isspace() differs
# (it also accepts U+001C..U+001F).
WHITESPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                       + "".join(chr(c) for c in range(0x2000, 0x200B)))
# transformers 4.44 `clean_up_tokenization`, in its order (spec §2.5, §11)
CLEANUP_REPLACEMENTS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                        (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


@lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (spec §7.3.1)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=65536)
def _char_class(c: str) -> str:
    """'s' whitespace, 'L' letter, 'N' number, 'o' anything else."""
    if c in WHITESPACE:
        return "s"
    category = unicodedata.category(c)[0]
    return category if category in "LN" else "o"


def pre_tokenize(text: str) -> list[str]:
    """Split text like GPT-2's regex (alternatives tried left to right, each greedy)."""
    classes = [_char_class(c) for c in text]
    pieces, i, n = [], 0, len(text)

    def run_end(start, cls):
        j = start
        while j < n and classes[j] == cls:
            j += 1
        return j

    while i < n:
        contraction = text[i] == "'" and next((c for c in CONTRACTIONS if text.startswith(c, i)), None)
        if contraction:
            end = i + len(contraction)
        elif classes[i] in "LNo":
            end = run_end(i, classes[i])                      # \p{L}+ | \p{N}+ | [^\s\p{L}\p{N}]+
        elif text[i] == " " and i + 1 < n and classes[i + 1] in "LNo":
            end = run_end(i + 1, classes[i + 1])              # the same with one leading space
        else:
            end = run_end(i, "s")
            if end < n and end - i > 1:
                end -= 1      # \s+(?!\S) leaves the last space to the next word; a lone one is matched by \s+
        pieces.append(text[i:end])
        i = end
    return pieces


class GPT2Tokenizer:
    """Byte-level BPE with added tokens matched before BPE (lstrip/rstrip off for all of them, spec §7.3.3).

    `vocab_size` is the base vocabulary (50,257) and `len(tokenizer)` includes the added tokens (50,260), as in
    Hugging Face. `encode` adds no BOS/EOS (spec §11).
    """

    def __init__(self, encoder: dict[str, int], merges: list[tuple[str, str]], pad_token: str | None = "<PAD>",
                 mode_tokens: tuple[str, ...] = ("<FULL>", "<MASK>")):
        self.encoder = dict(encoder)
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.eos_token_id = self.encoder[EOS_TOKEN]
        self.bos_token_id = self.eos_token_id
        self.special_ids = {self.eos_token_id}
        self.added_tokens = {EOS_TOKEN: self.eos_token_id}
        self.pad_token_id = None
        if pad_token is not None:  # add_special_tokens({'pad_token': ...}) (spec §2.5)
            self.pad_token_id = self._add_token(pad_token)
            self.special_ids.add(self.pad_token_id)
        for token in mode_tokens:  # add_tokens([...]): non-special, kept by decode
            self._add_token(token)
        self.decoder = {i: t for t, i in self.encoder.items()}
        self._cache: dict[str, list[int]] = {}

    def _add_token(self, token: str) -> int:
        if token not in self.encoder:
            self.encoder[token] = len(self.encoder)
        self.added_tokens[token] = self.encoder[token]
        return self.encoder[token]

    @classmethod
    def from_pretrained(cls, local_dir: str | Path, **kwargs) -> "GPT2Tokenizer":
        """Read `vocab.json` and `merges.txt` from a GPT-2 folder; ILCACM's added tokens by default."""
        local_dir = Path(local_dir)
        vocab_path, merges_path = local_dir / "vocab.json", local_dir / "merges.txt"
        for path in (vocab_path, merges_path):
            if not path.is_file():
                raise TokenizerError(f"{path}: missing (a GPT-2 tokenizer folder needs vocab.json and merges.txt)")
        encoder = json.loads(vocab_path.read_text(encoding="utf-8"))
        if EOS_TOKEN not in encoder:
            raise TokenizerError(f"{vocab_path}: no {EOS_TOKEN!r} entry")
        merges = []
        for line_no, line in enumerate(merges_path.read_text(encoding="utf-8").split("\n"), 1):
            if line.startswith("#version") or not line.strip():
                continue
            pair = line.split()
            if len(pair) != 2:
                raise TokenizerError(f"{merges_path}:{line_no}: expected two symbols, got {line!r}")
            merges.append(tuple(pair))
        return cls(encoder, merges, **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.encoder) - len([t for t in self.added_tokens if t != EOS_TOKEN])

    def __len__(self) -> int:
        return len(self.encoder)

    def token_to_id(self, token: str) -> int:
        return self.encoder[token]

    # ------------------------------------------------------------------ encode
    def encode(self, text: str) -> list[int]:
        ids = []
        for piece, is_added in self._split_added(text):
            if is_added:
                ids.append(self.added_tokens[piece])
            else:
                for word in pre_tokenize(piece):
                    ids.extend(self._bpe_ids(word))
        return ids

    def _split_added(self, text: str):
        """Yield (piece, is_added_token), added tokens matched leftmost-longest."""
        start = 0
        while True:
            found = [(text.find(t, start), -len(t), t) for t in self.added_tokens]
            found = [f for f in found if f[0] >= 0]
            if not found:
                break
            pos, _, token = min(found)
            if pos > start:
                yield text[start:pos], False
            yield token, True
            start = pos + len(token)
        if start < len(text):
            yield text[start:], False

    def _bpe_ids(self, word: str) -> list[int]:
        if word not in self._cache:
            symbols = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            self._cache[word] = [self.encoder[s] for s in self._bpe(symbols)]
        return self._cache[word]

    def _bpe(self, word: str) -> list[str]:
        """Merge adjacent symbols by lowest merge rank until no ranked pair remains (spec §7.3.4)."""
        parts = list(word)
        while len(parts) > 1:
            pairs = set(zip(parts, parts[1:]))
            best = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if best not in self.bpe_ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    # ------------------------------------------------------------------ decode
    def decode(self, ids, skip_special_tokens: bool = True, clean_up_tokenization_spaces: bool = True) -> str:
        """Ids -> text as the fast HF tokenizer: byte-level decode with U+FFFD for invalid UTF-8, `<|endoftext|>`
        and `<PAD>` dropped when `skip_special_tokens` (`<FULL>`/`<MASK>` kept), then HF's clean-up."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        data = bytearray()
        for i in ids:
            if i not in self.decoder:
                raise TokenizerError(f"decode: id {i} is outside the vocabulary (size {len(self)})")
            if skip_special_tokens and i in self.special_ids:
                continue
            token = self.decoder[i]
            if all(c in self.byte_decoder for c in token):
                data.extend(self.byte_decoder[c] for c in token)
            else:
                data.extend(token.encode("utf-8"))
        text = data.decode("utf-8", errors="replace")
        if clean_up_tokenization_spaces:
            for old, new in CLEANUP_REPLACEMENTS:
                text = text.replace(old, new)
        return text

    def batch_decode(self, sequences, **kwargs) -> list[str]:
        return [self.decode(ids, **kwargs) for ids in sequences]
