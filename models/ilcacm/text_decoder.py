"""The caption decoder's tokenizer interface, shared by the GPT-2 BPE and the word-level variants.

A caption tokenizer provides `pad_id`, `eos_id`, `full_id`, `mask_id`, `separator` (ids placed between sentences),
`encode_sentence(str) -> ids`, `prompt(mode, n) -> ids` ("<FULL>{n} events: " / "<MASK>{n} events: "),
`decode(ids) -> str`, `__len__` (vocabulary size) and `state()` (a JSON-able description for checkpoints).
`BPECaptionTokenizer` adapts utils.tokenization.GPT2Tokenizer to it (spec ilcacm §2.5-2.6);
models/ilcacm/word_decoder.py holds `WordTokenizer` (spec §7.4).
"""
from models.ilcacm.config import resolve_path
from models.ilcacm.word_decoder import WordTokenizer
from utils.tokenization import GPT2Tokenizer

SPACE_ID = 220  # "Ġ": the standalone space token between sentences (spec §2.6)


class BPECaptionTokenizer:
    eos_id, pad_id, full_id, mask_id = 50256, 50257, 50258, 50259
    separator = [SPACE_ID]

    def __init__(self, bpe_dir):
        self.bpe_dir = str(bpe_dir)                      # as given (checkpoints keep it relative)
        self.bpe = GPT2Tokenizer.from_pretrained(resolve_path(bpe_dir))

    def __len__(self):
        return 50260

    def encode_sentence(self, sentence):
        """tok(S): the BPE of the sentence alone, so its first word has no leading-space prefix."""
        return self.bpe.encode(sentence)

    def prompt(self, mode, n):
        """tok("<FULL>{n} events: ") = [50258, tok(n), 2995, 25, 220] (spec §11)."""
        return self.bpe.encode(f"<{'FULL' if mode == 'full' else 'MASK'}>{n} events: ")

    def decode(self, ids):
        """skip_special_tokens=True (drops 50256/50257) with HF's clean-up of tokenization spaces (spec §2.5)."""
        return self.bpe.decode(ids)

    def state(self):
        return {'kind': 'bpe', 'bpe_dir': self.bpe_dir}


def tokenizer_from_state(state):
    """Rebuild the tokenizer a checkpoint was trained with."""
    if state['kind'] == 'word':
        return WordTokenizer(state['words'])
    return BPECaptionTokenizer(state['bpe_dir'])
