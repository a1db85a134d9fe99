"""Deterministic synthetic dense-video-captioning data in the real ActivityNet Captions formats.

DESIGN.md principle 5: when the real data is absent, every script runs end to end on this data.
A data root holds (contract, "Layout of a data root"):

    DIR/captions/{train,val_1,val_2}.json   {vid: {"duration", "timestamps", "sentences"}}  (spec wsdec §2.1)
    DIR/features/c3d.hdf5                   f[vid]['c3d_features'] float32 (T, 500)          (spec wsdec §2.2)
    DIR/features/clip/<vid>.npy             float32 (T, 768), 1 row per second              (spec ilcacm §2.3)
    DIR/signal_model.json                   what the features carry (below)

Captions come from a small grammar (one subject, place and activity per video; 2-6 events), or from real
annotation files (`--annotations`: ActivityNet Captions or YouCook2, with their real event times, overlaps and
captions). The generated val_2 is a second annotator: same videos as val_1, perturbed boundaries, reworded captions.

Signal model (`SignalModel`; the flags of scripts/make_synthetic_dataset.py; recorded in `DIR/signal_model.json`).
Features are caption-conditioned. Each content word (the caption's words without function words, 3rd-person verbs
folded into their -ing form) has a fixed random unit vector in a 128-d latent space; an event's signature is the
normalised sum of its caption's word vectors plus a per-event random perturbation of norm `jitter` (0.3),
renormalised, projected into the C3D (500-d) / CLIP (768-d) space by a fixed orthonormal map. A feature row is

    row = signal_to_noise * (sum of the signatures of the events covering it, divided by sqrt(their number))
          + scene + temporally smoothed unit Gaussian noise

where `scene` is one random vector per video (std `scene` = 0.5 per dimension: a constant offset that carries no
information) and the noise has std 1 per dimension, correlated over neighbouring rows (kernel 1-2-1). Along an
event's signature a row inside the event reads ~signal_to_noise (2 in the embedded datasets), one outside ~0; a
word's share of it is signal_to_noise / sqrt(number of content words). One row is ambiguous, an event's worth of
rows is not. Overlapping events share a row's energy (the 1/sqrt rule), so an activity-wide event over its steps
leaves each step's words readable.

Time grid. C3D rows: round(c3d_rate * duration) rows (c3d_rate 2 by default, so the loaders' `[::2]` subsampling,
spec wsdec §2.2, leaves ~1 step per second; the real ActivityNet C3D has ~3.75 rows/s, ~1.9/s after `[::2]`: pass
`--c3d-rate 3.75`); CLIP rows: round(clip_rate * duration), 1 per second as ILCACM's extractor. Row r covers
[r, r+1) * duration / T and carries the events that contain its centre; an event too short to hold a row centre
gets the row of its own centre.

Determinism: every random draw comes from a generator seeded by (seed, stream, id), so a video's caption
and features depend only on the seed and its index / id (not on the other videos), and the same seed gives
byte-identical JSON and identical arrays (with the same numpy version).
"""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from utils.annotations import load_annotations
from utils.paths import video_path

C3D_DIM = 500
CLIP_DIM = 768
LATENT_DIM = 128
C3D_ROWS_PER_SECOND = 2.0   # before the loaders' [::2] (spec wsdec §2.2) -> ~1 step per second after it
CLIP_ROWS_PER_SECOND = 1.0  # spec ilcacm §2.3: 1 fps
SPLITS = ('train', 'val_1', 'val_2')

# random streams: seeds are (seed, stream, id)
_STREAM_VIDEO, _STREAM_FEATURES, _STREAM_WORD, _STREAM_PROJECTION = range(4)


class SyntheticDataError(ValueError):
    """Bad arguments or input for the synthetic data generator."""


