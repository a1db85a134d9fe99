"""CLIP and C3D extractors (models/extractors/) and the extraction pipeline (models/extractors/pipeline.py,
scripts/extract_features.py): tiny random-weight models written by the tests in the real file formats (a Hugging
Face CLIP folder, the C3D port's pickled state dict, the ActivityNet PCA hdf5 layout), checked against forward
passes written out here from the definitions, the preprocessing against hand computations, and the output layout,
resumability and failure list."""
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.extractors.c3d import (C3D, CROP, CROP_LEFT, CROP_TOP, PCA_DIM, C3DExtractor, c3d_frames, load_mean,
                                   load_pca, resize_bilinear, windows)
from models.extractors.clip import (IMAGE_MEAN, IMAGE_STD, CLIPImageEncoder, ClipExtractor, clip_frames,
                                    frame_filters, preprocess, scaled_size)
from utils.weights import CheckpointFormatError, save_safetensors
from tests.tiny_extractors import (CONV_NAMES, TINY_FC, tiny_c3d_state, tiny_clip_state, write_tiny_c3d,
                                    write_tiny_clip)
from models.extractors.pipeline import (DEFAULT_WEIGHTS, Hdf5Store, MissingWeightsError, VideoIdError, build_extractor,
                                      check_video_id, extract_features, extract_video, list_videos)
