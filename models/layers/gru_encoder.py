"""GRU sequence encoder that exposes every layer's state at every step (spec wsdec §3.1, §6.5).

The original `RNNSeqEncoder` fed a multi-layer `nn.GRU` one time step at a time to collect each
layer's hidden state after each step. Here each layer is its own single-layer GRU run over the
whole sequence in one call (cuDNN on GPU, the fused training path of `FusedGRU` on CPU), with the
inter-layer dropout of a multi-layer GRU applied between the calls; the outputs are identical and
both layers' per-step states come for free.

Padded steps: given each row's length, every layer runs over the valid steps only (packed rows, as
`PackedSequence`); the states at padded steps are zeros. The original computed them from the zero
padding, but nothing reads them: every consumer masks or indexes within the length (the soft masks
and attention weights are exactly 0 there, the gathered states are at steps < L), so the results are
the same and a batch of videos of mixed lengths costs its valid steps, not B × T_max.

State-dict naming: layer k's parameters are `rnn_cell.{k}.weight_ih_l0` etc., where the original
multi-layer GRU had `rnn_cell.weight_ih_l{k}` (`models/wsdec/state_dict_names.py` maps the two).
"""
import torch
from torch import nn
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence

from models.layers.fused_gru import FusedGRU


class Packing:
    """How a padded batch `(B, T, ·)` with row lengths maps to packed rows (`PackedSequence` order: longest
    first, step by step), and back. `Packing.of` returns None when no step is padded."""

    def __init__(self, lengths: torch.Tensor, steps: int, device):
        lengths = lengths.detach().to('cpu').long().reshape(-1)
        if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
            raise ValueError(f"sequence lengths must lie in [1, {steps}] (the padded length); got "
                             f"{int(lengths.min())}..{int(lengths.max())}")
        order = torch.sort(lengths, descending=True, stable=True).indices
        time = torch.arange(steps)
        valid = time.unsqueeze(1) < lengths[order].unsqueeze(0)  # (T, B) over the sorted rows
        self.batch_sizes = valid.sum(1)
        self.batch_sizes = self.batch_sizes[self.batch_sizes > 0]
        # the padded row of each packed row, in a batch-major and in a time-major flattening of (B, T)
        self.rows_batch_major = (order.unsqueeze(0) * steps + time.unsqueeze(1))[valid].to(device)
        self.rows_time_major = (time.unsqueeze(1) * len(lengths) + order.unsqueeze(0))[valid].to(device)
        self.sorted_indices = order.to(device)
        self.unsorted_indices = torch.argsort(order).to(device)
        self.lengths, self.shape = lengths, (len(lengths), steps)

    @classmethod
    def of(cls, lengths, x: torch.Tensor):
        """The packing of `x (B, T, ·)` for row lengths `lengths` (a Packing already built is passed through)."""
        if isinstance(lengths, Packing):
            return lengths
        if lengths is None or bool((lengths.reshape(-1) >= x.size(1)).all()):
            return None
        return cls(lengths, x.size(1), x.device)

    def run(self, gru: nn.GRU, x: torch.Tensor) -> torch.Tensor:
        """`gru` (batch first) over the valid steps of `x (B, T, in)`; `(B, T, H)` with zeros at padded steps."""
        out, _ = gru(PackedSequence(self.pack(x), self.batch_sizes, self.sorted_indices, self.unsorted_indices))
        return self.unpack(out.data)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """The valid steps of `x (B, T, F)` as packed rows `(R, F)`."""
        batch, steps = self.shape
        if x.is_contiguous():
            return x.reshape(batch * steps, -1).index_select(0, self.rows_batch_major)
        return x.transpose(0, 1).reshape(steps * batch, -1).index_select(0, self.rows_time_major)

    def unpack(self, rows: torch.Tensor) -> torch.Tensor:
        """Packed rows `(R, F)` → `(B, T, F)`, zeros at padded steps: a batch-first view of a time-major tensor,
        the layout `FusedGRU`/`nn.GRU` return, so that dropout draws the same masks on it as on theirs."""
        batch, steps = self.shape
        out = rows.new_zeros(steps * batch, rows.size(1)).index_copy(0, self.rows_time_major, rows)
        return out.view(steps, batch, -1).transpose(0, 1)

    def repeat(self, times: int) -> 'Packing':
        """The packing of `x.repeat(times, 1, 1)`."""
        return Packing(self.lengths.repeat(times), self.shape[1], self.sorted_indices.device)


