import pickle

import h5py
import numpy as np
import pytest
import torch

import utils.features as features
from scripts.convert_features import main as convert_main
from utils.features import (C3DFeatures, ClipFeatures, FeatureError, MissingFeaturesError, open_features,
                            resample_frames, select_videos)


@pytest.fixture
def c3d_file(tmp_path):
    path = tmp_path / 'c3d.hdf5'
    with h5py.File(path, 'w') as f:
        f.create_group('v_a').create_dataset('c3d_features', data=np.arange(7 * 500, dtype=np.float64).reshape(7, 500))
        f.create_group('v_b').create_dataset('c3d_features', data=np.ones((1, 500)))
        f.create_group('v_zero').create_dataset('c3d_features', data=np.zeros((0, 500)))
    return path


@pytest.fixture
def clip_dir(tmp_path):
    folder = tmp_path / 'clip'
    folder.mkdir()
    np.save(folder / 'v_a.npy', np.arange(5 * 768, dtype=np.float32).reshape(5, 768))
    np.save(folder / 'v_zero.npy', np.zeros((0, 768), np.float32))
    np.save(folder / 'v_flat.npy', np.zeros(768, np.float32))
    return folder


def test_c3d_reads_subsampled_float32(c3d_file):
    store = C3DFeatures(c3d_file)
    feat = store.get('v_a')
    assert feat.dtype == np.float32 and feat.shape == (4, 500)  # rows 0, 2, 4, 6 (spec wsdec §2.2)
    np.testing.assert_array_equal(feat[:, 0], [0, 1000, 2000, 3000])
    assert C3DFeatures(c3d_file, sample_rate=1).get('v_a').shape == (7, 500)
    assert store.get('v_b').shape == (1, 500)
    assert 'v_a' in store and 'v_c' not in store
    assert store.keys() == ['v_a', 'v_b', 'v_zero'] and store.dim == 500


def test_c3d_errors_name_file_and_video(c3d_file, tmp_path):
    store = C3DFeatures(c3d_file)
    with pytest.raises(FeatureError, match=r"c3d\.hdf5: video 'v_zero': zero-length feature array \(T=0\)"):
        store.get('v_zero')
    with pytest.raises(FeatureError, match=r"c3d\.hdf5: video 'v_c': no features in this file"):
        store.get('v_c')
    with pytest.raises(FeatureError, match=r"c3d\.hdf5: video 'v_a': no dataset 'clip'"):
        C3DFeatures(c3d_file, key='clip').get('v_a')
    with pytest.raises(FeatureError, match=r"missing\.hdf5: C3D feature file not found"):
        C3DFeatures(tmp_path / 'missing.hdf5')


def test_c3d_opens_lazily_once_per_process(c3d_file, monkeypatch):
    store = C3DFeatures(c3d_file)
    assert store._file is None  # nothing opened before first use
    store.get('v_a')
    first = store._file
    store.get('v_b')
    assert store._file is first  # reused in the same process
    clone = pickle.loads(pickle.dumps(store))  # spawned workers receive no handle
    assert clone._file is None and clone.get('v_b').shape == (1, 500)
    monkeypatch.setattr(features.os, 'getpid', lambda: -1)  # as if in a forked worker
    store.get('v_a')
    assert store._file is not first and store._pid == -1


def test_clip_folder(clip_dir):
    store = ClipFeatures(clip_dir)
    feat = store.get('v_a')
    assert feat.dtype == np.float32 and feat.shape == (5, 768) and feat[1, 0] == 768
    assert 'v_a' in store and 'v_b' not in store
    assert store.keys() == ['v_a', 'v_flat', 'v_zero'] and store.dim == 768
    with pytest.raises(FeatureError, match=r"clip: video 'v_b': no features \(missing v_b\.npy\)"):
        store.get('v_b')
    with pytest.raises(FeatureError, match=r"v_zero\.npy: video 'v_zero': zero-length feature array"):
        store.get('v_zero')
    with pytest.raises(FeatureError, match=r"v_flat\.npy: video 'v_flat': expected a 2-D \(T, D\) feature array, "
                                           r"got shape \(768,\)"):
        store.get('v_flat')


def test_open_features_dispatch(c3d_file, clip_dir, tmp_path):
    assert isinstance(open_features(c3d_file, sample_rate=3), C3DFeatures)
    assert open_features(c3d_file, sample_rate=3).sample_rate == 3
    assert isinstance(open_features(clip_dir), ClipFeatures)
    with pytest.raises(FeatureError, match=r"feats\.txt: neither an \.hdf5/\.h5 file nor a folder"):
        open_features(tmp_path / 'feats.txt')


