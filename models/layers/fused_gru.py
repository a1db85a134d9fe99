"""A GRU whose CPU training pass records one autograd node per layer instead of one per time step
(spec wsdec §6.5: the recurrent parts dominate a training step), and skips padded steps.

PyTorch's CPU `nn.GRU` builds its autograd graph step by step, so its backward runs T small matmuls
and gradient accumulations per weight. `GRULayerFunction` keeps the maths of `nn.GRU` (gates r, z, n
in PyTorch's order, `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 - z) ⊙ n + z ⊙ h`) but:

* it works on packed rows (the layout of `PackedSequence`: step t's rows follow step t-1's, and a
  sequence that has ended has no row), so a padded batch costs only its valid steps; a plain
  `(T, B)` sequence is the packed layout with B rows at every step;
* forward: the input projection of all rows is one matmul; each step is one `addmm` for the
  recurrent projection plus in-place gate maths written into preallocated buffers;
* backward: the reverse loop computes only the per-step hidden gradient (one matmul with `W_hh`
  plus elementwise work); the weight, bias and input gradients are one matmul or sum each over all
  rows after the loop.

`FusedGRU` is an `nn.GRU` (same parameters, state-dict names and results, plain or packed input) that
takes this path on CPU when gradients are recorded over more than one step; otherwise it is the stock
`nn.GRU`: cuDNN on CUDA, no graph to record in inference, nothing to batch over time in a single step
(beam search, and the step-by-step original way that `scripts/benchmark_wsdec.py` compares against).
"""
import torch
from torch import nn
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence


def _previous_rows(h0, out, batch_sizes):
    """The state each packed row starts from: `h0` for step 0's rows, else its sequence's row of the step
    before, `(R, H)`."""
    previous = out.new_empty(out.shape)
    previous[:batch_sizes[0]] = h0
    if all(n == batch_sizes[0] for n in batch_sizes):
        previous[batch_sizes[0]:] = out[:out.size(0) - batch_sizes[0]]
        return previous
    sizes = torch.tensor(batch_sizes)
    offsets = sizes.cumsum(0) - sizes
    step_of_row = torch.repeat_interleave(torch.arange(len(batch_sizes)), sizes)[batch_sizes[0]:]
    rows = offsets[step_of_row - 1] + torch.arange(batch_sizes[0], out.size(0)) - offsets[step_of_row]
    torch.index_select(out, 0, rows.to(out.device), out=previous[batch_sizes[0]:])
    return previous


def _last_rows(out, batch_sizes):
    """Each sequence's state after its last step, `(batch_sizes[0], H)`, in packed (sorted) order."""
    batch = batch_sizes[0]
    if all(n == batch for n in batch_sizes):
        return out[out.size(0) - batch:]
    sizes = torch.tensor(batch_sizes)
    offsets = sizes.cumsum(0) - sizes
    rows = torch.arange(batch)
    lengths = (sizes.unsqueeze(0) > rows.unsqueeze(1)).sum(1)
    return out.index_select(0, (offsets[lengths - 1] + rows).to(out.device))