@dataclass(frozen=True)
class SignalModel:
    """What a feature row carries (module docstring, "Signal model"); the defaults are the embedded datasets'."""
    signal_to_noise: float = 2.0   # norm of an event's signal along its caption signature, per unit noise std
    scene: float = 0.5             # std per dimension of the per-video scene vector (a constant offset)
    c3d_rate: float = C3D_ROWS_PER_SECOND    # C3D rows per second before the loaders' [::2] (real C3D: 3.75)
    clip_rate: float = CLIP_ROWS_PER_SECOND  # CLIP rows per second (ILCACM's extractor: 1)
    jitter: float = 0.3            # norm of an event's own random perturbation of its signature, before renorm

    def __post_init__(self):
        for name in ('signal_to_noise', 'scene', 'jitter'):
            if not (getattr(self, name) >= 0):
                raise SyntheticDataError(f"signal model: {name} must be >= 0, got {getattr(self, name)}")
        for name in ('c3d_rate', 'clip_rate'):
            if not (getattr(self, name) > 0):
                raise SyntheticDataError(f"signal model: {name} must be > 0, got {getattr(self, name)}")


# --------------------------------------------------------------------------------------------- grammar
# activity: (general verb (-ing, 3rd person), places (preposition phrase), [((-ing, 3rd person), objects)])
ACTIVITIES = {
    'cooking': (('cooking', 'cooks'), ('in the kitchen', 'in a restaurant'), [
        (('slicing', 'slices'), ('a tomato', 'an onion', 'a cucumber', 'some bread')),
        (('stirring', 'stirs'), ('a pot', 'the soup', 'the sauce')),
        (('peeling', 'peels'), ('a potato', 'an apple', 'a carrot')),
        (('mixing', 'mixes'), ('the batter', 'a salad', 'some eggs')),
        (('frying', 'fries'), ('an egg', 'some bacon'))]),
    'music': (('performing', 'performs'), ('in the living room', 'on a stage', 'in a studio'), [
        (('playing', 'plays'), ('a guitar', 'the piano', 'the drums', 'a violin')),
        (('tuning', 'tunes'), ('a guitar', 'a violin')),
        (('holding', 'holds'), ('a microphone', 'a guitar')),
        (('singing', 'sings'), ('a song', 'a ballad'))]),
    'exercise': (('exercising', 'exercises'), ('in a gym', 'in the park', 'on a field'), [
        (('lifting', 'lifts'), ('a barbell', 'some weights', 'a dumbbell')),
        (('kicking', 'kicks'), ('a ball',)),
        (('throwing', 'throws'), ('a ball', 'a frisbee', 'a javelin')),
        (('stretching', 'stretches'), ('the legs', 'the arms')),
        (('pushing', 'pushes'), ('a sled', 'a tire'))]),
    'cleaning': (('cleaning', 'cleans'), ('in the bathroom', 'in a garage', 'in the yard'), [
        (('scrubbing', 'scrubs'), ('the floor', 'the sink', 'the tiles')),
        (('washing', 'washes'), ('a car', 'the windows', 'the dishes')),
        (('mopping', 'mops'), ('the floor',)),
        (('vacuuming', 'vacuums'), ('the carpet', 'a rug')),
        (('wiping', 'wipes'), ('the mirror', 'a table'))]),
    'grooming': (('getting ready', 'gets ready'), ('in the bathroom', 'in a salon'), [
        (('brushing', 'brushes'), ('the hair', 'the teeth')),
        (('combing', 'combs'), ('the hair', 'a beard')),
        (('shaving', 'shaves'), ('the face', 'a beard')),
        (('cutting', 'cuts'), ('the hair', 'the nails')),
        (('drying', 'dries'), ('the hair',))]),
    'boating': (('paddling', 'paddles'), ('on a river', 'on the lake', 'at the beach'), [
        (('rowing', 'rows'), ('a canoe', 'a kayak', 'a boat')),
        (('riding', 'rides'), ('a surfboard', 'a wave', 'a jet ski')),
        (('carrying', 'carries'), ('a paddle', 'a kayak')),
        (('pulling', 'pulls'), ('a rope', 'a boat'))]),
    'gardening': (('gardening', 'gardens'), ('in the garden', 'in a backyard'), [
        (('planting', 'plants'), ('a tree', 'some flowers', 'some seeds')),
        (('watering', 'waters'), ('the roses', 'the flowers', 'the lawn')),
        (('digging', 'digs'), ('a hole',)),
        (('mowing', 'mows'), ('the lawn', 'the grass')),
        (('trimming', 'trims'), ('a hedge', 'the bushes'))]),
    'woodwork': (('working', 'works'), ('in a workshop', 'in a garage'), [
        (('sanding', 'sands'), ('a board', 'a table')),
        (('painting', 'paints'), ('a fence', 'a wall', 'a chair')),
        (('drilling', 'drills'), ('a hole', 'a board')),
        (('cutting', 'cuts'), ('a board', 'a pipe')),
        (('hammering', 'hammers'), ('a nail',))]),
    'snow': (('skiing', 'skis'), ('in the snow', 'on a mountain', 'on a slope'), [
        (('riding', 'rides'), ('a snowboard', 'a sled')),
        (('building', 'builds'), ('a snowman', 'a snow fort')),
        (('throwing', 'throws'), ('a snowball',)),
        (('shoveling', 'shovels'), ('the snow', 'the driveway'))]),
}
SUBJECTS = (('man', 'he'), ('woman', 'she'), ('boy', 'he'), ('girl', 'she'),
            ('young man', 'he'), ('young woman', 'she'), ('old man', 'he'), ('old woman', 'she'))
