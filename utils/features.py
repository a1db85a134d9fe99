"""Video feature stores: C3D hdf5 (WSDEC, spec wsdec §2.2) and per-video CLIP .npy (ILCACM, spec ilcacm §2.3).

Both stores share one interface: ``vid in store``, ``store.keys()``, ``store.get(vid) -> (T, D) float32``,
``store.header(vid) -> (shape, dtype)`` (read without the data), ``store.source(vid)`` (the file holding the
video) and ``store.dim``. ``select_videos`` applies the missing-features policy and checks every selected
video's header at setup; ``get`` refuses non-finite values as the batches are read (a full scan at setup would
read every array once more); ``check_feature_width`` compares the store with a checkpoint; ``resample_frames``
is ILCACM's temporal resampling; ``hdf5_to_npy`` / ``npy_to_hdf5`` convert between the two layouts.
Every error names the file and the video (issue 16).
"""
import json
import os
import warnings
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from utils.checkpoint import atomic_path
from utils.distributed import is_main_process
from utils.messages import listing
from utils.paths import check_video_ids, video_path


class FeatureError(ValueError):
    """Unusable features; the message names the file and the video."""


class MissingFeaturesError(FeatureError):
    """Annotated videos without features under ``--missing-features error``."""


def _not_2d(shape):
    return None if len(shape) == 2 else f"expected a 2-D (T, D) feature array, got shape {tuple(shape)}"


def _header_problem(shape, dtype):
    """Why an array of this shape and dtype cannot be a (T, D) feature array, or None."""
    if len(shape) != 2:
        return _not_2d(shape)
    if shape[0] == 0:
        return "zero-length feature array (T=0)"
    if dtype.kind not in 'fiu':
        return f"expected numbers, got dtype {dtype}"
    return None


def _checked(array, vid, source):
    """(T, D) finite float32, or a FeatureError naming the video (rows counted after any subsampling)."""
    problem = _header_problem(array.shape, array.dtype)
    if problem:
        raise FeatureError(f"{source}: video '{vid}': {problem}")
    with np.errstate(over='ignore'):  # a float64 beyond float32's range becomes inf, reported below
        array = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise FeatureError(f"{source}: video '{vid}': {int((~finite).sum())} non-finite feature values "
                           f"(NaN/Inf), the first in row {row}")
    return array


def _width(store, vid):
    """D of a video's (T, D) array, from its header."""
    shape, _ = store.header(vid)
    if _not_2d(shape):
        raise FeatureError(f"{store.source(vid)}: video '{vid}': {_not_2d(shape)}")
    return shape[1]


class _Store:
    """What both stores share: the feature width D, read from the first video's header."""
    empty = 'no videos in this file'

    @property
    def dim(self):
        keys = self.keys()
        if not keys:
            raise FeatureError(f"{self.path}: {self.empty}")
        return _width(self, keys[0])


