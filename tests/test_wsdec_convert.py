"""Converter of the authors' WSDEC checkpoints (wsdec_state_dict.md §0, §7-§10), tested on files
written in the legacy (non-zip, pickle protocol 2) format with the original key names."""
import pickle
import subprocess
import sys
import types
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path, PurePosixPath

import pytest
import torch

from models.wsdec.anchors import ANCHOR_LIST
from models.wsdec.evaluation import EVALUATIONS
from models.wsdec.factory import build_models_from_config
from models.wsdec.state_dict_names import to_original
from scripts.convert_wsdec_checkpoint import CheckpointFormatError, convert, load_original, main
from utils.checkpoint import load_checkpoint
from models.wsdec import CaptionGenerator, RegressorLocalizer, SentenceLocalizer

ROOT = Path(__file__).resolve().parents[1]
DIMS = dict(vocab_size=7, hidden_dim=8, sent_embedding_dim=8, video_feature_dim=6)


def final_params(**overrides):
    """The architecture keys of `train_final.py`'s params (wsdec_state_dict.md §1), tiny sizes."""
    params = {**DIMS, 'rnn_cell': 'gru', 'rnn_layer': 2, 'bidirectional': False, 'rnn_dropout': 0.3,
              'fc_dropout': 0.3, 'attention_type_cg': 'mean', 'attention_type_sl': 'type0',
              'context_type': 'clr', 'regressor_scale': 0.3, 'softmask_scale': 0.1,
              'feature_mixer_type': 'type0', 'video_use_residual': True, 'sent_use_residual': False,
              'max_cap_length': 20, 'refine_round': 1, 'iou_thres': 0.9, 'pe_video': 100, 'pe_sent': 10,
              'alias': 'final', 'translator_path': './data/translator6000.pkl', 'lr_step': [1, 2, 20],
              'anchor_list': [list(a) for a in ANCHOR_LIST], 'model': 'CaptionGenerator'}
    params.update(overrides)
    return params


def cg_script_params(batch_size=36, **overrides):
    """The architecture keys of `train_cg_pretrain.py` / `train_cg.py` params (wsdec_state_dict.md §1, §7), tiny
    sizes; the scripts' `batch_size` defaults are 36 and 64."""
    params = {k: v for k, v in final_params().items() if not k.endswith(('_cg', '_sl'))
              and k not in ('anchor_list', 'refine_round', 'iou_thres', 'pe_video', 'pe_sent', 'regressor_scale',
                            'sent_use_residual', 'feature_mixer_type')}
    params.update(attention_type='mean', fc_dropout=0.0, lr_step=[20, 50, 70], training_epoch=100,
                  batch_size=batch_size, alias='test', **overrides)
    return params


def original_sd(model):
    """A 0.3.1-style state dict: original names, no BatchNorm `num_batches_tracked`."""
    return {k: v for k, v in to_original(model.state_dict()).items() if 'num_batches_tracked' not in k}


def write_legacy(path, obj):
    torch.save(obj, path, _use_new_zipfile_serialization=False, pickle_protocol=2)
    with open(path, 'rb') as f:
        assert f.read(2) != b'PK'  # not the zip format
    return path


def write_zip(path, obj):
    torch.save(obj, path)  # the current default format
    return path


def two_model_file(tmp_path, sl, cg, name, write=write_legacy, **param_overrides):
    sl_sd = original_sd(sl)
    obj = {'state_dict': sl_sd, 'params': final_params(**param_overrides),
           'dynamic_params': {'step': 7, 'model_sl': sl_sd, 'model_cg': original_sd(cg)}}
    return write(tmp_path / name, obj)


def sample_inputs():
    g = torch.Generator().manual_seed(0)
    video = torch.randn(2, 9, 6, generator=g)
    video_length = torch.tensor([[9.0, 30.0], [9.0, 12.0]])
    mask = torch.ones(2, 9, 1)
    sent = torch.tensor([[0, 3, 4, 1], [0, 2, 1, 1]])
    return video, video_length, mask, sent, torch.tensor([4, 3]), torch.ones(2, 4, 1), torch.tensor([0, 1])


def test_final_model_round_trip(tmp_path):
    torch.manual_seed(0)
    sl, cg = SentenceLocalizer(**DIMS).eval(), CaptionGenerator(**DIMS).eval()
    with torch.no_grad():  # non-trivial running statistics
        for m in sl.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
    path = two_model_file(tmp_path, sl, cg, 'final_model.ckp')
    out = tmp_path / 'final.pt'
    main(['--input', str(path), '--output', str(out)])
    ckpt = load_checkpoint(out)  # weights_only=True
    assert ckpt['kind'] == 'wsdec_final' and ckpt['epoch'] == 7
    assert set(ckpt['model']) == {'cg', 'sl'} and len(ckpt['model']['sl']) == 48 and len(ckpt['model']['cg']) == 20
    assert ckpt['config']['inference'] == {'refine_round': 1, 'iou_thres': 0.9}
    assert ckpt['config']['original_params']['alias'] == 'final'
    models = build_models_from_config(ckpt['config'])
    for name, model in models.items():
        model.load_state_dict(ckpt['model'][name], strict=True)
        model.eval()
    inputs = sample_inputs()
    assert torch.equal(models['sl'].anchor, sl.anchor)
    for a, b in zip(models['sl'](*inputs), sl(*inputs)):
        assert torch.equal(a, b)
    seg = torch.tensor([[0.3, 0.4], [0.7, 0.2]])
    with torch.no_grad():
        assert torch.equal(models['cg'](*inputs[:3], seg, inputs[6])[0], cg(*inputs[:3], seg, inputs[6])[0])


