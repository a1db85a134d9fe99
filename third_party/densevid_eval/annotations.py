"""Reading and checking dense-captioning annotation (reference) files, for the scorer on its own.

Format (spec evaluation §3.1, wsdec §2.1): ``{video_id: {"duration": seconds, "timestamps": [[start, end], ...],
"sentences": [str, ...]}}``; ``timestamps[i]`` pairs with ``sentences[i]``; times may exceed ``duration`` slightly
(kept as is). A malformed file raises ``AnnotationError`` naming the file, the video id and the field. The
suite's ``utils/annotations.py`` builds on this module (this folder imports nothing from the suite).
"""
import json
import math
from numbers import Real
from pathlib import Path


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file, the video id and the field."""


def _fail(source, vid, field, problem):
    raise AnnotationError(f"{source}: video '{vid}': field '{field}': {problem}")


def _is_number(x):
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x)


def _validate_video(source, vid, entry, require_timestamps, allow_empty):
    if not isinstance(entry, dict):
        _fail(source, vid, '<entry>', f"expected an object, got {type(entry).__name__}")
    required = ('duration', 'timestamps', 'sentences') if require_timestamps else ('duration', 'sentences')
    for field in required:
        if field not in entry:
            _fail(source, vid, field, "missing key")

    duration = entry['duration']
    if not _is_number(duration):
        _fail(source, vid, 'duration', f"expected a finite number, got {duration!r}")
    if duration <= 0:
        _fail(source, vid, 'duration', f"must be positive, got {duration!r}")

    sentences = entry['sentences']
    if not isinstance(sentences, list):
        _fail(source, vid, 'sentences', f"expected a list, got {type(sentences).__name__}")
    if not sentences and not allow_empty:
        _fail(source, vid, 'sentences', "empty sentence list")
    for i, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            _fail(source, vid, f'sentences[{i}]', f"expected a string, got {sentence!r}")

    if 'timestamps' in entry:
        _validate_timestamps(source, vid, entry['timestamps'], len(sentences))


def _validate_timestamps(source, vid, timestamps, n_sentences):
    if not isinstance(timestamps, list):
        _fail(source, vid, 'timestamps', f"expected a list, got {type(timestamps).__name__}")
    if len(timestamps) != n_sentences:
        _fail(source, vid, 'timestamps',
              f"{len(timestamps)} timestamps but {n_sentences} sentences (they must pair one to one)")
    for i, pair in enumerate(timestamps):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            _fail(source, vid, f'timestamps[{i}]', f"expected a [start, end] pair, got {pair!r}")
        start, end = pair
        if not (_is_number(start) and _is_number(end)):
            _fail(source, vid, f'timestamps[{i}]', f"expected finite numbers, got {pair!r}")
        if start > end:
            _fail(source, vid, f'timestamps[{i}]', f"start {start} > end {end}")


def validate_annotations(data, source, *, require_timestamps=True, allow_empty=False):
    """Raise AnnotationError on the first malformed video of ``data``.

    ``require_timestamps=False`` and ``allow_empty=True`` accept ILCACM's stage-1 paragraph file
    (``{vid: {"sentences", "duration"}}``, possibly with no sentence; spec ilcacm §5.4, §2.2 step 4).
    """
    if not isinstance(data, dict):
        raise AnnotationError(f"{source}: expected a JSON object {{video_id: annotation}}, "
                              f"got {type(data).__name__}")
    for vid, entry in data.items():
        _validate_video(source, vid, entry, require_timestamps, allow_empty)


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
