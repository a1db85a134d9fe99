"""Tiny random-weight extractor models written in the real file formats (tests/test_extractors.py,
tests/test_caption_video.py): a Hugging Face CLIP folder, the C3D port's pickled state dict, the ActivityNet PCA
hdf5 layout and a mean cube. The CLIP projection width is a parameter (the suite's CLIP features are 768-d); the
C3D PCA file keeps PCA_DIM (500) columns and a few more, as the real file keeps more than it is cut to."""
import json
from pathlib import Path

import h5py
import numpy as np
import torch

from models.extractors.c3d import PCA_DIM
from utils.weights import save_safetensors

TINY_C3D_CHANNELS, TINY_FC = (4, 4, 6, 6, 8, 8, 8, 8), 16
CONV_NAMES = ('conv1', 'conv2', 'conv3a', 'conv3b', 'conv4a', 'conv4b', 'conv5a', 'conv5b')


# ------------------------------------------------------------------------------------------- tiny weight files
def tiny_clip_config(projection_dim=8) -> dict:
    """A Hugging Face CLIP `config.json`: a 2-layer ViT of width 16 on 28 x 28 images, 14 x 14 patches."""
    return {'projection_dim': projection_dim,
            'vision_config': {'hidden_size': 16, 'intermediate_size': 32, 'num_hidden_layers': 2,
                              'num_attention_heads': 2, 'image_size': 28, 'patch_size': 14,
                              'projection_dim': projection_dim}}


def tiny_clip_state(seed=0, projection_dim=8) -> dict[str, torch.Tensor]:
    """A random CLIPModel state dict in Hugging Face's key layout (text tower keys included, to be ignored)."""
    g = torch.Generator().manual_seed(seed)
    d, ff, grid = 16, 32, (28 // 14) ** 2 + 1
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.2           # noqa: E731
    state = {'vision_model.embeddings.class_embedding': r(d),
             'vision_model.embeddings.patch_embedding.weight': r(d, 3, 14, 14),
             'vision_model.embeddings.position_embedding.weight': r(grid, d),
             'vision_model.embeddings.position_ids': torch.arange(grid)[None],
             'vision_model.pre_layrnorm.weight': 1 + r(d), 'vision_model.pre_layrnorm.bias': r(d),
             'vision_model.post_layernorm.weight': 1 + r(d), 'vision_model.post_layernorm.bias': r(d),
             'visual_projection.weight': r(projection_dim, d),
             'text_projection.weight': r(projection_dim, d), 'logit_scale': torch.tensor(2.6),
             'text_model.embeddings.token_embedding.weight': r(10, d)}
    for i in range(2):
        p = f'vision_model.encoder.layers.{i}.'
        for name in ('q_proj', 'k_proj', 'v_proj', 'out_proj'):
            state[p + f'self_attn.{name}.weight'], state[p + f'self_attn.{name}.bias'] = r(d, d), r(d)
        for name in ('layer_norm1', 'layer_norm2'):
            state[p + f'{name}.weight'], state[p + f'{name}.bias'] = 1 + r(d), r(d)
        state[p + 'mlp.fc1.weight'], state[p + 'mlp.fc1.bias'] = r(ff, d), r(ff)
        state[p + 'mlp.fc2.weight'], state[p + 'mlp.fc2.bias'] = r(d, ff), r(d)
    return state


def write_tiny_clip(folder: Path, safetensors=True, projection_dim=8) -> Path:
    """A Hugging Face CLIP folder: `config.json` + `model.safetensors` (or `pytorch_model.bin`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'config.json').write_text(json.dumps(tiny_clip_config(projection_dim)))
    state = tiny_clip_state(projection_dim=projection_dim)
    if safetensors:
        save_safetensors(state, folder / 'model.safetensors')
    else:
        torch.save(state, folder / 'pytorch_model.bin')
    return folder


def tiny_c3d_state(seed=0) -> dict[str, torch.Tensor]:
    """A random state dict in the C3D port's key layout (fc8 included, as in c3d.pickle)."""
    g = torch.Generator().manual_seed(seed)
    state, cin = {}, 3
    for name, cout in zip(CONV_NAMES, TINY_C3D_CHANNELS):
        state[f'{name}.weight'] = torch.randn(cout, cin, 3, 3, 3, generator=g) * (2 / (27 * cin)) ** 0.5
        state[f'{name}.bias'] = torch.randn(cout, generator=g) * 0.1
        cin = cout
    for name, (cout, cin) in (('fc6', (TINY_FC, cin * 16)), ('fc7', (TINY_FC, TINY_FC)), ('fc8', (5, TINY_FC))):
        state[f'{name}.weight'] = torch.randn(cout, cin, generator=g) * (2 / cin) ** 0.5
        state[f'{name}.bias'] = torch.randn(cout, generator=g) * 0.1
    return state


def write_tiny_c3d(folder: Path) -> dict[str, Path]:
    """`c3d.pickle` (legacy torch.save format, as the 2017 file), the PCA hdf5 (group `data`: U, S, x_mean) and a
    mean cube `.npy` (1 x 3 x 16 x 128 x 171)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_c3d_state(), folder / 'c3d.pickle', _use_new_zipfile_serialization=False)
    rng = np.random.default_rng(1)
    with h5py.File(folder / 'pca.hdf5', 'w') as f:
        f['data/U'] = rng.standard_normal((TINY_FC, PCA_DIM + 3)).astype(np.float32)
        f['data/S'] = rng.random(TINY_FC).astype(np.float32)
        f['data/x_mean'] = rng.random(TINY_FC).astype(np.float32)
    np.save(folder / 'mean.npy', rng.integers(60, 120, (1, 3, 16, 128, 171)).astype(np.float32))
    return {'c3d_model': folder / 'c3d.pickle', 'c3d_pca': folder / 'pca.hdf5', 'c3d_mean': folder / 'mean.npy'}
