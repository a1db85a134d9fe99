"""C3D features as the official ActivityNet C3D features that WSDEC reads (spec wsdec §2.2: fc7 of the Sports-1M
C3D network, one vector per 8 frames, PCA to 500 dimensions, `f[vid]['c3d_features']`).

Where each constant comes from (the README section "Caption your own videos" lists the unconfirmed ones):
* Network: Sports-1M C3D as in facebookarchive/C3D `C3D-v1.0/examples/c3d_feature_extraction/prototxt/
  c3d_sport1m_feature_extractor_frm.prototxt`: conv1a..conv5b (3x3x3, pad 1) with ReLU, pool1 1x2x2, pool2..pool5
  2x2x2 max, fc6 and fc7 (4096). `relu7` works in place on the `fc7-1` blob, so the extracted fc7 features are
  after the ReLU; dropout is the identity at test time.
* Weights: the widely used PyTorch port DavideA/c3d-pytorch (`c3d.pickle`, a state dict converted from the caffe
  model through albertomontesg's Keras gist, DavideA/c3d-pytorch issue #1). Its keys: conv1, conv2, conv3a,
  conv3b, conv4a, conv4b, conv5a, conv5b, fc6, fc7, fc8 (`.weight`, `.bias`); fc8 is not needed. Input layout
  (N, 3, 16, 112, 112).
* pool5: caffe's 3-D pooling has no padding and rounds the output size up (C3D-v1.0 pool3d_layer.cu: windows
  start at 0, 2, 4, 6 of the 7 x 7 map, the last one clipped), i.e. `ceil_mode`; the port pads (0, 1, 1) instead,
  which shifts the windows by one pixel. Default `caffe` (the official features came from caffe); `pool5='port'`
  is the port's layer.
* Frames: every decoded frame in presentation order (caffe's video reader takes consecutive frames; no time
  resampling), shown upright (rotation metadata applied; OpenCV of 2016 did not, ActivityNet videos have none),
  converted to BGR (OpenCV's order, which the caffe weights expect: DavideA/c3d-pytorch issue #1), resized to
  128 x 171 (prototxt `new_height`/`new_width`; C3D-v1.0 image_io.cpp calls cv::resize with the default
  INTER_LINEAR) by bilinear interpolation with half-pixel centres and no antialiasing as INTER_LINEAR does,
  computed in float32 and rounded to uint8 (OpenCV's 11-bit fixed point may differ by one grey level), centre
  crop 112 at rows 8.., columns 29.. (video_data_layer.cpp, TEST phase: (128 - 112) / 2, (171 - 112) / 2).
* Mean: the per-pixel mean cube of Sports-1M (`sport1m_train16_128_mean.binaryproto`: 3 x 16 x 128 x 171, BGR)
  subtracted at the crop position (video_data_layer.cpp: `data - mean[c, l, h + 8, w + 29]`), read from its
  `.npy` copy `c3d_mean.npy` (1 x 3 x 16 x 128 x 171, albertomontesg/keras-model-zoo). `mean='channel'` subtracts
  the per-channel means of that cube instead, (90.25, 97.66, 101.41) in BGR as computed by a user in
  DavideA/c3d-pytorch issue #1 (not checked here).
* Windows: 16 frames (`new_length: 16`) every 8 frames (DAPs, escorciav/daps `visual_encoder.py`: f_res=16,
  f_stride=8, by the team that released the ActivityNet C3D features), starting at frames 0, 8, 16, ... while
  the window fits (the C3D tool refuses a window past the last frame). Not confirmed: how the official
  extraction treated the tail. A video with fewer than 16 frames gets one window padded with its last frame
  (decision: the tool would give none, and WSDEC cannot read an empty feature array).
* PCA: `PCA_activitynet_v1-3.hdf5` (activity-net.org challenge 2016 download page) holds `data/U` (4096 x K),
  `data/S` and `data/x_mean` (4096); features are `(fc7 - x_mean) @ U[:, :500]`, the projection DAPs' README gives
  for its `pca_c3d_fc7_thumos14.hdf5` of the same layout (S is not used). Not confirmed for the ActivityNet file
  itself beyond its dataset names (as read by public scripts).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.extractors.base import Extractor
from utils.weights import CheckpointFormatError, load_strict
from utils.video import FilterChain, decode

FRAME_HEIGHT, FRAME_WIDTH = 128, 171        # prototxt new_height, new_width
CROP = 112                                  # prototxt crop_size
CROP_TOP, CROP_LEFT = (FRAME_HEIGHT - CROP) // 2, (FRAME_WIDTH - CROP) // 2   # 8, 29 (video_data_layer.cpp)
WINDOW, STRIDE = 16, 8                      # new_length 16; one feature per 8 frames (DAPs f_stride)
FC7_DIM, PCA_DIM = 4096, 500
CHANNEL_MEAN_BGR = (90.25, 97.66, 101.41)   # DavideA/c3d-pytorch issue #1 (unconfirmed)
CONV_NAMES = ('conv1', 'conv2', 'conv3a', 'conv3b', 'conv4a', 'conv4b', 'conv5a', 'conv5b')
SPORTS1M_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)     # prototxt num_output of conv1a..conv5b
POOL_AFTER = {'conv1': 'pool1', 'conv2': 'pool2', 'conv3b': 'pool3', 'conv4b': 'pool4', 'conv5b': 'pool5'}
POOL5 = ('caffe', 'port')
POOL5_MAP = 4 * 4                           # pool5 output is (1, 4, 4) for a 16 x 112 x 112 clip: fc6 takes C * 16


class C3D(nn.Module):
    """Sports-1M C3D up to fc7 (after its ReLU), parameter names of DavideA/c3d-pytorch. The widths default to
    Sports-1M's (`from_port` reads them from the state dict, so smaller test networks load the same way)."""

    def __init__(self, pool5: str = 'caffe', channels: tuple[int, ...] = SPORTS1M_CHANNELS, fc_dim: int = FC7_DIM):
        super().__init__()
        if pool5 not in POOL5:
            raise ValueError(f"pool5 must be one of {POOL5}, got {pool5!r}")
        for name, cin, cout in zip(CONV_NAMES, (3,) + tuple(channels[:-1]), channels):
            setattr(self, name, nn.Conv3d(cin, cout, kernel_size=3, padding=1))
        self.pool1 = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.pool2, self.pool3, self.pool4 = (nn.MaxPool3d(2, 2) for _ in range(3))
        self.pool5 = nn.MaxPool3d(2, 2, ceil_mode=True) if pool5 == 'caffe' else nn.MaxPool3d(2, 2, padding=(0, 1, 1))
        self.fc6 = nn.Linear(channels[-1] * POOL5_MAP, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.fc_dim = fc_dim

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, 3, 16, 112, 112) mean-subtracted BGR → fc7 activations (N, 4096)."""
        h = clips
        for name in CONV_NAMES:
            h = F.relu(getattr(self, name)(h))
            if name in POOL_AFTER:
                h = getattr(self, POOL_AFTER[name])(h)
        h = F.relu(self.fc6(h.flatten(1)))
        return F.relu(self.fc7(h))

    @classmethod
    def from_port(cls, path, pool5: str = 'caffe') -> 'C3D':
        """The port's `c3d.pickle` (a torch-saved state dict, read with `weights_only=True`); fc8 is ignored."""
        path = Path(path)
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as error:  # noqa: BLE001 — any unreadable pickle is a format error naming the file
            raise CheckpointFormatError(f"{path}: not a readable PyTorch state dict ({error})") from None
        if not isinstance(state, dict):
            raise CheckpointFormatError(f"{path}: expected a state dict, got {type(state).__name__}")
        state = {k.removeprefix('module.'): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith('fc8.')}
        try:
            channels = tuple(state[f'{name}.weight'].shape[0] for name in CONV_NAMES)
            fc_dim = state['fc7.weight'].shape[0]
        except (KeyError, AttributeError, IndexError) as error:
            raise CheckpointFormatError(f"{path}: not the C3D port's key layout (no {error})") from None
        model = cls(pool5, channels, fc_dim)
        load_strict(model, state, str(path))
        return model.eval()


