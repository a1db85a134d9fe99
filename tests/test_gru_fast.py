"""The fused CPU training path of `FusedGRU` against `nn.GRU` (spec wsdec §3.1, §6.5)."""
import pytest
import torch
from torch import nn

from models.layers.fused_gru import FusedGRU, GRULayerFunction
from models.layers.gru_encoder import LayerwiseGRU


def twin_grus(input_size, hidden_size, num_layers=1, dropout=0.0, seed=0):
    """An `nn.GRU` and a `FusedGRU` with the same weights."""
    torch.manual_seed(seed)
    reference = nn.GRU(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)
    fused = FusedGRU(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)
    fused.load_state_dict(reference.state_dict())
    return reference, fused


def forward_backward(gru, x, h0, seed=1):
    """Outputs and gradients (input, h0, every parameter) of a random linear loss of output and h_n."""
    x, h0 = x.detach().requires_grad_(), h0.detach().requires_grad_()
    gru.zero_grad()
    torch.manual_seed(seed)  # same dropout masks for both GRUs
    out, h_n = gru(x, h0)
    g = torch.Generator().manual_seed(2)
    loss = (out * torch.randn(out.shape, generator=g)).sum() + (h_n * torch.randn(h_n.shape, generator=g)).sum()
    loss.backward()
    grads = {'x': x.grad, 'h0': h0.grad, **{name: p.grad for name, p in gru.named_parameters()}}
    return out.detach(), h_n.detach(), grads


def uses_fused_path(out):
    """Whether `GRULayerFunction` is in the autograd graph of `out`."""
    nodes, seen = [out.grad_fn], set()
    while nodes:
        node = nodes.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__ == 'GRULayerFunctionBackward':
            return True
        nodes += [parent for parent, _ in node.next_functions]
    return False


def relative_error(a, b):
    return float((a - b).norm() / b.norm())


def assert_same_results(got, expected):
    """Outputs and h_n within 1e-5, every gradient within a relative 1e-4 (`forward_backward` results)."""
    (out, h_n, grads), (out_ref, h_ref, grads_ref) = got, expected
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(h_n, h_ref, rtol=0, atol=1e-5)
    for name, grad in grads.items():
        assert relative_error(grad, grads_ref[name]) < 1e-4, name


@pytest.mark.parametrize('batch_sizes', [(3, 3, 3, 3), (3, 3, 2, 1, 1)])  # plain, packed (lengths 5, 3, 2)
def test_layer_function_gradcheck_float64(batch_sizes):
    g = torch.Generator().manual_seed(0)
    inp, hidden = 5, 6
    x, h0, *weights = [torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
                       for shape in [(sum(batch_sizes), inp), (3, hidden), (3 * hidden, inp), (3 * hidden, hidden),
                                     (3 * hidden,), (3 * hidden,)]]
    assert torch.autograd.gradcheck(lambda x, h0, *w: GRULayerFunction.apply(x, batch_sizes, h0, *w),
                                    [x, h0, *weights])


def test_layer_function_hand_computed_single_step():
    """One step by the GRU equations (PyTorch gate order r, z, n)."""
    g = torch.Generator().manual_seed(3)
    x, h = torch.randn(1, 2, 3, generator=g), torch.randn(2, 4, generator=g)
    w_ih, w_hh = torch.randn(12, 3, generator=g), torch.randn(12, 4, generator=g)
    b_ih, b_hh = torch.randn(12, generator=g), torch.randn(12, generator=g)
    gi, gh = x[0] @ w_ih.t() + b_ih, h @ w_hh.t() + b_hh
    r = torch.sigmoid(gi[:, :4] + gh[:, :4])
    z = torch.sigmoid(gi[:, 4:8] + gh[:, 4:8])
    n = torch.tanh(gi[:, 8:] + r * gh[:, 8:])
    out = GRULayerFunction.apply(x[0], (2,), h, w_ih, w_hh, b_ih, b_hh)
    torch.testing.assert_close(out, (1 - z) * n + z * h, rtol=0, atol=1e-6)


