"""Word-level tokenizer of the from-scratch ILCACM variant (spec ilcacm §7.4).

The vocabulary holds reserved tokens (`<pad>`, `<eos>`, `<unk>`, `<FULL>`, `<MASK>`, the counts `0`-`16`, `events`,
`:`) followed by the training-caption words (lower-cased, `. , ' :` split off) seen at least `min_count` times.
Sequences keep the BPE layout `[video] <MODE> n events : caption tokens . <eos>`; the decoder itself is a small
GPT-2-shaped causal Transformer trained from scratch (built in models/ilcacm/factory.py).
"""
import re
from collections import Counter

RESERVED = ['<pad>', '<eos>', '<unk>', '<FULL>', '<MASK>'] + [str(n) for n in range(17)] + ['events', ':']
WORD_PATTERN = re.compile(r"[a-z0-9]+|[.,':]")


def split_words(sentence):
    """Lower-case and split a caption into words, separating . , ' : (spec §7.4)."""
    return WORD_PATTERN.findall(sentence.lower())


class WordTokenizer:
    pad_id, eos_id, unk_id, full_id, mask_id = range(5)
    separator = []  # word targets need no space token between sentences (the BPE layout has 220)

    def __init__(self, words):
        if list(words[:len(RESERVED)]) != RESERVED:
            raise ValueError('a word vocabulary must start with the reserved tokens ' + ' '.join(RESERVED))
        self.words = list(words)
        self.word_to_id = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, sentences, min_count=5):
        """Vocabulary of the words occurring >= min_count times, most frequent first (ties alphabetical)."""
        counts = Counter(w for s in sentences for w in split_words(s))
        kept = sorted((w for w, c in counts.items() if c >= min_count and w not in RESERVED),
                      key=lambda w: (-counts[w], w))
        return cls(RESERVED + kept)

    def __len__(self):
        return len(self.words)

    def encode_sentence(self, sentence):
        return [self.word_to_id.get(w, self.unk_id) for w in split_words(sentence)]

    def prompt(self, mode, n):
        """`<FULL>`/`<MASK>` then `n events :` (4 tokens)."""
        return [self.full_id if mode == 'full' else self.mask_id, self.word_to_id[str(n)],
                self.word_to_id['events'], self.word_to_id[':']]

    def decode(self, ids):
        """Words up to the first <eos>, <pad> dropped, punctuation re-attached ("a man runs." style)."""
        words = []
        for i in ids:
            if i == self.eos_id:
                break
            if i != self.pad_id:
                words.append(self.words[i])
        text = ' '.join(words)
        for mark in ('.', ',', ':'):
            text = text.replace(' ' + mark, mark)
        return text.replace(" ' ", "'")

    def state(self):
        return {'kind': 'word', 'words': self.words}
