"""The synthetic data root: real formats, determinism, event statistics, second annotator, learnable signal."""
import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from utils.synthetic import (SignalModel, SyntheticDataError, SyntheticWorld, content_words, generate_annotations,
                             make_synthetic_dataset, video_features)

REPO = Path(__file__).resolve().parents[1]


def _load(path):
    with open(path) as f:
        return json.load(f)


def _c3d(paths, vid):
    with h5py.File(paths.c3d, 'r') as f:
        return f[vid]['c3d_features'][()]


def test_tiny_layout_and_json_schema(tiny_data):
    splits = {name: _load(getattr(tiny_data, name)) for name in ('train', 'val_1', 'val_2')}
    assert (len(splits['train']), len(splits['val_1'])) == (24, 8)
    assert not set(splits['train']) & set(splits['val_1'])
    for name, data in splits.items():
        for vid, a in data.items():
            assert re.fullmatch(r'v_syn\d{6}', vid)
            assert set(a) == {'duration', 'timestamps', 'sentences'}
            assert isinstance(a['duration'], float) and 20 <= a['duration'] <= 60
            assert len(a['timestamps']) == len(a['sentences'])
            assert 2 <= len(a['sentences']) <= 6, (name, vid)
            for (s, e), sentence in zip(a['timestamps'], a['sentences']):
                assert 0 <= s < e <= a['duration'], (name, vid, s, e)
                assert isinstance(sentence, str) and sentence[0].isupper() and sentence.endswith('.')


def test_feature_files_have_real_formats(tiny_data):
    videos = {**_load(tiny_data.train), **_load(tiny_data.val_1)}
    with h5py.File(tiny_data.c3d, 'r') as f:
        assert set(f.keys()) == set(videos)
        for vid, a in videos.items():
            c3d = f[vid]['c3d_features']
            assert c3d.dtype == np.float32 and c3d.shape == (round(2 * a['duration']), 500)
            # the loaders' [::2] leaves about one step per second (utils/synthetic.py, "Time grid")
            assert abs(len(c3d[::2]) - a['duration']) <= 1
    for vid, a in videos.items():
        clip = np.load(tiny_data.clip_dir / f'{vid}.npy')
        assert clip.dtype == np.float32 and clip.shape == (round(a['duration']), 768)


def test_same_seed_gives_identical_files_and_another_seed_differs(tiny_data, tmp_path):
    again = make_synthetic_dataset(tmp_path / 'again', size='tiny', seed=0)
    for name in ('train', 'val_1', 'val_2'):
        assert getattr(again, name).read_bytes() == getattr(tiny_data, name).read_bytes()
    for vid in ('v_syn000000', 'v_syn000030'):
        np.testing.assert_array_equal(_c3d(again, vid), _c3d(tiny_data, vid))
        np.testing.assert_array_equal(np.load(again.clip_dir / f'{vid}.npy'), np.load(tiny_data.clip_dir / f'{vid}.npy'))
    other = make_synthetic_dataset(tmp_path / 'other', size='tiny', seed=1, features=False)
    assert other.train.read_bytes() != tiny_data.train.read_bytes()
    assert not other.c3d.exists()


def test_val_2_is_a_second_annotator_of_the_val_1_videos(tiny_data):
    val_1, val_2 = _load(tiny_data.val_1), _load(tiny_data.val_2)
    assert list(val_2) == list(val_1)
    moved, reworded, shared_words = [], 0, 0
    for vid, a in val_1.items():
        b = val_2[vid]
        assert b['duration'] == a['duration']
        assert 2 <= len(b['sentences']) <= len(a['sentences'])
        if len(b['timestamps']) == len(a['timestamps']):
            moved.append(np.abs(np.subtract(b['timestamps'], a['timestamps'])).mean() / a['duration'])
            for s1, s2 in zip(a['sentences'], b['sentences']):
                reworded += s1 != s2
                shared_words += bool(set(content_words(s1)) & set(content_words(s2)))
    assert moved and 0 < np.mean(moved) < 0.15       # boundaries perturbed, not redrawn
    n_pairs = sum(len(val_1[v]['sentences']) for v in val_1 if len(val_2[v]['sentences']) == len(val_1[v]['sentences']))
    assert reworded >= 0.8 * n_pairs and shared_words >= 0.6 * n_pairs


