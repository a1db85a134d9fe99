"""scripts/caption_video.py end to end (issue 18 item 5): a short video written by the test, tiny random-weight
CLIP and C3D models in the real file formats (tests/tiny_extractors.py), tiny checkpoints trained for a few steps
by the real training scripts on a tiny synthetic data root whose feature rates are those of the extractors on a
25 fps video (C3D: a window every 8 frames, 25/8 rows per second; CLIP: 1 per second), and the whole script
through a subprocess for WSDEC and ILCACM. The JSON must pass the scorer's submission loader, the subtitles' cues
must be the JSON's events, the page must render; WSDEC's captions must equal the evaluation script's on the same
features, ILCACM's event count the stage-1 paragraph's sentence count, the random-segment baseline's segment the
seeded draw computed here."""
import html
import importlib
import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from models.ilcacm.model import split_paragraph
from models.wsdec.evaluation import evaluate_dense
from tests.test_caption_outputs import SRT_CUE, VTT_CUE, parse
from tests.test_report import _chromium
from tests.tiny_extractors import write_tiny_c3d, write_tiny_clip
from third_party.densevid_eval.submission import load_results, submission_warnings
from utils import cli
from utils.checkpoint import load_checkpoint, save_checkpoint
from models.extractors.pipeline import build_extractor, extract_video
from utils.synthetic import CLIP_DIM, SignalModel, make_synthetic_dataset
from utils.video import write_synthetic_video

ROOT = Path(__file__).resolve().parents[1]
FPS, FRAMES = 25, 75                               # a 3 s video
DURATION = FRAMES / FPS
WSDEC_TINY = ['--hidden-dim', '16', '--quiet', '--device', 'cpu', '--batch-size', '4']
ILCACM_TINY = ['--decoder', 'word', '--word-min-count', '1', '--gpt2-layers', '1', '--gpt2-dim', '32',
               '--gpt2-heads', '2', '--enc-layers', '1', '--enc-heads', '2', '--enc-ff', '64', '--mask-ff', '64',
               '--cap-epochs', '1', '--epochs', '2', '--batch-size', '8', '--lr', '1e-3', '--device', 'cpu',
               '--quiet', '--num-beams', '2', '--skip-eval']
script = importlib.import_module('scripts.caption_video')


def train(name, data, runs, run_name, *extra):
    importlib.import_module(f'train_script.{name}').main(['--data-root', str(data.root), '--runs-dir', str(runs),
                                                          '--run-name', run_name, *extra])
    return runs / run_name / 'checkpoints' / 'last.pt'


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """Videos, tiny extractor weights and three trained checkpoints (wsdec_cg_pretrain, wsdec_noclass, ilcacm)."""
    root = tmp_path_factory.mktemp('caption_video')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = make_synthetic_dataset(root / 'data', size='tiny', max_videos=8, max_val_videos=2,
                                      signal=SignalModel(c3d_rate=FPS / 8, clip_rate=1.0))
        pre = train('train_cg_pretrain', data, root / 'runs', 'pre', *WSDEC_TINY, '--epochs', '1')
        noclass = train('train_baseline_regressor', data, root / 'runs', 'noclass', *WSDEC_TINY, '--epochs', '1',
                        '--max-steps-per-epoch', '1', '--checkpoint-cg', str(pre))
        ilcacm = train('train_ilcacm', data, root / 'runs', 'ilcacm', *ILCACM_TINY)
    finally:
        torch.set_num_threads(threads)
    videos = root / 'videos'
    videos.mkdir()
    write_synthetic_video(videos / 'moving.mp4', FRAMES, Fraction(FPS))
    (videos / 'broken.mp4').write_bytes(b'\x00' * 2000)
    weights = {'clip_model': write_tiny_clip(root / 'clip', projection_dim=CLIP_DIM), **write_tiny_c3d(root / 'c3d')}
    flags = [f"--{name.replace('_', '-')}={path}" for name, path in weights.items()] + ['--device', 'cpu', '--quiet']
    return SimpleNamespace(root=root, videos=videos, weights=weights, flags=flags, pre=pre, noclass=noclass,
                           ilcacm=ilcacm)


