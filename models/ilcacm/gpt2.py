"""GPT-2 in plain PyTorch, loading Hugging Face `gpt2` / `distilgpt2` folders (spec ilcacm §3.2, §7.2).

Parameter names and layouts are exactly those of Hugging Face's `GPT2LMHeadModel` (`transformer.wte.weight`,
`transformer.h.{i}.attn.c_attn.weight` stored `(in, out)` as HF's Conv1D, ...), so a state dict of this module is
a state dict of the original model and vice versa (spec ilcacm_state_dict.md). `lm_head.weight` is tied to
`transformer.wte.weight`.

Files are read and written without the `safetensors` package (utils/weights.py).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.layers.sdpa import attention_kernels
from utils.weights import CheckpointFormatError, load_hf_weights, save_safetensors


# --------------------------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------------------------

@dataclass
class GPT2Config:
    """The fields of a Hugging Face GPT-2 `config.json` that the network uses (distilgpt2 values, spec §3.2)."""
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 6
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    bos_token_id: int = 50256
    eos_token_id: int = 50256

    @classmethod
    def from_json(cls, path: str | Path) -> "GPT2Config":
        config = json.loads(Path(path).read_text())
        if config.get("model_type", "gpt2") != "gpt2":
            raise CheckpointFormatError(f"{path}: model_type {config['model_type']!r} is not 'gpt2'")
        if config.get("activation_function", "gelu_new") != "gelu_new":
            raise CheckpointFormatError(f"{path}: activation_function {config['activation_function']!r} "
                                        "is not supported (only 'gelu_new')")
        if config.get("tie_word_embeddings", True) is not True:
            raise CheckpointFormatError(f"{path}: tie_word_embeddings=false is not supported")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})

    def to_hf_dict(self) -> dict:
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", **asdict(self)}


class Conv1D(nn.Module):
    """HF's GPT-2 linear layer: weight stored (in, out), y = x @ W + b."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight)
        return out.view(*x.shape[:-1], self.weight.size(1))


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention; `c_attn` columns are [q | k | v], heads are contiguous slices (spec §7.2)."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x, attn_mask, layer_past):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if layer_past is not None:
            k = torch.cat((layer_past[0], k), dim=-2)
            v = torch.cat((layer_past[1], v), dim=-2)
        # attn_mask None means "plain causal, nothing padded" (HF drops the mask in that case too)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_pdrop if self.training else 0.0,
            is_causal=attn_mask is None and T > 1)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y)), (k, v)


class MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        n_inner = config.n_inner or 4 * config.n_embd
        self.c_fc = Conv1D(config.n_embd, n_inner)
        self.c_proj = Conv1D(n_inner, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        # gelu_new = tanh approximation (spec §7.2)
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LN block: x += attn(ln_1 x); x += mlp(ln_2 x) (spec §3.2)."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask, layer_past):
        a, present = self.attn(self.ln_1(x), attn_mask, layer_past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), present


def attention_bias(attention_mask: torch.Tensor | None, query_len: int, past_len: int,
                   dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """Additive (B, 1, Tq, Tk) mask: 0 where key j is visible from query i, the dtype's minimum elsewhere.

    Visible = causal (j <= past_len + i) and not padded. As in transformers 4.44 the masked value is finite, so a
    query row whose keys are all masked attends uniformly instead of producing NaN (spec ilcacm §11).
    Returns None when SDPA's own `is_causal` (or no mask at all, for one query) is exact: nothing padded and
    either no cache or a single query.
    """
    unpadded = attention_mask is None or bool(attention_mask.all())
    if unpadded and (past_len == 0 or query_len == 1):
        return None
    key_len = past_len + query_len
    causal = torch.arange(key_len, device=device)[None, :] <= torch.arange(past_len, key_len, device=device)[:, None]
    visible = causal[None, None]
    if attention_mask is not None:
        visible = visible & attention_mask[:, None, None, :].bool()
    return torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill(~visible, torch.finfo(dtype).min)


class GPT2(nn.Module):
    """GPT-2 language model (HF `GPT2LMHeadModel` layout) with a KV cache and an `inputs_embeds` entry point."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.n_positions, config.n_embd),
            drop=nn.Dropout(config.embd_pdrop),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        """`lm_head.weight` is `wte.weight` (spec §7.2), as HF's `tie_weights`: no new module, no random draws."""
        self.lm_head.weight = self.transformer.wte.weight
        self.lm_head.out_features = self.transformer.wte.num_embeddings

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, n_layer: int = 6, n_head: int = 12, n_embd: int = 768, vocab_size: int = 50257,
                    n_positions: int = 1024, **overrides) -> "GPT2":
        """Randomly initialised GPT-2, initialised as HF does: N(0, initializer_range) for every linear and
        embedding weight, N(0, initializer_range / sqrt(2 n_layer)) for both `c_proj` weights, zero biases,
        unit LayerNorms."""
        config = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size,
                            n_positions=n_positions, **overrides)
        model = cls(config)
        std = config.initializer_range
        for name, p in model.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * config.n_layer))
            elif p.dim() == 2:  # Conv1D weights, wte, wpe
                nn.init.normal_(p, 0.0, std)
            elif ".ln_" in name and name.endswith("weight"):
                nn.init.ones_(p)
            else:  # biases
                nn.init.zeros_(p)
        return model

    @classmethod
    def without_init(cls, config: GPT2Config) -> "GPT2":
        """A GPT-2 whose weights are uninitialised CPU memory, built without drawing a random number: HF's
        `from_pretrained` builds under `no_init_weights` (spec §3.7), so seeding then loading leaves the generator
        where the authors' code leaves it. Built on the meta device, then given storage; every weight must then be
        loaded (`load_hf_state_dict` is strict)."""
        with torch.device("meta"):
            model = cls(config)
        model.to_empty(device="cpu")
        model.tie_weights()
        return model

    @classmethod
    def from_pretrained(cls, local_dir: str | Path, vocab_size: int | None = None) -> "GPT2":
        """Load a Hugging Face GPT-2 folder (`config.json` + `model.safetensors` or `pytorch_model.bin`).

        Accepts keys with or without the `transformer.` prefix, ignores the causal-mask buffers of old `.bin`
        files and any stored `lm_head.weight` (it is tied to `wte`). With `vocab_size`, the vocabulary is then
        resized as transformers 4.44 `resize_token_embeddings` does (spec §3.7; ILCACM uses 50,260). Loading draws
        no random numbers (`without_init`); the resize draws exactly HF's.
        """
        local_dir = Path(local_dir)
        config_path = local_dir / "config.json"
        if not config_path.is_file():
            raise CheckpointFormatError(f"{local_dir}: no config.json (expected a Hugging Face GPT-2 folder)")
        model = cls.without_init(GPT2Config.from_json(config_path))
        state, weights_path = load_hf_weights(local_dir)
        model.load_hf_state_dict(state, source=str(weights_path))
        if vocab_size is not None and vocab_size != model.config.vocab_size:
            model.resize_token_embeddings(vocab_size)
        return model

    def load_hf_state_dict(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Copy a HF GPT-2 state dict into this model (strict: every parameter present, shapes equal)."""
        own = {k: v for k, v in self.state_dict().items() if k != "lm_head.weight"}
        found = {}
        for key, tensor in state.items():
            name = key if key.startswith("transformer.") else "transformer." + key
            if name == "transformer.lm_head.weight" or key == "lm_head.weight":
                continue  # tied to wte
            if name.endswith((".attn.bias", ".attn.masked_bias")) and name not in own:
                continue  # causal-mask buffers of old .bin files
            if name not in own:
                raise CheckpointFormatError(f"{source}: unexpected key {key!r} for a GPT-2 model")
            if tuple(tensor.shape) != tuple(own[name].shape):
                raise CheckpointFormatError(f"{source}: key {key!r} has shape {tuple(tensor.shape)}, "
                                            f"config.json implies {tuple(own[name].shape)}")
            found[name] = tensor
        missing = sorted(set(own) - set(found))
        if missing:
            raise CheckpointFormatError(f"{source}: missing {len(missing)} GPT-2 weights, e.g. {missing[:3]}")
        with torch.no_grad():
            for name, tensor in found.items():
                own[name].copy_(tensor)

    def resize_token_embeddings(self, new_num_tokens: int) -> None:
        """Grow/shrink the (tied) vocabulary like transformers 4.44 (spec §3.7, §11), with its random draws:
        `nn.Embedding(new_num_tokens, n_embd)` draws N(0, 1) for every entry, `_init_weights` redraws every entry
        from N(0, initializer_range), the old rows are copied over, and `lm_head` is re-tied (no draws). So under
        one seed the new rows are HF's bit for bit (rows [old:] of the second draw), and the generator ends where
        HF leaves it. No mean-resizing: that arrived in 4.46."""
        old = self.transformer.wte
        new = nn.Embedding(new_num_tokens, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
        new.weight.data.normal_(mean=0.0, std=self.config.initializer_range)
        n = min(old.num_embeddings, new_num_tokens)
        new.weight.data[:n] = old.weight.data[:n]
        new.weight.requires_grad_(old.weight.requires_grad)
        self.transformer.wte = new
        self.config.vocab_size = new_num_tokens
        self.tie_weights()

    def save_pretrained(self, out_dir: str | Path, dtype: torch.dtype | None = None,
                        safe_serialization: bool = True) -> None:
        """Write `config.json` + `model.safetensors` (or `pytorch_model.bin`) in HF layout (`lm_head` omitted)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(self.config.to_hf_dict(), indent=2) + "\n")
        state = {k: (v.to(dtype) if dtype is not None else v).detach().cpu().contiguous()
                 for k, v in self.state_dict().items() if k != "lm_head.weight"}
        if safe_serialization:
            save_safetensors(state, out_dir / "model.safetensors")
        else:
            torch.save(state, out_dir / "pytorch_model.bin")

    # ---------------------------------------------------------------- forward
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings `wte(input_ids)` (used to build `[video prefix ; prompt]` inputs, spec §3.2)."""
        return self.transformer.wte(input_ids)

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, past_key_values=None,
                use_cache=False, position_ids=None, last_logits_only=False):
        """Logits (B, T, vocab), or `(logits, past_key_values)` when `use_cache`.

        attention_mask (B, past + T) of 1/0 masks padded keys; position_ids default to
        `arange(past, past + T)` whatever the mask, as HF's plain forward (spec §11). The cache is a tuple per
        layer of (key, value), each (B, n_head, past + T, head_dim). `last_logits_only` computes the LM head on
        the last position only (generation).
        """
        x, presents = self.hidden_states(input_ids, inputs_embeds, attention_mask, past_key_values, position_ids)
        logits = self.lm_head(x[:, -1:] if last_logits_only else x)
        return (logits, presents) if use_cache else logits

    def hidden_states(self, input_ids=None, inputs_embeds=None, attention_mask=None, past_key_values=None,
                      position_ids=None):
        """`forward` without the LM head: the final hidden states (B, T, n_embd) after `ln_f`, and the cache.
        `lm_head` of any subset of them gives those positions' logits (the training loss needs only the
        supervised ones)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("GPT2.forward: pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.transformer.wte(input_ids)
        B, T, _ = inputs_embeds.shape
        past_len = 0 if past_key_values is None else past_key_values[0][0].size(-2)
        if past_len + T > self.config.n_positions:
            raise ValueError(f"GPT2.forward: sequence length {past_len + T} exceeds n_positions "
                             f"{self.config.n_positions}")
        if position_ids is None:
            position_ids = torch.arange(past_len, past_len + T, device=inputs_embeds.device)[None]
        x = self.transformer.drop(inputs_embeds + self.transformer.wpe(position_ids))
        bias = attention_bias(attention_mask, T, past_len, self._compute_dtype(x), x.device)
        presents = []
        with attention_kernels():
            for i, block in enumerate(self.transformer.h):
                x, present = block(x, bias, None if past_key_values is None else past_key_values[i])
                presents.append(present)
        return self.transformer.ln_f(x), tuple(presents)

    def _compute_dtype(self, x: torch.Tensor) -> torch.dtype:
        """dtype of q/k/v inside attention (the autocast dtype when autocast is on)."""
        if torch.is_autocast_enabled(x.device.type):
            return torch.get_autocast_dtype(x.device.type)
        return x.dtype