def load_pca(path, dim: int = PCA_DIM, fc_dim: int = FC7_DIM) -> tuple[np.ndarray, np.ndarray]:
    """(x_mean (4096,), U[:, :dim] (4096, dim)) of the challenge's PCA file, float32."""
    path = Path(path)
    try:
        with h5py.File(path, 'r') as f:
            if 'data/U' not in f or 'data/x_mean' not in f:
                raise CheckpointFormatError(f"{path}: no datasets data/U and data/x_mean "
                                            f"(expected PCA_activitynet_v1-3.hdf5)")
            u, mean = f['data/U'][()], f['data/x_mean'][()].reshape(-1)
    except OSError as error:
        raise CheckpointFormatError(f"{path}: not a readable hdf5 file ({error})") from None
    if u.ndim != 2 or u.shape[0] != fc_dim or u.shape[1] < dim or mean.shape != (fc_dim,):
        raise CheckpointFormatError(f"{path}: data/U has shape {u.shape} and data/x_mean {mean.shape}; expected "
                                    f"({fc_dim}, >= {dim}) and ({fc_dim},) for fc7 features")
    return mean.astype(np.float32), np.ascontiguousarray(u[:, :dim], dtype=np.float32)


def load_mean(source) -> np.ndarray:
    """The mean subtracted from a 128 x 171 window, as (3, 16, 112, 112) float32 at the crop position: the
    per-pixel cube from a `.npy` file, or 'channel' for the per-channel means."""
    if source == 'channel':
        return np.broadcast_to(np.asarray(CHANNEL_MEAN_BGR, np.float32).reshape(3, 1, 1, 1),
                               (3, WINDOW, CROP, CROP)).copy()
    path = Path(source)
    try:
        cube = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CheckpointFormatError(f"{path}: not a readable .npy mean cube ({error})") from None
    expected = (3, WINDOW, FRAME_HEIGHT, FRAME_WIDTH)
    if cube.shape not in (expected, (1, *expected)):
        raise CheckpointFormatError(f"{path}: mean cube has shape {cube.shape}, expected {expected} "
                                    f"(sport1m_train16_128_mean, BGR)")
    cube = cube.reshape(expected)
    return np.ascontiguousarray(cube[:, :, CROP_TOP:CROP_TOP + CROP, CROP_LEFT:CROP_LEFT + CROP], dtype=np.float32)


