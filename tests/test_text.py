import pytest

from utils.text import ilcacm_normalize, remove_nonascii, wsdec_tokenize


def test_wsdec_tokenize_splits_only_period_and_comma():
    assert wsdec_tokenize(" A man's (dog) ran, fast.Then  he SAT!") == \
        ['a', "man's", '(dog)', 'ran', ',', 'fast', '.', 'then', 'he', 'sat!']
    assert wsdec_tokenize('It is 3.5 km,ok') == ['it', 'is', '3', '.', '5', 'km', ',', 'ok']
    assert wsdec_tokenize('') == []


def test_ilcacm_normalize_strip_capitalize_and_period():
    # str.capitalize() lower-cases everything after the first character (spec ilcacm §2.2, §8.1 item 6)
    assert ilcacm_normalize(['  the Man named John went.', 'I SAW it ', 'ok..', 'x']) == \
        ['The man named john went.', 'I saw it.', 'Ok..', 'X.']


def test_ilcacm_normalize_truncates_to_max_captions_and_fills_empty():
    sentences = [f's{i}' for i in range(13)]
    assert ilcacm_normalize(sentences) == [f'S{i}.' for i in range(12)]
    assert ilcacm_normalize(sentences, max_captions=2) == ['S0.', 'S1.']
    assert ilcacm_normalize([]) == ['None.']


def test_ilcacm_normalize_empty_sentence_is_a_clear_error():
    with pytest.raises(ValueError, match=r"sentence 1 is empty after strip\(\): '   '"):
        ilcacm_normalize(['fine', '   '])


def test_remove_nonascii_replaces_with_space():
    assert remove_nonascii('piñata baby’s') == 'pi ata baby s'
    assert remove_nonascii('plain ascii.') == 'plain ascii.'
