"""Video feature stores: C3D hdf5 (WSDEC, spec wsdec §2.2) and per-video CLIP .npy (ILCACM, spec ilcacm §2.3).

Both stores share one interface: ``vid in store``, ``store.keys()``, ``store.get(vid) -> (T, D) float32``,
``store.dim``. ``select_videos`` applies the missing-features policy; ``resample_frames`` is ILCACM's
temporal resampling; ``hdf5_to_npy`` / ``npy_to_hdf5`` convert between the two layouts.
"""
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F


class FeatureError(ValueError):
    """Unusable features; the message names the file and the video."""


class MissingFeaturesError(FeatureError):
    """Annotated videos without features under ``--missing-features error``."""


def _checked(array, vid, source):
    """(T, D) float32, or a FeatureError naming the video."""
    if array.ndim != 2:
        raise FeatureError(f"{source}: video '{vid}': expected a 2-D (T, D) feature array, got shape {array.shape}")
    if array.shape[0] == 0:
        raise FeatureError(f"{source}: video '{vid}': zero-length feature array (T=0)")
    return np.ascontiguousarray(array, dtype=np.float32)


class C3DFeatures:
    """``f[vid][key][::sample_rate]`` from an hdf5 file (spec wsdec §2.2).

    The file is opened lazily, once per process: a handle inherited by a forked DataLoader worker is never
    used (the original's h5py/worker problem, spec wsdec §2.2).
    """

    def __init__(self, path, sample_rate=2, key='c3d_features'):
        self.path = Path(path)
        if not self.path.is_file():
            raise FeatureError(f"{self.path}: C3D feature file not found")
        self.sample_rate = sample_rate
        self.key = key
        self._file = None
        self._pid = None

    def _h5(self):
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, 'r')
            self._pid = os.getpid()
        return self._file

    def __getstate__(self):  # picklable for spawned workers; each reopens the file
        return {**self.__dict__, '_file': None, '_pid': None}

    def __contains__(self, vid):
        return vid in self._h5()

    def keys(self):
        return list(self._h5().keys())

    def get(self, vid):
        f = self._h5()
        if vid not in f:
            raise FeatureError(f"{self.path}: video '{vid}': no features in this file")
        if self.key not in f[vid]:
            raise FeatureError(f"{self.path}: video '{vid}': no dataset '{self.key}'")
        return _checked(f[vid][self.key][::self.sample_rate], vid, self.path)

    @property
    def dim(self):
        f = self._h5()
        return f[next(iter(f.keys()))][self.key].shape[1]


class ClipFeatures:
    """``<folder>/<vid>.npy`` arrays of shape (T, 768) (spec ilcacm §2.3)."""

    def __init__(self, folder):
        self.path = Path(folder)
        if not self.path.is_dir():
            raise FeatureError(f"{self.path}: CLIP feature folder not found")

    def _file(self, vid):
        return self.path / f'{vid}.npy'

    def __contains__(self, vid):
        return self._file(vid).is_file()

    def keys(self):
        return sorted(p.stem for p in self.path.glob('*.npy'))

    def get(self, vid):
        if vid not in self:
            raise FeatureError(f"{self.path}: video '{vid}': no features (missing {self._file(vid).name})")
        return _checked(np.load(self._file(vid)), vid, self._file(vid))

    @property
    def dim(self):
        keys = self.keys()
        if not keys:
            raise FeatureError(f"{self.path}: no .npy feature files")
        return np.load(self._file(keys[0]), mmap_mode='r').shape[1]


def open_features(path, sample_rate=2):
    """An ``.hdf5``/``.h5`` file → C3DFeatures; a folder → ClipFeatures."""
    path = Path(path)
    if path.suffix in ('.hdf5', '.h5'):
        return C3DFeatures(path, sample_rate)
    if path.is_dir():
        return ClipFeatures(path)
    raise FeatureError(f"{path}: neither an .hdf5/.h5 file nor a folder of .npy files")


def resample_frames(feat, max_frames=32):
    """ILCACM ``frame_padding`` (spec ilcacm §2.4): (T, D) → (max_frames, D) float32.

    T > max_frames: ``feat[linspace(0, T-1, max_frames).long()]`` (floor, no averaging);
    T <= max_frames: linear interpolation along time with ``align_corners=True`` (T=1 replicates).
    """
    feat = torch.as_tensor(feat, dtype=torch.float32)
    if feat.ndim != 2 or feat.shape[0] == 0:
        raise FeatureError(f"resample_frames needs a (T, D) array with T >= 1, got shape {tuple(feat.shape)}")
    if feat.shape[0] > max_frames:
        idx = torch.linspace(0, feat.shape[0] - 1, max_frames, dtype=torch.float32).long()
        return feat[idx]
    return F.interpolate(feat.t()[None], size=max_frames, mode='linear', align_corners=True)[0].t().contiguous()


def _listing(vids, n=10):
    return ', '.join(vids[:n]) + (f", ... ({len(vids) - n} more)" if len(vids) > n else '')


def select_videos(annotations, store, policy='error', source=''):
    """The annotated videos that have features, in annotation order.

    policy 'error': raise MissingFeaturesError listing the missing ones; 'skip': warn and leave them out.
    """
    if policy not in ('error', 'skip'):
        raise ValueError(f"missing-features policy must be 'error' or 'skip', got {policy!r}")
    vids = list(annotations)
    missing = [v for v in vids if v not in store]
    if not missing:
        return vids
    where = f"{source}: " if source else ''
    what = f"{len(missing)} of {len(vids)} annotated videos have no features in {store.path}: {_listing(missing)}"
    if policy == 'error':
        raise MissingFeaturesError(f"{where}{what}. Pass --missing-features skip to leave them out.")
    if len(missing) == len(vids):
        raise MissingFeaturesError(f"{where}none of the {len(vids)} annotated videos has features in {store.path}")
    warnings.warn(f"{where}skipping {what} (--missing-features skip)", stacklevel=2)
    missing = set(missing)
    return [v for v in vids if v not in missing]


def check_feature_width(features, expected_dim: int, checkpoint_path, feature_path) -> None:
    """Refuse features whose width differs from the model's (evaluation of a checkpoint on other features)."""
    if features.dim != expected_dim:
        raise FeatureError(f"{feature_path}: {features.dim}-d features, but the model of {checkpoint_path} expects "
                           f"{expected_dim}-d ones (features of another kind, or another PCA?)")


def hdf5_to_npy(src, dst, key='c3d_features'):
    """Write ``f[vid][key]`` of every video as ``dst/<vid>.npy`` (dtype kept, no subsampling)."""
    if not Path(src).is_file():
        raise FeatureError(f"{src}: hdf5 file not found")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    with h5py.File(src, 'r') as f:
        for vid in f.keys():
            if key not in f[vid]:
                raise FeatureError(f"{src}: video '{vid}': no dataset '{key}'")
            np.save(dst / f'{vid}.npy', f[vid][key][()])
    return dst


def npy_to_hdf5(src, dst, key='c3d_features'):
    """Write every ``src/<vid>.npy`` as ``f[vid][key]`` of a new hdf5 file (dtype kept)."""
    files = sorted(Path(src).glob('*.npy'))
    if not files:
        raise FeatureError(f"{src}: no .npy feature files")
    with h5py.File(dst, 'w') as f:
        for file in files:
            f.create_group(file.stem).create_dataset(key, data=np.load(file))
    return Path(dst)
