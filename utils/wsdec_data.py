"""WSDEC datasets and batch collation (spec wsdec §2.4).

``mode='full'``: every sentence of a video (N = sum of sentences; ``ANetDataFull``).
``mode='sample'``: one uniformly random sentence per video per access (N = B; ``ANetDataSample``), drawn from a
generator seeded by (seed, epoch, index), so it is reproducible and independent of the DataLoader's workers
(the port's fix of spec wsdec §6.3 item 4).
"""
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.vocab import Vocabulary


class WSDECItem(NamedTuple):
    """One video as ``__getitem__`` returns it."""
    feature: np.ndarray          # (L, 500) float32
    timestamp_idx: np.ndarray    # (n, 2) feature-index units
    captions: list               # n lists of ids, each [<bos>, ..., <eos>]
    raw_timestamp: list          # n [start, end] pairs in seconds
    duration: float
    key: str
    sentence_index: list         # n indices of the sentences in the video's annotation list
    n_sentences: int             # the video's number of sentences


def timestamp_to_index(timestamps, duration, length):
    """GT (s, e) seconds → feature indices ``int(L*s/dur)``, ``min(int(L*e/dur), L-1)`` (spec wsdec §2.4 item 9).

    ``int`` truncates toward zero and only the end is clamped, as in ``process_time_step``.
    """
    out = np.zeros((len(timestamps), 2))
    for i, (start, end) in enumerate(timestamps):
        out[i] = int(length * start / duration), min(int(length * end / duration), length - 1)
    return out


class WSDECDataset(Dataset):
    def __init__(self, annotations, features, vocab, mode='full', vids=None, seed=233):
        if mode not in ('full', 'sample'):
            raise ValueError(f"mode must be 'full' or 'sample', got {mode!r}")
        self.annotations = annotations
        self.features = features
        self.vocab = vocab
        self.mode = mode
        self.vids = list(annotations) if vids is None else list(vids)
        unknown = [v for v in self.vids if v not in annotations]
        if unknown:
            raise KeyError(f"{len(unknown)} video ids are not in the annotations: {unknown[:10]}")
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch):
        """Reseed the per-epoch sentence draw of mode='sample'."""
        self.epoch = epoch

    def __len__(self):
        return len(self.vids)

    def sentence_choice(self, index):
        """The sentence drawn for video ``index`` in the current epoch (mode='sample')."""
        n = len(self.annotations[self.vids[index]]['sentences'])
        return int(np.random.default_rng([self.seed, self.epoch, index]).integers(n))

    def __getitem__(self, index):
        vid = self.vids[index]
        ann = self.annotations[vid]
        feature = self.features.get(vid)
        sentences, timestamps = ann['sentences'], ann['timestamps']
        n_sentences, sentence_index = len(sentences), list(range(len(sentences)))
        if self.mode == 'sample':
            j = self.sentence_choice(index)
            sentences, timestamps, sentence_index = [sentences[j]], [timestamps[j]], [j]
        return WSDECItem(
            feature=feature,
            timestamp_idx=timestamp_to_index(timestamps, ann['duration'], feature.shape[0]),
            captions=[self.vocab.encode(s) for s in sentences],
            raw_timestamp=[list(t) for t in timestamps],
            duration=ann['duration'],
            key=vid,
            sentence_index=sentence_index,
            n_sentences=n_sentences,
        )


@dataclass
class WSDECBatch:
    """``collate_fn`` output, fields in the original order (spec wsdec §2.4)."""
    video: torch.Tensor               # (B, T, 500) float32, zero-padded
    video_length: torch.Tensor        # (B, 2) float32: [L, duration in seconds]
    video_mask: torch.Tensor          # (B, T, 1) float32, 1 on valid steps
    caption: torch.Tensor             # (N, Lc) long, EOS-padded; Lc counts BOS and EOS
    caption_length: torch.Tensor      # (N,) long, BOS and EOS included
    caption_mask: torch.Tensor        # (N, Lc, 1) float32, 1 for positions < length
    caption_gather_idx: torch.Tensor  # (N,) long: the video of each sentence row
    raw_timestamp: torch.Tensor       # (N, 2) float32, seconds
    timestamp_idx: torch.Tensor       # (N, 2) float32 holding integer feature indices (as the original)
    keys: tuple
    # not in the original's tuple: (index of the sentence in its video's list, the video's number of sentences)
    # per sentence row, for `--pretrain-segment caption-order` (models/wsdec/steps.py caption_order_split)
    sentence_position: torch.Tensor | None = None

    def to(self, device):
        return WSDECBatch(**{f.name: (v.to(device) if torch.is_tensor(v) else v)
                             for f in fields(self) for v in [getattr(self, f.name)]})

    def __iter__(self):  # unpack like the original tuple (its ten fields)
        return (getattr(self, f.name) for f in fields(self)[:ORIGINAL_FIELDS])


ORIGINAL_FIELDS = 10


def wsdec_collate(items):
    B = len(items)
    T = max(item.feature.shape[0] for item in items)
    dim = items[0].feature.shape[1]
    captions = [c for item in items for c in item.captions]
    N, Lc = len(captions), max(len(c) for c in captions)

    video = torch.zeros(B, T, dim)
    video_length = torch.zeros(B, 2)
    video_mask = torch.zeros(B, T, 1)
    for b, item in enumerate(items):
        L = item.feature.shape[0]
        video[b, :L] = torch.from_numpy(item.feature)
        video_length[b] = torch.tensor([float(L), item.duration])
        video_mask[b, :L] = 1

    caption = torch.full((N, Lc), Vocabulary.eos_id, dtype=torch.long)  # no PAD token: EOS padding
    caption_length = torch.tensor([len(c) for c in captions], dtype=torch.long)
    caption_mask = torch.zeros(N, Lc, 1)
    for n, c in enumerate(captions):
        caption[n, :len(c)] = torch.tensor(c, dtype=torch.long)
        caption_mask[n, :len(c)] = 1

    return WSDECBatch(
        video=video, video_length=video_length, video_mask=video_mask,
        caption=caption, caption_length=caption_length, caption_mask=caption_mask,
        caption_gather_idx=torch.tensor([b for b, item in enumerate(items) for _ in item.captions]),
        raw_timestamp=torch.tensor([t for item in items for t in item.raw_timestamp], dtype=torch.float32),
        timestamp_idx=torch.from_numpy(np.concatenate([item.timestamp_idx for item in items])).float(),
        keys=tuple(item.key for item in items),
        sentence_position=torch.tensor([[j, item.n_sentences] for item in items for j in item.sentence_index],
                                       dtype=torch.float32).reshape(N, 2),
    )