class GRULayerFunction(torch.autograd.Function):
    """One unidirectional GRU layer over packed rows.

    `x (R, in)`: step t's `batch_sizes[t]` rows after step t-1's, `batch_sizes` non-increasing (a tuple of
    ints, `PackedSequence` order); `h0 (batch_sizes[0], H)`; weights as in `nn.GRU` (`weight_ih (3H, in)`,
    `weight_hh (3H, H)`, biases `(3H,)`) → `out (R, H)`: the hidden state after every step of every row.
    """

    @staticmethod
    def forward(ctx, x, batch_sizes, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        if h0.size(0) != batch_sizes[0] or x.size(0) != sum(batch_sizes):
            raise ValueError(f"GRULayerFunction: {x.size(0)} rows and h0 of {h0.size(0)} rows do not fit "
                             f"batch sizes starting {batch_sizes[:3]} (sum {sum(batch_sizes)})")
        hidden = weight_hh.size(1)
        # gates[row] = [W_ir x + b_ir + b_hr, W_iz x + b_iz + b_hz, b_hn, W_in x + b_in]; each step adds
        # W_hh h to the first three blocks, then turns them in place into [r, z, gh_n = W_hn h + b_hn, n]
        gates = x.new_empty(x.size(0), 4 * hidden)
        torch.addmm(bias_ih[:2 * hidden] + bias_hh[:2 * hidden], x, weight_ih[:2 * hidden].t(),
                    out=gates[:, :2 * hidden])
        gates[:, 2 * hidden:3 * hidden] = bias_hh[2 * hidden:]
        torch.addmm(bias_ih[2 * hidden:], x, weight_ih[2 * hidden:].t(), out=gates[:, 3 * hidden:])
        out = x.new_empty(x.size(0), hidden)
        weight_hh_t = weight_hh.t()
        h = h0
        for rows, pre_t, rz_t, r_t, z_t, gh_n_t, n_t, out_t in zip(batch_sizes, *(
                block.split(batch_sizes) for block in (
                    gates[:, :3 * hidden], gates[:, :2 * hidden], gates[:, :hidden], gates[:, hidden:2 * hidden],
                    gates[:, 2 * hidden:3 * hidden], gates[:, 3 * hidden:], out))):
            if h.size(0) != rows:  # sequences that ended drop out of the batch
                h = h[:rows]
            pre_t.addmm_(h, weight_hh_t)
            rz_t.sigmoid_()
            n_t.addcmul_(r_t, gh_n_t).tanh_()
            h = torch.lerp(n_t, h, z_t, out=out_t)  # h' = (1 - z) ⊙ n + z ⊙ h
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(x, h0, weight_ih, weight_hh, gates, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, h0, weight_ih, weight_hh, gates, out = ctx.saved_tensors
        batch_sizes = ctx.batch_sizes
        hidden = out.size(1)
        r, z, gh_n, n = gates.view(-1, 4, hidden).unbind(1)
        previous = _previous_rows(h0, out, batch_sizes)
        # Gate-gradient factors for all rows at once; with dh the gradient of h':
        # da_z = dh ⊙ (h_prev - n) z (1 - z), da_n = dh ⊙ (1 - z)(1 - n²), da_r = da_n ⊙ gh_n r (1 - r).
        one_minus_z = 1 - z
        factor_zn = out.new_empty(out.size(0), 2, hidden)
        torch.sub(previous, n, out=factor_zn[:, 0]).mul_(z).mul_(one_minus_z)
        torch.mul(n, n, out=factor_zn[:, 1]).neg_().add_(1).mul_(one_minus_z)
        factor_rn = out.new_empty(out.size(0), 2, hidden)
        factor_rn[:, 0] = r
        torch.sub(1, r, out=factor_rn[:, 1]).mul_(r).mul_(gh_n)
        # grad[row] = [da_n ⊙ r, da_r, da_z, da_n]: blocks 0-2 are d(W_hh h + b_hh) in the order (n, r, z),
        # blocks 1-3 are d(W_ih x + b_ih) in PyTorch's order (r, z, n)
        grad = out.new_empty(out.size(0), 4, hidden)
        weight_nrz = torch.cat([weight_hh[2 * hidden:], weight_hh[:2 * hidden]])
        grad_out = grad_out.contiguous()
        steps = list(zip(batch_sizes, *(t.split(batch_sizes) for t in (grad, factor_zn, factor_rn, z, grad_out))))
        dh = steps[-1][-1].clone()
        for t in range(len(steps) - 1, -1, -1):
            rows, grad_t, factor_zn_t, factor_rn_t, z_t, _ = steps[t]
            torch.mul(dh.unsqueeze(1), factor_zn_t, out=grad_t[:, 2:])
            torch.mul(grad_t[:, 3:], factor_rn_t, out=grad_t[:, :2])
            recurrent = grad_t.view(rows, 4 * hidden)[:, :3 * hidden]
            if t == 0:
                dh = (dh * z_t).addmm_(recurrent, weight_nrz)
            elif steps[t - 1][0] == rows:
                dh = torch.addcmul(steps[t - 1][-1], dh, z_t).addmm_(recurrent, weight_nrz)
            else:  # the rows of sequences that end at step t-1 only get their output's gradient
                carried = steps[t - 1][-1].clone()
                carried[:rows].addcmul_(dh, z_t).addmm_(recurrent, weight_nrz)
                dh = carried
        grad = grad.view(-1, 4 * hidden)
        grad_gi, grad_gh = grad[:, hidden:], grad[:, :3 * hidden]
        needs = ctx.needs_input_grad
        grad_x = grad_gi.mm(weight_ih) if needs[0] else None
        grad_w_ih = grad_gi.t().mm(x) if needs[3] else None
        grad_w_hh = grad_b_hh = None
        if needs[4]:  # Σ_rows dgh^T h_prev, rows back from (n, r, z) to (r, z, n)
            grad_w_nrz = grad_gh.t().mm(previous)
            grad_w_hh = torch.cat([grad_w_nrz[hidden:], grad_w_nrz[:hidden]])
        if needs[6]:
            grad_b_nrz = grad_gh.sum(0)
            grad_b_hh = torch.cat([grad_b_nrz[hidden:], grad_b_nrz[:hidden]])
        grad_b_ih = grad_gi.sum(0) if needs[5] else None
        return grad_x, None, (dh if needs[2] else None), grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh


class FusedGRU(nn.GRU):
    """`nn.GRU` with the fused CPU training path of `GRULayerFunction` (see the module docstring), for plain
    and `PackedSequence` input.

    Dropout between layers is `F.dropout` on each layer's output rows; for plain input these are the
    time-major outputs `nn.GRU` applies it to, so the same random state gives the same masks.
    """

    def forward(self, input, hx=None):
        if not self._use_fused(input):  # cuDNN (and the CPU kernel) want a contiguous initial state
            return super().forward(input, None if hx is None else hx.contiguous())
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes = input.data, tuple(input.batch_sizes.tolist())
            if hx is not None and input.sorted_indices is not None:
                hx = hx.index_select(1, input.sorted_indices)  # as nn.GRU permutes it
        else:
            x = (input.transpose(0, 1) if self.batch_first else input).contiguous()
            steps, batch = x.shape[:2]
            data, batch_sizes = x.view(steps * batch, -1), (batch,) * steps
        if hx is None:
            hx = data.new_zeros(self.num_layers, batch_sizes[0], self.hidden_size)
        last = []
        for k in range(self.num_layers):
            if k > 0:
                data = F.dropout(data, self.dropout, self.training)
            data = GRULayerFunction.apply(data, batch_sizes, hx[k], *self._flat_weights[4 * k:4 * k + 4])
            last.append(_last_rows(data, batch_sizes))
        h_n = torch.stack(last)
        if packed:
            if input.unsorted_indices is not None:
                h_n = h_n.index_select(1, input.unsorted_indices)
            return PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices), h_n
        out = data.view(steps, batch, self.hidden_size)
        return (out.transpose(0, 1) if self.batch_first else out), h_n

    def _use_fused(self, input):
        """CPU, gradients recorded, a (T>1)-step batched sequence, the default GRU options."""
        if isinstance(input, PackedSequence):
            data, steps = input.data, len(input.batch_sizes)
        elif isinstance(input, torch.Tensor) and input.dim() == 3:
            data, steps = input, input.size(1 if self.batch_first else 0)
        else:
            return False
        if not (torch.is_grad_enabled() and data.device.type == 'cpu' and steps >= 2):
            return False
        if self.bidirectional or not self.bias or self.proj_size or data.dtype not in (torch.float32, torch.float64):
            return False
        return data.requires_grad or any(w.requires_grad for w in self._flat_weights)
