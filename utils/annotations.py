"""Dense-captioning annotation files: loading, validation and statistics.

Format (spec wsdec §2.1, ilcacm §2.1), shared by ActivityNet Captions and the YouCook2 files of this project:
``{video_id: {"duration": seconds, "timestamps": [[start, end], ...], "sentences": [str, ...]}}``.
``timestamps[i]`` pairs with ``sentences[i]``; times may exceed ``duration`` slightly (kept as is).

Validation runs once, when a file is loaded, so that bad data stops a run at setup (issue 16). Refused: video ids
that cannot be file names (utils/paths.py), missing or mistyped fields, non-finite numbers, ``start < 0``,
``start > end``, events that start at or after the end of the video (none of their time lies in
``[0, duration]``), and (except in model-output paragraph files) empty or whitespace-only sentences. Events that
only end past ``duration`` are accepted and kept, as in the originals. One message lists every bad video.
"""
import json
import math
from numbers import Real
from pathlib import Path

from utils.messages import listing
from utils.paths import UnsafePathError, check_video_ids
from utils.text import wsdec_tokenize


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file, the video id and the field."""


class _BadVideo(Exception):
    """One video's first problem; validate_annotations collects them into one AnnotationError."""

    def __init__(self, vid, field, problem):
        super().__init__(f"video '{vid}': field '{field}': {problem}")


def _is_number(x):
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x)


def _validate_video(vid, entry, require_timestamps, allow_empty):
    if not isinstance(entry, dict):
        raise _BadVideo(vid, '<entry>', f"expected an object, got {type(entry).__name__}")
    required = ('duration', 'timestamps', 'sentences') if require_timestamps else ('duration', 'sentences')
    for field in required:
        if field not in entry:
            raise _BadVideo(vid, field, "missing key")

    duration = entry['duration']
    if not _is_number(duration):
        raise _BadVideo(vid, 'duration', f"expected a finite number, got {duration!r}")
    if duration <= 0:
        raise _BadVideo(vid, 'duration', f"must be positive, got {duration!r}")

    sentences = entry['sentences']
    if not isinstance(sentences, list):
        raise _BadVideo(vid, 'sentences', f"expected a list, got {type(sentences).__name__}")
    if not sentences and not allow_empty:
        raise _BadVideo(vid, 'sentences', "empty sentence list")
    for i, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise _BadVideo(vid, f'sentences[{i}]', f"expected a string, got {sentence!r}")
        if not sentence.strip() and not allow_empty:
            raise _BadVideo(vid, f'sentences[{i}]', f"empty or whitespace-only sentence {sentence!r}")

    if 'timestamps' in entry:
        _validate_timestamps(vid, entry['timestamps'], len(sentences), duration)


def _validate_timestamps(vid, timestamps, n_sentences, duration):
    if not isinstance(timestamps, list):
        raise _BadVideo(vid, 'timestamps', f"expected a list, got {type(timestamps).__name__}")
    if len(timestamps) != n_sentences:
        raise _BadVideo(vid, 'timestamps',
                        f"{len(timestamps)} timestamps but {n_sentences} sentences (they must pair one to one)")
    for i, pair in enumerate(timestamps):
        field = f'timestamps[{i}]'
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise _BadVideo(vid, field, f"expected a [start, end] pair, got {pair!r}")
        start, end = pair
        if not (_is_number(start) and _is_number(end)):
            raise _BadVideo(vid, field, f"expected finite numbers, got {pair!r}")
        if start < 0:
            raise _BadVideo(vid, field, f"start {start} < 0")
        if start > end:
            raise _BadVideo(vid, field, f"start {start} > end {end}")
        if start >= duration:
            raise _BadVideo(vid, field, f"start {start} >= duration {duration}: the event lies outside the video")


def validate_annotations(data, source, *, require_timestamps=True, allow_empty=False):
    """Raise AnnotationError naming ``source`` and every malformed video of ``data`` (its first problem each).

    ``require_timestamps=False`` and ``allow_empty=True`` accept ILCACM's stage-1 paragraph file
    (``{vid: {"sentences", "duration"}}``, model output, possibly with no sentence or empty ones; spec ilcacm
    §5.4, §2.2 step 4).
    """
    if not isinstance(data, dict):
        raise AnnotationError(f"{source}: expected a JSON object {{video_id: annotation}}, "
                              f"got {type(data).__name__}")
    try:
        check_video_ids(data, source)
    except UnsafePathError as err:
        raise AnnotationError(str(err)) from None
    problems = []
    for vid, entry in data.items():
        try:
            _validate_video(vid, entry, require_timestamps, allow_empty)
        except _BadVideo as bad:
            problems.append(str(bad))
    if len(problems) == 1:
        raise AnnotationError(f"{source}: {problems[0]}")
    if problems:
        raise AnnotationError(f"{source}: {len(problems)} videos with bad annotations: {listing(problems, sep='; ')}")


def load_annotations(path, *, require_timestamps=True, allow_empty=False):
    """Load and validate an annotation JSON; durations and times come back as floats, order is kept."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: not valid JSON ({err})") from None
    validate_annotations(data, str(path), require_timestamps=require_timestamps, allow_empty=allow_empty)
    return {vid: _as_float(entry) for vid, entry in data.items()}


def _as_float(entry):
    out = {'duration': float(entry['duration']), 'sentences': list(entry['sentences'])}
    if 'timestamps' in entry:
        out['timestamps'] = [[float(s), float(e)] for s, e in entry['timestamps']]
    return out


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
