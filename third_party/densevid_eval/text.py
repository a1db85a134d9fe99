"""Text normalisation of the official scorer before the PTB tokenizer (spec evaluation §3.3 step 4)."""


def remove_nonascii(s):
    """Replace every non-ASCII character with a space (densevid_eval and SODA; WSDEC's METEOR labels too,
    spec wsdec §4.2)."""
    if s.isascii():  # fast path: nothing to replace
        return s
    return ''.join(c if ord(c) < 128 else ' ' for c in s)