def test_kinds_noregress_noclass_and_cg_only(tmp_path):
    torch.manual_seed(1)
    cg = CaptionGenerator(**DIMS)
    no_regress = convert(load_original(two_model_file(tmp_path, SentenceLocalizer(**DIMS), cg, 'nr.ckp',
                                                      regressor_scale=0)))
    assert no_regress['kind'] == 'wsdec_noregress'
    assert no_regress['config']['models']['sl']['regressor_scale'] == 0.0
    no_class = convert(load_original(two_model_file(tmp_path, RegressorLocalizer(**DIMS), cg, 'nc.ckp')))
    assert no_class['kind'] == 'wsdec_noclass' and no_class['config']['models']['sl']['type'] == 'regressor'
    assert len(no_class['model']['sl']) == 46
    single = {'state_dict': original_sd(cg), 'dynamic_params': {'step': 3}, 'params': cg_script_params()}
    converted = convert(load_original(write_legacy(tmp_path / 'cg_pretrain.ckp', single)))
    assert converted['kind'] == 'wsdec_cg_pretrain' and set(converted['model']) == {'cg'}
    assert torch.equal(converted['model']['cg']['decoder.embedding.weight'], cg.decoder.embedding.weight)
    assert torch.equal(converted['model']['cg']['video_encoder.rnn_cell.1.weight_hh_l0'],
                       cg.video_encoder.rnn_cell[1].weight_hh_l0)


def cg_only_file(tmp_path, name, batch_size):
    torch.manual_seed(4)
    single = {'state_dict': original_sd(CaptionGenerator(**DIMS)), 'dynamic_params': {'step': 3},
              'params': cg_script_params(batch_size)}
    return write_legacy(tmp_path / name, single)


