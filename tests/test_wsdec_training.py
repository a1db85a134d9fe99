"""WSDEC training procedures (spec wsdec §4): lr per epoch, phases, optimiser groups, pseudo-labels, the two
phase steps, and tiny end-to-end runs of the training scripts (checkpoints, --resume)."""
import argparse
import importlib
import json
import shutil

import pytest
import torch

from models.wsdec import build_models_from_config
from utils.annotations import load_annotations
from utils.checkpoint import load_checkpoint
from utils.features import open_features
from utils.vocab import Vocabulary
from utils.wsdec_data import WSDECDataset, wsdec_collate
from models.wsdec.steps import (classification_step, cycle_parameter_groups, cycle_step, epoch_schedule, first_argmax,
                                lr_at_epoch, phase_at_epoch, pseudo_labels, sgd)

TINY = ['--hidden-dim', '16', '--quiet', '--device', 'cpu', '--limit-videos', '8']


def script(name):
    return importlib.import_module(f'train_script.{name}')


# ------------------------------------------------------------------------------- schedule (spec §4, §9)
FINAL_LR = [1e-2, 1e-3] + [1e-4] * 18 + [1e-5] * 5                      # spec §4.2 table, §9
PRETRAIN_LR = [1e-2] * 20 + [1e-3] * 30 + [1e-4] * 20 + [1e-5] * 30      # spec §4.1


@pytest.mark.parametrize('name, table', [('train_final', FINAL_LR), ('train_cg_pretrain', PRETRAIN_LR)])
def test_lr_per_epoch_golden_table(name, table):
    defaults = script(name).build_parser().parse_args(['--checkpoint-cg', 'x'] if name == 'train_final' else [])
    assert defaults.epochs == len(table)
    assert [lr_at_epoch(defaults.lr, defaults.lr_step, e) for e in range(defaults.epochs)] == pytest.approx(table)


def test_lr_matches_modern_multisteplr_stepped_after_each_epoch():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [1, 2, 20], gamma=0.1)
    for epoch in range(25):
        assert opt.param_groups[0]['lr'] == pytest.approx(lr_at_epoch(1e-2, [1, 2, 20], epoch))
        opt.step()
        sched.step()


@pytest.mark.parametrize('name, epochs, batch, lr_step', [
    ('train_cg_pretrain', 100, 36, [20, 50, 70]), ('train_final', 25, 32, [1, 2, 20]),
    ('train_baseline_regressor', 100, 31, [1, 2, 20]), ('train_cg', 100, 64, [20, 50, 70]),
    ('train_sl', 100, 96, [5, 20, 50])])
def test_script_defaults_are_the_papers(name, epochs, batch, lr_step):
    needs_cg = name in ('train_final', 'train_baseline_regressor')
    args = script(name).build_parser().parse_args(['--checkpoint-cg', 'x'] if needs_cg else [])
    assert (args.epochs, args.batch_size, args.lr_step, args.lr, args.seed) == (epochs, batch, lr_step, 1e-2, 233)
    if name == 'train_final':
        assert (args.sl_batch_size, args.alter_step, args.grad_clip, args.regressor_scale, args.fc_dropout) == \
            (6, 5, 5.0, 0.3, 0.3)
        assert not (args.consistent_shift or args.modern_bn_init or args.zero_grad_set_to_none)
    if name == 'train_sl':
        assert (args.regressor_scale, args.lambda_, args.fc_dropout, args.fixed_regression_target) == \
            (0.1, 0.1, 0.3, False)


def test_phase_schedule():
    phases = [phase_at_epoch(e) for e in range(25)]
    assert [e for e, p in enumerate(phases) if p == 'sl'] == [0, 5, 10, 15, 20]
    assert phases.count('cg') == 20


