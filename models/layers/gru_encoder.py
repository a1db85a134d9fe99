"""GRU sequence encoder that exposes every layer's state at every step (spec wsdec §3.1, §6.5).

The original `RNNSeqEncoder` fed a multi-layer `nn.GRU` one time step at a time to collect each
layer's hidden state after each step. Here each layer is its own single-layer GRU run over the
whole sequence in one call (cuDNN on GPU, the fused training path of `FusedGRU` on CPU), with the
inter-layer dropout of a multi-layer GRU applied between the calls; the outputs are identical and
both layers' per-step states come for free.

State-dict naming: layer k's parameters are `rnn_cell.{k}.weight_ih_l0` etc., where the original
multi-layer GRU had `rnn_cell.weight_ih_l{k}` (`models/wsdec/state_dict_names.py` maps the two).
"""
import torch
from torch import nn
import torch.nn.functional as F

from models.layers.fused_gru import FusedGRU


class LayerwiseGRU(nn.ModuleList):
    """A stack of single-layer GRUs (batch first) returning every layer's hidden state at every step.

    Dropout `dropout` is applied to the output of every layer but the last, in training mode only,
    exactly where `nn.GRU(num_layers, dropout=...)` applies it.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0):
        super().__init__(FusedGRU(input_size if k == 0 else hidden_size, hidden_size, batch_first=True)
                         for k in range(num_layers))
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x (B, T, in)` → `hidden_all (layers, B, T, H)`: layer k's state after each step.

        The initial hidden state is zero (spec §3.1).
        """
        hidden_all = []
        for k, gru in enumerate(self):
            if k > 0:
                x = F.dropout(x, self.dropout, self.training)
            x, _ = gru(x)
            hidden_all.append(x)
        return torch.stack(hidden_all)

    def forward_twice(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two calls of `forward(x)` on the same input, computed together: the first layer runs once (its
        input has no dropout, so both calls compute the same thing), and each later layer runs once over both
        calls' rows, each call with its own dropout mask, as two separate calls would draw them."""
        if not (self.training and self.dropout > 0) or len(self) == 1:
            hidden_all = self(x)
            return hidden_all, hidden_all
        first, _ = self[0](x)
        n = x.size(0)
        x = first.repeat(2, 1, 1)
        hidden_all = [x]
        for gru in list(self)[1:]:
            x, _ = gru(F.dropout(x, self.dropout, self.training))
            hidden_all.append(x)
        hidden_all = torch.stack(hidden_all)
        return hidden_all[:, :n], hidden_all[:, n:]


class SequenceEncoder(nn.Module):
    """`RNNSeqEncoder` of spec wsdec §3.1: a layer-wise GRU plus an optional input residual.

    With `use_residual`, the top-layer output at each step gets `linear(x_t)` added
    (`Linear(in, H, bias=False)`), or `x_t` itself when `in == H` (no parameters).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 2, dropout: float = 0.0,
                 use_residual: bool = False):
        super().__init__()
        self.rnn_cell = LayerwiseGRU(input_size, hidden_size, num_layers, dropout)
        self.use_residual = use_residual
        if use_residual and input_size != hidden_size:
            self.linear = nn.Linear(input_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`x (B, T, in)` → `outputs (B, T, H)`, `hidden_all (layers, B, T, H)`."""
        hidden_all = self.rnn_cell(x)
        return self._with_residual(x, hidden_all[-1]), hidden_all

    def forward_twice(self, x: torch.Tensor):
        """`(forward(x), forward(x))` with the shared work done once (`LayerwiseGRU.forward_twice`): the two
        results differ only by their dropout masks, as two calls' would."""
        first, second = self.rnn_cell.forward_twice(x)
        if first is second:
            out = self._with_residual(x, first[-1]), first
            return out, out
        if not self.use_residual:
            return (first[-1], first), (second[-1], second)
        residual = self._residual(x)
        return (first[-1] + residual, first), (second[-1] + residual, second)

    def _residual(self, x):
        return self.linear(x) if hasattr(self, 'linear') else x

    def _with_residual(self, x, top):
        return top + self._residual(x) if self.use_residual else top


def states_at(hidden_all: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Every layer's state at step `step[n]` of row n: `(layers, N, T, H)`, `(N,)` → `(layers, N, H)`."""
    layers, n, _, h = hidden_all.shape
    index = step.long().view(1, n, 1, 1).expand(layers, n, 1, h)
    return hidden_all.gather(2, index).squeeze(2)


def layer_major(hidden: torch.Tensor) -> torch.Tensor:
    """`hidden_transpose`: `(layers, N, H)` → `(N, layers·H)` as `[layer0 ; layer1 ; …]` (spec §3.3)."""
    return hidden.transpose(0, 1).reshape(hidden.size(1), -1)