def test_cg_only_files_are_told_apart_by_the_scripts_batch_size_defaults(tmp_path):
    """train_cg_pretrain.py (batch_size 36) → evaluate_pretrain; train_cg.py (64) → GT-segment evaluation
    (spec wsdec §4 table, wsdec_state_dict.md §7: the two scripts' params differ only in that default)."""
    assert convert(load_original(cg_only_file(tmp_path, 'p.ckp', 36)))['kind'] == 'wsdec_cg_pretrain'
    assert convert(load_original(cg_only_file(tmp_path, 's.ckp', 64)))['kind'] == 'wsdec_cg'
    assert EVALUATIONS['wsdec_cg_pretrain'].__name__ == 'evaluate_pretrain'  # what evaluate.py runs
    assert EVALUATIONS['wsdec_cg'].__name__ == 'evaluate_cg'
    other = cg_only_file(tmp_path, 'other.ckp', 48)  # --batch_size given on the command line: undecidable
    with pytest.raises(CheckpointFormatError, match=r"other\.ckp: .*'batch_size' is 48.*--kind wsdec_cg_pretrain "
                                                    r"or --kind wsdec_cg"):
        convert(load_original(other), other)
    told = convert(load_original(other), other, kind='wsdec_cg')
    assert told['kind'] == 'wsdec_cg' and told['config']['source']['detected_kind'] is None
    result = subprocess.run([sys.executable, 'scripts/convert_wsdec_checkpoint.py', '--input', str(other),
                             '--output', str(tmp_path / 'other.pt')], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and result.stderr.startswith('error: ') and '--kind' in result.stderr
    assert 'Traceback' not in result.stderr and not (tmp_path / 'other.pt').exists()


class CreatesAFile:
    """A `__reduce__` payload: unpickling it calls `open(path, 'w')`, which creates the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, 'w')


@pytest.mark.parametrize('write', [write_legacy, write_zip])
def test_a_code_running_pickle_is_refused_and_runs_nothing(tmp_path, write):
    """Issue 16 item 1: a `.ckp` whose params carry a payload; the conversion is refused, naming the global,
    and the payload never runs. (The same payload does run under plain `pickle`: checked on a second file.)"""
    torch.manual_seed(5)
    marker = tmp_path / 'PWNED'
    evil = two_model_file(tmp_path, SentenceLocalizer(**DIMS), CaptionGenerator(**DIMS), 'evil.ckp', write,
                          alias=CreatesAFile(marker))
    with pytest.raises(CheckpointFormatError, match=r"evil\.ckp: refused to unpickle 'io\.open'"):
        load_original(evil)
    result = subprocess.run([sys.executable, 'scripts/convert_wsdec_checkpoint.py', '--input', str(evil),
                             '--output', str(tmp_path / 'evil.pt')], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "refused to unpickle 'io.open'" in result.stderr
    assert not marker.exists() and not (tmp_path / 'evil.pt').exists()
    control_marker = tmp_path / 'RAN'
    control = write_legacy(tmp_path / 'control.ckp', {'payload': CreatesAFile(control_marker)})
    torch.load(control, weights_only=False)  # what the removed fallback did
    assert control_marker.exists()


def test_a_zip_format_file_converts(tmp_path):
    torch.manual_seed(7)
    path = two_model_file(tmp_path, SentenceLocalizer(**DIMS), CaptionGenerator(**DIMS), 'resaved.ckp', write_zip)
    assert zipfile.is_zipfile(path) and convert(load_original(path), path)['kind'] == 'wsdec_final'


def test_classes_outside_the_allow_list_are_refused_by_name(tmp_path):
    odd = two_model_file(tmp_path, SentenceLocalizer(**DIMS), CaptionGenerator(**DIMS), 'odd.ckp',
                         translator_path=PurePosixPath('data/translator6000.pkl'))
    with pytest.raises(CheckpointFormatError, match=r"refused to unpickle 'pathlib\.PurePosixPath'"):
        load_original(odd)


def legacy_031_pickle_module():
    """`torch.save` pickling as PyTorch 0.3.1 did: tensors as `torch._utils._rebuild_tensor(storage, offset,
    size, stride)` (4 arguments, no requires_grad / hooks), the storages by persistent id."""
    class Pickler031(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, torch.Tensor):
                return torch._utils._rebuild_tensor, (obj.storage(), obj.storage_offset(), tuple(obj.size()),
                                                      obj.stride())
            return NotImplemented
    module = types.ModuleType('pickle031')
    module.Pickler, module.dump = Pickler031, pickle.dump
    return module


def test_a_031_legacy_file_still_converts(tmp_path):
    """The legacy (non-zip) format holding OrderedDict state dicts of `_rebuild_tensor` tensors and a params
    dict of plain values (wsdec_state_dict.md §6, §7), as 0.3.1 wrote it: read by the restricted loader."""
    torch.manual_seed(6)
    sl, cg = SentenceLocalizer(**DIMS).eval(), CaptionGenerator(**DIMS).eval()
    sl_sd, cg_sd = OrderedDict(original_sd(sl)), OrderedDict(original_sd(cg))
    obj = {'state_dict': sl_sd, 'params': final_params(alias='fin\u00e4l'),
           'dynamic_params': {'step': 4, 'model_sl': sl_sd, 'model_cg': cg_sd}}
    path = tmp_path / 'final_031.ckp'
    with warnings.catch_warnings():  # `Tensor.storage()` (a TypedStorage, as 0.3.1 had) is deprecated
        warnings.simplefilter('ignore', UserWarning)
        torch.save(obj, path, pickle_module=legacy_031_pickle_module(), _use_new_zipfile_serialization=False,
                   pickle_protocol=2)
    raw = path.read_bytes()
    assert raw[:2] != b'PK' and b'_rebuild_tensor\n' in raw and b'_rebuild_tensor_v2' not in raw
    assert b'OrderedDict' in raw
    out = tmp_path / 'final_031.pt'
    assert main(['--input', str(path), '--output', str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt['kind'] == 'wsdec_final' and ckpt['epoch'] == 4
    assert ckpt['config']['original_params']['alias'] == 'fin\u00e4l'
    for name, model in (('sl', sl), ('cg', cg)):
        for key, value in model.state_dict().items():
            assert torch.equal(ckpt['model'][name][key], value), (name, key)


def test_errors_name_the_file_and_field(tmp_path):
    bad = write_legacy(tmp_path / 'bad.ckp', {'state_dict': {}, 'params': {}})
    with pytest.raises(CheckpointFormatError, match=r'bad\.ckp.*top-level keys'):
        convert(load_original(bad), bad)
    torch.manual_seed(2)
    wrong = two_model_file(tmp_path, SentenceLocalizer(**DIMS), CaptionGenerator(**DIMS), 'wrong.ckp',
                           hidden_dim=16, sent_embedding_dim=16)
    with pytest.raises(CheckpointFormatError, match=r"wrong\.ckp: model 'cg' does not match"):
        convert(load_original(wrong), wrong)
    unsupported = two_model_file(tmp_path, SentenceLocalizer(**DIMS), CaptionGenerator(**DIMS), 'att.ckp',
                                 attention_type_cg='type0')
    with pytest.raises(ValueError, match="attention_type_cg"):
        convert(load_original(unsupported), unsupported)


def test_command_line(tmp_path):
    torch.manual_seed(3)
    path = two_model_file(tmp_path, SentenceLocalizer(**DIMS), CaptionGenerator(**DIMS), 'cli.ckp')
    result = subprocess.run([sys.executable, 'scripts/convert_wsdec_checkpoint.py', '--input', str(path),
                             '--output', str(tmp_path / 'cli.pt'), '--kind', 'wsdec_custom'],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'kind=wsdec_custom' in result.stdout
    assert load_checkpoint(tmp_path / 'cli.pt')['kind'] == 'wsdec_custom'
