"""A GRU whose CPU training pass records one autograd node per layer instead of one per time step
(spec wsdec §6.5: the recurrent parts dominate a training step).

PyTorch's CPU `nn.GRU` builds its autograd graph step by step, so its backward runs T small matmuls
and gradient accumulations per weight. `GRULayerFunction` keeps the maths of `nn.GRU` (gates r, z, n
in PyTorch's order, `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 - z) ⊙ n + z ⊙ h`) but:

* forward: the input projection of all steps is one matmul; each step is one `addmm` for the
  recurrent projection plus in-place gate maths written into preallocated buffers;
* backward: the reverse loop computes only the per-step hidden gradient (one matmul with `W_hh`
  plus elementwise work); the weight, bias and input gradients are one matmul or sum each over all
  steps after the loop.

`FusedGRU` is an `nn.GRU` (same parameters, state-dict names and results) that takes this path on
CPU when gradients are recorded over more than one step; otherwise it is the stock `nn.GRU`: cuDNN on
CUDA, no graph to record in inference, nothing to batch over time in a single step (beam search, and
the step-by-step original way that `scripts/benchmark_wsdec.py` compares against).
"""
import torch
from torch import nn
import torch.nn.functional as F


class GRULayerFunction(torch.autograd.Function):
    """One unidirectional GRU layer over a time-major sequence.

    `x (T, B, in)`, `h0 (B, H)`, weights as in `nn.GRU` (`weight_ih (3H, in)`, `weight_hh (3H, H)`,
    biases `(3H,)`) → `out (T, B, H)`: the hidden state after every step.
    """

    @staticmethod
    def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        steps, batch, _ = x.shape
        hidden = weight_hh.size(1)
        # gates[t] = [W_ir x + b_ir + b_hr, W_iz x + b_iz + b_hz, b_hn, W_in x + b_in]; each step adds
        # W_hh h to the first three blocks, then turns them in place into [r, z, gh_n = W_hn h + b_hn, n]
        gates = x.new_empty(steps * batch, 4 * hidden)
        x_rows = x.reshape(steps * batch, -1)
        torch.addmm(bias_ih[:2 * hidden] + bias_hh[:2 * hidden], x_rows, weight_ih[:2 * hidden].t(),
                    out=gates[:, :2 * hidden])
        gates[:, 2 * hidden:3 * hidden] = bias_hh[2 * hidden:]
        torch.addmm(bias_ih[2 * hidden:], x_rows, weight_ih[2 * hidden:].t(), out=gates[:, 3 * hidden:])
        gates = gates.view(steps, batch, 4 * hidden)
        out = x.new_empty(steps, batch, hidden)
        weight_hh_t = weight_hh.t()
        h = h0
        for pre_t, rz_t, r_t, z_t, gh_n_t, n_t, out_t in zip(*(
                block.unbind(0) for block in (gates[..., :3 * hidden], gates[..., :2 * hidden], gates[..., :hidden],
                                              gates[..., hidden:2 * hidden], gates[..., 2 * hidden:3 * hidden],
                                              gates[..., 3 * hidden:], out))):
            pre_t.addmm_(h, weight_hh_t)
            rz_t.sigmoid_()
            n_t.addcmul_(r_t, gh_n_t).tanh_()
            h = torch.lerp(n_t, h, z_t, out=out_t)  # h' = (1 - z) ⊙ n + z ⊙ h
        ctx.save_for_backward(x, h0, weight_ih, weight_hh, gates, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, h0, weight_ih, weight_hh, gates, out = ctx.saved_tensors
        steps, batch, hidden = out.shape
        r, z, gh_n, n = gates.view(steps, batch, 4, hidden).unbind(2)
        # Gate-gradient factors for all steps at once; with dh the gradient of h':
        # da_z = dh ⊙ (h_prev - n) z (1 - z), da_n = dh ⊙ (1 - z)(1 - n²), da_r = da_n ⊙ gh_n r (1 - r).
        one_minus_z = 1 - z
        factor_zn = out.new_empty(steps, batch, 2, hidden)
        torch.sub(h0, n[0], out=factor_zn[0, :, 0])  # h_prev - n
        torch.sub(out[:-1], n[1:], out=factor_zn[1:, :, 0])
        factor_zn[:, :, 0].mul_(z).mul_(one_minus_z)
        torch.mul(n, n, out=factor_zn[:, :, 1]).neg_().add_(1).mul_(one_minus_z)
        factor_rn = torch.stack([r, gh_n * r * (1 - r)], dim=2)
        # grad[t] = [da_n ⊙ r, da_r, da_z, da_n]: blocks 0-2 are d(W_hh h + b_hh) in the order (n, r, z),
        # blocks 1-3 are d(W_ih x + b_ih) in PyTorch's order (r, z, n)
        grad = out.new_empty(steps, batch, 4, hidden)
        weight_nrz = torch.cat([weight_hh[2 * hidden:], weight_hh[:2 * hidden]])
        grad_out = grad_out.contiguous()
        dh = grad_out[-1].clone()
        for t, grad_t in zip(range(steps - 1, -1, -1), grad.unbind(0)[::-1]):
            torch.mul(dh.unsqueeze(1), factor_zn[t], out=grad_t[:, 2:])
            torch.mul(grad_t[:, 3:], factor_rn[t], out=grad_t[:, :2])
            carried = torch.addcmul(grad_out[t - 1], dh, z[t]) if t else dh * z[0]
            dh = carried.addmm_(grad_t.view(batch, 4 * hidden)[:, :3 * hidden], weight_nrz)
        grad = grad.view(steps * batch, 4 * hidden)
        grad_gi, grad_gh = grad[:, hidden:], grad[:, :3 * hidden]
        needs = ctx.needs_input_grad
        grad_x = grad_gi.mm(weight_ih).view_as(x) if needs[0] else None
        grad_w_ih = grad_gi.t().mm(x.reshape(steps * batch, -1)) if needs[2] else None
        grad_w_hh = grad_b_hh = None
        if needs[3]:  # Σ_t dgh_t^T h_{t-1}, rows back from (n, r, z) to (r, z, n)
            grad_w_nrz = torch.addmm(grad_gh[:batch].t().mm(h0), grad_gh[batch:].t(),
                                     out[:-1].reshape(-1, hidden))
            grad_w_hh = torch.cat([grad_w_nrz[hidden:], grad_w_nrz[:hidden]])
        if needs[5]:
            grad_b_nrz = grad_gh.sum(0)
            grad_b_hh = torch.cat([grad_b_nrz[hidden:], grad_b_nrz[:hidden]])
        grad_b_ih = grad_gi.sum(0) if needs[4] else None
        return grad_x, (dh if needs[1] else None), grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh


class FusedGRU(nn.GRU):
    """`nn.GRU` with the fused CPU training path of `GRULayerFunction` (see the module docstring).

    Dropout between layers is `F.dropout` on each time-major layer output, as `nn.GRU` applies it,
    so the same random state gives the same masks.
    """

    def forward(self, input, hx=None):
        if not self._use_fused(input):
            return super().forward(input, hx)
        x = input.transpose(0, 1) if self.batch_first else input
        x = x.contiguous()
        if hx is None:
            hx = x.new_zeros(self.num_layers, x.size(1), self.hidden_size)
        last = []
        for k in range(self.num_layers):
            if k > 0:
                x = F.dropout(x, self.dropout, self.training)
            x = GRULayerFunction.apply(x, hx[k], *self._flat_weights[4 * k:4 * k + 4])
            last.append(x[-1])
        return (x.transpose(0, 1) if self.batch_first else x), torch.stack(last)

    def _use_fused(self, input):
        """CPU, gradients recorded, a plain (T>1)-step batched sequence, the default GRU options."""
        if not (torch.is_grad_enabled() and isinstance(input, torch.Tensor) and input.device.type == 'cpu'):
            return False
        if input.dim() != 3 or input.size(1 if self.batch_first else 0) < 2:
            return False
        if self.bidirectional or not self.bias or self.proj_size or input.dtype not in (torch.float32,
                                                                                       torch.float64):
            return False
        return input.requires_grad or any(w.requires_grad for w in self._flat_weights)