class C3DFeatures(_Store):
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
            try:
                self._file = h5py.File(self.path, 'r')
            except OSError as err:
                raise FeatureError(f"{self.path}: not a readable hdf5 file ({err})") from None
            self._pid = os.getpid()
        return self._file

    def __getstate__(self):  # picklable for spawned workers; each reopens the file
        return {**self.__dict__, '_file': None, '_pid': None}

    def __contains__(self, vid):
        return vid in self._h5()

    def keys(self):
        return list(self._h5().keys())

    def source(self, vid):
        return self.path

    def _dataset(self, vid):
        group = self._h5().get(vid)
        if group is None:
            raise FeatureError(f"{self.path}: video '{vid}': no features in this file")
        if not isinstance(group, h5py.Group) or self.key not in group:
            raise FeatureError(f"{self.path}: video '{vid}': no dataset '{self.key}'")
        return group[self.key]

    def header(self, vid):
        """(shape after ``[::sample_rate]``, dtype), without reading the data."""
        dataset = self._dataset(vid)
        shape = dataset.shape
        if shape:
            shape = (-(-shape[0] // self.sample_rate), *shape[1:])
        return shape, dataset.dtype

    def get(self, vid):
        dataset = self._dataset(vid)
        try:
            array = dataset[::self.sample_rate]
        except (OSError, TypeError, ValueError) as err:
            raise FeatureError(f"{self.path}: video '{vid}': dataset '{self.key}' cannot be read ({err})") from None
        return _checked(array, vid, self.path)


class ClipFeatures(_Store):
    """``<folder>/<vid>.npy`` arrays of shape (T, 768) (spec ilcacm §2.3)."""
    empty = 'no .npy feature files'

    def __init__(self, folder):
        self.path = Path(folder)
        if not self.path.is_dir():
            raise FeatureError(f"{self.path}: CLIP feature folder not found")
        self._sources = {}

    def source(self, vid):
        """``<folder>/<vid>.npy``; an id that is not a plain file name, or a file that resolves outside the
        folder, is refused (utils/paths.py). Checked once per video."""
        if vid not in self._sources:
            self._sources[vid] = video_path(self.path, vid, self.path)
        return self._sources[vid]

    def __contains__(self, vid):
        return self.source(vid).is_file()

    def keys(self):
        return sorted(p.stem for p in self.path.glob('*.npy'))

    def _load(self, vid, mmap_mode=None):
        file = self.source(vid)
        if not file.is_file():
            raise FeatureError(f"{self.path}: video '{vid}': no features (missing {file.name})")
        try:
            return np.load(file, mmap_mode=mmap_mode, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise FeatureError(f"{file}: video '{vid}': truncated or unreadable .npy file ({err})") from None

    def header(self, vid):
        """(shape, dtype) from the .npy header; a file shorter than its header says is refused."""
        array = self._load(vid, mmap_mode='r')
        return array.shape, array.dtype

    def get(self, vid):
        return _checked(self._load(vid), vid, self.source(vid))


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


def missing_videos(annotations, store):
    """The annotated videos without features in ``store``, in annotation order."""
    return [v for v in annotations if v not in store]


def check_headers(store, vids):
    """Setup check (issue 16): every video's array is readable, (T, D) with T >= 1, numeric, and as wide as
    most of them. Reads headers only; one FeatureError lists every bad video."""
    problems, widths = [], {}
    for vid in vids:
        try:
            shape, dtype = store.header(vid)
        except FeatureError as err:
            problems.append(str(err))
            continue
        problem = _header_problem(shape, dtype)
        if problem:
            problems.append(f"{store.source(vid)}: video '{vid}': {problem}")
        else:
            widths[vid] = shape[1]
    if widths:
        common = Counter(widths.values()).most_common(1)[0][0]
        problems += [f"{store.source(vid)}: video '{vid}': width {w}, the other videos have {common}"
                     for vid, w in widths.items() if w != common]
    if len(problems) == 1:
        raise FeatureError(problems[0])
    if problems:
        raise FeatureError(f"{len(problems)} of {len(vids)} videos have unusable features: "
                           f"{listing(problems, n=5, sep='; ')}")


def select_videos(annotations, store, policy='error', source=''):
    """The annotated videos that have features, in annotation order, their headers checked (check_headers).

    policy 'error': raise MissingFeaturesError listing the missing ones; 'skip': warn and leave them out
    (write_skipped_videos records them in the run folder).
    """
    if policy not in ('error', 'skip'):
        raise ValueError(f"missing-features policy must be 'error' or 'skip', got {policy!r}")
    vids = list(annotations)
    missing = missing_videos(annotations, store)
    if missing:
        where = f"{source}: " if source else ''
        what = f"{len(missing)} of {len(vids)} annotated videos have no features in {store.path}: {listing(missing)}"
        if policy == 'error':
            raise MissingFeaturesError(f"{where}{what}. Pass --missing-features skip to leave them out.")
        if len(missing) == len(vids):
            raise MissingFeaturesError(f"{where}none of the {len(vids)} annotated videos has features in {store.path}")
        warnings.warn(f"{where}skipping {what} (--missing-features skip)", stacklevel=2)
        missing = set(missing)
        vids = [v for v in vids if v not in missing]
    check_headers(store, vids)
    return vids


def write_skipped_videos(run_dir, source, annotations, store):
    """Add ``{source: [annotated ids without features]}`` to ``run_dir/skipped_videos.json`` (the videos that
    ``--missing-features skip`` left out); nothing is written when none is missing. Returns the file or None."""
    skipped = missing_videos(annotations, store)
    if not skipped or not is_main_process():
        return None
    path = Path(run_dir) / 'skipped_videos.json'
    record = json.loads(path.read_text()) if path.is_file() else {}
    record[str(source)] = skipped
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + '\n')
    print(f"{len(skipped)} skipped video ids of {source} -> {path}")
    return path


def check_feature_width(features, expected_dim, checkpoint):
    """Evaluation setup: the store's feature width must be the one the checkpoint's model was trained on."""
    if features.dim != expected_dim:
        raise FeatureError(f"{features.path}: {features.dim}-d features, but {checkpoint} was trained on "
                           f"{expected_dim}-d features (pass the features it was trained on)")


def hdf5_to_npy(src, dst, key='c3d_features'):
    """Write ``f[vid][key]`` of every video as ``dst/<vid>.npy`` (dtype kept, no subsampling). Every id and
    dataset is checked before the first file is written; no file lands outside ``dst``."""
    if not Path(src).is_file():
        raise FeatureError(f"{src}: hdf5 file not found")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    with h5py.File(src, 'r') as f:
        check_video_ids(f.keys(), src)
        for vid in f.keys():
            if not isinstance(f[vid], h5py.Group) or key not in f[vid]:
                raise FeatureError(f"{src}: video '{vid}': no dataset '{key}'")
        targets = {vid: video_path(dst, vid, src) for vid in f.keys()}
        for vid, target in targets.items():
            np.save(target, f[vid][key][()])
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
