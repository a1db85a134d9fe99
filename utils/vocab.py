"""WSDEC word vocabulary ("translator"; spec wsdec §2.3).

Ids: ``<bos>`` = 0, ``<eos>`` = 1, words by (-count, word), ``<oov>`` last. There is no PAD token: captions
are padded with ``<eos>`` plus a mask. Stored as JSON; the original Python-2 pickle
(``{'word_to_id': dict, 'id_to_word': tuple}``, e.g. ``translator6000.pkl``) can also be read.
"""
import io
import json
import pickle
from collections import Counter
from pathlib import Path

from utils.restricted_pickle import ForbiddenGlobalError, RestrictedUnpickler
from utils.text import wsdec_tokenize

BOS, EOS, OOV = '<bos>', '<eos>', '<oov>'


class VocabularyError(ValueError):
    """A malformed vocabulary file or an undecodable id sequence."""


class Vocabulary:
    bos_id = 0
    eos_id = 1

    def __init__(self, id_to_word):
        id_to_word = list(id_to_word)
        if len(id_to_word) < 3 or id_to_word[:2] != [BOS, EOS] or id_to_word[-1] != OOV:
            raise VocabularyError(f"id_to_word must be ['{BOS}', '{EOS}', words..., '{OOV}'], "
                                  f"got {id_to_word[:3]}...{id_to_word[-1:]}")
        self.id_to_word = id_to_word
        # as in the original: every word but '<oov>' (unknown words map to oov_id on lookup)
        self.word_to_id = {word: i for i, word in enumerate(id_to_word[:-1])}
        if len(self.word_to_id) != len(id_to_word) - 1:
            raise VocabularyError("id_to_word holds a word twice")

    @property
    def oov_id(self):
        return len(self.id_to_word) - 1

    def __len__(self):
        return len(self.id_to_word)

    def encode(self, sentence):
        """``[<bos>] + wsdec_tokenize(sentence) + [<eos>]`` as ids, unknown words → ``oov_id``."""
        return [self.bos_id] + [self.word_to_id.get(w, self.oov_id) for w in wsdec_tokenize(sentence)] \
            + [self.eos_id]

    def decode(self, ids):
        """rtranslate (spec wsdec §2.3): drop the leading BOS, cut at the first EOS, join with spaces."""
        ids = [int(i) for i in (ids.tolist() if hasattr(ids, 'tolist') else ids)]
        if not ids or ids[0] != self.bos_id:
            raise VocabularyError(f"a caption must start with <bos> (id {self.bos_id}), got {ids[:5]}")
        ids = ids[1:]
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        return ' '.join(self.id_to_word[i] for i in ids)

    @classmethod
    def build(cls, annotations, count_threshold=1, vocab_size=6000):
        """Words with count > count_threshold, sorted by (-count, word); if more than ``vocab_size`` remain
        keep the first ``vocab_size - 3`` (room for bos, eos, oov). ``vocab_size=-1``: no limit."""
        counts = Counter(w for a in annotations.values() for s in a['sentences'] for w in wsdec_tokenize(s))
        words = sorted((w for w, c in counts.items() if c > count_threshold), key=lambda w: (-counts[w], w))
        if vocab_size != -1 and len(words) > vocab_size:
            words = words[:vocab_size - 3]
        return cls([BOS, EOS] + words + [OOV])

    def save(self, path):
        with open(path, 'w', encoding='utf-8') as f:
            json.dump({'id_to_word': self.id_to_word}, f, ensure_ascii=False, indent=0)

    @classmethod
    def load(cls, path):
        """Read the JSON written by ``save`` or the original Python-2 pickle."""
        path = Path(path)
        if not path.is_file():
            raise VocabularyError(f"{path}: vocabulary file not found")
        raw = path.read_bytes()
        if raw.lstrip()[:1] == b'{':
            data = json.loads(raw.decode('utf-8'))
        else:
            try:  # a vocabulary pickle holds plain dicts, tuples and strings: no global is allowed
                data = RestrictedUnpickler(io.BytesIO(raw), encoding='latin1').load()
            except ForbiddenGlobalError as err:
                raise VocabularyError(f"{path}: vocabulary pickle refers to {err.qualname}; only plain "
                                      f"dicts/tuples are allowed") from None
            except (pickle.UnpicklingError, EOFError, ValueError) as err:
                raise VocabularyError(f"{path}: neither JSON nor a vocabulary pickle ({err})") from None
        if not isinstance(data, dict) or 'id_to_word' not in data:
            raise VocabularyError(f"{path}: expected a mapping with key 'id_to_word'")
        try:
            vocab = cls(data['id_to_word'])
        except VocabularyError as err:
            raise VocabularyError(f"{path}: {err}") from None
        if 'word_to_id' in data and dict(data['word_to_id']) != vocab.word_to_id:
            raise VocabularyError(f"{path}: 'word_to_id' disagrees with 'id_to_word'")
        return vocab
