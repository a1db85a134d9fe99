"""What the extraction pipeline (models/extractors/pipeline.py) needs of an extractor.

`units(path)` runs on the decoding side (worker threads): the model inputs of one video as uint8 numpy arrays,
in order (CLIP: frames; C3D: 16-frame windows). `__call__(batch)` runs the model on a stacked batch of units on
`device` in `dtype` and returns float32 features (B, dim) as numpy.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch


DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class Extractor:
    name = ''
    dim = 0

    def __init__(self, model: torch.nn.Module, device='cpu', dtype=torch.float32):
        self.device, self.dtype = torch.device(device), dtype
        self.model = model.to(device=self.device, dtype=dtype).eval()

    def units(self, path) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def forward_batch(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        features = self.forward_batch(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        return features.to(torch.float32).cpu().numpy()
