"""Reading and checking submissions and reference files (spec evaluation §3.1).

Malformed input (invalid JSON, no ``results``, a non-list video entry, a missing or non-string sentence, a
non-numeric or non-finite timestamp) raises ``SubmissionError`` naming the file, the video and the entry.
Odd but valid input (start > end, times beyond the duration, duplicates, empty lists, videos absent from the
references) is kept exactly as the official tool would score it and only counted (``submission_warnings``).
"""
import hashlib
import json
import math
from numbers import Real
from pathlib import Path

from .annotations import load_annotations, validate_annotations
from .meteor import LINE_BREAKS


class SubmissionError(ValueError):
    """A malformed submission; the message names the file, the video id, the entry and the field."""


def _is_finite_number(x):
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x)


def _check_segment(source, vid, i, entry, field):
    if field not in entry:
        raise SubmissionError(f"{source}: video '{vid}': entry {i}: missing field '{field}'")
    seg = entry[field]
    if not isinstance(seg, (list, tuple)) or len(seg) != 2:
        raise SubmissionError(f"{source}: video '{vid}': entry {i}: field '{field}' must be a [start, end] "
                              f"pair of seconds, got {seg!r}")
    if not all(_is_finite_number(t) for t in seg):
        raise SubmissionError(f"{source}: video '{vid}': entry {i}: field '{field}' must hold finite numbers, "
                              f"got {seg!r}")


def _check_sentence(source, vid, i, entry):
    if 'sentence' not in entry:
        raise SubmissionError(f"{source}: video '{vid}': entry {i}: missing field 'sentence'")
    if not isinstance(entry['sentence'], str):
        raise SubmissionError(f"{source}: video '{vid}': entry {i}: field 'sentence' must be a string, "
                              f"got {entry['sentence']!r}")


def read_json(submission, what='submission'):
    """``(object, source name)`` from a dict or a JSON file path."""
    if isinstance(submission, dict):
        return submission, f'<{what} dict>'
    path = Path(submission)
    if not path.is_file():
        raise SubmissionError(f"{path}: {what} file not found")
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f), str(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SubmissionError(f"{path}: not valid JSON ({err})") from None


def load_results(submission, segment_fields=('timestamp',), need_sentence=True):
    """Validated ``{vid: [entry, ...]}`` of a submission (dict or path), and its source name.

    Entries keep every field; each field of ``segment_fields`` must be a pair of finite numbers.
    """
    data, source = read_json(submission)
    if not isinstance(data, dict) or 'results' not in data:
        raise SubmissionError(f"{source}: a submission is a JSON object with a 'results' field "
                              f"{{video_id: [{{'sentence', 'timestamp'}}, ...]}}; 'results' is missing")
    results = data['results']
    if not isinstance(results, dict):
        raise SubmissionError(f"{source}: 'results' must be an object {{video_id: [...]}}, "
                              f"got {type(results).__name__}")
    for vid, entries in results.items():
        if not isinstance(entries, list):
            raise SubmissionError(f"{source}: video '{vid}': expected a list of predictions, "
                                  f"got {type(entries).__name__}")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise SubmissionError(f"{source}: video '{vid}': entry {i}: expected an object with 'sentence' "
                                      f"and 'timestamp', got {type(entry).__name__}")
            if need_sentence:
                _check_sentence(source, vid, i, entry)
            for field in segment_fields:
                _check_segment(source, vid, i, entry, field)
    return results, source, data


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def load_references(references):
    """``(list of annotation dicts, list of meta records)`` for reference paths or dicts (spec evaluation §1.3)."""
    if not references:
        raise SubmissionError("at least one reference file is needed (normally val_1.json and val_2.json)")
    refs, meta = [], []
    for k, ref in enumerate(references):
        if isinstance(ref, dict):
            validate_annotations(ref, f'<reference {k}>')
            refs.append(ref)
            meta.append({'path': f'<reference {k} dict>', 'sha256': None, 'n_videos': len(ref)})
        else:
            refs.append(load_annotations(ref))
            meta.append({'path': str(ref), 'sha256': sha256_of(ref), 'n_videos': len(refs[-1])})
    return refs, meta


def cap_proposals(results, max_proposals):
    """The official ``[:max_proposals]`` per video, in submission order (spec evaluation §1.3)."""
    return {vid: entries[:max_proposals] for vid, entries in results.items()}


def submission_warnings(data, results, references, max_proposals):
    """Counts of odd-but-valid input, scored as the official tool scores it (spec evaluation §3.1)."""
    durations = {}
    for ref in references:
        for vid, ann in ref.items():
            durations.setdefault(vid, ann['duration'])
    counts = dict.fromkeys(['missing_version_or_external_data', 'videos_not_in_references',
                            'empty_prediction_lists', 'videos_over_proposal_cap', 'proposals_dropped_by_cap',
                            'start_after_end', 'outside_video_duration', 'duplicate_predictions',
                            'sentences_with_line_breaks'], 0)
    counts['missing_version_or_external_data'] = int(not {'version', 'external_data'} <= set(data))
    for vid, entries in results.items():
        counts['videos_not_in_references'] += vid not in durations
        counts['empty_prediction_lists'] += not entries
        counts['videos_over_proposal_cap'] += len(entries) > max_proposals
        counts['proposals_dropped_by_cap'] += max(0, len(entries) - max_proposals)
        seen = set()
        for e in entries:
            start, end = e['timestamp']
            counts['start_after_end'] += start > end
            counts['outside_video_duration'] += vid in durations and (min(start, end) < 0
                                                                       or max(start, end) > durations[vid])
            key = (e['sentence'], float(start), float(end))
            counts['duplicate_predictions'] += key in seen
            seen.add(key)
            counts['sentences_with_line_breaks'] += any(ch in e['sentence'] for ch in LINE_BREAKS[1:])
    return counts
