"""Build the ILCACM tokenizer and model from the resolved config (flags and decoder choice: models/ilcacm/config.py).

The architecture actually built is recorded in checkpoints (`decoder_arch`) so that an evaluation rebuilds it from
the checkpoint alone.
"""
from models.ilcacm.captioner import Captioner
from models.ilcacm.config import resolve_path
from models.ilcacm.gpt2 import GPT2
from models.ilcacm.mask_generator import MaskGenerator
from models.ilcacm.model import ILCACM
from models.ilcacm.text_decoder import BPECaptionTokenizer, tokenizer_from_state
from models.ilcacm.video_encoder import VideoEncoder
from models.ilcacm.word_decoder import WordTokenizer


def build_tokenizer(config, train_sentences=()):
    if config['decoder'] == 'word':
        return WordTokenizer.build(train_sentences, config['word_min_count'])
    return BPECaptionTokenizer(config['bpe_dir'])


def build_model(config, tokenizer, feature_dim, arch=None, pretrained=True):
    """ILCACM of `config`. `arch` (a recorded `decoder_arch`) rebuilds the decoder shape without weights
    (evaluation, conversion); otherwise a pretrained GPT-2 is loaded when the config asks for one."""
    p = config['dropout']
    dropouts = {'resid_pdrop': p, 'embd_pdrop': p, 'attn_pdrop': p}
    if arch is None and config['decoder'] == 'gpt2' and config['gpt2_init'] == 'pretrained' and pretrained:
        # dropout 0.1 from config.json
        gpt2 = GPT2.from_pretrained(resolve_path(config['gpt2']), vocab_size=len(tokenizer))
    else:
        arch = arch or {'n_layer': config['gpt2_layers'], 'n_head': config['gpt2_heads'],
                        'n_embd': config['gpt2_dim'], 'vocab_size': len(tokenizer), 'n_positions': 1024}
        gpt2 = GPT2.from_config(**arch, **dropouts)
    d_model = gpt2.config.n_embd
    encoder = VideoEncoder(d_model, config['enc_heads'], config['enc_ff'], config['enc_layers'],
                           config['max_frames'], p)
    localizer = MaskGenerator(d_model, config['enc_heads'], config['mask_ff'], 1, config['max_frames'],
                              config['num_queries'], p, config['tau'], config['gamma'], config['mask_shape'])
    return ILCACM(Captioner(encoder, gpt2, tokenizer), localizer, feature_dim, config['mask_mode'], config['seed'])


def model_arch(model):
    """The recorded decoder shape of a built model (stored in checkpoints as `decoder_arch`)."""
    c = model.captioner.gpt2_model.config
    return {'n_layer': c.n_layer, 'n_head': c.n_head, 'n_embd': c.n_embd, 'vocab_size': c.vocab_size,
            'n_positions': c.n_positions}


def model_from_checkpoint(state):
    """(model, tokenizer) rebuilt from a suite checkpoint (config, tokenizer, decoder_arch, feature_dim)."""
    config = state['config']
    tokenizer = tokenizer_from_state(state['tokenizer'])
    model = build_model(config, tokenizer, state['feature_dim'], arch=state['decoder_arch'])
    model.load_state_dict(state['model']['ilcacm'])
    return model, tokenizer