from utils.video import FilterChain, decode, write_synthetic_video as write_video

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------- reference forwards
def reference_clip_features(state, pixels, heads=2, layers=2, patch=14, eps=1e-5):
    """`CLIPModel.get_image_features` written out from its definition (eager softmax attention)."""
    s = {k.removeprefix('vision_model.'): v for k, v in state.items()}
    x = F.conv2d(pixels, s['embeddings.patch_embedding.weight'], stride=patch).flatten(2).transpose(1, 2)
    n, _, d = x.shape
    x = torch.cat([s['embeddings.class_embedding'].expand(n, 1, d), x], 1) + s['embeddings.position_embedding.weight']
    ln = lambda h, name: F.layer_norm(h, (d,), s[name + '.weight'], s[name + '.bias'], eps)   # noqa: E731
    x = ln(x, 'pre_layrnorm')
    for i in range(layers):
        p = f'encoder.layers.{i}.'
        lin = lambda h, name: h @ s[p + name + '.weight'].T + s[p + name + '.bias']             # noqa: E731
        h = ln(x, p + 'layer_norm1')
        q, k, v = (lin(h, f'self_attn.{m}').view(n, -1, heads, d // heads).transpose(1, 2)
                   for m in ('q_proj', 'k_proj', 'v_proj'))
        attn = torch.softmax((q * (d // heads) ** -0.5) @ k.transpose(-1, -2), dim=-1)
        x = x + lin((attn @ v).transpose(1, 2).reshape(n, -1, d), 'self_attn.out_proj')
        h = lin(ln(x, p + 'layer_norm2'), 'mlp.fc1')
        x = x + lin(h * torch.sigmoid(1.702 * h), 'mlp.fc2')
    return ln(x[:, 0], 'post_layernorm') @ state['visual_projection.weight'].T


def reference_c3d_fc7(state, clips, pool5='caffe'):
    """C3D up to fc7 after ReLU, with caffe's pool5 (no padding, output size rounded up: pad right/bottom with
    -inf) or the port's (one -inf pixel on every side)."""
    h = clips
    for name in CONV_NAMES:
        h = F.relu(F.conv3d(h, state[f'{name}.weight'], state[f'{name}.bias'], padding=1))
        if name == 'conv1':
            h = F.max_pool3d(h, (1, 2, 2), (1, 2, 2))
        elif name in ('conv2', 'conv3b', 'conv4b'):
            h = F.max_pool3d(h, 2, 2)
    h = F.pad(h, (0, 1, 0, 1) if pool5 == 'caffe' else (1, 1, 1, 1), value=float('-inf'))
    h = F.max_pool3d(h, 2, 2).flatten(1)
    h = F.relu(h @ state['fc6.weight'].T + state['fc6.bias'])
    return F.relu(h @ state['fc7.weight'].T + state['fc7.bias'])


# --------------------------------------------------------------------------------------------------- CLIP
def test_clip_geometry_is_the_authors_output_dim_and_crop():
    # _get_output_dim: h >= w → (int(h·224/w), 224) as (H, W); crop at int((W - 224) / 2), int((H - 224) / 2)
    assert scaled_size(640, 480, 224) == (298, 224)            # int(640·224/480) = int(298.67)
    assert scaled_size(480, 640, 224) == (224, 298)
    assert scaled_size(1280, 720, 224) == (398, 224)           # int(398.22)
    assert frame_filters(640, 480, 224) == [('scale', '298:224:flags=bicubic'), ('crop', '224:224:37:0')]
    assert frame_filters(1280, 720, 224)[1] == ('crop', '224:224:87:0')


def test_clip_preprocessing_by_hand():
    pixels = torch.tensor([[[[0, 255, 128], [255, 0, 64]], [[1, 2, 3], [200, 100, 50]]]], dtype=torch.uint8)
    out = preprocess(pixels, size=2)
    assert out.shape == (1, 3, 2, 2) and out.dtype == torch.float32
    for (row, col), rgb in {(0, 0): (0, 255, 128), (0, 1): (255, 0, 64), (1, 1): (200, 100, 50)}.items():
        for c, v in enumerate(rgb):
            assert out[0, c, row, col].item() == pytest.approx((v / 255 - IMAGE_MEAN[c]) / IMAGE_STD[c], abs=1e-6)
    assert out[0, 0, 0, 0].item() == pytest.approx(-0.48145466 / 0.26862954, abs=1e-6)       # 0 in red: -1.7923
    # HF's order exactly: uint8 → float64 · (1/255) → float32, then (x - mean) / std in float32
    x = pixels.numpy().transpose(0, 3, 1, 2).astype(np.float64) * (1 / 255)
    x = x.astype(np.float32)
    hf = (x.transpose(0, 2, 3, 1) - np.array(IMAGE_MEAN, np.float32)) / np.array(IMAGE_STD, np.float32)
    assert np.array_equal(out.numpy(), hf.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match='crop size'):
        preprocess(torch.zeros(1, 3, 4, 3, dtype=torch.uint8), size=2)


@pytest.mark.parametrize('safetensors', [True, False])
def test_tiny_clip_loads_hf_layout_and_matches_get_image_features(tmp_path, safetensors):
    model = CLIPImageEncoder.from_pretrained(write_tiny_clip(tmp_path / 'clip', safetensors))
    assert (model.config.hidden_size, model.config.projection_dim, model.config.patch_size) == (16, 8, 14)
    pixels = torch.randn(3, 3, 28, 28, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = model(pixels)
    assert ours.shape == (3, 8)
    assert torch.allclose(ours, reference_clip_features(tiny_clip_state(), pixels), atol=1e-5)


def test_clip_folder_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointFormatError, match='config.json'):
        CLIPImageEncoder.from_pretrained(tmp_path)
    folder = write_tiny_clip(tmp_path / 'clip')
    state = tiny_clip_state()
    del state['visual_projection.weight']
    save_safetensors(state, folder / 'model.safetensors')
    with pytest.raises(CheckpointFormatError, match='1 weights missing'):
        CLIPImageEncoder.from_pretrained(folder)


@pytest.fixture(scope='module')
def video_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('extract_videos')
    write_video(d / 'cfr.mp4', 63, Fraction(25))                                   # 2.52 s → 3 frames at 1 fps
    write_video(d / 'vfr.mkv', pts_ms=[0, 100, 150, 700, 720, 1500, 1600, 2400, 2410, 3000])  # 3 frames
    (d / 'broken.mp4').write_bytes(b'\x00' * 2000)
    return d


def test_clip_frames_are_the_sampled_frames_scaled_and_cropped(video_dir):
    frames = list(clip_frames(video_dir / 'cfr.mp4', size=28))
    assert len(frames) == 3 and frames[0].shape == (28, 28, 3) and frames[0].dtype == np.uint8
    # 25 fps: slot n shows frame 25n + 12 (t < n + 0.5); 64 x 48 → scale 37 x 28, crop x = int(9 / 2) = 4
    decoded = [d.frame for d in decode(video_dir / 'cfr.mp4')]
    scaled = FilterChain(decoded[0], [('scale', '37:28:flags=bicubic')])
    for n, frame in enumerate(frames):
        assert np.array_equal(frame, scaled(decoded[25 * n + 12])[:, 4:32])


def test_a_video_under_half_a_second_gets_its_first_frame(tmp_path):
    path = write_video(tmp_path / 'short.mp4', 5, Fraction(25))                   # 0.2 s: the rule gives none
    frames = list(clip_frames(path, size=28))
    first = next(iter(decode(path))).frame
    assert len(frames) == 1
    assert np.array_equal(frames[0], FilterChain(first, frame_filters(64, 48, 28))(first))


# ---------------------------------------------------------------------------------------------------- C3D
def test_resize_is_half_pixel_bilinear_rounded_half_up():
    img = np.array([[0, 10, 20, 30], [40, 50, 60, 70]], np.uint8)[..., None].repeat(3, -1)
    assert resize_bilinear(img, 1, 2)[0, :, 0].tolist() == [25, 45]          # 2x2 block means
    half = np.array([[1, 1], [0, 0]], np.uint8)[..., None].repeat(3, -1)
    assert resize_bilinear(half, 1, 1)[0, 0, 0] == 1                        # 0.5 rounds up
    quarter = np.array([[1, 0], [0, 0]], np.uint8)[..., None].repeat(3, -1)
    assert resize_bilinear(quarter, 1, 1)[0, 0, 0] == 0
    # upscaling 2 → 4: source x = (dx + 0.5)/2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped at the borders
    row = np.array([[0, 100]], np.uint8)[..., None].repeat(3, -1)
    assert resize_bilinear(row, 1, 4)[0, :, 0].tolist() == [0, 25, 75, 100]


def test_windows_are_16_frames_every_8_that_fit():
    def frames(n):
        return (np.full((128, 171, 3), i, np.uint8) for i in range(n))
    for n, starts in ((40, [0, 8, 16, 24]), (39, [0, 8, 16]), (16, [0]), (23, [0])):
        got = list(windows(frames(n)))
        assert [int(w[0, 0, 0, 0]) for w in got] == starts
        assert all(w.shape == (16, CROP, CROP, 3) and int(w[-1, 0, 0, 0]) == s + 15 for w, s in zip(got, starts))
    short = list(windows(frames(10)))                                    # one window, last frame repeated
    assert len(short) == 1 and [int(f[0, 0, 0]) for f in short[0]] == list(range(10)) + [9] * 6


def test_tiny_c3d_loads_the_port_layout_and_matches_the_caffe_network(tmp_path):
    files = write_tiny_c3d(tmp_path)
    clips = torch.randn(2, 3, 16, 112, 112, generator=torch.Generator().manual_seed(3)) * 50
    state = tiny_c3d_state()
    caffe, port = C3D.from_port(files['c3d_model']), C3D.from_port(files['c3d_model'], pool5='port')
    with torch.no_grad():
        assert torch.allclose(caffe(clips), reference_c3d_fc7(state, clips, 'caffe'), rtol=1e-4, atol=1e-4)
        assert torch.allclose(port(clips), reference_c3d_fc7(state, clips, 'port'), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(caffe(clips), port(clips), atol=1e-3)  # the pooling windows differ
    bad = tiny_c3d_state()
    bad['conv9.weight'] = bad.pop('conv5b.weight')
    torch.save(bad, tmp_path / 'bad.pickle')
    with pytest.raises(CheckpointFormatError, match='bad.pickle'):
        C3D.from_port(tmp_path / 'bad.pickle')


def test_pca_and_mean_files(tmp_path):
    files = write_tiny_c3d(tmp_path)
    mean, u = load_pca(files['c3d_pca'], fc_dim=TINY_FC)
    with h5py.File(files['c3d_pca'], 'r') as f:
        assert np.array_equal(u, f['data/U'][:, :PCA_DIM]) and np.array_equal(mean, f['data/x_mean'][()])
    with pytest.raises(CheckpointFormatError, match='fc7'):
        load_pca(files['c3d_pca'])                                    # 4096-d fc7 expected by default
    cube = np.load(files['c3d_mean'])[0]
    assert np.array_equal(load_mean(files['c3d_mean']), cube[:, :, 8:120, 29:141])
    assert (CROP_TOP, CROP_LEFT) == (8, 29)
    assert load_mean('channel')[:, 0, 0, 0].tolist() == pytest.approx([90.25, 97.66, 101.41])


def test_c3d_extractor_features_by_hand(tmp_path, video_dir):
    files = write_tiny_c3d(tmp_path)
    extractor = build_extractor('c3d', device='cpu', **files)
    features = extract_video(video_dir / 'cfr.mp4', extractor, batch_size=4)
    assert features.shape == (6, PCA_DIM) and features.dtype == np.float32     # 63 frames: windows 0, 8, ..., 40
    frames = list(c3d_frames(video_dir / 'cfr.mp4'))
    assert len(frames) == 63 and frames[0].shape == (128, 171, 3)
    clips = np.stack([np.stack(frames[s:s + 16])[:, 8:120, 29:141] for s in range(0, 48, 8)])
    x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float() - torch.from_numpy(load_mean(files['c3d_mean']))
    fc7 = reference_c3d_fc7(tiny_c3d_state(), x).numpy()
    pca_mean, u = load_pca(files['c3d_pca'], fc_dim=TINY_FC)
    assert np.allclose(features, (fc7 - pca_mean) @ u, rtol=1e-4, atol=1e-3)


# ------------------------------------------------------------------------------------------------ pipeline
def test_video_ids_must_be_safe_file_names(tmp_path):
    assert check_video_id('v_QOlSCBRmfWY') == 'v_QOlSCBRmfWY' and check_video_id('a-b.c') == 'a-b.c'
    for bad in ('../x', 'a/b', '/abs', '..', 'a\\b', ''):
        with pytest.raises(VideoIdError):
            check_video_id(bad)
    (tmp_path / 'a.mp4').write_bytes(b'x')
    (tmp_path / 'a.mkv').write_bytes(b'x')
    with pytest.raises(VideoIdError, match="'a'"):
        list_videos([tmp_path])
    with pytest.raises(FileNotFoundError):
        list_videos([tmp_path / 'none'])


def test_extraction_layout_resumability_and_failures(tmp_path, video_dir):
    weights = {'clip_model': write_tiny_clip(tmp_path / 'clip'), **write_tiny_c3d(tmp_path / 'c3d')}
    root = tmp_path / 'root'
    reports = extract_features([video_dir], root, ('clip', 'c3d'), progress=False, device='cpu', **weights)
    for report in reports.values():
        assert report.written == ['cfr', 'vfr'] and list(report.failed) == ['broken']
        assert 'broken.mp4' in report.failed['broken'] and 'failed broken' in report.summary()
    clip_cfr = np.load(root / 'features/clip/cfr.npy')
    assert clip_cfr.shape == (3, 8) and clip_cfr.dtype == np.float32
    assert np.load(root / 'features/clip/vfr.npy').shape == (3, 8)
    with h5py.File(root / 'features/c3d.hdf5', 'r') as f:
        assert sorted(f) == ['cfr', 'vfr']
        assert f['cfr/c3d_features'].shape == (6, PCA_DIM) and f['vfr/c3d_features'].shape == (1, PCA_DIM)
        cfr_c3d = f['cfr/c3d_features'][()]
    assert not (root / 'features/c3d.hdf5.parts').exists()
    extractor = build_extractor('clip', device='cpu', clip_model=weights['clip_model'])
    assert np.allclose(clip_cfr, extract_video(video_dir / 'cfr.mp4', extractor), atol=1e-6)

    stamp = (root / 'features/clip/cfr.npy').stat().st_mtime_ns
    again = extract_features([video_dir], root, ('clip', 'c3d'), progress=False, device='cpu', **weights)
    assert all(r.written == [] and r.skipped == ['cfr', 'vfr'] and list(r.failed) == ['broken']
               for r in again.values())
    assert (root / 'features/clip/cfr.npy').stat().st_mtime_ns == stamp

    write_video(tmp_path / 'more.mp4', 20, Fraction(25))
    extract_features([tmp_path / 'more.mp4'], root, ('c3d',), progress=False, device='cpu', **weights)
    with h5py.File(root / 'features/c3d.hdf5', 'r') as f:                  # merged: old videos kept
        assert sorted(f) == ['cfr', 'more', 'vfr'] and np.array_equal(f['cfr/c3d_features'][()], cfr_c3d)


def test_parts_of_an_interrupted_run_are_merged(tmp_path):
    store = Hdf5Store(tmp_path / 'c3d.hdf5')
    store.write('v1', np.ones((2, 3), np.float32))            # then the run dies before close()
    resumed = Hdf5Store(tmp_path / 'c3d.hdf5')
    assert resumed.done('v1') and not resumed.done('v2')
    resumed.close()
    with h5py.File(tmp_path / 'c3d.hdf5', 'r') as f:
        assert f['v1/c3d_features'][()].tolist() == [[1, 1, 1], [1, 1, 1]]


def _script(*args):
    return subprocess.run([sys.executable, str(ROOT / 'scripts/extract_features.py'), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_script_missing_weights_and_failures(tmp_path, video_dir):
    out = _script('--videos', video_dir, '--out', tmp_path / 'r', '--features', 'clip', '--clip-model',
                  tmp_path / 'nowhere')
    assert out.returncode == 2 and out.stderr.count('\n') == 1
    assert out.stderr.startswith(f"error: {tmp_path / 'nowhere'} not found: put Hugging Face's "
                                 "openai/clip-vit-large-patch14 folder") and '--clip-model' in out.stderr
    out = _script('--videos', video_dir, '--out', tmp_path / 'r', '--features', 'clip', '--clip-model',
                  write_tiny_clip(tmp_path / 'c'), '--device', 'cpu', '--quiet')
    assert out.returncode == 1, out.stderr
    assert 'clip: 2 extracted, 0 already done, 1 failed' in out.stdout and 'failed broken: ' in out.stdout


def test_missing_weights_error_says_what_goes_where(video_dir):
    if not (ROOT / 'data/c3d/c3d.pickle').exists():                         # the default, under the repository
        with pytest.raises(MissingWeightsError, match=r'^data/c3d/c3d.pickle not found: put the Sports-1M C3D'):
            extract_features([video_dir], 'unused', ('clip', 'c3d'), clip_model=__file__)
    with pytest.raises(MissingWeightsError, match='PCA_activitynet_v1-3.hdf5'):
        build_extractor('c3d', device='cpu', c3d_model=__file__, c3d_pca='/nonexistent/pca.hdf5', c3d_mean='channel')
    assert all(not Path(p).is_absolute() for p in DEFAULT_WEIGHTS.values())    # resolved at run time


def test_clip_extractor_runs_in_bf16(tmp_path, video_dir):
    extractor = build_extractor('clip', device='cpu', dtype='bf16', clip_model=write_tiny_clip(tmp_path / 'c'))
    assert isinstance(extractor, ClipExtractor) and extractor.model.visual_projection.weight.dtype == torch.bfloat16
    low = extract_video(video_dir / 'cfr.mp4', extractor)
    full = extract_video(video_dir / 'cfr.mp4', build_extractor('clip', device='cpu',
                                                                  clip_model=tmp_path / 'c'))
    assert low.dtype == np.float32 and np.allclose(low, full, atol=0.1)
    assert isinstance(build_extractor('c3d', device='cpu', **write_tiny_c3d(tmp_path / 'k')), C3DExtractor)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_cuda_features_match_the_cpu(tmp_path, video_dir):
    weights = {'clip_model': write_tiny_clip(tmp_path / 'clip'), **write_tiny_c3d(tmp_path / 'c3d')}
    for feature in ('clip', 'c3d'):
        cpu, gpu = (extract_video(video_dir / 'cfr.mp4', build_extractor(feature, device=d, **weights))
                    for d in ('cpu', 'cuda'))
        assert np.allclose(cpu, gpu, rtol=1e-3, atol=1e-3)
