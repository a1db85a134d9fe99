"""CLIP image features exactly as ILCACM's `src/util/extract_video_features.py` makes them (spec ilcacm §2.3).

Frames (`clip_frames`): ffmpeg at 1 fps (`fps=1`), `scale=W:H` with the authors' `_get_output_dim` (the shorter
side to 224, the longer one `int(long * 224 / short)`), `crop=224:224:x:y` with `x = int((W - 224) / 2)`,
`y = int((H - 224) / 2)`, rgb24. These run here as the same libavfilter filters in-process (utils/video.py), with
`flags=bicubic` written out: the command line gives every `scale` filter its `sws_flags`, bicubic by default (and
libswscale's own default is bicubic too).

Preprocessing (`preprocess`): the authors then pass the 224 x 224 frames (as float tensors holding integers
0..255) to `CLIPProcessor`, i.e. `CLIPImageProcessor` of `openai/clip-vit-large-patch14` (preprocessor_config.json:
`size` 224 shortest edge, `resample` 3 = PIL BICUBIC, `crop_size` 224, `rescale_factor` 1/255, `image_mean`,
`image_std` below). On frames that are already 224 x 224 its resize and centre crop are identities:
transformers' `get_resize_output_image_size(shortest_edge=224)` returns (224, 224), `to_pil_image` casts the
integer-valued floats to uint8 unchanged, and PIL's `Image.resize` returns a copy when the size does not change;
`center_crop` to 224 slices the whole image. What remains is HF's arithmetic, reproduced operation for operation:
`rescale` multiplies in float64 and casts to float32, `normalize` computes `(x - mean) / std` in float32. So no
PIL is needed and nothing is left different from the authors' path but the FFmpeg build (the authors' ffmpeg
version is unknown; libswscale's bicubic has been stable for years, but bit-identity across versions is not
guaranteed). Frames of another size are refused rather than resized differently from PIL.

Model (`CLIPImageEncoder`): Hugging Face `CLIPVisionModel` + `visual_projection`, i.e. `CLIPModel.get_image_features`
(pre-LN ViT: patch conv without bias, class token, position embeddings, `pre_layrnorm`, encoder layers with
quick_gelu MLPs, `post_layernorm` on the class token, bias-free projection). Parameter names are HF's, so a
`openai/clip-vit-large-patch14` folder (`config.json` with `vision_config`, `model.safetensors` or
`pytorch_model.bin`) loads directly; the size (any ViT-B/L) comes from the config. Output: float32 (T, 768) for
ViT-L/14, not L2-normalised (`--l2_normalize 0`).

Short videos: 1 fps gives E - q_first frames (utils/video.py), none for a video under 0.5 s; the authors' script
then wrote nothing usable (an empty or a squeezed array; ILCACM's `frame_padding` crashes on T = 0, spec §2.4), so
such a video gets its first frame (documented decision: no ActivityNet video is that short). A one-frame video
gets its frame (the authors' `squeeze()` made it 3-D and skipped it).
Rotated videos are shown upright first (the command line's autorotate) and scaled from the upright size; the
authors computed W, H from ffprobe's coded size, which squeezes rotated videos (not reproduced; ActivityNet's
videos carry no rotation). Also not reproduced: the authors skipped videos whose average frame rate is under 1
("Corrupted Frame Rate"; here they are extracted), and named the output after the file name up to its first dot
(here: the name without its extension; ActivityNet ids have no dots).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.extractors.base import Extractor
from utils.weights import CheckpointFormatError, load_hf_weights, load_strict
from utils.video import FilterChain, decode, displayed_size, sample

IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)    # preprocessor_config.json image_mean (spec ilcacm §2.3)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)    # image_std
RESCALE_FACTOR = 1 / 255                             # CLIPImageProcessor rescale_factor (0.00392156862745098)
FRAME_RATE = Fraction(1)                             # framerate=1 ("one feature per second max")
IGNORED_KEYS = ('text_model.', 'text_projection.', 'logit_scale', 'vision_model.embeddings.position_ids')


# ---------------------------------------------------------------------------------------------------- frames
def scaled_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(W, H) of the authors' `scale` filter: `_get_output_dim(h, w)` keeps the shorter side at `size`."""
    if height >= width:
        return size, int(height * size / width)
    return int(width * size / height), size


def frame_filters(width: int, height: int, size: int) -> list[tuple[str, str]]:
    """The authors' `scale=W:H` then `crop=size:size:x:y` (x, y truncated towards zero as `int()`)."""
    out_w, out_h = scaled_size(width, height, size)
    x, y = int((out_w - size) / 2.0), int((out_h - size) / 2.0)
    return [('scale', f'{out_w}:{out_h}:flags=bicubic'), ('crop', f'{size}:{size}:{x}:{y}')]


def _rgb_chain(size: int):
    def make(first, path):
        return FilterChain(first, frame_filters(*displayed_size(first, path), size), 'rgb24', path)
    return make


def clip_frames(path, size: int = 224) -> Iterator[np.ndarray]:
    """The (size, size, 3) uint8 RGB frames of `path` at 1 fps (the `fps` filter's rule); the first frame when
    the rule gives none (module docstring)."""
    count = 0
    for _, frame in sample(path, FRAME_RATE, _rgb_chain(size)):
        count += 1
        yield frame
    if count == 0:
        first = next(iter(decode(path))).frame
        yield _rgb_chain(size)(first, path)(first)


