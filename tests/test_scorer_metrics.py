"""coco_metrics.CachedCocoMetrics must give exactly pycocoevalcap 1.2's BLEU, ROUGE-L and CIDEr-D per video."""
import json
import pathlib
import random

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from third_party.densevid_eval.coco_metrics import CachedCocoMetrics

VAL_1 = pathlib.Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'activitynet_captions' / 'val_1.json'
WORDS = 'a man woman is are the dog playing ball on in with then and plays guitar field people'.split()


def sentences():
    if VAL_1.is_file():
        data = json.loads(VAL_1.read_text())
        raw = [s for v in list(data.values())[:150] for s in v['sentences']]
        return [' '.join(s.lower().replace('.', ' ').replace(',', ' ').split()) for s in raw]
    rng = random.Random(1)
    return [' '.join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for _ in range(300)]


def video_groups(n_videos=120, seed=0):
    rng = random.Random(seed)
    pool = sentences()
    groups = []
    for _ in range(n_videos):
        refs = rng.sample(pool, rng.randint(1, 4)) + ['abc123 @ #']
        hyps = rng.sample(pool, rng.randint(1, 5))
        groups.append([(h, rng.choice(refs)) for h in hyps for _ in range(rng.randint(1, 2))])
    groups.append([('', 'a man'), ('a man', '')])  # empty strings behave as in pycocoevalcap
    return groups


def test_bit_identical_to_pycocoevalcap():
    cached = CachedCocoMetrics()
    for items in video_groups() + video_groups():  # second pass exercises the caches
        gts = {k: [r] for k, (_, r) in enumerate(items)}
        res = {k: [h] for k, (h, _) in enumerate(items)}
        bleu, rouge, cider = cached.scores(items)
        assert bleu == Bleu(4).compute_score(gts, res, verbose=0)[0]
        assert rouge == Rouge().compute_score(gts, res)[0]
        assert cider == Cider().compute_score(gts, res)[0]


def test_single_pair_video_has_zero_cider():
    # spec evaluation §3.3: document frequencies from one reference give CIDEr-D 0
    assert CachedCocoMetrics().cider([('a man plays guitar', 'a man plays guitar')]) == 0.0
    bleu = CachedCocoMetrics().bleu([('a man plays the guitar', 'a man plays the guitar')])
    assert bleu == pytest.approx([1.0] * 4)
