"""Feature extraction from video files into the layout every script reads (data/README.md):
`DATA_ROOT/features/clip/<vid>.npy` (ILCACM, float32 (T, 768)) and `DATA_ROOT/features/c3d.hdf5`
(WSDEC, `f[vid]['c3d_features']` float32 (n_windows, 500)).

    extractor = build_extractor('clip', clip_model='data/clip-vit-large-patch14', device='auto')
    report = extract(list_videos(['videos/']), extractor, feature_store('clip', 'DATA_ROOT'))

* Inputs are video files and folders (every non-hidden file in a folder, not recursive; a file that is not a
  video fails like a corrupt one). Video ids are the file names without their extension (`v_QOlSCBRmfWY.mp4` →
  `v_QOlSCBRmfWY`); an id must be a safe file name (no path separator, no `..`, no leading `/`) and unique.
* Decoding runs in worker threads (`workers`, default 2), a few videos ahead of the model, each video's model
  inputs streaming through a bounded queue, so the model is not idle and long videos need bounded memory.
  Batches of `batch_size` inputs of one video run on the device (GPU by default when present), in float32
  unless `dtype` is bf16 or fp16; features are returned in float32.
* Resumable: a video whose output exists is skipped. `.npy` files are written atomically (temporary file +
  rename); C3D features go to `features/c3d.hdf5.parts/<vid>.npy` first and are merged into `c3d.hdf5` at the
  end of the run (new file + rename), so an interrupted run loses nothing it finished.
* A video that cannot be decoded (`VideoError`: unreadable, corrupt, no frames) is recorded and the batch goes
  on; `ExtractionReport.failed` lists them and `summary()` prints them.
"""
from __future__ import annotations

import os
import queue
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np
import torch
from tqdm import tqdm

from models.extractors.base import DTYPES, Extractor
from models.extractors.c3d import C3D, POOL5, C3DExtractor, load_mean, load_pca
from models.extractors.clip import ClipExtractor, CLIPImageEncoder
from utils.checkpoint import atomic_path
from utils.run import REPO_ROOT, data_paths, resolve_device
from utils.video import VideoError

FEATURES = ('clip', 'c3d')
DEFAULT_WEIGHTS = {                          # relative to the repository root, resolved at run time
    'clip_model': 'data/clip-vit-large-patch14',
    'c3d_model': 'data/c3d/c3d.pickle',
    'c3d_pca': 'data/c3d/PCA_activitynet_v1-3.hdf5',
    'c3d_mean': 'data/c3d/c3d_mean.npy',
}
WHAT_GOES_WHERE = {
    'clip_model': "Hugging Face's openai/clip-vit-large-patch14 folder (config.json + model.safetensors or "
                  "pytorch_model.bin)",
    'c3d_model': "the Sports-1M C3D weights of the PyTorch port DavideA/c3d-pytorch (c3d.pickle)",
    'c3d_pca': "the ActivityNet challenge's PCA file PCA_activitynet_v1-3.hdf5",
    'c3d_mean': "the Sports-1M mean cube as .npy (c3d_mean.npy, 1x3x16x128x171; or use 'channel')",
}
REQUIRED_WEIGHTS = {'clip': ('clip_model',), 'c3d': ('c3d_model', 'c3d_pca', 'c3d_mean')}
DEFAULT_BATCH = {'clip': 128, 'c3d': 50}     # the ILCACM script's --batch_size; C3D's example mini_batch_size
QUEUE_BATCHES = 4                            # model batches a decoding worker may run ahead per video


class VideoIdError(ValueError):
    """A video id that is not a safe file name, or two inputs with the same id."""


class MissingWeightsError(FileNotFoundError):
    """A weight file or folder is absent; the message says which file to put where."""


# ---------------------------------------------------------------------------------------------------- inputs
def check_video_id(vid: str, source='') -> str:
    """`vid` if it is a safe file name, else a VideoIdError."""
    separators = {'/', '\\', os.sep} | ({os.altsep} if os.altsep else set())
    if not vid or vid.startswith('/') or '..' in vid or any(s in vid for s in separators):
        raise VideoIdError(f"{source or vid}: video id {vid!r} is not a safe file name "
                           f"(no path separator, no '..', no leading '/')")
    return vid


def video_id(path) -> str:
    """The file name without its extension, checked."""
    return check_video_id(Path(path).stem, str(path))


def list_videos(inputs: Iterable) -> list[Path]:
    """Video files of `inputs` (folders: every regular non-hidden file in it, sorted; files: themselves), with
    unique safe ids."""
    paths = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.is_file() and not p.name.startswith('.'))
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such video file or folder")
    seen = {}
    for path in paths:
        vid = video_id(path)
        if vid in seen:
            raise VideoIdError(f"{path}: video id {vid!r} is also the id of {seen[vid]}")
        seen[vid] = path
    return paths