def preprocess(pixels: torch.Tensor, size: int = 224) -> torch.Tensor:
    """`CLIPImageProcessor` on (N, size, size, 3) uint8 RGB frames → (N, 3, size, size) float32: rescale in float64
    then float32, normalise in float32 (module docstring: its resize and crop are identities at this size)."""
    if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (size, size, 3):
        raise ValueError(f"CLIP preprocessing takes (N, {size}, {size}, 3) frames (the crop size), "
                         f"got {tuple(pixels.shape)}")
    x = pixels.permute(0, 3, 1, 2).to(torch.float64).mul(RESCALE_FACTOR).to(torch.float32)
    mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


# ----------------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class CLIPVisionConfig:
    """`vision_config` of a HF CLIP `config.json` (defaults: transformers' CLIPVisionConfig) + `projection_dim`."""
    num_channels: int = 3                  # the image and its patches
    image_size: int = 224
    patch_size: int = 32
    hidden_size: int = 768                 # the transformer: width, MLP width, depth, heads
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    hidden_act: str = 'quick_gelu'         # MLP activation and LayerNorm epsilon
    layer_norm_eps: float = 1e-5
    projection_dim: int = 512              # get_image_features: the visual projection of the class token

    @classmethod
    def from_hf(cls, config: dict, source: str) -> 'CLIPVisionConfig':
        vision = config.get('vision_config')
        if not isinstance(vision, dict):
            raise CheckpointFormatError(f"{source}: no 'vision_config' (expected a Hugging Face CLIP config.json)")
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in vision.items() if k in names}
        if 'projection_dim' in config:           # CLIPModel.visual_projection uses the top-level projection_dim
            values['projection_dim'] = config['projection_dim']
        result = cls(**values)
        if result.hidden_act not in ACTIVATIONS:
            raise CheckpointFormatError(f"{source}: vision_config.hidden_act {result.hidden_act!r} is not one of "
                                        f"{sorted(ACTIVATIONS)}")
        return result


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {'quick_gelu': quick_gelu, 'gelu': F.gelu}


class Embeddings(nn.Module):
    def __init__(self, c: CLIPVisionConfig):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(c.hidden_size))
        self.patch_embedding = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, c.patch_size, bias=False)
        self.position_embedding = nn.Embedding((c.image_size // c.patch_size) ** 2 + 1, c.hidden_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight


class Attention(nn.Module):
    def __init__(self, c: CLIPVisionConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(c.hidden_size, c.hidden_size)
                                                                for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = (proj(x).view(n, t, self.heads, d // self.heads).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v)          # softmax(q kᵀ / √head_dim) v, no mask
        return self.out_proj(out.transpose(1, 2).reshape(n, t, d))


class MLP(nn.Module):
    def __init__(self, c: CLIPVisionConfig):
        super().__init__()
        self.act = ACTIVATIONS[c.hidden_act]
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EncoderLayer(nn.Module):
    """Pre-LN block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, c: CLIPVisionConfig):
        super().__init__()
        self.self_attn = Attention(c)
        self.layer_norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = MLP(c)
        self.layer_norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, c: CLIPVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.num_hidden_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class VisionTransformer(nn.Module):
    """HF `CLIPVisionTransformer`: its pooled output (post_layernorm of the class token)."""

    def __init__(self, c: CLIPVisionConfig):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.pre_layrnorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)   # (sic) HF's parameter name
        self.encoder = Encoder(c)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.pre_layrnorm(self.embeddings(pixels)))
        return self.post_layernorm(hidden[:, 0])


class CLIPImageEncoder(nn.Module):
    """`CLIPModel.get_image_features`: `visual_projection(vision_model(pixels).pooler_output)`."""

    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.config = config
        self.vision_model = VisionTransformer(config)
        self.visual_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(self.vision_model(pixels))

    @classmethod
    def from_pretrained(cls, local_dir) -> 'CLIPImageEncoder':
        """A HF CLIP folder (`config.json` + `model.safetensors` or `pytorch_model.bin`); text weights ignored."""
        local_dir = Path(local_dir)
        config_path = local_dir / 'config.json'
        if not config_path.is_file():
            raise CheckpointFormatError(f"{local_dir}: no config.json (expected a Hugging Face CLIP folder)")
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as error:
            raise CheckpointFormatError(f"{config_path}: not JSON ({error})") from None
        model = cls(CLIPVisionConfig.from_hf(config, str(config_path)))
        state, weights_path = load_hf_weights(local_dir)
        load_strict(model, {k: v for k, v in state.items() if not k.startswith(IGNORED_KEYS)}, str(weights_path))
        return model.eval()


class ClipExtractor(Extractor):
    """ILCACM's CLIP features of one video: `units` are its 1-fps frames, a batch of them gives (B, D) features."""
    name = 'clip'

    def __init__(self, model: CLIPImageEncoder, device='cpu', dtype=torch.float32):
        super().__init__(model, device, dtype)
        self.size = model.config.image_size
        self.dim = model.config.projection_dim

    def units(self, path) -> Iterator[np.ndarray]:
        return clip_frames(path, self.size)

    def forward_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(preprocess(pixels, self.size).to(self.dtype))
