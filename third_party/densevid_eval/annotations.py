"""Reading and checking dense-captioning annotation (reference) files, for the scorer on its own.

Format (spec evaluation §3.1, wsdec §2.1): ``{video_id: {"duration": seconds, "timestamps": [[start, end], ...],
"sentences": [str, ...]}}``; ``timestamps[i]`` pairs with ``sentences[i]``; times may exceed ``duration`` slightly
(kept as is). The suite's ``utils/annotations.py`` builds on this module (this folder imports nothing from the suite).

Refused (``AnnotationError``; one message names the file and every bad video with its field): missing or mistyped
fields, non-finite numbers, ``start < 0``, ``start > end``, events that start at or after the end of the video
(none of their time lies in ``[0, duration]``), and (except in model-output paragraph files) empty or
whitespace-only sentences. Events that only end past ``duration`` are accepted and kept, as in the originals.
"""
import json
import math
from numbers import Real
from pathlib import Path


def _listing(items, n=10, sep='; '):
    """``a; b; c; ... (7 more)``: the first ``n`` items."""
    items = list(items)
    return sep.join(str(i) for i in items[:n]) + (f"{sep}... ({len(items) - n} more)" if len(items) > n else '')


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
    problems = []
    for vid, entry in data.items():
        try:
            _validate_video(vid, entry, require_timestamps, allow_empty)
        except _BadVideo as bad:
            problems.append(str(bad))
    if len(problems) == 1:
        raise AnnotationError(f"{source}: {problems[0]}")
    if problems:
        raise AnnotationError(f"{source}: {len(problems)} videos with bad annotations: {_listing(problems)}")


def read_annotation_file(path):
    """The raw JSON of an annotation file (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: not valid JSON ({err})") from None


def load_annotations(path, *, require_timestamps=True, allow_empty=False):
    """Load and validate an annotation JSON; durations and times come back as floats, order is kept."""
    data = read_annotation_file(path)
    validate_annotations(data, str(path), require_timestamps=require_timestamps, allow_empty=allow_empty)
    return as_floats(data)


def as_floats(data):
    """Validated annotations with durations and times as floats."""
    return {vid: _as_float(entry) for vid, entry in data.items()}


def _as_float(entry):
    out = {'duration': float(entry['duration']), 'sentences': list(entry['sentences'])}
    if 'timestamps' in entry:
        out['timestamps'] = [[float(s), float(e)] for s, e in entry['timestamps']]
    return out