class LayerwiseGRU(nn.ModuleList):
    """A stack of single-layer GRUs (batch first) returning every layer's hidden state at every step.

    Dropout `dropout` is applied to the output of every layer but the last, in training mode only,
    exactly where `nn.GRU(num_layers, dropout=...)` applies it.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0):
        super().__init__(FusedGRU(input_size if k == 0 else hidden_size, hidden_size, batch_first=True)
                         for k in range(num_layers))
        self.dropout = dropout

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`x (B, T, in)` → `hidden_all (layers, B, T, H)`: layer k's state after each step.

        The initial hidden state is zero (spec §3.1). With `lengths (B,)` (or their `Packing`), only the valid
        steps are computed and the states at padded steps are zeros (module docstring).
        """
        return torch.stack(self.layer_outputs(x, lengths))

    def layer_outputs(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        """`forward` as a list of each layer's `(B, T, H)` states (no stacked copy for autograd to fill)."""
        return self._layers(x, Packing.of(lengths, x), range(len(self)))

    def _layers(self, x, packing, layers) -> list[torch.Tensor]:
        """Layers `layers` (consecutive) from `x`, the input of the first: each one's output."""
        outputs = []
        for k in layers:
            if k > 0:
                x = F.dropout(x, self.dropout, self.training)
            x = self[k](x)[0] if packing is None else packing.run(self[k], x)
            outputs.append(x)
        return outputs

    def forward_twice(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        """Two calls of `forward(x, lengths)` on the same input, computed together: the first layer runs once
        (its input has no dropout, so both calls compute the same thing), and each later layer runs once over
        both calls' rows, each call with its own dropout mask, as two separate calls would draw them."""
        first, second = self.layer_outputs_twice(x, lengths)
        if first is second:
            hidden_all = torch.stack(first)
            return hidden_all, hidden_all
        return torch.stack(first), torch.stack(second)

    def layer_outputs_twice(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        """`forward_twice` as two lists of layer outputs (the same list when nothing differs: no dropout)."""
        if not (self.training and self.dropout > 0) or len(self) == 1:
            outputs = self.layer_outputs(x, lengths)
            return outputs, outputs
        packing = Packing.of(lengths, x)
        first = self._layers(x, packing, [0])[0]
        later = self._layers(first.repeat(2, 1, 1), packing and packing.repeat(2), range(1, len(self)))
        pairs = [out.split(x.size(0)) for out in later]
        return [first, *(a for a, _ in pairs)], [first, *(b for _, b in pairs)]


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

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`x (B, T, in)` → `outputs (B, T, H)`, `hidden_all (layers, B, T, H)`; `lengths (B,)`: the valid
        steps of each row (LayerwiseGRU.forward)."""
        packing = Packing.of(lengths, x)  # built once for the GRU layers and the residual
        layers = self.rnn_cell.layer_outputs(x, packing)
        return self._with_residual(x, layers[-1], packing), torch.stack(layers)

    def forward_twice(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        """`(forward(x, lengths), forward(x, lengths))` with the shared work done once
        (`LayerwiseGRU.forward_twice`): the two results differ only by their dropout masks, as two calls' would."""
        packing = Packing.of(lengths, x)
        first, second = self.rnn_cell.layer_outputs_twice(x, packing)
        if first is second:
            out = self._with_residual(x, first[-1], packing), torch.stack(first)
            return out, out
        if not self.use_residual:
            return (first[-1], torch.stack(first)), (second[-1], torch.stack(second))
        residual = self._residual(x, packing)
        return (first[-1] + residual, torch.stack(first)), (second[-1] + residual, torch.stack(second))

    def _residual(self, x, packing):
        """`linear(x)` (or `x`); with a `Packing`, over the valid steps only (zeros at padded ones)."""
        if not hasattr(self, 'linear'):
            return x
        return self.linear(x) if packing is None else packing.unpack(self.linear(packing.pack(x)))

    def _with_residual(self, x, top, packing):
        return top + self._residual(x, packing) if self.use_residual else top


def states_at(hidden_all: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Every layer's state at step `step[n]` of row n: `(layers, N, T, H)`, `(N,)` → `(layers, N, H)`."""
    layers, n, _, h = hidden_all.shape
    index = step.long().view(1, n, 1, 1).expand(layers, n, 1, h)
    return hidden_all.gather(2, index).squeeze(2)


def layer_major(hidden: torch.Tensor) -> torch.Tensor:
    """`hidden_transpose`: `(layers, N, H)` → `(N, layers·H)` as `[layer0 ; layer1 ; …]` (spec §3.3)."""
    return hidden.transpose(0, 1).reshape(hidden.size(1), -1)