def _best_segment(scores):
    """Maximum-sum contiguous run (Kadane) of scores: [i, j) rows."""
    best, current, start, span = -np.inf, 0.0, 0, (0, 1)
    for i, v in enumerate(scores):
        current, start = (v, i) if current <= 0 else (current + v, start)
        if current > best:
            best, span = current, (start, i + 1)
    return span


def _iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


@pytest.mark.parametrize('kind', ['c3d', 'clip'])
def test_caption_signature_localises_events_and_random_segments_do_not(tiny_data, kind):
    world, rng = SyntheticWorld(seed=0), np.random.default_rng(0)
    probe, chance, inside, outside = [], [], [], []
    for vid, a in {**_load(tiny_data.train), **_load(tiny_data.val_1)}.items():
        x = _c3d(tiny_data, vid)[::2] if kind == 'c3d' else np.load(tiny_data.clip_dir / f'{vid}.npy')
        duration, n = a['duration'], len(x)
        centres = (np.arange(n) + 0.5) * duration / n
        for (s, e), sentence in zip(a['timestamps'], a['sentences']):
            score = x @ world.caption_direction(sentence, kind)
            i, j = _best_segment(score - np.median(score))
            probe.append(_iou((i * duration / n, j * duration / n), (s, e)))
            chance.append(_iou(np.sort(rng.uniform(0, duration, 2)), (s, e)))
            held = (centres >= s) & (centres < e)
            inside += list(score[held])
            outside += list(score[~held])
    assert np.mean(probe) > np.mean(chance) + 0.25, (np.mean(probe), np.mean(chance))
    # one row alone is ambiguous: rows inside an event beat rows outside it often, not always (AUC)
    auc = (np.array(inside)[:, None] > np.array(outside)[None, :]).mean()
    assert 0.6 < auc < 0.95, auc


def test_anet_size_follows_activitynet_statistics():
    splits = generate_annotations('anet', seed=0)
    assert (len(splits['train']), len(splits['val_1']), len(splits['val_2'])) == (10009, 4917, 4917)
    train = splits['train'].values()
    durations = np.array([a['duration'] for a in train])
    counts = np.array([len(a['sentences']) for a in train])
    relative = np.array([(e - s) / a['duration'] for a in train for s, e in a['timestamps']])
    assert 105 < durations.mean() < 130 and 0.05 < (durations < 32).mean() < 0.2   # spec ilcacm §2.1: 117 s, 11 %
    assert counts.min() == 2 and counts.max() == 6 and 3.0 < counts.mean() < 3.8
    assert 0.25 < relative.mean() < 0.45                                          # ActivityNet train: 0.31
    starts = [[s for s, _ in a['timestamps']] for a in train]
    assert all(x == sorted(x) for x in starts)                                    # annotation order = start order


def _write_annotation_dir(folder):
    folder.mkdir()
    video = {'duration': 12.5, 'timestamps': [[0, 6.0], [5.0, 13.1]], 'sentences': ['A dog runs.', ' It jumps.']}
    files = {'train_modified.json': {'v_a': video, 'v_b': video, 'v_c': video},
             'val_1.json': {'v_x': video, 'v_y': video, 'v_z': video}, 'val_2.json': {'v_z': video, 'v_x': video}}
    for name, data in files.items():
        (folder / name).write_text(json.dumps(data))


def test_annotations_mode_conditions_features_on_given_captions(tmp_path):
    _write_annotation_dir(tmp_path / 'real')
    paths = make_synthetic_dataset(tmp_path / 'out', annotations=tmp_path / 'real', max_videos=2)
    assert list(_load(paths.train)) == ['v_a', 'v_b'] and list(_load(paths.val_1)) == ['v_x', 'v_y']
    assert list(_load(paths.val_2)) == ['v_x']
    assert _load(paths.train)['v_a']['sentences'] == ['A dog runs.', ' It jumps.']
    with h5py.File(paths.c3d, 'r') as f:
        assert sorted(f.keys()) == ['v_a', 'v_b', 'v_x', 'v_y']
        assert f['v_a']['c3d_features'].shape == (25, 500)     # round(2 * 12.5), a 13.1 s end inside 12.5 s
    assert np.load(paths.clip_dir / 'v_y.npy').shape == (12, 768)