# the second annotator's wording (val_2): word -> synonym
SYNONYMS = {'man': 'guy', 'woman': 'lady', 'boy': 'kid', 'girl': 'child', 'slicing': 'cutting', 'slices': 'cuts',
            'lifting': 'raising', 'lifts': 'raises', 'rowing': 'paddling', 'rows': 'paddles', 'mowing': 'cutting',
            'mows': 'cuts', 'scrubbing': 'cleaning', 'scrubs': 'cleans', 'vacuuming': 'cleaning', 'vacuums': 'cleans',
            'dumbbell': 'weight', 'barbell': 'bar', 'carpet': 'rug', 'drums': 'drum set', 'kitchen': 'kitchen area',
            'gym': 'fitness center', 'yard': 'lawn', 'stage': 'platform', 'pot': 'pan', 'sled': 'sleigh'}
# function words that carry no signal (they are in nearly every caption, real ones included)
STOPWORDS = frozenset(
    'a an the is are was were be been being in on at of to into onto with and or then he she they his her their '
    'it its this that these those there who while as by for from up down out over again also can seen some next '
    'continues begins starts another other after before finally'.split())


def _lemmas() -> dict[str, str]:
    """3rd person -> -ing form of every grammar verb, so "slices" and "slicing" share a word vector."""
    verbs = [general for general, _, _ in ACTIVITIES.values()]
    verbs += [verb for _, _, actions in ACTIVITIES.values() for verb, _ in actions]
    return {third: ing for ing_phrase, third_phrase in verbs
            for ing, third in zip(ing_phrase.split(), third_phrase.split()) if ing != third}


LEMMAS = _lemmas()


@dataclass(frozen=True)
class EventSlots:
    """What an event shows, before it is worded by an annotator."""
    verb: tuple[str, str]        # (-ing, 3rd person)
    obj: str | None              # "a tomato"; None for the activity-wide event ("A man is cooking ...")


def _definite(obj: str) -> str:
    return 'the ' + obj.split(' ', 1)[1]


def _capitalize(s: str) -> str:
    return s[0].upper() + s[1:]


def _word_caption(annotator: int, first: bool, slots: EventSlots, subject, place, mentioned: set,
                  rng: np.random.Generator) -> str:
    """One sentence for one event, in the style of annotator 0 (train / val_1) or 1 (val_2)."""
    noun, pronoun = subject
    ing, third = slots.verb
    obj = ''
    if slots.obj is not None:
        obj = ' ' + (_definite(slots.obj) if slots.obj in mentioned else slots.obj)
        mentioned.add(slots.obj)
    if annotator == 0:
        options = ([f'a {noun} is {ing}{obj} {place}'] if first else
                   [f'the {noun} {third}{obj}', f'{pronoun} then {third}{obj}',
                    f'the {noun} continues {ing}{obj} {place}', f'{pronoun} is {ing}{obj} {place}'])
        return _capitalize(options[rng.integers(len(options))]) + '.'
    options = ([f'{place}, a {noun} {third}{obj}', f'a {noun} can be seen {ing}{obj} {place}'] if first else
               [f'next, {pronoun} {third}{obj}', f'the {noun} is seen {ing}{obj}', f'{place}, the {noun} {third}{obj}'])
    words = options[rng.integers(len(options))].split(' ')
    reworded = ' '.join(SYNONYMS[w] if w in SYNONYMS and rng.random() < 0.7 else w for w in words)
    return _capitalize(reworded) + '.'


