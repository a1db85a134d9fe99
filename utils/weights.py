"""Weight files without extra packages (spec ilcacm §7.2): safetensors read and written by hand (a u64
little-endian header length, a JSON header, raw buffers), Hugging Face model folders, and strict state-dict loading.
Used by GPT-2, the CLIP and C3D extractors and the ILCACM checkpoint converter."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


class CheckpointFormatError(ValueError):
    """A model folder or weight file that cannot be read: names the file and the offending key/field."""


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_SAFETENSORS_NAMES = {dtype: name for name, dtype in _SAFETENSORS_DTYPES.items()}


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read every tensor of a `.safetensors` file into CPU tensors of the stored dtype."""
    path = Path(path)
    if sys.byteorder != "little":
        raise CheckpointFormatError(f"{path}: reading safetensors needs a little-endian machine")
    raw = bytearray(path.stat().st_size)
    with open(path, "rb") as f:
        f.readinto(raw)
    header_len = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else len(raw)
    try:
        header = json.loads(raw[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointFormatError(f"{path}: unreadable safetensors header ({err})") from None
    header.pop("__metadata__", None)
    data_start = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise CheckpointFormatError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']!r}")
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        if data_start + end > len(raw):
            raise CheckpointFormatError(f"{path}: tensor {name!r} runs past the end of the file")
        count = (end - begin) // torch.empty(0, dtype=dtype).element_size()
        flat = (torch.frombuffer(raw, dtype=dtype, count=count, offset=data_start + begin) if count
                else torch.empty(0, dtype=dtype))
        tensors[name] = flat.reshape(info["shape"]).clone()
    return tensors


def load_hf_weights(local_dir: str | Path) -> tuple[dict[str, torch.Tensor], Path]:
    """(state dict, file) of a Hugging Face model folder: `model.safetensors`, else `pytorch_model.bin`
    (read with `weights_only=True`: no code runs)."""
    local_dir = Path(local_dir)
    if (local_dir / "model.safetensors").is_file():
        return load_safetensors(local_dir / "model.safetensors"), local_dir / "model.safetensors"
    if (local_dir / "pytorch_model.bin").is_file():
        path = local_dir / "pytorch_model.bin"
        return torch.load(path, map_location="cpu", weights_only=True), path
    raise CheckpointFormatError(f"{local_dir}: neither model.safetensors nor pytorch_model.bin found")


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> None:
    """Write tensors in the safetensors layout (header padded to 8 bytes, as the reference writer does)."""
    header, chunks, offset = {}, [], 0
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {"dtype": _SAFETENSORS_NAMES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt", **(metadata or {})}
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as f:
        f.write(len(header_bytes).to_bytes(8, "little"))
        f.write(header_bytes)
        for chunk in chunks:
            f.write(chunk)


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model` as float32: every parameter present, no other key, shapes equal; else a
    CheckpointFormatError naming `source` and the key."""
    own = model.state_dict()
    unexpected, missing = sorted(set(state) - set(own)), sorted(set(own) - set(state))
    if unexpected or missing:
        raise CheckpointFormatError(f"{source}: {len(missing)} weights missing (e.g. {missing[:3]}), "
                                    f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise CheckpointFormatError(f"{source}: {key!r} has shape {tuple(tensor.shape)}, "
                                        f"expected {tuple(own[key].shape)}")
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
