"""scripts/convert_ilcacm_checkpoint.py on a state dict written with the authors' key names (a tiny model): the
converted checkpoint gives the same losses and the same generations."""
import pytest
import torch

from models.ilcacm.factory import build_model, model_from_checkpoint
from utils.weights import save_safetensors
from scripts.convert_ilcacm_checkpoint import ConversionError, main
from tests.test_ilcacm_model import BPE_DIR, FakeFeatures, TINY

AUTHORS_KEYS = ['captioner.gpt2_model.transformer.wte.weight', 'captioner.gpt2_model.transformer.h.1.attn.c_attn.weight',
                'captioner.video_encoder.vpe', 'captioner.video_encoder.encoder.layers.0.self_attn.in_proj_weight',
                'captioner.video_encoder.proj.1.weight', 'localizer.tpe', 'localizer.pe',
                'localizer.mask_decoder.layers.0.multihead_attn.in_proj_weight', 'localizer.mask_decoder.layers.0.norm3.weight',
                'localizer.norm.weight', 'localizer.center_fc.weight', 'localizer.width_fc.weight']


@pytest.fixture
def authors_file(tmp_path):
    if not (BPE_DIR / 'merges.txt').is_file():
        pytest.skip(f'{BPE_DIR} not found (real GPT-2 BPE vocabulary)')
    from models.ilcacm.text_decoder import BPECaptionTokenizer
    tokenizer = BPECaptionTokenizer(BPE_DIR)
    torch.manual_seed(0)
    config = {**TINY, 'decoder': 'gpt2', 'gpt2_init': 'random'}
    model = build_model(config, tokenizer, feature_dim=32).eval()  # 32-d features: no input projection
    state = model.state_dict()
    assert set(AUTHORS_KEYS) <= set(state) and 'input_proj.weight' not in state
    del state['captioner.gpt2_model.lm_head.weight']  # as safetensors writes the tied weight: once
    path = tmp_path / 'model.safetensors'
    save_safetensors(state, path)
    return path, model, tokenizer


def test_converted_checkpoint_gives_identical_losses_and_generations(authors_file, tmp_path):
    path, original, tokenizer = authors_file
    out = tmp_path / 'run' / 'checkpoints' / 'converted.pt'
    main(['--input', str(path), '--output', str(out), '--bpe-dir', str(BPE_DIR), '--gpt2-heads', '2',
          '--enc-heads', '2'])
    state = torch.load(out, weights_only=True)
    assert state['kind'] == 'ilcacm' and state['config']['max_frames'] == 8 and state['config']['gpt2_layers'] == 2
    converted, _ = model_from_checkpoint(state)
    converted.eval()

    class Wide(FakeFeatures):
        dim = 32
    from utils.ilcacm_data import ILCACMDataset, make_collate
    ann = {'v1': {'duration': 9.0, 'sentences': ['A man runs.', 'He stops.'], 'timestamps': [[0, 1], [1, 2]]}}
    dataset = ILCACMDataset(ann, Wide(), tokenizer, max_frames=8)
    batch = make_collate(tokenizer)([dataset[0]])
    for mode in ('full', 'pos', 'neg'):
        a, b = original(batch, mode), converted(batch, mode)
        assert torch.equal(a['ce'], b['ce']) and a['tokens'] == b['tokens'], mode
    gen = dict(max_new_tokens=6, min_new_tokens=2, num_beams=2)
    assert original.paragraphs(batch.video, batch.video_mask, **gen) == \
        converted.paragraphs(batch.video, batch.video_mask, **gen)
    ev_a, cap_a = original.localize_and_caption(batch.video, batch.video_mask, [2], **gen)
    ev_b, cap_b = converted.localize_and_caption(batch.video, batch.video_mask, [2], **gen)
    assert cap_a == cap_b and torch.equal(ev_a.centers, ev_b.centers)


def test_half_precision_file_is_cast_and_bad_files_are_named(authors_file, tmp_path):
    path, original, _ = authors_file
    from utils.weights import load_safetensors
    half = {k: v.half() for k, v in load_safetensors(path).items()}
    save_safetensors(half, tmp_path / 'half.safetensors')
    out = tmp_path / 'half.pt'
    main(['--input', str(tmp_path / 'half.safetensors'), '--output', str(out), '--bpe-dir', str(BPE_DIR),
          '--gpt2-heads', '2', '--enc-heads', '2'])
    weights = torch.load(out, weights_only=True)['model']['ilcacm']['localizer.tpe']
    assert weights.dtype == torch.float32 and torch.equal(weights, original.localizer.tpe.detach().half().float())
    del half['localizer.tpe']
    save_safetensors(half, tmp_path / 'broken.safetensors')
    with pytest.raises(ConversionError, match=r"broken.safetensors: missing keys \['localizer.tpe'\]"):
        main(['--input', str(tmp_path / 'broken.safetensors'), '--output', str(tmp_path / 'x.pt'),
              '--bpe-dir', str(BPE_DIR), '--gpt2-heads', '2', '--enc-heads', '2'])