@pytest.mark.parametrize('sizes', [(500, 512, 1, 4, 40), (24, 16, 2, 3, 9)])  # in, H, layers, B, T
def test_matches_nn_gru_forward_and_gradients(sizes):
    inp, hidden, layers, batch, steps = sizes
    reference, fused = twin_grus(inp, hidden, layers)
    g = torch.Generator().manual_seed(4)
    x, h0 = torch.randn(batch, steps, inp, generator=g), torch.randn(layers, batch, hidden, generator=g)
    out_ref, h_ref, grads_ref = forward_backward(reference, x, h0)
    out, h_n, grads = forward_backward(fused, x, h0)
    assert grads['x'] is not None and set(grads) == set(grads_ref)
    assert_same_results((out, h_n, grads), (out_ref, h_ref, grads_ref))


def test_dropout_between_layers_matches_nn_gru():
    """Same random state → the same inter-layer dropout masks as `nn.GRU` in training mode."""
    reference, fused = twin_grus(10, 12, num_layers=3, dropout=0.5)
    x, h0 = torch.randn(3, 7, 10), torch.randn(3, 3, 12)
    out_ref, h_ref, grads_ref = forward_backward(reference, x, h0)
    out, h_n, grads = forward_backward(fused, x, h0)
    assert_same_results((out, h_n, grads), (out_ref, h_ref, grads_ref))
    no_dropout = forward_backward(fused.eval(), x, h0)[0]
    assert (out - no_dropout).abs().max() > 1e-2  # dropout did act in training mode