def test_train_and_val_sizes_and_the_signal_model_record(tmp_path):
    _write_annotation_dir(tmp_path / 'real')
    signal = SignalModel(signal_to_noise=4.0, scene=0.0, c3d_rate=3.75, clip_rate=0.5)
    paths = make_synthetic_dataset(tmp_path / 'out', annotations=tmp_path / 'real', max_videos=3, max_val_videos=1,
                                   signal=signal)
    assert list(_load(paths.train)) == ['v_a', 'v_b', 'v_c'] and list(_load(paths.val_1)) == ['v_x']
    with h5py.File(paths.c3d, 'r') as f:
        assert f['v_a']['c3d_features'].shape == (47, 500)    # round(3.75 * 12.5)
    assert np.load(paths.clip_dir / 'v_x.npy').shape == (6, 768)  # round(0.5 * 12.5)
    record = json.loads((paths.root / 'signal_model.json').read_text())
    assert (record['signal_to_noise'], record['scene'], record['c3d_rate'], record['annotations']) == \
        (4.0, 0.0, 3.75, 'real')


def test_signal_model_parts(tmp_path):
    """Each part of a row as documented: the signature's coefficient is the signal-to-noise ratio inside an event
    and 0 outside (up to the noise), the scene is one offset for the whole video."""
    world = SyntheticWorld(0)
    video = {'duration': 400.0, 'timestamps': [[0.0, 200.0]], 'sentences': ['a violin is played']}
    quiet = video_features(world, 'v', video, SignalModel(signal_to_noise=0.0, scene=0.0))['clip']
    loud = video_features(world, 'v', video, SignalModel(signal_to_noise=5.0, scene=0.0))['clip']
    direction = world.caption_direction('a violin is played', 'clip')
    along = (loud - quiet) @ direction                    # the same noise draws: the difference is the signal
    assert along[:200].mean() == pytest.approx(5.0, rel=0.1) and abs(along[200:].mean()) < 1e-5
    scene = video_features(world, 'v', video, SignalModel(signal_to_noise=0.0, scene=2.0))['clip'] - quiet
    assert np.allclose(scene, scene[0], atol=1e-5) and scene[0].std() == pytest.approx(2.0, rel=0.1)


def test_annotations_mode_reads_youcook2_files(shared_dir, tmp_path):
    real = shared_dir / 'data' / 'youcook2'
    paths = make_synthetic_dataset(tmp_path / 'yc2', annotations=real, max_videos=2, features=False)
    assert list(_load(paths.train)) == list(_load(real / 'yc2_train.json'))[:2]
    assert list(_load(paths.val_1)) == list(_load(real / 'yc2_val.json'))[:2] and not paths.val_2.exists()


def test_annotations_mode_reads_the_real_activitynet_files(shared_dir, tmp_path):
    real = shared_dir / 'data' / 'activitynet_captions'
    paths = make_synthetic_dataset(tmp_path / 'anet', annotations=real, max_videos=3, features=False)
    original = _load(real / 'train_modified.json')
    copied = _load(paths.train)
    assert list(copied) == list(original)[:3]
    assert all(copied[v]['sentences'] == original[v]['sentences'] for v in copied)
    assert set(_load(paths.val_2)) <= set(_load(paths.val_1))


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(SyntheticDataError, match=r"unknown synthetic size 'huge'.*'anet', 'small', 'tiny'"):
        generate_annotations('huge')
    (tmp_path / 'incomplete').mkdir()
    (tmp_path / 'incomplete' / 'train.json').write_text('{}')
    with pytest.raises(SyntheticDataError, match=r"incomplete: no val_1\.json or yc2_val\.json for the val_1 split"):
        make_synthetic_dataset(tmp_path / 'out', annotations=tmp_path / 'incomplete')
    with pytest.raises(SyntheticDataError, match='scene must be >= 0'):
        SignalModel(scene=-1)


def test_command_line_writes_the_same_captions(tiny_data, tmp_path):
    out = tmp_path / 'cli'
    result = subprocess.run([sys.executable, 'scripts/make_synthetic_dataset.py', '--out', str(out), '--size', 'tiny',
                             '--seed', '0', '--no-features'], cwd=REPO, capture_output=True, text=True, check=True)
    assert 'val_1: 8 videos' in result.stdout
    assert (out / 'captions' / 'val_2.json').read_bytes() == tiny_data.val_2.read_bytes()
    assert not (out / 'features').exists()