# ----------------------------------------------------------------------------------- word vectors (world)
def content_words(sentence: str) -> list[str]:
    """Lower-cased alphabetic words of a caption without function words, 3rd person verbs as -ing forms."""
    words = re.findall(r"[a-z]+", sentence.lower())
    return [LEMMAS.get(w, w) for w in words if w not in STOPWORDS]


def _stable_id(text: str) -> int:
    return zlib.crc32(text.encode('utf-8'))


class SyntheticWorld:
    """The fixed random pieces shared by all videos of one seed: word vectors and feature projections."""

    def __init__(self, seed: int = 0, latent_dim: int = LATENT_DIM):
        self.seed = seed
        self.latent_dim = latent_dim
        self._words: dict[str, np.ndarray] = {}
        self.projections = {kind: self._orthonormal(dim, i) for i, (kind, dim) in
                            enumerate((('c3d', C3D_DIM), ('clip', CLIP_DIM)))}

    def _orthonormal(self, dim: int, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _STREAM_PROJECTION, index])
        q, _ = np.linalg.qr(rng.standard_normal((dim, self.latent_dim)))
        return q.astype(np.float32)          # (dim, latent): columns orthonormal, so norms are preserved

    def word_vector(self, word: str) -> np.ndarray:
        if word not in self._words:
            v = np.random.default_rng([self.seed, _STREAM_WORD, _stable_id(word)]).standard_normal(self.latent_dim)
            self._words[word] = (v / np.linalg.norm(v)).astype(np.float32)
        return self._words[word]

    def caption_latent(self, sentence: str) -> np.ndarray:
        """Unit latent signature of a caption: normalised sum of its content words' vectors (zero if none)."""
        words = content_words(sentence)
        if not words:
            return np.zeros(self.latent_dim, np.float32)
        v = np.sum([self.word_vector(w) for w in words], axis=0)
        return v / np.linalg.norm(v)

    def caption_direction(self, sentence: str, kind: str) -> np.ndarray:
        """The caption's signature in a feature space ('c3d' (500,) or 'clip' (768,)), unit norm."""
        return self.projections[kind] @ self.caption_latent(sentence)


# --------------------------------------------------------------------------------------------- captions
@dataclass(frozen=True)
class SizeSpec:
    n_train: int
    n_val: int
    durations: str            # 'short': uniform 20-60 s; 'anet': ActivityNet-like (mean ~117 s)


SIZES = {'tiny': SizeSpec(24, 8, 'short'), 'small': SizeSpec(400, 100, 'short'), 'anet': SizeSpec(10009, 4917, 'anet')}
# sentences per video in ActivityNet train (spec ilcacm §2.1), restricted to 2..6
EVENT_COUNTS = np.arange(2, 7)
EVENT_COUNT_CDF = np.cumsum([1936, 4125, 1891, 782, 510]) / 9244


def _sample_duration(rng: np.random.Generator, kind: str) -> float:
    if kind == 'short':
        return round(float(rng.uniform(20, 60)), 2)
    # ActivityNet (spec ilcacm §2.1): mean 117 s, ~11 % under 32 s, median ~114 s, 95th pct ~224 s
    if rng.random() < 0.11:
        return round(float(rng.uniform(3, 32)), 2)
    return round(float(np.clip(rng.gamma(5.0, 26.0), 32, 600)), 2)


