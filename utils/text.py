"""Caption text normalisation of the two models, byte-exact with the released code.

``remove_nonascii`` is the scorer's (``third_party/densevid_eval/text.py``), re-exported here.
"""
from third_party.densevid_eval.text import remove_nonascii

__all__ = ['wsdec_tokenize', 'ilcacm_normalize', 'remove_nonascii']


def wsdec_tokenize(sentence):
    """WSDEC tokeniser (spec wsdec §2.3): split off '.' and ',', lower-case, split on whitespace.

    Other punctuation stays attached (``man's``, ``(the``).
    """
    return sentence.replace('.', ' . ').replace(',', ' , ').lower().split()


def ilcacm_normalize(sentences, max_captions=12):
    """ILCACM caption normalisation (spec ilcacm §2.2).

    Keep the first ``max_captions``; ``strip().capitalize()`` each (Python's capitalize lower-cases every
    character after the first); append '.' unless present; an empty list becomes ``['None.']``.
    """
    normalized = []
    for i, sentence in enumerate(sentences[:max_captions]):
        sentence = sentence.strip().capitalize()
        if not sentence:  # the released code crashes here with IndexError (''[-1])
            raise ValueError(f"sentence {i} is empty after strip(): {sentences[i]!r}")
        normalized.append(sentence if sentence[-1] == '.' else sentence + '.')
    return normalized or ['None.']
