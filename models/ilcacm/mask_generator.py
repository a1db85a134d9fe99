"""Differentiable mask construction (spec ilcacm §3.4).

Learned event queries attend to the raw frame features (+ learned positions P_m) through one pre-LN Transformer
decoder layer; two sigmoid heads give each event a centre c and a width w (fractions of the video). Events are sorted
by centre, mask k is paired with caption k, and each mask is a soft window over t = linspace(0, 1, T).
Parameter names follow the authors' module (`tpe`, `pe`, `mask_decoder.layers.0`, `norm`, `center_fc`, `width_fc`).
"""
import math
from dataclasses import dataclass

import torch
from torch import nn

from models.ilcacm.losses import diversity_loss
from models.layers.sdpa import attention_kernels

MASK_SHAPES = ('gaussian', 'cauchy', 'hard')


class EventCountError(ValueError):
    """More events were requested than the mask generator has queries."""


@dataclass
class EventMasks:
    centers: torch.Tensor   # (N,) sorted per video, concatenated over videos
    widths: torch.Tensor    # (N,)
    masks: torch.Tensor     # (N, T) in [0, 1]
    counts: list            # n_b per video

    @property
    def lefts(self):
        """Start of each event as a fraction of the duration: clamp(c - w/2); tau never enters (spec §3.4.6)."""
        return (self.centers - self.widths / 2).clamp(0, 1)

    @property
    def rights(self):
        return (self.centers + self.widths / 2).clamp(0, 1)


def soft_temporal_mask(centers, widths, num_frames, tau=2.0, shape='gaussian'):
    """Masks (N, T) of events (c, w) on t = linspace(0, 1, T) (spec §3.4.5 and §3.4.7).

    gaussian: exp(-(t-c)^2 / (2 (w/tau)^2)); cauchy: (w/tau)/((t-c)^2 + (w/tau)^2) divided by its maximum over the
    frames; hard: 1 inside [c - w/2, c + w/2] else 0 (no gradient to c, w).
    """
    t = torch.linspace(0, 1, num_frames, device=centers.device, dtype=centers.dtype)
    diff = t[None, :] - centers[:, None]
    scale = (widths / tau)[:, None]
    if shape == 'gaussian':
        return torch.exp(-diff ** 2 / (2 * scale ** 2))
    if shape == 'cauchy':
        density = scale / (math.pi * (diff ** 2 + scale ** 2))
        return density / density.amax(dim=1, keepdim=True)
    if shape == 'hard':
        return (diff.abs() <= widths[:, None] / 2).to(centers.dtype)
    raise ValueError(f'unknown mask shape {shape!r}; choose one of {MASK_SHAPES}')


def sort_events(centers, widths, counts):
    """Sort each video's events by centre; the sort passes gradients through its values (spec §3.4.5).

    All videos at once: the centres padded to (B, n_max) with +inf sort after every real one, and a stable sort
    keeps equal centres in their original order, as sorting each video alone does."""
    counts = [int(n) for n in counts]
    if not counts:
        return centers, widths
    n_max, device = max(counts), centers.device
    valid = torch.arange(n_max, device=device)[None, :] < torch.tensor(counts, device=device)[:, None]
    padded = centers.new_full(valid.shape, float('inf')).masked_scatter(valid, centers)
    order = torch.sort(padded, dim=1, stable=True).indices
    # the flat index of each sorted event in the input (video b's events start at sum(counts[:b]))
    offsets = torch.tensor([0] + counts[:-1], device=device).cumsum(0)[:, None]
    flat = (offsets + order)[valid]
    return centers[flat], widths[flat]


def uniform_events(counts, device=None):
    """Fixed, non-trainable events tiling each video: c_k = (k + 1/2)/n, w_k = 1/n (published_results §6.2)."""
    centers = [(torch.arange(n, device=device) + 0.5) / n for n in counts]
    return torch.cat(centers), torch.cat([torch.full((n,), 1.0 / n, device=device) for n in counts])


def random_events(counts, generator, device=None):
    """Random segments: c, w ~ U(0, 1) drawn from `generator` (CPU), sorted by centre per video."""
    n = sum(counts)
    centers, widths = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
    centers, widths = sort_events(centers, widths, counts)
    return centers.to(device), widths.to(device)


class MaskGenerator(nn.Module):
    def __init__(self, d_model=768, nhead=12, dim_feedforward=1024, num_layers=1, max_frames=32, num_queries=16,
                 dropout=0.1, tau=2.0, gamma=0.8, shape='gaussian', eps=1e-5):
        super().__init__()
        self.tpe = nn.Parameter(torch.randn(num_queries, d_model))  # event queries Q ~ N(0, 1)
        self.pe = nn.Parameter(torch.randn(max_frames, d_model))    # frame positions P_m ~ N(0, 1)
        self.query_dropout = nn.Dropout(dropout)
        self.memory_dropout = nn.Dropout(dropout)
        layer = nn.TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation='gelu',
                                           layer_norm_eps=eps, batch_first=True, norm_first=True)
        self.mask_decoder = nn.TransformerDecoder(layer, num_layers)
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.center_fc = nn.Linear(d_model, 1, bias=False)
        self.width_fc = nn.Linear(d_model, 1, bias=False)
        self.tau, self.gamma, self.shape = tau, gamma, shape

    @property
    def num_queries(self):
        return self.tpe.shape[0]

    def predict_events(self, frames, counts, frame_mask=None):
        """Unsorted (c, w) of counts[b] events per video, concatenated: two (N,) tensors (spec §3.4.2-5)."""
        if max(counts) > self.num_queries:
            raise EventCountError(f'{max(counts)} events requested but the mask generator has only '
                                  f'{self.num_queries} queries; lower --max-captions')
        n_max = max(counts)
        valid = torch.arange(n_max, device=frames.device)[None, :] < torch.tensor(counts, device=frames.device)[:, None]
        queries = self.query_dropout(self.tpe[:n_max][None] * valid[..., None].to(frames.dtype))
        memory = self.memory_dropout(frames + self.pe[:frames.shape[1]])
        with attention_kernels():
            out = self.mask_decoder(queries, memory, tgt_key_padding_mask=~valid,
                                    memory_key_padding_mask=None if frame_mask is None else ~frame_mask)
        out = self.norm(out)[valid].float()  # (N, D) in video order
        with torch.autocast(frames.device.type, enabled=False):  # c, w and the masks in fp32 under bf16 autocast
            return torch.sigmoid(self.center_fc(out)).squeeze(-1), torch.sigmoid(self.width_fc(out)).squeeze(-1)

    def forward(self, frames, counts, frame_mask=None):
        """frames (B, T, D) raw (projected) features, counts list of n_b -> (EventMasks, L_div)."""
        counts = [int(n) for n in counts]
        centers, widths = sort_events(*self.predict_events(frames, counts, frame_mask), counts)
        return self.build(centers, widths, counts, frames.shape[1])

    def build(self, centers, widths, counts, num_frames):
        """Masks and diversity loss of given sorted events (shared by the learned, uniform and random modes)."""
        masks = soft_temporal_mask(centers, widths, num_frames, self.tau, self.shape)
        return EventMasks(centers, widths, masks, counts), diversity_loss(masks, counts, self.gamma)