def _relative_spans(rng: np.random.Generator, n: int) -> tuple[np.ndarray, int | None]:
    """n spans in [0, 1] sorted by start: a chain of consecutive, slightly overlapping steps, and for some
    videos one long activity-wide span over them. Returns (spans (n, 2), index of the long span or None)."""
    wide = n >= 3 and rng.random() < 0.3
    k = n - wide
    a = 0.0 if rng.random() < 0.5 else rng.uniform(0, 0.15)
    b = 1.0 if rng.random() < 0.5 else rng.uniform(0.85, 1.0)
    cuts = a + (b - a) * np.concatenate([[0.0], np.cumsum(rng.dirichlet(np.full(k, 2.0)))])
    seg = np.diff(cuts)
    spans = np.stack([cuts[:-1] - seg * rng.uniform(-0.05, 0.15, k), cuts[1:] + seg * rng.uniform(-0.05, 0.15, k)], 1)
    if wide:
        length = rng.uniform(0.6, 1.0)
        start = rng.uniform(0, 1 - length)
        spans = np.vstack([spans, [start, start + length]])
    order = np.argsort(spans[:, 0], kind='stable')
    wide_index = int(np.flatnonzero(order == k)[0]) if wide else None
    return np.clip(spans[order], 0.0, 1.0), wide_index


def _seconds(spans: np.ndarray, duration: float) -> list[list[float]]:
    """Relative spans -> [[s, e], ...] in seconds, 2 decimals, inside the video, at least min_len long."""
    min_len = min(max(2.0, 0.02 * duration), duration)
    out = []
    for s, e in spans * duration:
        if e - s < min_len:
            s, e = (s, s + min_len) if s + min_len <= duration else (duration - min_len, duration)
        out.append([round(float(s), 2), round(float(e), 2)])
    return out


def _perturb(timestamps: list[list[float]], duration: float, rng: np.random.Generator) -> list[list[float]]:
    """A second annotator's boundaries: each moved by N(0, 0.15 * length + 0.5 s)."""
    spans = np.array(timestamps)
    sigma = 0.15 * (spans[:, 1] - spans[:, 0])[:, None] + 0.5
    moved = np.sort(np.clip(spans + rng.normal(0, 1, spans.shape) * sigma, 0, duration), axis=1)
    return _seconds(moved / duration, duration)


def _synthetic_video(rng: np.random.Generator, durations: str, second_annotator: bool) -> tuple[dict, dict | None]:
    """One video's annotation (annotator 0) and, if asked, a second annotator's (val_2)."""
    duration = _sample_duration(rng, durations)
    n = int(EVENT_COUNTS[np.searchsorted(EVENT_COUNT_CDF, rng.random(), side='right')])
    general, places, actions = ACTIVITIES[list(ACTIVITIES)[rng.integers(len(ACTIVITIES))]]
    subject = SUBJECTS[rng.integers(len(SUBJECTS))]
    place = places[rng.integers(len(places))]
    spans, wide = _relative_spans(rng, n)
    pairs = [(verb, obj) for verb, objs in actions for obj in objs]
    chosen = iter(rng.permutation(len(pairs)))
    slots = [EventSlots(general, None) if i == wide else EventSlots(*pairs[next(chosen)]) for i in range(n)]
    timestamps = _seconds(spans, duration)
    annotations = []
    for annotator in range(1 + second_annotator):
        mentioned: set = set()
        sentences = [_word_caption(annotator, i == 0, s, subject, place, mentioned, rng) for i, s in enumerate(slots)]
        annotations.append({'duration': duration, 'timestamps': timestamps, 'sentences': sentences})
    if not second_annotator:
        return annotations[0], None
    second = annotations[1]
    second['timestamps'] = _perturb(timestamps, duration, rng)
    if n >= 4 and rng.random() < 0.15:  # the second annotator sometimes skips a step
        drop = int(rng.integers(n))
        second['timestamps'].pop(drop)
        second['sentences'].pop(drop)
    return annotations[0], second


