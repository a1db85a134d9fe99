"""One-to-one mapping between the port's state-dict keys and the original WSDEC keys
(wsdec_state_dict.md §2-§4).

Every key is identical except the sequence encoders' GRUs: the original stored one multi-layer
`nn.GRU` (`video_encoder.rnn_cell.weight_ih_l1`), the port one single-layer GRU per layer so that
each layer runs over the whole sequence (`video_encoder.rnn_cell.1.weight_ih_l0`; see
`models/layers/gru_encoder.py`). Tensors are unchanged (same r, z, n gate blocks). The decoder GRU
(`decoder.rnn_cell.*`) is a regular multi-layer GRU and keeps its names.
"""
import re

_ENCODERS = r'(video_encoder|text_encoder)\.rnn_cell'
_PORT = re.compile(_ENCODERS + r'\.(\d+)\.(weight_ih|weight_hh|bias_ih|bias_hh)_l0$')
_ORIGINAL = re.compile(_ENCODERS + r'\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$')


def original_key(key: str) -> str:
    """Port key → original key (`video_encoder.rnn_cell.1.weight_ih_l0` → `…rnn_cell.weight_ih_l1`)."""
    return _PORT.sub(lambda m: f'{m[1]}.rnn_cell.{m[3]}_l{m[2]}', key)


def port_key(key: str) -> str:
    """Original key → port key (`video_encoder.rnn_cell.weight_ih_l1` → `…rnn_cell.1.weight_ih_l0`)."""
    return _ORIGINAL.sub(lambda m: f'{m[1]}.rnn_cell.{m[3]}.{m[2]}_l0', key)


def to_original(state_dict: dict) -> dict:
    """A port state dict under the original key names (same order, same tensors)."""
    return {original_key(k): v for k, v in state_dict.items()}


def from_original(state_dict: dict) -> dict:
    """An original state dict under the port's key names (same order, same tensors)."""
    return {port_key(k): v for k, v in state_dict.items()}