# ---------------------------------------------------------------------------------------------------- frames
def resize_bilinear(frame: np.ndarray, height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH) -> np.ndarray:
    """(H, W, 3) uint8 → (height, width, 3) uint8 as cv::resize INTER_LINEAR (half-pixel centres, 2 taps, no
    antialiasing), in float32, rounded half up."""
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].to(torch.float32)
    y = F.interpolate(x, size=(height, width), mode='bilinear', align_corners=False, antialias=False)
    return y[0].add_(0.5).floor_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def c3d_frames(path) -> Iterator[np.ndarray]:
    """Every frame of `path` upright, BGR, resized to 128 x 171 (uint8)."""
    chain = None
    for decoded in decode(path):
        if chain is None:
            chain = FilterChain(decoded.frame, [], 'bgr24', path)
        yield resize_bilinear(chain(decoded.frame))


def windows(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """(16, 112, 112, 3) crops of the windows [8k, 8k + 16) that fit; one padded window for a shorter video."""
    buffer, emitted = [], False
    for frame in frames:
        buffer.append(frame[CROP_TOP:CROP_TOP + CROP, CROP_LEFT:CROP_LEFT + CROP])
        if len(buffer) == WINDOW:
            yield np.stack(buffer)
            emitted, buffer = True, buffer[STRIDE:]
    if not emitted and buffer:
        yield np.stack(buffer + [buffer[-1]] * (WINDOW - len(buffer)))


class C3DExtractor(Extractor):
    """WSDEC's C3D features of one video: `units` are its 16-frame windows, a batch gives (B, 500) features."""
    name = 'c3d'
    dim = PCA_DIM

    def __init__(self, model: C3D, pca: tuple[np.ndarray, np.ndarray], mean: np.ndarray, device='cpu',
                 dtype=torch.float32):
        super().__init__(model, device, dtype)
        self.pca_mean, self.pca_u = (torch.from_numpy(a).to(self.device) for a in pca)
        self.mean = torch.from_numpy(mean).to(self.device)
        self.dim = self.pca_u.shape[1]

    def units(self, path) -> Iterator[np.ndarray]:
        return windows(c3d_frames(path))

    def forward_batch(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.permute(0, 4, 1, 2, 3).to(torch.float32) - self.mean
        fc7 = self.model(x.to(self.dtype)).to(torch.float32)
        return (fc7 - self.pca_mean) @ self.pca_u
