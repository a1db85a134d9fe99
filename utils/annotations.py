"""Dense-captioning annotation files: loading, validation and statistics.

Format (spec wsdec §2.1, ilcacm §2.1), shared by ActivityNet Captions and the YouCook2 files of this project:
``{video_id: {"duration": seconds, "timestamps": [[start, end], ...], "sentences": [str, ...]}}``.
``timestamps[i]`` pairs with ``sentences[i]``; times may exceed ``duration`` slightly (kept as is).

Validation runs once, when a file is loaded, so that bad data stops a run at setup (issue 16): the scorer's rules
(``third_party/densevid_eval/annotations.py``, which must not import the suite: fields, finite numbers, start < 0,
start > end, events outside the video, empty sentences), and first, video ids that cannot be file names
(utils/paths.py). One message lists every bad video.
"""
from third_party.densevid_eval.annotations import AnnotationError, as_floats, read_annotation_file
from third_party.densevid_eval.annotations import validate_annotations as validate_format
from utils.paths import UnsafePathError, check_video_ids
from utils.text import wsdec_tokenize

__all__ = ['AnnotationError', 'load_annotations', 'validate_annotations', 'annotation_statistics']


def validate_annotations(data, source, *, require_timestamps=True, allow_empty=False):
    """Raise AnnotationError naming ``source`` and every malformed video of ``data``; ids are checked first.

    ``require_timestamps=False`` and ``allow_empty=True`` accept ILCACM's stage-1 paragraph file
    (``{vid: {"sentences", "duration"}}``, model output, possibly with no sentence or empty ones; spec ilcacm
    §5.4, §2.2 step 4).
    """
    if isinstance(data, dict):
        try:
            check_video_ids(data, source)
        except UnsafePathError as err:
            raise AnnotationError(str(err)) from None
    validate_format(data, source, require_timestamps=require_timestamps, allow_empty=allow_empty)


def load_annotations(path, *, require_timestamps=True, allow_empty=False):
    """Load and validate an annotation JSON; durations and times come back as floats, order is kept."""
    data = read_annotation_file(path)
    validate_annotations(data, str(path), require_timestamps=require_timestamps, allow_empty=allow_empty)
    return as_floats(data)


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
