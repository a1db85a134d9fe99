"""Temporal video encoder of the ILCACM captioner (spec ilcacm §3.1).

Frame features (B, T, D) plus learned frame positions P_v go through a bidirectional pre-LN Transformer encoder,
then LayerNorm and a bias-free Linear; the result is the prefix of T embeddings that the caption decoder reads.
Parameter names follow the authors' module (`vpe`, `encoder.layers.{i}`, `proj.{0,1}`; ilcacm_state_dict.md).
"""
import torch
from torch import nn

from models.layers.sdpa import attention_kernels


class VideoEncoder(nn.Module):
    def __init__(self, d_model=768, nhead=12, dim_feedforward=2048, num_layers=6, max_frames=32, dropout=0.1,
                 eps=1e-5):
        super().__init__()
        self.vpe = nn.Parameter(torch.randn(max_frames, d_model))  # P_v ~ N(0, 1), spec §3.7
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation='gelu',
                                           layer_norm_eps=eps, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.proj = nn.Sequential(nn.LayerNorm(d_model, eps=eps), nn.Linear(d_model, d_model, bias=False))

    def forward(self, frames, frame_mask=None):
        """frames (B, T, D), frame_mask (B, T) bool of valid frames (always all True, spec §2.4) -> (B, T, D)."""
        x = self.dropout(frames + self.vpe[:frames.shape[1]])
        padding = None if frame_mask is None else ~frame_mask
        with attention_kernels():
            encoded = self.encoder(x, src_key_padding_mask=padding)
        return self.proj(encoded)