# ---------------------------------------------------------------------------------- tiny models, batch
def tiny_models(vocab_size, regressor_scale=0.3, sl_type='anchor'):
    args = argparse.Namespace(hidden_dim=16, embedding_dim=None, rnn_dropout=0.3, max_cap_length=6, fc_dropout=0.3,
                              regressor_scale=regressor_scale, modern_bn_init=False)
    from models.wsdec.config import cg_config, sl_config
    torch.manual_seed(0)
    return build_models_from_config({'cg': cg_config(args, vocab_size, 500),
                                     'sl': sl_config(args, vocab_size, 500, sl_type)})


def no_dropout(model):
    """`model` with every dropout probability (modules' `p`, GRU stacks' `dropout`) set to 0."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, 'dropout') and isinstance(m.dropout, float):
            m.dropout = 0.0
    return model


def collated_tiny_batch(tiny_data, n_videos):
    """The first `n_videos` training videos of the tiny synthetic set collated (one sampled sentence each), and the
    vocabulary."""
    annotations = load_annotations(tiny_data.train)
    vocab = Vocabulary.build(annotations)
    dataset = WSDECDataset(annotations, open_features(tiny_data.c3d), vocab, 'sample')
    return wsdec_collate([dataset[i] for i in range(n_videos)]), vocab


@pytest.fixture(scope='module')
def tiny_batch(tiny_data):
    return collated_tiny_batch(tiny_data, 3)


def test_cycle_parameter_groups():
    models = tiny_models(20)
    sl, cg = models['sl'], models['cg']
    opt = sgd(cycle_parameter_groups(sl, cg, 1e-2), 1e-2)
    groups = {g['name']: g for g in opt.param_groups}
    ids = {name: {id(p) for p in g['params']} for name, g in groups.items()}
    assert ids['sl_refiner'] == {id(sl.refiner.weight), id(sl.refiner.bias)}
    assert ids['sl_rest'] == {id(p) for n, p in sl.named_parameters() if not n.startswith('refiner.')}
    assert id(sl.predictor.weight) in ids['sl_rest']
    assert ids['cg'] == {id(p) for p in cg.parameters()}
    assert [g['lr'] for g in opt.param_groups] == pytest.approx([1e-2, 1e-3, 1e-2])
    assert all(g['momentum'] == 0.8 and g['weight_decay'] == 1e-4 for g in opt.param_groups)
    schedule = epoch_schedule(opt, [1, 2, 20])
    for _ in range(2):  # stepped after epochs 0 and 1: epoch 2's lr
        opt.step()
        schedule.step()
    assert [g['lr'] for g in opt.param_groups] == pytest.approx([1e-4, 1e-5, 1e-4])
    assert [g['lr'] for g in opt.param_groups] == [lr_at_epoch(b, [1, 2, 20], 2) for b in (1e-2, 1e-3, 1e-2)]


def test_first_argmax_ties_go_to_the_lowest_index():
    assert first_argmax([[0.0] * 15, [0.1, 0.3, 0.2, 0.3], [0.5, 0.5, 0.9, 0.9]]) == [0, 1, 2]


def test_tie_rules_of_the_pseudo_labels():
    from models.wsdec.steps import break_ties, tied
    rows = [[0.0] * 4, [0.1, 0.3, 0.2, 0.3], [0.5, 0.1, 0.2, 0.4]]
    first = first_argmax(rows)
    assert [tied(r) for r in rows] == [True, True, False]
    assert break_ties(rows, first, 'first') == (first, [True] * 3)
    assert break_ties(rows, first, 'skip') == (first, [False, False, True])
    torch.manual_seed(0)
    draws = [break_ties(rows, first, 'random')[0] for _ in range(200)]
    assert {d[0] for d in draws} == {0, 1, 2, 3} and {d[1] for d in draws} == {1, 3} and {d[2] for d in draws} == {0}


def test_pseudo_labels_with_a_fake_scorer(tiny_batch):
    batch, vocab = tiny_batch
    cg = tiny_models(len(vocab))['cg']
    calls = []

    def scorer(hyps, refs):
        calls.append((hyps, refs))
        # per row: anchors 4 and 9 tie for the best score, row 2 all equal
        return [0.0 if i // 15 == 2 else (0.7 if i % 15 in (4, 9) else 0.1) for i in range(len(hyps))]

    labels, rows = pseudo_labels(cg, batch, vocab, scorer)
    assert labels.tolist() == [4, 4, 0]
    assert len(calls) == 1 and len(calls[0][0]) == 45  # all 15×N pairs in one call
    assert calls[0][1][15] == [vocab.decode(batch.caption[1])]
    assert not cg.training  # frozen CG captions in eval mode (beam search)


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before, model):
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


def test_cycle_step_updates_cg_and_localizer_but_not_the_classifier(tiny_batch):
    batch, vocab = tiny_batch
    models = tiny_models(len(vocab))
    sl, cg = models['sl'], models['cg']
    opt = sgd(cycle_parameter_groups(sl, cg, 1e-2), 1e-2)
    sl_before, cg_before = params(sl), params(cg)
    metrics = cycle_step(cg, sl, batch, opt, grad_clip=5.0)
    assert torch.isfinite(metrics['loss']) and 0 <= metrics['miou'] <= 1
    assert sl.predictor.weight.grad is None or not sl.predictor.weight.grad.any()
    sl_changed = changed(sl_before, sl)
    assert not sl_changed & {'predictor.weight', 'predictor.bias'}
    assert {'refiner.weight', 'sent_embedding.weight', 'feature_mixer.fc.weight'} <= sl_changed
    assert changed(cg_before, cg) == set(cg_before)
    assert torch.nn.utils.clip_grad_norm_(sl.parameters(), float('inf')) <= 5.0 + 1e-4


def test_classification_step_freezes_the_caption_generator(tiny_batch):
    batch, vocab = tiny_batch
    models = tiny_models(len(vocab))
    sl, cg = models['sl'], models['cg']
    opt = sgd(sl.parameters(), 1e-2)
    sl_before, cg_before = params(sl), params(cg)
    metrics = classification_step(sl, cg, batch, opt, vocab, lambda h, r: [float(i % 15 == 7) for i in range(len(h))])
    assert torch.isfinite(metrics['loss']) and metrics['label_mean'] == 7
    assert not changed(cg_before, cg) and not cg.training and sl.training
    sl_changed = changed(sl_before, sl)
    assert {'predictor.weight', 'predictor.bias', 'sent_embedding.weight'} <= sl_changed
    assert not sl_changed & {'refiner.weight', 'refiner.bias'}  # CE reaches the classifier only


# ------------------------------------------------------------------------------------------ end to end
def run_script(name, tiny_data, runs, run_name, *extra):
    script(name).main(['--data-root', str(tiny_data.root), '--runs-dir', str(runs), '--run-name', run_name,
                       *TINY, *extra])
    return runs / run_name


def rebuild(path):
    ckpt = load_checkpoint(path)  # weights_only=True
    models = build_models_from_config(ckpt['config'])
    for name, model in models.items():
        model.load_state_dict(ckpt['model'][name])
    return ckpt, models


@pytest.fixture(scope='module')
def pretrained(tiny_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp('runs')
    folder = run_script('train_cg_pretrain', tiny_data, runs, 'pre', '--epochs', '2', '--batch-size', '4')
    return runs, folder


def test_cg_pretrain_checkpoint(pretrained):
    _, folder = pretrained
    ckpt, models = rebuild(folder / 'checkpoints' / 'last.pt')
    assert ckpt['kind'] == 'wsdec_cg_pretrain' and ckpt['epoch'] == 1 and ckpt['step'] == 4
    assert set(models) == {'cg'} and ckpt['config']['models']['cg']['hidden_dim'] == 16
    assert ckpt['config']['vocab'] == Vocabulary.load(folder / 'vocab.json').id_to_word
    schedule = ckpt['scheduler']['cg']  # the LambdaLR of epoch_schedule, stepped after each epoch
    assert (schedule['last_epoch'], schedule['base_lrs'], schedule['_last_lr']) == (2, [1e-2], [1e-2])
    logs = [json.loads(line) for line in (folder / 'log.jsonl').read_text().splitlines()]
    assert [r['step'] for r in logs] == [1, 2, 3, 4] and logs[0]['lr'] == pytest.approx(1e-2)


def test_resume_equals_uninterrupted(pretrained, tiny_data):
    runs, folder = pretrained
    run_script('train_cg_pretrain', tiny_data, runs, 'half', '--epochs', '1', '--batch-size', '4')
    run_script('train_cg_pretrain', tiny_data, runs, 'half', '--epochs', '2', '--batch-size', '4', '--resume')
    full = load_checkpoint(folder / 'checkpoints' / 'last.pt')
    resumed = load_checkpoint(runs / 'half' / 'checkpoints' / 'last.pt')
    assert resumed['step'] == full['step']
    for key, value in full['model']['cg'].items():
        assert torch.equal(value, resumed['model']['cg'][key]), key


def test_caption_order_pretraining_flag(pretrained, tiny_data, monkeypatch):
    """`--pretrain-segment caption-order` (issue 14) trains on the j-th of n equal parts: the steps receive those
    segments, the config records the flag, and the default run (whole video) is unchanged by it."""
    import models.wsdec.steps as steps
    seen = []
    original = steps.caption_order_split
    monkeypatch.setitem(steps.PRETRAIN_SEGMENTS, 'caption-order', lambda batch: seen.append(original(batch)) or seen[-1])
    runs, folder = pretrained
    ordered = run_script('train_cg_pretrain', tiny_data, runs, 'ordered', '--epochs', '1', '--batch-size', '4',
                         '--pretrain-segment', 'caption-order')
    ckpt, _ = rebuild(ordered / 'checkpoints' / 'last.pt')
    assert ckpt['config']['pretrain_segment'] == 'caption-order' and ckpt['step'] == 2 and len(seen) == 2
    widths = torch.cat(seen)[:, 1]
    assert bool((widths < 1).any()) and bool((widths <= 1).all())  # the tiny videos have several sentences
    assert load_checkpoint(folder / 'checkpoints' / 'last.pt')['config']['pretrain_segment'] == 'whole-video'


@pytest.mark.parametrize('name, kind, extra', [
    ('train_cg', 'wsdec_cg', []), ('train_sl', 'wsdec_sl', ['--fixed-regression-target']),
    ('train_baseline_regressor', 'wsdec_noclass', ['--checkpoint-cg', 'PRE'])])
def test_other_scripts_run_and_rebuild(name, kind, extra, pretrained, tiny_data):
    runs, pre = pretrained
    extra = [str(pre / 'checkpoints' / 'last.pt') if e == 'PRE' else e for e in extra]
    folder = run_script(name, tiny_data, runs, name, '--epochs', '1', '--batch-size', '4',
                        '--max-steps-per-epoch', '1', *extra)
    ckpt, models = rebuild(folder / 'checkpoints' / 'last.pt')
    assert ckpt['kind'] == kind and ckpt['step'] == 1
    if name == 'train_sl':
        assert ckpt['config']['models']['sl']['legacy_regression_target'] is False
    if name == 'train_baseline_regressor':
        assert ckpt['config']['models']['sl']['type'] == 'regressor'
        assert ckpt['config']['vocab'] == load_checkpoint(pre / 'checkpoints' / 'last.pt')['config']['vocab']


@pytest.mark.java
@pytest.mark.slow
def test_final_chain_sl_and_cg_phases(pretrained, tiny_data):
    if shutil.which('java') is None:
        pytest.skip('Java is needed for METEOR pseudo-labels')
    runs, pre = pretrained
    folder = run_script('train_final', tiny_data, runs, 'final', '--checkpoint-cg', str(pre / 'checkpoints' / 'last.pt'),
                        '--epochs', '2', '--batch-size', '4', '--sl-batch-size', '2', '--max-steps-per-epoch', '2')
    ckpt, models = rebuild(folder / 'checkpoints' / 'last.pt')
    assert ckpt['kind'] == 'wsdec_final' and set(models) == {'cg', 'sl'}
    assert set(ckpt['optimizer']) == {'sl', 'cycle'}
    assert ckpt['config']['inference']['n_rand'] == 15
    logs = [json.loads(line) for line in (folder / 'log.jsonl').read_text().splitlines()]
    assert [(r['epoch'], r['phase']) for r in logs] == [(0, 1), (0, 1), (1, 0), (1, 0)]
    assert [r['lr'] for r in logs] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3])
    epoch0 = load_checkpoint(folder / 'checkpoints' / 'epoch_000.pt')
    pretrained_cg = load_checkpoint(pre / 'checkpoints' / 'last.pt')['model']['cg']
    assert all(torch.equal(v, pretrained_cg[k]) for k, v in epoch0['model']['cg'].items())  # SL phase: CG frozen


def test_cycle_step_shared_video_encoding_equals_two_separate_calls(tiny_batch):
    # without dropout the shared encoding (LocalizerBackbone.encode_video_twice) and skipping the padded steps
    # (SequenceEncoder lengths) must change nothing: the twin runs the original's two localizer calls and its
    # encoders over every padded step
    import copy
    from models.layers.gru_encoder import SequenceEncoder
    from models.wsdec.caption_generator import caption_loss
    from models.wsdec.config import CYCLE_NOISE, RECONSTRUCTION_WEIGHT
    from models.wsdec.steps import localizer_inputs
    batch, vocab = tiny_batch
    models = tiny_models(len(vocab))
    for model in models.values():
        no_dropout(model)
    twin = copy.deepcopy(models)
    for model in twin.values():
        for m in model.modules():
            if isinstance(m, SequenceEncoder):
                m.encode = lambda x, lengths=None, _padded=m.encode: _padded(x)
    assert len(set(batch.video_length[:, 0].tolist())) > 1 and len(set(batch.caption_length.tolist())) > 1
    torch.manual_seed(3)
    cycle_step(models['cg'], models['sl'], batch, sgd(cycle_parameter_groups(models['sl'], models['cg'], 1e-2), 1e-2),
               grad_clip=5.0)
    cg, sl = twin['cg'], twin['sl']
    opt = sgd(cycle_parameter_groups(sl, cg, 1e-2), 1e-2)
    torch.manual_seed(3)
    cg.train(), sl.train()
    segment = sl(*localizer_inputs(batch), mode='diff')  # the original: two full localizer calls
    segment = segment + (torch.rand_like(segment) * 2 - 1) * CYCLE_NOISE
    logp, generated = cg(batch.video, batch.video_length, batch.video_mask, segment, batch.caption_gather_idx,
                         sent=batch.caption)
    reconstructed = sl(*localizer_inputs(batch, generated.detach()), mode='diff')
    loss = caption_loss(logp, batch.caption, batch.caption_mask) + \
        ((reconstructed - segment.detach()) ** 2).mean() * RECONSTRUCTION_WEIGHT
    opt.zero_grad(set_to_none=False)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(sl.parameters(), 5.0)
    opt.step()
    for name in ('cg', 'sl'):
        ours, original = dict(models[name].state_dict()), twin[name].state_dict()
        assert all(torch.allclose(ours[k].float(), v.float(), atol=1e-6) for k, v in original.items()), name


def test_video_reliance_script_on_a_trained_caption_generator(pretrained, tmp_path):
    from scripts.video_reliance import main
    runs, folder = pretrained
    ckpt = folder / 'checkpoints' / 'last.pt'
    out = main(['--checkpoint', str(ckpt), str(folder / 'checkpoints' / 'epoch_000.pt'), '--device', 'cpu',
                '--json', str(tmp_path / 'r.json')])
    numbers = out[str(ckpt)]
    assert set(numbers) == {'nll_own', 'nll_zero', 'nll_other', 'reliance'}
    assert numbers['reliance'] == pytest.approx(numbers['nll_other'] - numbers['nll_own'])
    assert json.loads((tmp_path / 'r.json').read_text())[str(ckpt)] == pytest.approx(numbers)
