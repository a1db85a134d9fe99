"""Dense-captioning annotation files: loading, validation and statistics.

Format (spec wsdec §2.1, ilcacm §2.1), shared by ActivityNet Captions and the YouCook2 files of this project:
``{video_id: {"duration": seconds, "timestamps": [[start, end], ...], "sentences": [str, ...]}}``.
``timestamps[i]`` pairs with ``sentences[i]``; times may exceed ``duration`` slightly (kept as is).
Reading and validation are the scorer's (``third_party/densevid_eval/annotations.py``, which must not import
the suite); this module re-exports them and adds the corpus statistics.
"""
from third_party.densevid_eval.annotations import AnnotationError, load_annotations, validate_annotations
from utils.text import wsdec_tokenize

__all__ = ['AnnotationError', 'load_annotations', 'validate_annotations', 'annotation_statistics']


def _summary(values):
    return {'min': min(values), 'max': max(values), 'mean': sum(values) / len(values)}


def annotation_statistics(annotations):
    """Corpus statistics quoted in spec ilcacm §2.1 (words = whitespace-separated, tokens = wsdec_tokenize)."""
    per_video = [len(a['sentences']) for a in annotations.values()]
    sentences = [s for a in annotations.values() for s in a['sentences']]
    durations = [a['duration'] for a in annotations.values()]
    return {
        'videos': len(annotations),
        'sentences': len(sentences),
        'sentences_per_video': _summary(per_video),
        'videos_over_12_sentences': sum(n > 12 for n in per_video),
        'words_per_sentence': _summary([len(s.split()) for s in sentences]),
        'tokens_per_sentence': _summary([len(wsdec_tokenize(s)) for s in sentences]),
        'duration': _summary(durations),
        'videos_under_32s': sum(d < 32 for d in durations),
    }
