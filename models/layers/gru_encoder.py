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
the same and a batch of videos of mixed lengths costs its valid steps, not B × T_max. The layers'
states stay packed (`LayerStates`): the models read them at one step per row (`LayerStates.at`), and
the `(layers, B, T, H)` tensor of the original is built only when asked for (`forward`). Dropout between
layers is drawn for the valid steps only: the same distribution at every step the model reads, but not
the same random numbers as a padded computation under the same seed.

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
        # the padded row (batch-major flattening of (B, T)) of each packed row, and the packed row of each
        # padded row (-1 at padded steps)
        rows_batch_major = (order.unsqueeze(0) * steps + time.unsqueeze(1))[valid]
        packed_row = torch.full((len(lengths) * steps,), -1, dtype=torch.long)
        packed_row[rows_batch_major] = torch.arange(len(rows_batch_major))
        self.rows_batch_major, self.packed_row = rows_batch_major.to(device), packed_row.to(device)
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

    def run(self, gru: nn.GRU, rows: torch.Tensor) -> torch.Tensor:
        """`gru` over packed rows `(R, in)` → its states `(R, H)`, packed the same way."""
        out, _ = gru(PackedSequence(rows, self.batch_sizes, self.sorted_indices, self.unsorted_indices))
        return out.data

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """The valid steps of `x (B, T, F)` as packed rows `(R, F)`."""
        batch, steps = self.shape
        return x.reshape(batch * steps, -1).index_select(0, self.rows_batch_major)

    def unpack(self, rows: torch.Tensor) -> torch.Tensor:
        """Packed rows `(R, F)` → `(B, T, F)` (contiguous), zeros at padded steps."""
        batch, steps = self.shape
        out = rows.new_zeros(batch * steps, rows.size(1)).index_copy(0, self.rows_batch_major, rows)
        return out.view(batch, steps, -1)

    def rows_at(self, batch_rows: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """The packed row of step `steps[n]` of batch row `batch_rows[n]` (a valid step), `(N,)`."""
        return self.packed_row[batch_rows.long() * self.shape[1] + steps.long()]

    def repeat(self, times: int) -> 'Packing':
        """The packing of `x.repeat(times, 1, 1)`; its `source_rows[j]` is the packed row here that its packed
        row j repeats (`rows.index_select(0, source_rows)` packs the repeated batch from this one's rows)."""
        repeated = Packing(self.lengths.repeat(times), self.shape[1], self.sorted_indices.device)
        repeated.source_rows = self.packed_row[repeated.rows_batch_major % self.packed_row.numel()]
        return repeated


class LayerStates:
    """Every layer's hidden state at every step of a batch of B rows, as the encoder computed it: each layer's
    `(B', T, H)` tensor, or its packed rows `(R, H)` with their `Packing` (valid steps only). The batch is rows
    `offset … offset+B-1` of each layer's tensor (two encodings computed together share a tensor)."""

    def __init__(self, layers, batch: int):
        self.layers = layers  # [(tensor, packing or None, offset)] per layer
        self.batch = batch

    def at(self, steps: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Every layer's state at step `steps[n]` of batch row `rows[n]` (default: row n): `(layers, N, H)`.
        Steps must be valid (< the row's length) when the states are packed."""
        rows = torch.arange(self.batch, device=steps.device) if rows is None else rows.long()
        states = []
        for tensor, packing, offset in self.layers:
            if packing is None:
                states.append(tensor[rows + offset, steps.long()])
            else:
                states.append(tensor.index_select(0, packing.rows_at(rows + offset, steps)))
        return torch.stack(states)

    def padded(self) -> torch.Tensor:
        """`hidden_all (layers, B, T, H)` of the original, zeros at padded steps."""
        return torch.stack([(tensor if packing is None else packing.unpack(tensor))[offset:offset + self.batch]
                            for tensor, packing, offset in self.layers])


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
        return self.states(x, lengths).padded()

    def states(self, x: torch.Tensor, lengths=None) -> LayerStates:
        """`forward` as `LayerStates` (packed when some step is padded)."""
        packing = Packing.of(lengths, x)
        return self.states_of(_rows(x, packing), packing, x.size(0))

    def states_of(self, inputs: torch.Tensor, packing, batch: int) -> LayerStates:
        """`states` from `x` as it enters the first layer: `(B, T, in)`, or its packed rows with their packing."""
        return LayerStates([(out, packing, 0) for out in self._layers(inputs, packing, range(len(self)))], batch)

    def _layers(self, x, packing, layers) -> list[torch.Tensor]:
        """Layers `layers` (consecutive) from `x`, the input of the first (`(B, T, in)`, or packed rows with a
        packing): each one's output, in the same form."""
        outputs = []
        for k in layers:
            if k > 0:
                x = F.dropout(x, self.dropout, self.training)
            x = self[k](x)[0] if packing is None else packing.run(self[k], x)
            outputs.append(x)
        return outputs

    def states_twice_of(self, inputs: torch.Tensor, packing, batch: int) -> tuple[LayerStates, LayerStates]:
        """Two calls of `states_of(inputs, packing, batch)`, computed together: the first layer runs once (its
        input has no dropout, so both calls compute the same thing), and each later layer runs once over both
        calls' rows, each call with its own dropout mask. Without dropout, both are the same object."""
        if not (self.training and self.dropout > 0) or len(self) == 1:
            states = self.states_of(inputs, packing, batch)
            return states, states
        first = self._layers(inputs, packing, [0])[0]
        if packing is None:
            both = None
            later = self._layers(first.repeat(2, 1, 1), None, range(1, len(self)))
        else:
            both = packing.repeat(2)
            later = self._layers(first.index_select(0, both.source_rows), both, range(1, len(self)))
        return tuple(LayerStates([(first, packing, 0), *((out, both, k * batch) for out in later)], batch)
                     for k in range(2))


def _rows(x: torch.Tensor, packing) -> torch.Tensor:
    """`x (B, T, F)` as the layers take it: itself, or its packed rows when some step is padded."""
    return x if packing is None else packing.pack(x)


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
        outputs, states = self.encode(x, lengths)
        return outputs, states.padded()

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, LayerStates]:
        """`forward` with the states as `LayerStates` (what the models read: a state per row, no padded copy)."""
        packing = Packing.of(lengths, x)
        inputs = _rows(x, packing)  # packed once, for the GRU layers and the residual
        states = self.rnn_cell.states_of(inputs, packing, x.size(0))
        return self._outputs(inputs, states, packing), states

    def forward_twice(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        """`(forward(x, lengths), forward(x, lengths))` with the shared work done once (`encode_twice`)."""
        return tuple((outputs, states.padded()) for outputs, states in self.encode_twice(x, lengths))

    def encode_twice(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        """`(encode(x, lengths), encode(x, lengths))` computed together (`LayerwiseGRU.states_twice_of`): the two
        results differ only by their dropout masks, as two calls' would."""
        packing = Packing.of(lengths, x)
        inputs = _rows(x, packing)
        first, second = self.rnn_cell.states_twice_of(inputs, packing, x.size(0))
        if first is second:
            encoding = self._outputs(inputs, first, packing), first
            return encoding, encoding
        top, top_packing, _ = first.layers[-1]  # both calls' rows
        residual = self._residual(inputs) if self.use_residual else None
        if top_packing is None:
            both = top.split(x.size(0))
            if residual is not None:
                both = tuple(half + residual for half in both)
        else:
            if residual is not None:
                top = top + residual.index_select(0, top_packing.source_rows)
            both = top_packing.unpack(top).split(x.size(0))
        return (both[0], first), (both[1], second)

    def _outputs(self, inputs, states, packing):
        """The top layer's states plus the residual, `(B, T, H)`."""
        top = states.layers[-1][0]
        if self.use_residual:
            top = top + self._residual(inputs)
        return top if packing is None else packing.unpack(top)

    def _residual(self, inputs):
        """`linear(x)` (or `x`) of the encoder's input, in the layers' form (packed rows with a `Packing`)."""
        return self.linear(inputs) if hasattr(self, 'linear') else inputs


def layer_major(hidden: torch.Tensor) -> torch.Tensor:
    """`hidden_transpose`: `(layers, N, H)` → `(N, layers·H)` as `[layer0 ; layer1 ; …]` (spec §3.3)."""
    return hidden.transpose(0, 1).reshape(hidden.size(1), -1)


def select_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`x.index_select(0, index)`, or `x` itself when `index` is `0 … len(x)-1` (one sentence per video, as in
    training): no copy, no gradient scatter. Checked on CPU only, where the check costs no device sync."""
    if index.device.type == 'cpu' and index.numel() == x.size(0) and torch.equal(
            index, torch.arange(x.size(0), dtype=index.dtype)):
        return x
    return x.index_select(0, index)
