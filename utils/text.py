"""Caption text normalisation of the two models, byte-exact with the released code."""


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


def remove_nonascii(s):
    """Replace every non-ASCII character with a space (densevid_eval and WSDEC's METEOR labels; spec
    evaluation §3.3 step 4, wsdec §4.2)."""
    if s.isascii():  # fast path: nothing to replace
        return s
    return ''.join(c if ord(c) < 128 else ' ' for c in s)
