import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from utils.features import C3DFeatures, FeatureError
from utils.vocab import Vocabulary
from utils.wsdec_data import WSDECBatch, WSDECDataset, timestamp_to_index, wsdec_collate

VOCAB = Vocabulary(['<bos>', '<eos>', 'a', '.', 'dog', 'runs', '<oov>'])
ANN = {
    'v_a': {'duration': 20.0, 'timestamps': [[3.9, 20.5], [0.0, 1.0]], 'sentences': ['A dog runs.', 'Dog']},
    'v_b': {'duration': 3.8, 'timestamps': [[3.8, 3.8]], 'sentences': ['a cat']},
    'v_c': {'duration': 9.0, 'timestamps': [[0.0, 9.0]] * 5, 'sentences': ['a', 'dog', 'runs', '.', 'x']},
}


class FakeStore:
    """Feature rows of video v are filled with the value LENGTHS[v]."""
    LENGTHS = {'v_a': 10, 'v_b': 3, 'v_c': 4}

    def get(self, vid):
        return np.full((self.LENGTHS[vid], 500), self.LENGTHS[vid], np.float32)


def test_timestamp_to_index_truncates_and_clamps_the_end_only():
    # int(L*s/dur), min(int(L*e/dur), L-1)  (spec wsdec §2.4 item 9)
    assert timestamp_to_index([[3.9, 20.5], [0, 0], [25, 30]], 20.0, 10).tolist() == [[1, 9], [0, 0], [12, 9]]
    # (L*s)/dur, not L*(s/dur): 3*3.8/3.8 = 2.9999999999999996 -> 2
    assert timestamp_to_index([[3.8, 3.8]], 3.8, 3).tolist() == [[2, 2]]


def test_full_mode_batch_golden():
    ds = WSDECDataset(ANN, FakeStore(), VOCAB, mode='full', vids=['v_a', 'v_b'])
    batch = wsdec_collate([ds[0], ds[1]])
    assert isinstance(batch, WSDECBatch) and batch.keys == ('v_a', 'v_b')
    assert batch.video.shape == (2, 10, 500) and batch.video.dtype == torch.float32
    assert batch.video[1, :3].eq(3).all() and batch.video[1, 3:].eq(0).all()  # zero padding
    assert batch.video_length.tolist() == [[10.0, 20.0], [3.0, pytest.approx(3.8)]]
    assert batch.video_mask[:, :, 0].sum(1).tolist() == [10, 3] and batch.video_mask.shape == (2, 10, 1)
    # 'A dog runs.' -> bos a dog runs . eos; 'Dog' -> bos dog eos; 'a cat' -> bos a oov eos; EOS padding
    assert batch.caption.tolist() == [[0, 2, 4, 5, 3, 1], [0, 4, 1, 1, 1, 1], [0, 2, 6, 1, 1, 1]]
    assert batch.caption.dtype == torch.long
    assert batch.caption_length.tolist() == [6, 3, 4] and batch.caption_length.dtype == torch.long
    assert batch.caption_mask[:, :, 0].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0]]
    assert batch.caption_mask.dtype == torch.float32
    assert batch.caption_gather_idx.tolist() == [0, 0, 1] and batch.caption_gather_idx.dtype == torch.long
    torch.testing.assert_close(batch.raw_timestamp, torch.tensor([[3.9, 20.5], [0.0, 1.0], [3.8, 3.8]]))
    assert batch.timestamp_idx.tolist() == [[1, 9], [0, 0], [2, 2]]


def test_batch_to_device_and_unpacking():
    batch = wsdec_collate([WSDECDataset(ANN, FakeStore(), VOCAB)[1]])
    moved = batch.to('cpu')
    assert isinstance(moved, WSDECBatch) and moved.keys == ('v_b',) and torch.equal(moved.caption, batch.caption)
    video, video_length, *_, timestamp_idx, keys = batch  # the original tuple order
    assert video is batch.video and timestamp_idx is batch.timestamp_idx and keys == ('v_b',)