def test_layerwise_gru_dropout_matches_multilayer_nn_gru():
    """`LayerwiseGRU` (the encoders) with dropout = a 2-layer `nn.GRU` with the same dropout (spec §3.1)."""
    torch.manual_seed(0)
    reference = nn.GRU(6, 8, 2, batch_first=True, dropout=0.3)
    layerwise = LayerwiseGRU(6, 8, 2, dropout=0.3)
    for k, gru in enumerate(layerwise):
        gru.load_state_dict({f'{name}_l0': getattr(reference, f'{name}_l{k}')
                             for name in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')})
    x = torch.randn(2, 11, 6)
    torch.manual_seed(5)
    expected, _ = reference(x)
    torch.manual_seed(5)
    hidden_all = layerwise(x)
    assert hidden_all.grad_fn is not None
    torch.testing.assert_close(hidden_all[-1], expected, rtol=0, atol=1e-5)


def test_training_mode_equals_eval_mode_without_dropout():
    _, fused = twin_grus(7, 9, num_layers=2, dropout=0.0)
    x = torch.randn(3, 12, 7)
    trained, h_trained = fused.train()(x)
    with torch.no_grad():
        evaluated, h_evaluated = fused.eval()(x)
    assert uses_fused_path(trained)
    torch.testing.assert_close(trained.detach(), evaluated, rtol=0, atol=1e-5)
    torch.testing.assert_close(h_trained.detach(), h_evaluated, rtol=0, atol=1e-5)


def test_fused_path_only_for_cpu_training_sequences():
    _, fused = twin_grus(4, 5)
    x = torch.randn(2, 6, 4)

    assert uses_fused_path(fused(x)[0]) and uses_fused_path(fused(x)[1])
    assert uses_fused_path(fused.eval()(x)[0])  # eval mode with gradients (no dropout either way)
    assert not uses_fused_path(fused(x[:, :1])[0])  # one step (beam search): stock GRU
    with torch.no_grad():
        assert fused(x)[0].grad_fn is None  # inference: stock GRU
    unbatched_out, _ = fused(x[0])  # (T, in) without a batch dimension: stock GRU, same semantics
    torch.testing.assert_close(unbatched_out, fused(x[:1])[0][0], rtol=0, atol=1e-5)


def test_state_dict_names_unchanged():
    reference, fused = twin_grus(3, 4, num_layers=2)
    assert list(fused.state_dict()) == list(reference.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(fused.state_dict().values(), reference.state_dict().values()))


def test_forward_twice_shares_the_first_layer_and_draws_two_dropout_masks():
    from models.layers.gru_encoder import SequenceEncoder
    torch.manual_seed(0)
    enc = SequenceEncoder(6, 8, num_layers=2, dropout=0.5, use_residual=True).train()
    x = torch.randn(3, 7, 6)
    torch.manual_seed(5)
    (out_a, all_a), (out_b, all_b) = enc.forward_twice(x)
    torch.manual_seed(5)  # the same computation spelled out: layer 0 once, layer 1 over both calls' rows
    first, _ = enc.rnn_cell[0](x)
    second, _ = enc.rnn_cell[1](torch.nn.functional.dropout(first.repeat(2, 1, 1), 0.5, True))
    assert torch.equal(all_a[0], first) and torch.equal(all_b[0], first)
    assert torch.equal(all_a[1], second[:3]) and torch.equal(all_b[1], second[3:])
    assert torch.equal(out_a, second[:3] + enc.linear(x)) and not torch.equal(all_a[1], all_b[1])
    (out_a.sum() + 2 * out_b.sum()).backward()  # both uses reach the shared layer
    assert enc.rnn_cell[0].weight_hh_l0.grad.abs().sum() > 0
    enc.eval()  # without dropout both are forward(x)
    (out_a, all_a), (out_b, all_b) = enc.forward_twice(x)
    ref_out, ref_all = enc(x)
    assert torch.equal(out_a, ref_out) and torch.equal(all_b, ref_all) and out_a is out_b


def packed_forward_backward(gru, x, lengths, seed=1):
    """Padded outputs, h_n and gradients of `gru` over `pack_padded_sequence(x, lengths)` (unsorted lengths)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    x = x.detach().requires_grad_()
    gru.zero_grad()
    torch.manual_seed(seed)
    out, h_n = gru(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    g = torch.Generator().manual_seed(2)
    loss = (out * torch.randn(out.shape, generator=g)).sum() + (h_n * torch.randn(h_n.shape, generator=g)).sum()
    loss.backward()
    return out.detach(), h_n.detach(), {'x': x.grad, **{name: p.grad for name, p in gru.named_parameters()}}


@pytest.mark.parametrize('layers', [1, 2])
def test_packed_input_matches_nn_gru(layers):
    """PackedSequence input (mixed lengths, unsorted): same outputs, h_n and gradients as `nn.GRU`'s packed path."""
    reference, fused = twin_grus(6, 8, layers)
    x, lengths = torch.randn(4, 9, 6), torch.tensor([5, 9, 1, 7])
    assert_same_results(packed_forward_backward(fused, x, lengths), packed_forward_backward(reference, x, lengths))


def value_keyed_dropout(x, p=0.5, training=True, inplace=False):
    """Dropout whose mask is a function of each element's value: the same elements are dropped in a padded and
    in a packed layout of one computation, so the two can be compared with dropout acting (in float64, where
    the layouts' rounding differences cannot move a value across the threshold)."""
    if not training or p == 0:
        return x
    return x * (torch.frac(x.detach().abs() * 1e4) >= p) / (1 - p)


def test_lengths_skip_padded_steps_with_the_same_valid_results(monkeypatch):
    """`SequenceEncoder(x, lengths)`: at valid steps the padded computation's outputs and states; zeros at padded
    steps; the gradients of a loss that reads valid steps only are those of the padded computation (dropout
    keyed by value, so both layouts drop the same elements); with or without gradients (fused and stock paths)."""
    from models.layers.gru_encoder import SequenceEncoder
    torch.manual_seed(0)
    enc = SequenceEncoder(6, 8, num_layers=2, dropout=0.3, use_residual=True).double().train()
    lengths = torch.tensor([7., 3., 10., 1.])
    x = torch.randn(4, 10, 6, dtype=torch.float64) * (torch.arange(10) < lengths.unsqueeze(1)).unsqueeze(2)
    valid = (torch.arange(10) < lengths.unsqueeze(1)).double()
    weights = torch.randn(4, 10, 8, dtype=torch.float64)
    steps, rows = torch.tensor([6, 2, 9, 0]), torch.tensor([0, 1, 2, 3])

    def run(with_lengths):
        enc.zero_grad()
        out, states = enc.encode(x, lengths if with_lengths else None)
        ((out * weights * valid.unsqueeze(2)).sum() + states.at(steps, rows).sum()).backward()
        return out.detach(), states.padded().detach(), {n: p.grad.clone() for n, p in enc.named_parameters()}

    monkeypatch.setattr(torch.nn.functional, 'dropout', value_keyed_dropout)
    out, hidden_all, grads = run(True)
    out_ref, hidden_ref, grads_ref = run(False)
    monkeypatch.undo()
    mask = valid.bool()
    torch.testing.assert_close(out[mask], out_ref[mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(hidden_all[:, mask], hidden_ref[:, mask], rtol=0, atol=1e-5)
    assert hidden_all[:, ~mask].abs().max() == 0 and hidden_ref[:, ~mask].abs().max() > 0
    for name, grad in grads.items():
        assert relative_error(grad, grads_ref[name]) < 1e-5, name
    torch.manual_seed(5)
    hidden_all = enc(x, lengths)[1]
    torch.manual_seed(5)
    assert torch.equal(hidden_all, enc.encode(x, lengths)[1].padded())  # forward = encode, padded
    torch.manual_seed(5)
    first = enc(x, lengths)[0]
    assert not torch.equal(first, enc(x, lengths)[0])  # real dropout: a new mask per call
    with torch.no_grad():
        enc.eval()
        out_eval, _ = enc(x, lengths)
        torch.testing.assert_close(out_eval[mask], enc(x)[0][mask], rtol=0, atol=1e-5)
        assert ((first - out_eval)[mask].abs() > 1e-4).float().mean() > 0.5  # dropout acted in training
    with pytest.raises(ValueError, match=r'lengths must lie in \[1, 10\]'):
        enc(x, torch.tensor([11., 3., 2., 1.]))


def test_forward_twice_with_lengths_equals_forward_twice_on_valid_steps(monkeypatch):
    """Two encodings computed together over the valid steps = over every padded step (value-keyed dropout), and
    with real dropout each has its own mask."""
    from models.layers.gru_encoder import SequenceEncoder
    torch.manual_seed(0)
    enc = SequenceEncoder(6, 8, num_layers=2, dropout=0.5, use_residual=True).double().train()
    lengths, x = torch.tensor([4., 7., 2., 4.]), torch.randn(4, 7, 6, dtype=torch.float64)
    mask = torch.arange(7) < lengths.unsqueeze(1)
    monkeypatch.setattr(torch.nn.functional, 'dropout', value_keyed_dropout)
    packed = enc.forward_twice(x, lengths)
    padded = enc.forward_twice(x)
    rows, steps = torch.tensor([3, 0, 1]), torch.tensor([3, 1, 6])
    at = [states.at(steps, rows) for _, states in enc.encode_twice(x, lengths)]
    monkeypatch.undo()
    for (out, hidden_all), (out_ref, hidden_ref), states in zip(packed, padded, at):
        torch.testing.assert_close(out[mask], out_ref[mask], rtol=0, atol=1e-5)
        torch.testing.assert_close(hidden_all[:, mask], hidden_ref[:, mask], rtol=0, atol=1e-5)
        torch.testing.assert_close(states, hidden_ref[:, rows, steps], rtol=0, atol=1e-5)
    packed = enc.forward_twice(x, lengths)
    assert not torch.equal(packed[0][1], packed[1][1])  # two dropout masks
    assert torch.equal(packed[0][1][0], packed[1][1][0])  # one first layer