def generate_annotations(size: str = 'tiny', seed: int = 0) -> dict[str, dict]:
    """{'train': {...}, 'val_1': {...}, 'val_2': {...}} in the ActivityNet Captions format (spec wsdec §2.1).
    Ids are v_syn000000...; val_1 and val_2 hold the same videos (val_2 = second annotator)."""
    if size not in SIZES:
        raise SyntheticDataError(f"unknown synthetic size {size!r}; choose one of {sorted(SIZES)}")
    spec = SIZES[size]
    splits = {name: {} for name in SPLITS}
    for index in range(spec.n_train + spec.n_val):
        vid = f'v_syn{index:06d}'
        is_val = index >= spec.n_train
        first, second = _synthetic_video(np.random.default_rng([seed, _STREAM_VIDEO, index]), spec.durations, is_val)
        splits['val_1' if is_val else 'train'][vid] = first
        if is_val:
            splits['val_2'][vid] = second
    return splits


# --------------------------------------------------------------------------------------------- features
def _event_rows(timestamps, duration: float, n_rows: int) -> np.ndarray:
    """(n_rows, n_events) bool: row r covers [r, r+1) * duration / n_rows and belongs to the events holding its
    centre; an event too short to hold a centre gets the row of its own centre."""
    centres = (np.arange(n_rows) + 0.5) * duration / n_rows
    spans = np.clip(np.asarray(timestamps, dtype=np.float64).reshape(-1, 2), 0, duration)
    inside = (centres[:, None] >= spans[:, 0]) & (centres[:, None] < spans[:, 1])
    for j in np.flatnonzero(~inside.any(0)):
        inside[min(int(spans[j].mean() / duration * n_rows), n_rows - 1), j] = True
    return inside


def _smoothed_noise(rng: np.random.Generator, n_rows: int, dim: int) -> np.ndarray:
    """Unit-variance Gaussian noise correlated over neighbouring rows (kernel 1-2-1), like real features."""
    e = rng.standard_normal((n_rows + 2, dim), dtype=np.float32)
    return (0.25 * e[:-2] + 0.5 * e[1:-1] + 0.25 * e[2:]) / np.float32(np.sqrt(0.375))


def video_features(world: SyntheticWorld, vid: str, annotation: dict, signal: SignalModel = SignalModel()
                   ) -> dict[str, np.ndarray]:
    """{'c3d': (round(c3d_rate * dur), 500), 'clip': (round(clip_rate * dur), 768)} float32 features of one video,
    from its captions (module docstring, "Signal model")."""
    rng = np.random.default_rng([world.seed, _STREAM_FEATURES, _stable_id(vid)])
    duration = float(annotation['duration'])
    sentences = annotation['sentences']
    jitter = rng.standard_normal((len(sentences), world.latent_dim)) * (signal.jitter / np.sqrt(world.latent_dim))
    latents = np.stack([world.caption_latent(s) for s in sentences]) + jitter if sentences else \
        np.zeros((0, world.latent_dim))
    latents /= np.maximum(np.linalg.norm(latents, axis=1, keepdims=True), 1e-8)
    out = {}
    for kind, rate in (('c3d', signal.c3d_rate), ('clip', signal.clip_rate)):
        projection = world.projections[kind]
        n_rows = max(1, int(round(rate * duration)))
        rows = _event_rows(annotation['timestamps'], duration, n_rows).astype(np.float32)
        weights = rows / np.sqrt(np.maximum(rows.sum(1, keepdims=True), 1))  # overlaps keep the signal's energy
        event_signal = weights @ (latents.astype(np.float32) @ projection.T)  # (rows, events) @ (events, dim)
        scene = np.float32(signal.scene) * rng.standard_normal(projection.shape[0], dtype=np.float32)
        out[kind] = (np.float32(signal.signal_to_noise) * event_signal + scene
                     + _smoothed_noise(rng, n_rows, projection.shape[0])).astype(np.float32)
    return out


