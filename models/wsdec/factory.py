"""Build WSDEC models from a JSON-able config, and that config from an original `params` dict.

Config layout (stored in every WSDEC checkpoint as `config['models']`, see DESIGN.md "Config"):
```
{'cg': {CaptionGenerator keyword arguments},                      # absent if there is no CG
 'sl': {'type': 'anchor' | 'regressor', **localizer keyword arguments}}  # absent if no SL
```
"""
from models.wsdec.anchors import ANCHOR_LIST
from models.wsdec.caption_generator import CaptionGenerator
from models.wsdec.regressor_localizer import RegressorLocalizer
from models.wsdec.sentence_localizer import SentenceLocalizer

LOCALIZERS = {'anchor': SentenceLocalizer, 'regressor': RegressorLocalizer}
_SHARED = ('vocab_size', 'hidden_dim', 'sent_embedding_dim', 'video_feature_dim', 'rnn_layer', 'rnn_dropout')
_CG_KEYS = _SHARED + ('context_type', 'softmask_scale', 'video_use_residual', 'max_cap_length')
_SL_KEYS = _SHARED + ('fc_dropout', 'video_use_residual', 'sent_use_residual')


class UnsupportedConfigError(ValueError):
    """A configuration (or original `params`) this port does not implement; the message names the key."""


def build_models_from_config(config: dict) -> dict:
    """`{'cg': CaptionGenerator, 'sl': SentenceLocalizer | RegressorLocalizer}` for the parts in `config`
    (a checkpoint's `config['models']`, or a dict with those keys)."""
    config = config.get('models', config)
    models = {}
    if 'cg' in config:
        models['cg'] = CaptionGenerator(**config['cg'])
    if 'sl' in config:
        options = dict(config['sl'])
        kind = options.pop('type')
        if kind not in LOCALIZERS:
            raise UnsupportedConfigError(f"config['sl']['type']={kind!r}: expected one of {sorted(LOCALIZERS)}")
        models['sl'] = LOCALIZERS[kind](**options)
    return models


def _require(params: dict, key: str, allowed, source: str):
    value = params.get(key)
    if value not in allowed:
        raise UnsupportedConfigError(f"{source}: params[{key!r}]={value!r} is not supported (expected one of {allowed})")


def _attention_key(params, model):
    """Two-model scripts name it `attention_type_cg/_sl`, single-model ones `attention_type`."""
    return f'attention_type_{model}' if f'attention_type_{model}' in params else 'attention_type'


def wsdec_config_from_params(params: dict, models=('cg', 'sl'), sl_type='anchor', source='params') -> dict:
    """The `{'cg': …, 'sl': …}` config of the original training `params` (wsdec_state_dict.md §1, §9).

    `models` says which of the two the checkpoint holds; `sl_type` is 'anchor' or 'regressor'.
    Options of the port that have no original counterpart get their defaults (= original behaviour).
    """
    _require(params, 'rnn_cell', ('gru',), source)
    _require(params, 'bidirectional', (False, 0, None), source)
    config = {}
    if 'cg' in models:
        _require(params, _attention_key(params, 'cg'), ('mean',), source)
        config['cg'] = {key: params[key] for key in _CG_KEYS}
    if 'sl' in models:
        _require(params, _attention_key(params, 'sl'), ('type0',), source)
        _require(params, 'feature_mixer_type', ('type0',), source)
        config['sl'] = {'type': sl_type, **{key: params[key] for key in _SL_KEYS}}
        if sl_type == 'anchor':
            config['sl']['regressor_scale'] = float(params['regressor_scale'])
            config['sl']['anchor_list'] = [list(map(float, a)) for a in params.get('anchor_list', ANCHOR_LIST)]
    for part in config.values():
        for key in ('video_use_residual', 'sent_use_residual'):
            if key in part:
                part[key] = bool(part[key])
    return config