def weight_path(name: str, value=None) -> Path | str:
    """The path given for weight `name`, else its default under the repository; missing → MissingWeightsError."""
    if value == 'channel' and name == 'c3d_mean':
        return value
    path = Path(value) if value is not None else REPO_ROOT / DEFAULT_WEIGHTS[name]
    if not path.exists():
        flag = '--' + name.replace('_', '-')
        shown = value if value is not None else DEFAULT_WEIGHTS[name]
        raise MissingWeightsError(f"{shown} not found: put {WHAT_GOES_WHERE[name]} there, or pass {flag}")
    return path


def build_extractor(feature: str, device='auto', dtype='fp32', clip_model=None, c3d_model=None, c3d_pca=None,
                    c3d_mean=None, c3d_pool5='caffe') -> Extractor:
    """The CLIP or C3D extractor with its weights loaded (local files only) on `device` in `dtype`."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    device, torch_dtype = resolve_device(device), DTYPES[dtype]
    if feature == 'clip':
        return ClipExtractor(CLIPImageEncoder.from_pretrained(weight_path('clip_model', clip_model)),
                             device, torch_dtype)
    if feature == 'c3d':
        given = {'c3d_model': c3d_model, 'c3d_pca': c3d_pca, 'c3d_mean': c3d_mean}
        paths = {name: weight_path(name, given[name]) for name in REQUIRED_WEIGHTS['c3d']}
        model = C3D.from_port(paths['c3d_model'], c3d_pool5)
        return C3DExtractor(model, load_pca(paths['c3d_pca'], fc_dim=model.fc_dim), load_mean(paths['c3d_mean']),
                            device, torch_dtype)
    raise ValueError(f"feature must be one of {FEATURES}, got {feature!r}")


EXTRACTOR_OPTIONS = ('device', 'dtype', 'clip_model', 'c3d_model', 'c3d_pca', 'c3d_mean', 'c3d_pool5')


def add_extractor_args(parser) -> None:
    """`build_extractor`'s options as flags (scripts/extract_features.py, scripts/caption_video.py): the weight
    files (defaults under the repository's data/), `--c3d-pool5`, `--device`, `--dtype`."""
    for name in REQUIRED_WEIGHTS['clip'] + REQUIRED_WEIGHTS['c3d']:
        parser.add_argument('--' + name.replace('_', '-'), default=None,
                            help=f'{WHAT_GOES_WHERE[name]} (default %(default)s: {DEFAULT_WEIGHTS[name]} under '
                                 'the repository)')
    parser.add_argument('--c3d-pool5', choices=POOL5, default='caffe',
                        help="C3D pool5: caffe's ceil-mode pooling or the PyTorch port's padding")
    parser.add_argument('--device', default='auto', help='auto (GPU when present), cpu, cuda, cuda:N')
    parser.add_argument('--dtype', choices=tuple(DTYPES), default='fp32',
                        help='precision of the feature extractor (features are float32 either way)')


def extractor_options(args) -> dict:
    """`build_extractor`'s keyword arguments from the flags of `add_extractor_args`."""
    return {name: getattr(args, name) for name in EXTRACTOR_OPTIONS}


# ---------------------------------------------------------------------------------------------------- stores
class NpyStore:
    """`folder/<vid>.npy`, written atomically."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def done(self, vid: str) -> bool:
        return (self.folder / f'{vid}.npy').is_file()

    def write(self, vid: str, features: np.ndarray) -> None:
        with atomic_path(self.folder / f'{vid}.npy') as tmp, open(tmp, 'wb') as f:
            np.save(f, features)

    def close(self) -> None:
        pass


class Hdf5Store:
    """`f[vid][key]` in one hdf5 file; each video lands in `<file>.parts/<vid>.npy` first, `close()` merges the
    parts into a new file that replaces the old one, then removes them."""

    def __init__(self, path, key='c3d_features'):
        self.path, self.key = Path(path), key
        self.parts = NpyStore(self.path.with_name(self.path.name + '.parts'))
        self._existing = self._keys()

    def _keys(self) -> set[str]:
        if not self.path.is_file():
            return set()
        with h5py.File(self.path, 'r') as f:
            return {vid for vid in f if self.key in f[vid]}

    def done(self, vid: str) -> bool:
        return vid in self._existing or self.parts.done(vid)

    def write(self, vid: str, features: np.ndarray) -> None:
        self.parts.write(vid, features)

    def close(self) -> None:
        part_files = sorted(self.parts.folder.glob('*.npy')) if self.parts.folder.is_dir() else []
        if not part_files:
            return
        with atomic_path(self.path) as tmp:
            if self.path.is_file():
                shutil.copyfile(self.path, tmp)
            with h5py.File(tmp, 'a') as f:
                for part in part_files:
                    if part.stem in f:
                        del f[part.stem]
                    f.create_group(part.stem).create_dataset(self.key, data=np.load(part))
        shutil.rmtree(self.parts.folder)
        self._existing = self._keys()


def feature_store(feature: str, data_root):
    """Where `feature` goes under `data_root` (utils/run.py `data_paths`)."""
    paths = data_paths(str(data_root))
    return NpyStore(paths.clip_dir) if feature == 'clip' else Hdf5Store(paths.c3d)


# ---------------------------------------------------------------------------------------------------- running
@dataclass
class ExtractionReport:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)      # id -> one-line reason

    def summary(self, feature: str = '') -> str:
        head = (f"{feature + ': ' if feature else ''}{len(self.written)} extracted, {len(self.skipped)} already "
                f"done, {len(self.failed)} failed")
        return '\n'.join([head] + [f"  failed {vid}: {reason}" for vid, reason in self.failed.items()])


_END = object()


def _put(out: queue.Queue, item, stop: threading.Event) -> bool:
    """Put `item` unless `stop` is set first (the consumer has gone); True if it was put."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _produce(extractor: Extractor, path: Path, out: queue.Queue, stop: threading.Event) -> None:
    """Decode `path` into `out`: its units, then _END; or the exception that stopped it."""
    try:
        for unit in extractor.units(path):
            if not _put(out, unit, stop):
                return
        _put(out, _END, stop)
    except BaseException as error:  # VideoError: recorded by the consumer; anything else: re-raised there
        _put(out, error, stop)


def _from_queue(source: queue.Queue) -> Iterator[np.ndarray]:
    while (item := source.get()) is not _END:
        if isinstance(item, BaseException):
            raise item
        yield item


def _features(extractor: Extractor, units: Iterable[np.ndarray], batch_size: int, path) -> np.ndarray:
    """Features (T, dim) float32 of one video's units, `batch_size` at a time."""
    units, chunks = iter(units), []
    while batch := list(islice(units, batch_size)):
        chunks.append(extractor(np.stack(batch)))
    if not chunks:
        raise VideoError(f"{path}: no frames to extract features from")
    return np.concatenate(chunks).astype(np.float32)


def extract(videos: list[Path], extractor: Extractor, store, batch_size: int | None = None, workers: int = 2,
            progress: bool = True) -> ExtractionReport:
    """Extract every video not yet in `store`; failures are recorded, not raised."""
    batch_size = batch_size or DEFAULT_BATCH[extractor.name]
    report = ExtractionReport()
    todo = []
    for path in videos:
        if store.done(video_id(path)):
            report.skipped.append(video_id(path))
        else:
            todo.append(path)
    stop = threading.Event()
    queues = [queue.Queue(maxsize=QUEUE_BATCHES * batch_size) for _ in todo]
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix='decode')
    started = 0

    def start_next():
        nonlocal started
        if started < len(todo):
            pool.submit(_produce, extractor, todo[started], queues[started], stop)
            started += 1

    try:
        for _ in range(max(1, workers)):
            start_next()
        for index, path in enumerate(tqdm(todo, desc=f'{extractor.name} features', unit='video',
                                          disable=not progress)):
            vid = video_id(path)
            try:
                store.write(vid, _features(extractor, _from_queue(queues[index]), batch_size, path))
                report.written.append(vid)
            except VideoError as error:
                report.failed[vid] = str(error)
            queues[index] = None
            start_next()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        store.close()
    return report


def extract_video(path, extractor: Extractor, batch_size: int | None = None) -> np.ndarray:
    """Features (T, dim) of one video, in memory (decoding in this thread); a VideoError if it cannot be read."""
    return _features(extractor, extractor.units(Path(path)), batch_size or DEFAULT_BATCH[extractor.name], path)


def extract_features(inputs, data_root, features=('clip',), batch_size=None, workers=2, progress=True,
                     **options) -> dict[str, ExtractionReport]:
    """`scripts/extract_features.py`: every feature type of `features` for the videos of `inputs` (folders or
    files) into `data_root`; `options` are `build_extractor`'s (device, dtype, weight paths)."""
    videos, features = list_videos(inputs), tuple(dict.fromkeys(features))
    for feature in features:                  # every weight file checked before any extraction starts
        for name in REQUIRED_WEIGHTS.get(feature, ()):
            weight_path(name, options.get(name))
    reports = {}
    for feature in features:
        extractor = build_extractor(feature, **options)
        reports[feature] = extract(videos, extractor, feature_store(feature, data_root), batch_size, workers,
                                   progress)
        del extractor
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return reports