def write_features(annotations: dict[str, dict], c3d_path: Path, clip_dir: Path, seed: int = 0,
                   signal: SignalModel = SignalModel()) -> None:
    """Write c3d.hdf5 and clip/<vid>.npy for every video of `annotations` ({vid: annotation})."""
    world = SyntheticWorld(seed)
    Path(c3d_path).parent.mkdir(parents=True, exist_ok=True)
    Path(clip_dir).mkdir(parents=True, exist_ok=True)
    with h5py.File(c3d_path, 'w') as f:
        for vid, annotation in annotations.items():
            clip_file = video_path(clip_dir, vid, clip_dir)  # a safe id, inside clip_dir (utils/paths.py)
            feats = video_features(world, vid, annotation, signal)
            f.create_group(vid).create_dataset('c3d_features', data=feats['c3d'])
            np.save(clip_file, feats['clip'])


# ------------------------------------------------------------------------------------- real annotations
ANNOTATION_FILES = {'train': ('train.json', 'train_modified.json', 'yc2_train.json'),   # ActivityNet, YouCook2
                    'val_1': ('val_1.json', 'yc2_val.json'), 'val_2': ('val_2.json',)}


def load_annotation_dir(directory, max_train: int | None = None, max_val: int | None = None) -> dict[str, dict]:
    """train, val_1 and (where present) val_2 from a folder of ActivityNet Captions files (`train.json` or
    `train_modified.json`, `val_1.json`, `val_2.json`) or YouCook2 ones (`yc2_train.json`, `yc2_val.json`: the same
    format, no second annotator), validated; the first `max_train` train videos, the first `max_val` val_1 videos
    and the val_2 videos among them."""
    directory = Path(directory)
    splits = {}
    for split, candidates in ANNOTATION_FILES.items():
        path = next((directory / c for c in candidates if (directory / c).is_file()), None)
        if path is None and split != 'val_2':
            raise SyntheticDataError(f"{directory}: no {' or '.join(candidates)} for the {split} split")
        if path is not None:
            splits[split] = load_annotations(path)
    splits['train'] = dict(list(splits['train'].items())[:max_train])
    splits['val_1'] = dict(list(splits['val_1'].items())[:max_val])
    if 'val_2' in splits:
        splits['val_2'] = {vid: a for vid, a in splits['val_2'].items() if vid in splits['val_1']}
    return splits


# ---------------------------------------------------------------------------------------------- dataset
def make_synthetic_dataset(out_dir, size: str = 'tiny', seed: int = 0, *, features: bool = True,
                           annotations=None, max_videos: int | None = None, max_val_videos: int | None = None,
                           signal: SignalModel = SignalModel()):
    """Write a data root (captions + features + `signal_model.json`) and return its `utils.run.DataPaths`.

    size: 'tiny' (24 train / 8 val videos, 20-60 s), 'small' (400 / 100, 20-60 s) or 'anet' (10,009 / 4,917,
    ActivityNet-like durations). annotations: a folder of real ActivityNet Captions or YouCook2 files to copy and
    condition the features on, instead of generated captions. max_videos: keep the first K train videos (and,
    unless max_val_videos is given, the first K val_1 videos). features=False writes the captions only.
    signal: what the features carry (SignalModel).
    """
    from utils.run import data_paths  # imports torch: only when a data root is written

    max_val = max_videos if max_val_videos is None else max_val_videos
    if annotations is not None:
        splits = load_annotation_dir(annotations, max_videos, max_val)
    else:
        splits = generate_annotations(size, seed)
        splits = {name: dict(list(split.items())[:max_videos if name == 'train' else max_val])
                  for name, split in splits.items()}
    paths = data_paths(str(out_dir))
    paths.train.parent.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        if name in splits:
            with open(getattr(paths, name), 'w') as f:
                json.dump(splits[name], f)
    if features:
        conditioning = {}       # features follow the first annotation of a video: train, then val_1, then val_2
        for name in SPLITS:
            for vid, annotation in splits.get(name, {}).items():
                conditioning.setdefault(vid, annotation)
        write_features(conditioning, paths.c3d, paths.clip_dir, seed, signal)
        record = {'seed': seed, 'annotations': None if annotations is None else Path(annotations).name,
                  'size': None if annotations is not None else size, **asdict(signal),
                  'latent_dim': LATENT_DIM, 'c3d_dim': C3D_DIM, 'clip_dim': CLIP_DIM}
        (paths.root / 'signal_model.json').write_text(json.dumps(record, indent=1) + '\n')
    return paths