def test_sample_mode_one_sentence_deterministic_per_seed_epoch_index():
    ds = WSDECDataset(ANN, FakeStore(), VOCAB, mode='sample', seed=233)
    batch = wsdec_collate([ds[i] for i in range(3)])
    assert batch.caption.shape[0] == 3 and batch.caption_gather_idx.tolist() == [0, 1, 2]
    j = ds.sentence_choice(2)
    assert ds[2].captions == [VOCAB.encode(ANN['v_c']['sentences'][j])]
    assert [ds.sentence_choice(2) for _ in range(3)] == [j] * 3  # same (seed, epoch, index): same draw
    draws = set()
    for epoch in range(40):
        ds.set_epoch(epoch)
        draws.add(ds.sentence_choice(2))
    assert draws == set(range(5))  # every sentence gets drawn across epochs

    def draws_over_epochs(seed):
        d = WSDECDataset(ANN, FakeStore(), VOCAB, mode='sample', seed=seed)
        return [d.set_epoch(e) or d.sentence_choice(2) for e in range(10)]
    assert draws_over_epochs(233) == draws_over_epochs(233) != draws_over_epochs(234)
    # pinned: numpy default_rng([seed, epoch, index]) -- a change here changes every training run
    assert draws_over_epochs(233) == [3, 0, 2, 2, 2, 4, 1, 1, 4, 1]


def test_sample_mode_independent_of_workers_with_lazy_hdf5(tmp_path):
    path = tmp_path / 'c3d.hdf5'
    with h5py.File(path, 'w') as f:
        for i, vid in enumerate(ANN):
            f.create_group(vid).create_dataset('c3d_features', data=np.full((8 + i, 500), i, np.float32))
    ds = WSDECDataset(ANN, C3DFeatures(path), VOCAB, mode='sample', seed=7)
    ds.set_epoch(2)
    ds.features.get('v_a')  # the parent opens the file before forking: workers must reopen it

    def run(workers):
        loader = DataLoader(ds, batch_size=2, shuffle=False, num_workers=workers, collate_fn=wsdec_collate)
        return [(b.keys, b.caption.tolist(), b.video_length.tolist()) for b in loader]

    assert run(0) == run(2)
    assert run(0)[0][2] == [[4.0, 20.0], [5.0, pytest.approx(3.8)]]  # 8 and 9 rows, [::2]


def test_errors():
    with pytest.raises(ValueError, match="mode must be 'full' or 'sample', got 'all'"):
        WSDECDataset(ANN, FakeStore(), VOCAB, mode='all')
    with pytest.raises(KeyError, match=r"1 video ids are not in the annotations: \['v_x'\]"):
        WSDECDataset(ANN, FakeStore(), VOCAB, vids=['v_a', 'v_x'])

    class EmptyStore:
        def get(self, vid):
            raise FeatureError(f"feats.hdf5: video '{vid}': zero-length feature array (T=0)")
    with pytest.raises(FeatureError, match="video 'v_b': zero-length"):
        WSDECDataset(ANN, EmptyStore(), VOCAB)[1]


def test_sentence_positions_for_caption_order_pretraining():
    # every sentence row carries (its index in the video's sentence list, the video's number of sentences)
    full = wsdec_collate([WSDECDataset(ANN, FakeStore(), VOCAB)[i] for i in range(3)])
    assert full.sentence_position.tolist() == [[0, 2], [1, 2], [0, 1]] + [[j, 5] for j in range(5)]
    ds = WSDECDataset(ANN, FakeStore(), VOCAB, mode='sample', seed=233)
    sample = wsdec_collate([ds[i] for i in range(3)])
    assert sample.sentence_position.tolist() == [[ds.sentence_choice(i), n] for i, n in enumerate((2, 1, 5))]
    assert len(tuple(sample)) == 10  # not part of the original's tuple

    from models.wsdec.steps import PRETRAIN_SEGMENTS, caption_order_split, whole_video
    assert PRETRAIN_SEGMENTS['whole-video'] is whole_video
    # sentence j of n: the j-th of n equal parts, (c, w) = ((j + 0.5) / n, 1 / n)
    torch.testing.assert_close(caption_order_split(full)[3:], torch.tensor(
        [[0.1, 0.2], [0.3, 0.2], [0.5, 0.2], [0.7, 0.2], [0.9, 0.2]]))
    torch.testing.assert_close(caption_order_split(full)[:3], torch.tensor([[0.25, 0.5], [0.75, 0.5], [0.5, 1.0]]))
