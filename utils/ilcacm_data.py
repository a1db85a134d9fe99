"""ILCACM dataset, token layouts and collation (spec ilcacm §2.2, §2.4, §2.6, §2.7).

A tokenizer here is anything with `encode_sentence(str) -> ids`, `separator` (ids between sentences: [220] for
GPT-2 BPE, [] for words), `eos_id` and `pad_id` (models/ilcacm/text_decoder.py).
"""
from dataclasses import dataclass, fields
from functools import partial

import torch
from torch.utils.data import Dataset

from utils.features import resample_frames
from utils.text import ilcacm_normalize


# --- token layouts, spec §2.6 -----------------------------------------------------------------------------------
def positive_target(sentence_ids, separator, eos_id):
    """Per-sentence target x_k = tok(S_k) + sep + eos."""
    return list(sentence_ids) + list(separator) + [eos_id]


def dense_target(sentences_ids, separator, eos_id, max_tokens=1024):
    """Paragraph target tok(S_1) + sep + ... + tok(S_n) + eos (no separator before eos; content cut to
    max_tokens - 1)."""
    ids = []
    for i, s in enumerate(sentences_ids):
        ids += (list(separator) if i else []) + list(s)
    return ids[:max_tokens - 1] + [eos_id]


def negative_target(sentences_ids, k, separator, eos_id, max_tokens=1024):
    """Target of the complement of event k: concat_{j != k}(tok(S_j) + sep) + eos (the separator before eos is
    kept; n = 1 gives [eos])."""
    ids = []
    for j, s in enumerate(sentences_ids):
        if j != k:
            ids += list(s) + list(separator)
    return ids[:max_tokens - 1] + [eos_id]


# --- dataset ------------------------------------------------------------------------------------------------------
class ILCACMDataset(Dataset):
    """One item per video: T resampled frames, the normalised captions and their three kinds of targets."""

    def __init__(self, annotations, features, tokenizer, vids=None, max_frames=32, max_captions=12,
                 max_tokens=1024):
        self.annotations, self.features, self.tokenizer = annotations, features, tokenizer
        self.vids = list(annotations) if vids is None else list(vids)
        self.max_frames, self.max_captions, self.max_tokens = max_frames, max_captions, max_tokens

    def __len__(self):
        return len(self.vids)

    def __getitem__(self, index):
        vid = self.vids[index]
        entry = self.annotations[vid]
        try:
            sentences = ilcacm_normalize(entry['sentences'], self.max_captions)
        except ValueError as err:
            raise ValueError(f'video {vid}, field "sentences": {err}') from None
        tok = self.tokenizer
        ids = [tok.encode_sentence(s) for s in sentences]
        duration = entry['duration']
        stamps = entry.get('timestamps', [])[:len(sentences)]
        return {
            'vid': vid, 'duration': duration, 'sentences': sentences,
            'video': resample_frames(self.features.get(vid), self.max_frames),
            'positive': [positive_target(s, tok.separator, tok.eos_id) for s in ids],
            'negative': [negative_target(ids, k, tok.separator, tok.eos_id, self.max_tokens) for k in range(len(ids))],
            'dense': dense_target(ids, tok.separator, tok.eos_id, self.max_tokens),
            # (centre, width) / duration: the unused fully-supervised hook of the released code (spec §2.1)
            'timestamps': [[(s + e) / 2 / duration, (e - s) / duration] for s, e in stamps],
        }


@dataclass
class ILCACMBatch:
    """Collated batch (spec §2.7); N = sum(num_sents) sequences in video order, annotation order within."""
    vids: tuple
    durations: torch.Tensor        # (B,) seconds
    video: torch.Tensor            # (B, T, D) float32
    video_mask: torch.Tensor       # (B, T) bool, all True (spec §2.4)
    num_sents: list                # n_b
    sentences: list                # normalised captions per video
    positive_tokens: torch.Tensor  # (N, Lp) pad-filled
    negative_tokens: torch.Tensor  # (N, Ln)
    dense_tokens: torch.Tensor     # (B, Ld)
    timestamps: torch.Tensor       # (N, 2) (centre, width) / duration, unused

    def to(self, device):
        return ILCACMBatch(**{f.name: getattr(self, f.name).to(device) if torch.is_tensor(getattr(self, f.name))
                              else getattr(self, f.name) for f in fields(self)})


def pad_sequences(seqs, pad_id):
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def ilcacm_collate(items, pad_id):
    video = torch.stack([it['video'] for it in items])
    stamps = [ts for it in items for ts in it['timestamps']]
    return ILCACMBatch(
        vids=tuple(it['vid'] for it in items),
        durations=torch.tensor([it['duration'] for it in items], dtype=torch.float64),
        video=video,
        video_mask=torch.ones(video.shape[:2], dtype=torch.bool),
        num_sents=[len(it['positive']) for it in items],
        sentences=[it['sentences'] for it in items],
        positive_tokens=pad_sequences([t for it in items for t in it['positive']], pad_id),
        negative_tokens=pad_sequences([t for it in items for t in it['negative']], pad_id),
        dense_tokens=pad_sequences([it['dense'] for it in items], pad_id),
        timestamps=torch.tensor(stamps, dtype=torch.float32).reshape(-1, 2),
    )


def make_collate(tokenizer):
    return partial(ilcacm_collate, pad_id=tokenizer.pad_id)
