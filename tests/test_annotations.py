import json
import warnings
from pathlib import Path

import pytest

from utils.annotations import AnnotationError, annotation_statistics, load_annotations, validate_annotations

SHARED = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data'
ANET_TRAIN = SHARED / 'activitynet_captions' / 'train_modified.json'
YC2 = SHARED / 'youcook2'

GOOD = {'v_a': {'duration': 10.0, 'timestamps': [[0, 4.5], [3, 12.1]], 'sentences': ['One.', ' Two']}}


def write(tmp_path, data, name='ann.json'):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_load_valid_file_returns_floats_in_order(tmp_path):
    data = {'v_b': {'duration': 7, 'timestamps': [[1, 2]], 'sentences': ['x']}, **GOOD}
    ann = load_annotations(write(tmp_path, data))
    assert list(ann) == ['v_b', 'v_a']
    assert ann['v_b'] == {'duration': 7.0, 'timestamps': [[1.0, 2.0]], 'sentences': ['x']}
    assert isinstance(ann['v_b']['duration'], float) and isinstance(ann['v_b']['timestamps'][0][0], float)
    assert ann['v_a']['timestamps'][1] == [3.0, 12.1]  # end beyond duration is kept (spec wsdec §2.1)


def bad(field, value):
    entry = dict(GOOD['v_a'])
    if value is KeyError:
        del entry[field]
    else:
        entry[field] = value
    return {'v_ok': GOOD['v_a'], 'v_bad': entry}


@pytest.mark.parametrize('data, message', [
    (bad('duration', KeyError), "field 'duration': missing key"),
    (bad('timestamps', KeyError), "field 'timestamps': missing key"),
    (bad('sentences', KeyError), "field 'sentences': missing key"),
    (bad('timestamps', [[0, 1]]), r"field 'timestamps': 1 timestamps but 2 sentences"),
    (bad('timestamps', [[0, 1], [5, 2]]), r"field 'timestamps\[1\]': start 5 > end 2"),
    (bad('duration', 0), "field 'duration': must be positive, got 0"),
    (bad('duration', -3.5), r"field 'duration': must be positive, got -3\.5"),
    (bad('duration', '12.0'), r"field 'duration': expected a finite number, got '12\.0'"),
    (bad('duration', True), "field 'duration': expected a finite number, got True"),
    (bad('timestamps', [[0, 'a'], [1, 2]]), r"field 'timestamps\[0\]': expected finite numbers, got \[0, 'a'\]"),
    (bad('timestamps', [[0, 1, 2], [1, 2]]), r"field 'timestamps\[0\]': expected a \[start, end\] pair"),
    (bad('sentences', []), "field 'sentences': empty sentence list"),
    (bad('sentences', ['a', 3]), r"field 'sentences\[1\]': expected a string, got 3"),
    ({'v_bad': [1, 2]}, "field '<entry>': expected an object, got list"),
    (bad('timestamps', [[-2.0, 1], [3, 4]]), r"field 'timestamps\[0\]': start -2\.0 < 0"),
    (bad('timestamps', [[0, 1], [10.0, 12]]), r"field 'timestamps\[1\]': start 10\.0 >= duration 10\.0: the event "
                                              r"lies outside the video"),
    (bad('timestamps', [[0, 1], [11, 10.5]]), r"field 'timestamps\[1\]': start 11 > end 10\.5"),
    (bad('sentences', ['One.', ' \t ']), r"field 'sentences\[1\]': empty or whitespace-only sentence ' \\t '"),
    (bad('sentences', ['', 'Two.']), r"field 'sentences\[0\]': empty or whitespace-only sentence ''"),
    (bad('duration', float('nan')), "field 'duration': expected a finite number, got nan"),
    (bad('duration', float('inf')), "field 'duration': expected a finite number, got inf"),
    (bad('timestamps', [[0, float('nan')], [1, 2]]),
     r"field 'timestamps\[0\]': expected finite numbers, got \[0, nan\]"),
    (bad('timestamps', [[0, 1], [float('-inf'), 2]]),
     r"field 'timestamps\[1\]': expected finite numbers, got \[-inf, 2\]"),
])
def test_errors_name_file_video_and_field(tmp_path, data, message):
    path = write(tmp_path, data, 'broken.json')
    with pytest.raises(AnnotationError, match=rf"broken\.json: video 'v_bad': {message}"):
        load_annotations(path)