def test_resample_subsamples_long_videos_with_linspace_floor():
    feat = torch.arange(100, dtype=torch.float32)[:, None].repeat(1, 3)
    out = resample_frames(feat)
    # floor(k * 99 / 31), spec ilcacm §2.4
    assert out[:, 0].tolist() == [0, 3, 6, 9, 12, 15, 19, 22, 25, 28, 31, 35, 38, 41, 44, 47, 51, 54, 57, 60,
                                  63, 67, 70, 73, 76, 79, 83, 86, 89, 92, 95, 99]
    assert resample_frames(np.arange(33.0)[:, None])[:, 0].tolist() == list(range(31)) + [32]  # floor(32k/31)


def test_resample_interpolates_short_videos_linearly():
    out = resample_frames(np.array([[0.0], [10.0], [20.0]], np.float32))
    assert out.shape == (32, 1) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 0], torch.arange(32) * 20 / 31)  # align_corners=True
    one = resample_frames(np.array([[1.0, 2.0]]))
    assert one.shape == (32, 2) and (one == torch.tensor([1.0, 2.0])).all()  # T=1 replicates
    same = torch.randn(32, 4)
    assert torch.equal(resample_frames(same), same)
    assert resample_frames(torch.randn(5, 2), max_frames=100).shape == (100, 2)
    with pytest.raises(FeatureError, match=r"T >= 1, got shape \(0, 768\)"):
        resample_frames(np.zeros((0, 768)))


def test_select_videos_policies(clip_dir):
    store = ClipFeatures(clip_dir)
    ann = {v: {} for v in ['v_b', 'v_a', 'v_c']}
    with pytest.raises(MissingFeaturesError, match=r"val_1\.json: 2 of 3 annotated videos have no features in "
                                                   r".*clip: v_b, v_c\. Pass --missing-features skip"):
        select_videos(ann, store, 'error', source='val_1.json')
    with pytest.warns(UserWarning, match=r"skipping 2 of 3 annotated videos .*: v_b, v_c \(--missing-features skip\)"):
        assert select_videos(ann, store, 'skip') == ['v_a']
    with pytest.raises(FeatureError, match=r"v_zero\.npy: video 'v_zero': zero-length"):  # present, refused at setup
        select_videos({'v_a': {}, 'v_zero': {}}, store)
    many = {f'v_{i:02d}': {} for i in range(12)}
    with pytest.raises(MissingFeaturesError, match=r"v_09, \.\.\. \(2 more\)"):
        select_videos({'v_a': {}, **many}, store)
    with pytest.raises(MissingFeaturesError, match=r"none of the 12 annotated videos has features"):
        select_videos(many, store, 'skip')
    with pytest.raises(ValueError, match="policy must be 'error' or 'skip', got 'zero'"):
        select_videos(ann, store, 'zero')


def test_convert_round_trip(c3d_file, tmp_path, capsys):
    convert_main(['--to', 'npy', '--input', str(c3d_file), '--output', str(tmp_path / 'npy')])
    assert sorted(p.name for p in (tmp_path / 'npy').iterdir()) == ['v_a.npy', 'v_b.npy', 'v_zero.npy']
    convert_main(['--to', 'hdf5', '--input', str(tmp_path / 'npy'), '--output', str(tmp_path / 'back.h5')])
    with h5py.File(c3d_file) as a, h5py.File(tmp_path / 'back.h5') as b:
        assert list(a) == list(b)
        for vid in a:
            x, y = a[vid]['c3d_features'][()], b[vid]['c3d_features'][()]
            assert x.dtype == y.dtype == np.float64 and np.array_equal(x, y)
    convert_main(['--to', 'hdf5', '--input', str(tmp_path / 'npy'), '--output', str(tmp_path / 'clip.h5'),
                  '--key', 'clip_features'])
    assert np.array_equal(C3DFeatures(tmp_path / 'clip.h5', 1, key='clip_features').get('v_b'), np.ones((1, 500)))
    with pytest.raises(SystemExit):
        convert_main(['--to', 'hdf5', '--input', str(tmp_path / 'npy'), '--output', str(tmp_path / 'back.h5')])
    assert 'back.h5 exists; pass --overwrite' in capsys.readouterr().err
    with pytest.raises(FeatureError, match='none.h5: hdf5 file not found'):  # the CLI prints it as one line
        convert_main(['--to', 'npy', '--input', str(tmp_path / 'none.h5'), '--output', str(tmp_path / 'x')])
    assert not (tmp_path / 'x').exists()