def caption(world, checkpoint, out, *videos):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.run([sys.executable, str(ROOT / 'scripts/caption_video.py'), *map(str, videos), '--checkpoint',
                           str(checkpoint), '--out', str(out), *world.flags], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


@pytest.fixture(scope='module')
def wsdec_out(world):
    out = world.root / 'wsdec_out'
    return out, caption(world, world.noclass, out, world.videos / 'moving.mp4', world.videos / 'broken.mp4')


@pytest.fixture(scope='module')
def ilcacm_out(world):
    out = world.root / 'ilcacm_out'
    return out, caption(world, world.ilcacm, out, world.videos / 'moving.mp4')


def check_outputs(out: Path, vid: str) -> list[dict]:
    """The JSON passes the scorer's loader with nothing odd; SRT and VTT cues are its events to the millisecond,
    sorted by start, and the page lists every caption. Returns the events."""
    results, _, data = load_results(out / f'{vid}.json')
    assert set(data) >= {'version', 'results', 'external_data'} and list(results) == [vid]
    reference = [{vid: {'duration': DURATION, 'timestamps': [[0.0, DURATION]], 'sentences': ['A reference.']}}]
    warnings = submission_warnings(data, results, reference, 1000)
    assert warnings['outside_video_duration'] == warnings['start_after_end'] == 0
    events = results[vid]
    assert events and all(0 <= e['timestamp'][0] <= e['timestamp'][1] <= DURATION for e in events)
    expected = sorted((round(e['timestamp'][0] * 1000), round(e['timestamp'][1] * 1000), e['sentence'])
                      for e in events)
    srt = parse((out / f'{vid}.srt').read_text(), SRT_CUE)
    vtt = parse((out / f'{vid}.vtt').read_text().removeprefix('WEBVTT\n\n'), VTT_CUE)
    for cues in (srt, [(n, s, e, html.unescape(t)) for n, s, e, t in vtt]):
        assert [n for n, *_ in cues] == list(range(1, len(events) + 1))
        assert [(round(s * 1000), round(e * 1000), t) for _, s, e, t in cues] == expected
    page = (out / f'{vid}.html').read_text()
    assert all(html.escape(e['sentence']) in page for e in events) and 'data:image/jpeg;base64,' in page
    return events


def test_wsdec_checkpoint_captions_a_video_and_lists_the_broken_one(world, wsdec_out):
    out, done = wsdec_out
    assert done.returncode == 1, done.stderr[-3000:]
    assert 'c3d features in' in done.stdout and '1 extracted, 0 from an earlier run, 1 failed' in done.stdout
    assert done.stdout.rstrip().endswith('1 videos captioned, 1 failed\n  failed broken: '
                                         f"{world.videos / 'broken.mp4'}: cannot open as a video "
                                         '(Invalid data found when processing input)')
    assert "moving: " in done.stdout and str(out / 'moving.html') in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ['features', 'moving.html', 'moving.json', 'moving.srt',
                                                     'moving.vtt']
    events = check_outputs(out, 'moving')
    params = json.loads((out / 'moving.json').read_text())['params']
    assert (params['kind'], params['n_rand'], params['video_sample_rate'], params['duration']) == \
        ('wsdec_noclass', 15, 2, DURATION)
    # the cached features are the extractor's: windows at frames 0, 8, ..., 56
    with h5py.File(out / 'features' / 'c3d.hdf5', 'r') as f:
        cached = f['moving/c3d_features'][()]
    extractor = build_extractor('c3d', device='cpu', **{k: v for k, v in world.weights.items() if 'c3d' in k})
    again = extract_video(world.videos / 'moving.mp4', extractor)     # another thread count: float sums differ
    assert cached.shape == (8, 500) and np.abs(cached - again).max() <= 1e-4 * np.abs(again).max()
    assert events == evaluation_predictions(world, out)


def evaluation_predictions(world, out):
    """eval_script's dense captioning of the same features, the video alone in val_1 (batch of one)."""
    data = world.root / 'eval_data'
    (data / 'captions').mkdir(parents=True, exist_ok=True)
    annotation = {'moving': {'duration': DURATION, 'timestamps': [[0.0, DURATION]], 'sentences': ['A person.']}}
    (data / 'captions' / 'val_1.json').write_text(json.dumps(annotation))
    evaluate_dense(['--checkpoint', str(world.noclass), '--data-root', str(data), '--features',
                    str(out / 'features' / 'c3d.hdf5'), '--no-score', '--batch-size', '1', '--device', 'cpu',
                    '--runs-dir', str(world.root / 'eval_runs'), '--run-name', 'dense', '--quiet'])
    prediction = world.root / 'eval_runs' / 'dense' / 'predictions' / 'dense_n15_seed233_val_1.json'
    return json.loads(prediction.read_text())['results']['moving']


def test_a_rerun_reads_the_cached_features(world, wsdec_out, capsys):
    out, _ = wsdec_out
    before = (out / 'moving.json').read_text()
    stamp = (out / 'features' / 'c3d.hdf5').stat().st_mtime_ns
    assert script.run([str(world.videos / 'moving.mp4'), '--checkpoint', str(world.noclass), '--out', str(out),
                       *world.flags]) == 0
    assert '0 extracted, 1 from an earlier run, 0 failed' in capsys.readouterr().out
    assert (out / 'features' / 'c3d.hdf5').stat().st_mtime_ns == stamp and (out / 'moving.json').read_text() == before


def test_ilcacm_checkpoint_captions_a_video(ilcacm_out):
    out, done = ilcacm_out
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.rstrip().endswith('1 videos captioned, 0 failed')
    events = check_outputs(out, 'moving')
    submission = json.loads((out / 'moving.json').read_text())
    params = submission['params']
    assert (params['kind'], params['count_mode'], params['max_frames']) == ('ilcacm', 'paragraph', 32)
    assert len(events) == len(split_paragraph(params['paragraph'], params['max_captions']))    # spec ilcacm §5.1
    assert all(round(t, 2) == t for e in events for t in e['timestamp'])                      # §5.2: 2 decimals
    assert np.load(out / 'features' / 'clip' / 'moving.npy').shape == (3, CLIP_DIM)           # 1 fps


@pytest.mark.skipif(_chromium() is None, reason='chromium not installed')
def test_page_renders_in_headless_chromium(ilcacm_out, tmp_path):
    out, _ = ilcacm_out
    shot = tmp_path / 'shot.png'
    subprocess.run([_chromium(), '--headless', '--no-sandbox', '--disable-gpu', f'--screenshot={shot}',
                    '--window-size=1280,720', (out / 'moving.html').as_uri()], capture_output=True, timeout=60,
                   check=False)
    assert shot.exists() and shot.stat().st_size > 20_000                  # a blank page is ~10 kB
    assert shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def without_vocab(checkpoint, folder) -> Path:
    """A copy of `checkpoint` without config['vocab'], as converted original checkpoints are."""
    state = load_checkpoint(checkpoint)
    save_checkpoint(folder / 'converted.pt', {**state, 'config': {k: v for k, v in state['config'].items()
                                                                  if k != 'vocab'}})
    return folder / 'converted.pt'


def test_pretrained_caption_generator_captions_one_random_segment(world, tmp_path):
    assert script.run([str(world.videos / 'moving.mp4'), '--checkpoint', str(world.pre), '--out', str(tmp_path),
                       *world.flags]) == 0
    (event,) = check_outputs(tmp_path, 'moving')
    c, w = torch.rand(2, generator=torch.Generator().manual_seed(233)).tolist()    # evaluate_pretrain.py's draw
    start, end = max(c - w / 2, 0.0) * DURATION, min(c + w / 2, 1.0) * DURATION
    assert event['timestamp'] == pytest.approx([start, end], abs=1e-5)
    # a converted original checkpoint carries no vocabulary: --vocab gives it
    out = tmp_path / 'converted'
    assert script.run([str(world.videos / 'moving.mp4'), '--checkpoint', str(without_vocab(world.pre, tmp_path)),
                       '--out', str(out), '--vocab', str(world.pre.parents[1] / 'vocab.json'), *world.flags]) == 0
    assert json.loads((out / 'moving.json').read_text())['results']['moving'] == [event]


def test_cached_features_of_another_width_fail_that_video(world, tmp_path, capsys):
    cached = tmp_path / 'features' / 'clip' / 'moving.npy'
    cached.parent.mkdir(parents=True)
    np.save(cached, np.zeros((3, 8), np.float32))                     # made with other CLIP weights
    assert script.run([str(world.videos / 'moving.mp4'), '--checkpoint', str(world.ilcacm), '--out', str(tmp_path),
                       *world.flags]) == 1
    assert f"failed moving: {cached}: video 'moving': 8-d features from an earlier run, the checkpoint reads " \
           f"768-d" in capsys.readouterr().out
    assert not (tmp_path / 'moving.json').exists()


def refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        cli.main(script.run, argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count('\n') == 1 and err.startswith('error: ')
    return err


def test_refusals_are_one_line(world, tmp_path, capsys):
    video = str(world.videos / 'moving.mp4')
    err = refused([video, '--checkpoint', str(world.noclass), '--out', str(tmp_path), *world.flags,
                   '--c3d-pca', str(tmp_path / 'pca.hdf5')], capsys)
    assert f"{tmp_path / 'pca.hdf5'} not found: put the ActivityNet challenge's PCA file" in err
    err = refused([video, '--checkpoint', str(world.ilcacm), '--out', str(tmp_path), *world.flags,
                   '--clip-model', str(write_tiny_clip(tmp_path / 'clip8'))], capsys)
    assert "reads 768-d clip features, but the extractor built from" in err and 'gives 8-d ones' in err
    save_checkpoint(tmp_path / 'cg.pt', {**load_checkpoint(world.pre), 'kind': 'wsdec_cg'})
    err = refused([video, '--checkpoint', str(tmp_path / 'cg.pt'), *world.flags], capsys)
    assert "a 'wsdec_cg' checkpoint captions ground-truth segments" in err
    err = refused([video, '--checkpoint', str(without_vocab(world.pre, tmp_path)), *world.flags], capsys)
    assert "the checkpoint has no config['vocab']; pass --vocab FILE" in err
    shutil.copy(video, tmp_path / 'a:b.mp4')
    err = refused([str(tmp_path / 'a:b.mp4'), '--checkpoint', str(world.pre), *world.flags], capsys)
    assert "video id 'a:b' cannot be a file name" in err
    assert not list(tmp_path.glob('*.json'))


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        script.build_parser().parse_args(['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    for flag in ('--out OUT', '--device DEVICE', '--dtype {fp32,bf16,fp16}', '--clip-model', '--c3d-mean',
                 '--vocab', '--workers'):
        assert flag in text
    assert '(default: captions)' in text and '(default: auto)' in text and '(default: fp32)' in text
