import json
import pickle
from pathlib import Path

import pytest
import torch

from scripts.build_vocab import main as build_vocab_main
from utils.annotations import load_annotations
from utils.vocab import Vocabulary, VocabularyError

ANET_TRAIN = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'activitynet_captions' / \
    'train_modified.json'

ANN = {'v1': {'duration': 1.0, 'timestamps': [[0, 1]] * 2, 'sentences': ['A dog runs.', 'The dog, a cat.']},
       'v2': {'duration': 1.0, 'timestamps': [[0, 1]] * 2, 'sentences': ['a cat runs', 'Zebra zebra yak']}}
# counts: a 3; '.', cat, dog, runs, zebra 2; ',', the, yak 1
WORDS = ['<bos>', '<eos>', 'a', '.', 'cat', 'dog', 'runs', 'zebra', '<oov>']


def test_build_counts_sorts_and_assigns_ids():
    vocab = Vocabulary.build(ANN)
    assert vocab.id_to_word == WORDS
    assert (vocab.bos_id, vocab.eos_id, vocab.oov_id, len(vocab)) == (0, 1, 8, 9)
    assert '<oov>' not in vocab.word_to_id and vocab.word_to_id['zebra'] == 7
    assert Vocabulary.build(ANN, count_threshold=0).id_to_word == WORDS[:-1] + [',', 'the', 'yak', '<oov>']


def test_build_truncates_only_when_more_than_vocab_size_words():
    assert Vocabulary.build(ANN, vocab_size=6).id_to_word == WORDS  # 6 words, not > 6: all kept (9 entries)
    assert Vocabulary.build(ANN, vocab_size=5).id_to_word == ['<bos>', '<eos>', 'a', '.', '<oov>']
    assert Vocabulary.build(ANN, vocab_size=-1).id_to_word == WORDS


def test_encode_and_decode():
    vocab = Vocabulary(WORDS)
    assert vocab.encode('The dog runs, fast.') == [0, 8, 5, 6, 8, 8, 3, 1]
    assert vocab.decode([0, 8, 5, 6, 8, 8, 3, 1]) == '<oov> dog runs <oov> <oov> .'
    assert vocab.decode(torch.tensor([0, 2, 5, 1, 4, 1, 1])) == 'a dog'   # cut at the first EOS
    assert vocab.decode([0, 2, 5]) == 'a dog'
    assert vocab.decode([0, 1]) == ''
    with pytest.raises(VocabularyError, match=r"must start with <bos> \(id 0\), got \[2, 5\]"):
        vocab.decode([2, 5])


def test_json_round_trip(tmp_path):
    Vocabulary(WORDS).save(tmp_path / 'v.json')
    assert json.loads((tmp_path / 'v.json').read_text()) == {'id_to_word': WORDS}
    assert Vocabulary.load(tmp_path / 'v.json').id_to_word == WORDS


# What Python 2's pickle.dump(translator, open(p, 'w')) writes (protocol 0): str literals as S'...', words from
# json.load as unicode (V, raw-unicode-escape: U+00F1 as the byte 0xf1, U+2019 as \u2019).
PY2_PICKLE = (b"(dp0\nS'word_to_id'\np1\n(dp2\nS'<bos>'\np3\nI0\nsS'<eos>'\np4\nI1\nsVthe\np5\nI2\n"
              b"sVpi\xf1ata\np6\nI3\nsVbaby\\u2019s\np7\nI4\nssS'id_to_word'\np8\n"
              b"(g3\ng4\ng5\ng6\ng7\nS'<oov>'\np9\ntp10\ns.")


def test_reads_original_python2_pickle(tmp_path):
    (tmp_path / 'translator6000.pkl').write_bytes(PY2_PICKLE)
    vocab = Vocabulary.load(tmp_path / 'translator6000.pkl')
    assert vocab.id_to_word == ['<bos>', '<eos>', 'the', 'piñata', 'baby’s', '<oov>']
    assert vocab.encode('The piñata.') == [0, 2, 3, 5, 1]


def test_reads_protocol2_pickle_and_rejects_bad_ones(tmp_path):
    good = {'word_to_id': {w: i for i, w in enumerate(WORDS[:-1])}, 'id_to_word': tuple(WORDS)}
    (tmp_path / 'p2.pkl').write_bytes(pickle.dumps(good, protocol=2))
    assert Vocabulary.load(tmp_path / 'p2.pkl').id_to_word == WORDS
    wrong = dict(good, word_to_id={**good['word_to_id'], 'cat': 7})
    (tmp_path / 'wrong.pkl').write_bytes(pickle.dumps(wrong, protocol=0))
    with pytest.raises(VocabularyError, match=r"wrong\.pkl: 'word_to_id' disagrees with 'id_to_word'"):
        Vocabulary.load(tmp_path / 'wrong.pkl')
    (tmp_path / 'evil.pkl').write_bytes(pickle.dumps({'id_to_word': Path('x')}))
    with pytest.raises(VocabularyError, match=r"refers to pathlib\."):
        Vocabulary.load(tmp_path / 'evil.pkl')
    (tmp_path / 'noeos.json').write_text(json.dumps({'id_to_word': ['<bos>', 'a', '<oov>']}))
    with pytest.raises(VocabularyError, match=r"noeos\.json: id_to_word must be \['<bos>', '<eos>'"):
        Vocabulary.load(tmp_path / 'noeos.json')


def test_build_vocab_script_on_tiny_file(tmp_path, capsys):
    (tmp_path / 'train.json').write_text(json.dumps(ANN))
    build_vocab_main(['--train', str(tmp_path / 'train.json'), '--out', str(tmp_path / 'v.json'), '--stats'])
    out = capsys.readouterr().out
    assert Vocabulary.load(tmp_path / 'v.json').id_to_word == WORDS
    assert 'sentences per video       min 2 / max 2 / mean 2.00' in out
    assert 'top-20 tokens: a 3, . 2, cat 2, dog 2, runs 2, zebra 2' in out


@pytest.mark.skipif(not ANET_TRAIN.is_file(), reason='shared ActivityNet Captions annotations absent')
def test_activitynet_vocabulary():
    vocab = Vocabulary.build(load_annotations(ANET_TRAIN))
    # spec wsdec §2.3 and §9: 6,000 entries, two non-ASCII words
    assert (len(vocab), vocab.oov_id) == (6000, 5999)
    assert vocab.id_to_word[:12] == ['<bos>', '<eos>', 'the', '.', 'a', 'and', 'to', 'in', 'of', 'is', 'on', 'man']
    assert vocab.id_to_word[-3:] == ['nowhere', 'nunchaku', '<oov>']
    assert sorted(w for w in vocab.id_to_word if not w.isascii()) == ['baby’s', 'piñata']