def test_one_message_lists_every_bad_video(tmp_path):
    data = {'v_a': {**GOOD['v_a'], 'timestamps': [[0, 1], [-2.0, 3]]}, 'v_ok': GOOD['v_a'],
            'v_b': {**GOOD['v_a'], 'sentences': ['One.', ' ']}, 'v_c': {**GOOD['v_a'], 'duration': float('nan')}}
    path = write(tmp_path, data)  # json.dumps writes NaN, json.load reads it back
    with pytest.raises(AnnotationError) as err:
        load_annotations(path)
    assert str(err.value) == (f"{path}: 3 videos with bad annotations: video 'v_a': field 'timestamps[1]': start "
                              f"-2.0 < 0; video 'v_b': field 'sentences[1]': empty or whitespace-only sentence ' '; "
                              f"video 'v_c': field 'duration': expected a finite number, got nan")
    many = {f'v_{i:02d}': {**GOOD['v_a'], 'sentences': ['One.', '']} for i in range(12)}
    with pytest.raises(AnnotationError, match=r"ann\.json: 12 videos with bad annotations: video 'v_00'.*; video "
                                              r"'v_09': field 'sentences\[1\]': empty or whitespace-only sentence ''; "
                                              r"\.\.\. \(2 more\)$"):
        load_annotations(write(tmp_path, many))


def test_file_level_errors(tmp_path):
    with pytest.raises(AnnotationError, match=r"nope\.json: annotation file not found"):
        load_annotations(tmp_path / 'nope.json')
    (tmp_path / 'trunc.json').write_text('{"v_a": ')
    with pytest.raises(AnnotationError, match=r"trunc\.json: not valid JSON"):
        load_annotations(tmp_path / 'trunc.json')
    with pytest.raises(AnnotationError, match=r"list\.json: expected a JSON object"):
        load_annotations(write(tmp_path, [GOOD], 'list.json'))
    assert issubclass(AnnotationError, ValueError)


def test_paragraph_file_without_timestamps(tmp_path):
    # ILCACM's stage-1 paragraph file: {vid: {"sentences", "duration"}}, possibly empty (spec ilcacm §5.4)
    data = {'v_a': {'duration': 3.0, 'sentences': []}}
    with pytest.raises(AnnotationError, match="field 'timestamps': missing key"):
        validate_annotations(data, 'para.json')
    path = write(tmp_path, data)
    assert load_annotations(path, require_timestamps=False, allow_empty=True) == \
        {'v_a': {'duration': 3.0, 'sentences': []}}
    generated = {'v_a': {'duration': 3.0, 'sentences': ['A man runs.', '']}}  # a model may generate nothing
    assert load_annotations(write(tmp_path, generated), require_timestamps=False, allow_empty=True) == generated
    with pytest.raises(AnnotationError, match=r"field 'sentences\[1\]': empty or whitespace-only sentence"):
        load_annotations(write(tmp_path, generated), require_timestamps=False)


REAL_FILES = [('activitynet_captions/train_modified.json', 10009), ('activitynet_captions/val_1.json', 4917),
              ('activitynet_captions/val_2.json', 4885), ('youcook2/yc2_train.json', 1333),
              ('youcook2/yc2_val.json', 457)]


@pytest.mark.parametrize('name, videos', REAL_FILES)
def test_real_files_load_without_warning(name, videos):
    # none of them holds a refused case (start < 0, an event outside the video, an empty sentence, NaN/inf,
    # start > end, an id that is not a file name); events that end past the duration are accepted
    if not (SHARED / name).is_file():
        pytest.skip(f'{SHARED / name} absent')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert len(load_annotations(SHARED / name)) == videos


@pytest.mark.skipif(not YC2.is_dir(), reason='shared YouCook2 annotations absent')
def test_youcook2_files_load():
    train = load_annotations(YC2 / 'yc2_train.json')
    val = load_annotations(YC2 / 'yc2_val.json')
    assert (len(train), len(val)) == (1333, 457)
    assert train['v_GLd3aX16zBg']['timestamps'][0] == [90.0, 102.0]


@pytest.mark.skipif(not ANET_TRAIN.is_file(), reason='shared ActivityNet Captions annotations absent')
def test_activitynet_train_statistics_match_spec():
    st = annotation_statistics(load_annotations(ANET_TRAIN))
    # spec ilcacm §2.1 table (train_modified) and spec wsdec §2.1
    assert (st['videos'], st['sentences']) == (10009, 37421)
    assert (st['sentences_per_video']['min'], st['sentences_per_video']['max']) == (2, 27)
    assert round(st['sentences_per_video']['mean'], 2) == 3.74
    assert st['videos_over_12_sentences'] == 50
    assert round(st['duration']['mean'], 1) == 117.3
    assert st['videos_under_32s'] == 1102
    assert round(st['words_per_sentence']['mean'], 1) == 13.5
