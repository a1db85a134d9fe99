"""Issue 16, items 2 and 4: a video id never reads or writes outside its folder; bad annotations and features
stop a run at setup (non-finite feature values: when first read) with a message naming the file, the video and
the field. The entry-point tests run the real scripts on a corrupted copy of the tiny synthetic data root."""
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from scripts.convert_features import main as convert_main
from tests.test_ilcacm_train import TINY_CLI
from utils.annotations import AnnotationError, load_annotations
from utils.checkpoint import save_checkpoint
from utils.features import (C3DFeatures, ClipFeatures, FeatureError, check_feature_width, hdf5_to_npy,
                            select_videos, write_skipped_videos)
from utils.paths import UnsafePathError, check_video_ids, video_id_problem, video_path

REPO = Path(__file__).resolve().parents[1]
GOOD = {'duration': 10.0, 'timestamps': [[0, 4.5], [3, 12.1]], 'sentences': ['One.', 'Two.']}


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def tree(folder):
    """Every path under `folder`, relative, sorted (files and folders)."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob('*'))


# ------------------------------------------------------------------------------------------ item 2: ids
@pytest.mark.parametrize('vid, problem', [
    ('../../outside', 'it holds a path separator'), ('/tmp/outside', 'it holds a path separator'),
    ('a\\..\\b', 'it holds a path separator'), ('..', 'it names a folder'), ('.', 'it names a folder'),
    ('', 'it is empty'), ('v\x00a', 'it holds a NUL character'), ('v\na', 'it holds a control character'),
    ('C:x', "it holds ':'"), ('v?*', "it holds '*?'"), ('v' * 252, 'longer than 255 bytes'), (7, 'it is a int'),
])
def test_ids_that_cannot_be_file_names(vid, problem):
    assert problem in video_id_problem(vid)


def test_ids_of_real_datasets_are_file_names():
    for vid in ('v_QOlSCBRmfWY', 'v_-4Zr_mQ6ZUk', 'GLd3aX16zBg', 'v_syn000001', 'vidéo 1', '.hidden', 'a..b',
                'v' * 251):  # 251 + len('.npy') = 255 bytes
        assert video_id_problem(vid) is None, vid


def test_one_message_names_the_file_and_every_bad_id():
    with pytest.raises(UnsafePathError) as err:
        check_video_ids(['v_ok', '../x', 'v_ok2', ''], 'train.json')
    assert str(err.value) == ("train.json: 2 video ids cannot be file names: '../x' (it holds a path separator), "
                              "'' (it is empty)")
    assert issubclass(UnsafePathError, ValueError)


def test_annotation_ids_are_refused_at_load(tmp_path):
    path = write_json(tmp_path / 'ann.json', {'v_ok': GOOD, '../../outside': GOOD})
    with pytest.raises(AnnotationError, match=re.escape(f"{path}: video id '../../outside' cannot be a file name: "
                                                        f"it holds a path separator")):
        load_annotations(path)


@pytest.fixture
def feature_folder(tmp_path):
    """tmp/feats/v_in.npy, and a valid array tmp/outside.npy that no id may reach."""
    np.save(tmp_path / 'outside.npy', np.ones((3, 4), np.float32))
    (tmp_path / 'feats').mkdir()
    np.save(tmp_path / 'feats' / 'v_in.npy', np.full((3, 4), 2, np.float32))
    return tmp_path / 'feats'


def test_clip_features_read_nothing_outside_their_folder(feature_folder, monkeypatch):
    outside = feature_folder.parent / 'outside'
    (feature_folder / 'v_link.npy').symlink_to(feature_folder.parent / 'outside.npy')
    reads, load = [], np.load
    monkeypatch.setattr(np, 'load', lambda file, *a, **k: reads.append(Path(file).resolve()) or load(file, *a, **k))
    store = ClipFeatures(feature_folder)
    for vid in ('../outside', str(outside), '..'):
        message = re.escape(f"{feature_folder}: video id {vid!r} cannot be a file name")
        with pytest.raises(UnsafePathError, match=message):
            store.get(vid)
        with pytest.raises(UnsafePathError, match=message):
            select_videos({'v_in': {}, vid: {}}, store)
    with pytest.raises(UnsafePathError, match=r"v_link\.npy resolves to .*/outside\.npy, outside the folder"):
        store.get('v_link')
    assert store.get('v_in')[0, 0] == 2
    assert reads == [(feature_folder / 'v_in.npy').resolve()]


def test_make_synthetic_dataset_writes_nothing_outside_out(tmp_path):
    annotations = tmp_path / 'ann'
    # out/features/clip/../../../ESCAPED.npy would be tmp/a/ESCAPED.npy, beside --out
    for name in ('train.json', 'val_1.json', 'val_2.json'):
        write_json(annotations / name, {'v_ok': GOOD, '../../../ESCAPED': GOOD})
    before = tree(tmp_path)
    done = run_script('scripts/make_synthetic_dataset.py', '--out', str(tmp_path / 'a' / 'out'),
                      '--annotations', str(annotations))
    assert tree(tmp_path) == before  # nothing written at all: the ids are refused before --out is created
    assert_refused(done, f"{annotations / 'train.json'}: video id '../../../ESCAPED' cannot be a file name")


def test_hdf5_to_npy_writes_nothing_outside_its_folder(tmp_path):
    src = tmp_path / 'feats.hdf5'
    with h5py.File(src, 'w') as f:
        for vid in ('v_a', '..', 'a\\..\\b'):
            f.create_group(vid).create_dataset('c3d_features', data=np.ones((2, 3)))
    before = tree(tmp_path)
    with pytest.raises(UnsafePathError, match=re.escape(f"{src}: 2 video ids cannot be file names: '..' (it names a "
                                                        f"folder), 'a\\\\..\\\\b' (it holds a path separator)")):
        hdf5_to_npy(src, tmp_path / 'npy')
    assert tree(tmp_path) == sorted(before + ['npy'])  # the (empty) output folder only

    # a symlink planted in the output folder: np.save would write through it
    safe = tmp_path / 'safe.hdf5'
    with h5py.File(safe, 'w') as f:
        f.create_group('v_a').create_dataset('c3d_features', data=np.ones((2, 3)))
    (tmp_path / 'victim.npy').write_bytes(b'untouched')
    (tmp_path / 'npy' / 'v_a.npy').symlink_to(tmp_path / 'victim.npy')
    with pytest.raises(UnsafePathError, match='outside the folder'):
        convert_main(['--to', 'npy', '--input', str(safe), '--output', str(tmp_path / 'npy'), '--overwrite'])
    assert (tmp_path / 'victim.npy').read_bytes() == b'untouched'


def test_video_path_keeps_a_symlinked_folder(tmp_path):
    (tmp_path / 'real').mkdir()
    (tmp_path / 'link').symlink_to(tmp_path / 'real', target_is_directory=True)
    assert video_path(tmp_path / 'link', 'v_a', 'src') == tmp_path / 'link' / 'v_a.npy'


# ----------------------------------------------------------------------------------- item 4: features
def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize('content, problem', [
    (npy_bytes(np.ones((50, 8), np.float32))[:300],
     r'truncated or unreadable \.npy file \((mmap length|Failed to read all data)'),
    (b'', r'truncated or unreadable \.npy file \(No data left in file\)'),
    (b'not an npy file at all' * 4, r'truncated or unreadable \.npy file'),
])
def test_unreadable_npy_is_refused_at_setup_and_when_read(feature_folder, content, problem):
    (feature_folder / 'v_bad.npy').write_bytes(content)
    store = ClipFeatures(feature_folder)
    file = re.escape(str(feature_folder / 'v_bad.npy'))
    with pytest.raises(FeatureError, match=rf"^{file}: video 'v_bad': {problem}"):
        select_videos({'v_in': {}, 'v_bad': {}}, store)
    with pytest.raises(FeatureError, match=rf"^{file}: video 'v_bad': {problem}"):
        store.get('v_bad')


class Payload:
    """Unpickling it would create `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_an_npy_holding_a_pickle_is_refused_unopened(feature_folder):
    marker = feature_folder.parent / 'code_ran'
    (feature_folder / 'v_pickle.npy').write_bytes(npy_bytes(np.array([Payload(marker)], dtype=object)))
    store = ClipFeatures(feature_folder)
    with pytest.raises(FeatureError, match=r"v_pickle\.npy: video 'v_pickle': truncated or unreadable \.npy file "
                                           r"\(Array can't be memory-mapped: Python objects in dtype"):
        select_videos({'v_pickle': {}}, store)
    with pytest.raises(FeatureError, match=r"v_pickle\.npy: video 'v_pickle': truncated or unreadable \.npy file "
                                           r"\(Object arrays cannot be loaded when allow_pickle=False"):
        store.get('v_pickle')
    assert not marker.exists()


def test_header_problems_are_listed_in_one_message(feature_folder):
    np.save(feature_folder / 'v_zero.npy', np.zeros((0, 4), np.float32))
    np.save(feature_folder / 'v_text.npy', np.array([['a', 'b']]))
    for i in range(3):
        np.save(feature_folder / f'v_ok{i}.npy', np.ones((2, 4), np.float32))
    np.save(feature_folder / 'v_wide.npy', np.ones((2, 5), np.float32))
    store = ClipFeatures(feature_folder)
    with pytest.raises(FeatureError) as err:
        select_videos({v: {} for v in ('v_in', 'v_zero', 'v_ok0', 'v_text', 'v_ok1', 'v_wide', 'v_ok2')}, store)
    assert str(err.value) == (
        f"3 of 7 videos have unusable features: {feature_folder}/v_zero.npy: video 'v_zero': zero-length feature "
        f"array (T=0); {feature_folder}/v_text.npy: video 'v_text': expected numbers, got dtype <U1; "
        f"{feature_folder}/v_wide.npy: video 'v_wide': width 5, the other videos have 4")


@pytest.fixture
def c3d(tmp_path):
    path = tmp_path / 'c3d.hdf5'
    with h5py.File(path, 'w') as f:
        f.create_group('v_a').create_dataset('c3d_features', data=np.ones((4, 3)))
        f.create_group('v_nokey').create_dataset('other', data=np.ones((4, 3)))
        nan = np.ones((6, 3))
        nan[4, 1], nan[5, 0] = np.nan, np.inf  # rows 4 and 5 -> rows 2 (and none) after [::2]
        f.create_group('v_nan').create_dataset('c3d_features', data=nan)
    return path


def test_missing_hdf5_dataset_is_refused_at_setup(c3d):
    store = C3DFeatures(c3d)
    with pytest.raises(FeatureError, match=rf"^{re.escape(str(c3d))}: video 'v_nokey': no dataset 'c3d_features'$"):
        select_videos({'v_a': {}, 'v_nokey': {}}, store)
    assert select_videos({'v_a': {}, 'v_nan': {}}, store) == ['v_a', 'v_nan']  # the header is fine


def test_non_finite_values_are_refused_when_read(c3d, feature_folder):
    with pytest.raises(FeatureError, match=rf"^{re.escape(str(c3d))}: video 'v_nan': 1 non-finite feature values "
                                           r"\(NaN/Inf\), the first in row 2$"):
        C3DFeatures(c3d).get('v_nan')
    assert C3DFeatures(c3d, sample_rate=1).header('v_nan') == ((6, 3), np.float64)
    big = np.ones((3, 4))
    big[1, 2] = 1e300  # finite in float64, inf in float32
    np.save(feature_folder / 'v_big.npy', big)
    with pytest.raises(FeatureError, match=r"v_big\.npy: video 'v_big': 1 non-finite feature values \(NaN/Inf\), "
                                           r"the first in row 1"):
        ClipFeatures(feature_folder).get('v_big')


def test_unreadable_hdf5_file(tmp_path):
    (tmp_path / 'broken.hdf5').write_bytes(b'\x89HDF\r\n\x1a\n' + b'\0' * 10)
    store = C3DFeatures(tmp_path / 'broken.hdf5')
    with pytest.raises(FeatureError, match=r"broken\.hdf5: not a readable hdf5 file"):
        'v_a' in store


def test_feature_width_against_the_checkpoint(feature_folder):
    store = ClipFeatures(feature_folder)
    check_feature_width(store, 4, 'ckpt.pt')
    with pytest.raises(FeatureError, match=rf"^{re.escape(str(feature_folder))}: 4-d features, but ckpt\.pt was "
                                           r"trained on 768-d features"):
        check_feature_width(store, 768, 'ckpt.pt')


def test_skipped_videos_are_recorded_in_the_run_folder(feature_folder, tmp_path):
    store = ClipFeatures(feature_folder)
    run = tmp_path / 'run'
    assert write_skipped_videos(run, 'train.json', {'v_in': {}}, store) is None and not run.exists()
    with pytest.warns(UserWarning, match='skipping 2 of 3'):
        assert select_videos({'v_x': {}, 'v_in': {}, 'v_y': {}}, store, 'skip') == ['v_in']
    path = write_skipped_videos(run, 'train.json', {'v_x': {}, 'v_in': {}, 'v_y': {}}, store)
    write_skipped_videos(run, Path('val_1.json'), {'v_z': {}, 'v_in': {}}, store)
    assert path == run / 'skipped_videos.json'
    assert json.loads(path.read_text()) == {'train.json': ['v_x', 'v_y'], 'val_1.json': ['v_z']}


# ------------------------------------------------------------------------------------------ entry points
def run_script(script, *argv):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.run([sys.executable, str(REPO / script), *argv], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300)


def assert_refused(done, *fragments):
    """The script stopped with exit status 2 and a single `error: ...` line naming every fragment (file, video,
    field)."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and lines, done.stdout[-2000:]
    for fragment in fragments:
        assert fragment in lines[-1], done.stderr[-3000:]
    assert done.returncode == 2 and lines == [lines[-1]] and lines[-1].startswith('error: ')


@pytest.fixture
def root(tiny_data, tmp_path):
    """A copy of the tiny synthetic data root, to corrupt."""
    return Path(shutil.copytree(tiny_data.root, tmp_path / 'root'))


def train_cg_pretrain(root, tmp_path, *extra):
    return run_script('train_script/train_cg_pretrain.py', '--data-root', str(root), '--runs-dir',
                      str(tmp_path / 'runs'), '--run-name', 'r', '--epochs', '1', '--batch-size', '8', '--device',
                      'cpu', '--quiet', '--hidden-dim', '16', *extra)


def test_training_refuses_bad_annotations_at_setup(root, tmp_path):
    train = root / 'captions' / 'train.json'
    data = json.loads(train.read_text())
    a, b, c, d, e = list(data)[:5]
    data[a]['timestamps'][1][0] = -2.0
    data[b]['timestamps'][0] = [data[b]['duration'] + 1, data[b]['duration'] + 5]
    data[c]['sentences'][1] = '   '
    data[d]['duration'] = float('nan')
    data[e]['timestamps'][0][1] = float('inf')
    write_json(train, data)
    done = train_cg_pretrain(root, tmp_path)
    duration = data[b]['duration']
    assert_refused(done, f"{train}: 5 videos with bad annotations: ",
                   f"video '{a}': field 'timestamps[1]': start -2.0 < 0; ",
                   f"video '{b}': field 'timestamps[0]': start {duration + 1} >= duration {duration}: the event lies "
                   f"outside the video; ",
                   f"video '{c}': field 'sentences[1]': empty or whitespace-only sentence '   '; ",
                   f"video '{d}': field 'duration': expected a finite number, got nan; ",
                   f"video '{e}': field 'timestamps[0]': expected finite numbers, got [")


def test_training_refuses_bad_hdf5_features_at_setup(root, tmp_path):
    c3d = root / 'features' / 'c3d.hdf5'
    with h5py.File(c3d, 'a') as f:
        a, b = list(f)[:2]
        del f[a]['c3d_features']
        del f[b]['c3d_features']
        f[b].create_dataset('c3d_features', data=np.zeros((0, 500), np.float32))
    done = train_cg_pretrain(root, tmp_path)
    assert_refused(done, f"2 of 24 videos have unusable features: {c3d}: video '{a}': no dataset 'c3d_features'; "
                         f"{c3d}: video '{b}': zero-length feature array (T=0)")


def test_training_refuses_non_finite_features_before_the_model_sees_them(root, tmp_path):
    c3d = root / 'features' / 'c3d.hdf5'
    with h5py.File(c3d, 'a') as f:
        first = list(f)[0]
        f[first]['c3d_features'][4, 7] = np.nan  # row 2 after [::2]
    done = train_cg_pretrain(root, tmp_path, '--limit-videos', '8')  # one batch: it holds the video
    assert_refused(done, f"{c3d}: video '{first}': 1 non-finite feature values (NaN/Inf), the first in row 2")


def test_skip_writes_skipped_videos_json(root, tmp_path):
    from train_script.train_cg_pretrain import main
    train = root / 'captions' / 'train.json'
    data = json.loads(train.read_text())
    write_json(train, {**data, 'v_nofeatures': next(iter(data.values()))})
    with pytest.warns(UserWarning, match="skipping 1 of 25 annotated videos .*: v_nofeatures"):
        main(['--data-root', str(root), '--runs-dir', str(tmp_path / 'runs'), '--run-name', 's', '--epochs', '0',
              '--batch-size', '8', '--device', 'cpu', '--quiet', '--hidden-dim', '8', '--missing-features', 'skip'])
    skipped = json.loads((tmp_path / 'runs' / 's' / 'skipped_videos.json').read_text())
    assert skipped == {str(train): ['v_nofeatures']}


def test_ilcacm_training_refuses_an_id_that_leaves_the_feature_folder(root, tmp_path):
    np.save(root / 'features' / 'outside.npy', np.ones((30, 768), np.float32))  # what '../outside' would read
    train = root / 'captions' / 'train.json'
    data = json.loads(train.read_text())
    write_json(train, {**data, '../outside': next(iter(data.values()))})
    done = run_script('train_script/train_ilcacm.py', '--data-root', str(root), '--runs-dir', str(tmp_path / 'runs'),
                      '--run-name', 'i', *TINY_CLI)
    assert_refused(done, f"{train}: video id '../outside' cannot be a file name: it holds a path separator")


@pytest.fixture(scope='module')
def ilcacm_checkpoint(tmp_path_factory):
    """A tiny untrained ILCACM checkpoint of this suite for 512-d features (the synthetic CLIP ones are 768-d)."""
    from models.ilcacm.config import resolve_model_args, training_parser
    from models.ilcacm.factory import build_model, build_tokenizer, model_arch
    from utils.run import CHECKPOINT_FORMAT, run_config
    args = resolve_model_args(training_parser().parse_args(TINY_CLI))
    tokenizer = build_tokenizer(vars(args), ['A man runs.'])
    model = build_model(vars(args), tokenizer, feature_dim=512)
    path = tmp_path_factory.mktemp('ilcacm') / 'ilcacm.pt'
    save_checkpoint(path, {'format': CHECKPOINT_FORMAT, 'kind': 'ilcacm', 'config': run_config(args, 'ilcacm'),
                           'model': {'ilcacm': model.state_dict()},
                           'tokenizer': tokenizer.state(), 'decoder_arch': model_arch(model), 'feature_dim': 512,
                           'epoch': 0, 'step': 0})
    return path


def test_ilcacm_evaluation_refuses_a_truncated_npy_at_setup(root, ilcacm_checkpoint):
    val = json.loads((root / 'captions' / 'val_1.json').read_text())
    npy = root / 'features' / 'clip' / f'{next(iter(val))}.npy'
    npy.write_bytes(npy.read_bytes()[:1000])
    done = run_script('eval_script/evaluate.py', '--checkpoint', str(ilcacm_checkpoint), '--data-root', str(root),
                      '--device', 'cpu')
    assert_refused(done, f"{npy}: video '{next(iter(val))}': truncated or unreadable .npy file (")


def test_ilcacm_evaluation_refuses_features_of_another_width(root, ilcacm_checkpoint):
    done = run_script('eval_script/evaluate.py', '--checkpoint', str(ilcacm_checkpoint), '--data-root', str(root),
                      '--device', 'cpu')
    assert_refused(done, f"{root / 'features' / 'clip'}: 768-d features, but {ilcacm_checkpoint} was trained on "
                         f"512-d features")


def test_wsdec_evaluation_refuses_features_of_another_width(root, tmp_path):
    from models.wsdec.factory import build_models_from_config
    from utils.vocab import Vocabulary
    vocab = Vocabulary.build(load_annotations(root / 'captions' / 'train.json'))
    config = {'cg': dict(vocab_size=len(vocab), hidden_dim=8, sent_embedding_dim=8, video_feature_dim=400,
                         rnn_dropout=0.0, max_cap_length=5)}
    path = tmp_path / 'cg.pt'
    save_checkpoint(path, {'model': {'cg': build_models_from_config(config)['cg'].state_dict()}, 'kind':
                           'wsdec_cg_pretrain', 'config': {'models': config, 'vocab': vocab.id_to_word}, 'epoch': 0,
                           'step': 0})
    done = run_script('eval_script/evaluate.py', '--checkpoint', str(path), '--data-root', str(root), '--runs-dir',
                      str(tmp_path / 'runs'), '--device', 'cpu', '--no-score')
    assert_refused(done, f"{root / 'features' / 'c3d.hdf5'}: 500-d features, but {path} was trained on 400-d features")
