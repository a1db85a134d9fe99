"""Write a synthetic data root in the real ActivityNet Captions formats (utils/synthetic.py explains the data).

    python scripts/make_synthetic_dataset.py --out data/synthetic_tiny --size tiny --seed 0
    python scripts/make_synthetic_dataset.py --out data/synthetic_anet --size anet --no-features
    python scripts/make_synthetic_dataset.py --out data/anet_synth_feats \
        --annotations ../shared/data/activitynet_captions --max-videos 2000 --max-val-videos 300
    python scripts/make_synthetic_dataset.py --out data/yc2_synth --annotations ../shared/data/youcook2

Then pass `--data-root DIR` to any training or evaluation script.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import json
import time

from utils import cli
from utils.synthetic import SIZES, SPLITS, SignalModel, make_synthetic_dataset


def parse_args(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument('--out', required=True, help='data root to write (captions/, features/)')
    parser.add_argument('--size', default='tiny', choices=sorted(SIZES),
                        help='tiny: 24/8 videos of 20-60 s; small: 400/100; anet: 10,009/4,917, ActivityNet-like')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-features', action='store_true', help='write the captions only')
    parser.add_argument('--annotations', default=None,
                        help='folder with real ActivityNet Captions files (train.json or train_modified.json, '
                             'val_1.json, val_2.json) or YouCook2 ones (yc2_train.json, yc2_val.json): copy them and '
                             'write caption-conditioned features for their videos (ignores --size)')
    parser.add_argument('--max-videos', type=int, default=None,
                        help='keep the first K train videos (and K val_1 videos unless --max-val-videos)')
    parser.add_argument('--max-val-videos', type=int, default=None, help='keep the first K val_1 videos')
    g = parser.add_argument_group('signal model (utils/synthetic.py, "Signal model")')
    default = SignalModel()
    g.add_argument('--signal-to-noise', type=float, default=default.signal_to_noise,
                   help="norm of an event's signal along its caption signature, per unit of noise std")
    g.add_argument('--scene', type=float, default=default.scene,
                   help='std per dimension of the per-video scene vector')
    g.add_argument('--c3d-rate', type=float, default=default.c3d_rate,
                   help='C3D rows per second before the loaders\' [::2] (the real ActivityNet C3D: 3.75)')
    g.add_argument('--clip-rate', type=float, default=default.clip_rate, help='CLIP rows per second')
    g.add_argument('--jitter', type=float, default=default.jitter,
                   help="norm of an event's own perturbation of its caption signature")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    signal = SignalModel(args.signal_to_noise, args.scene, args.c3d_rate, args.clip_rate, args.jitter)
    paths = make_synthetic_dataset(args.out, args.size, args.seed, features=not args.no_features,
                                   annotations=args.annotations, max_videos=args.max_videos,
                                   max_val_videos=args.max_val_videos, signal=signal)
    for split in SPLITS:
        if not getattr(paths, split).exists():
            continue
        with open(getattr(paths, split)) as f:
            data = json.load(f)
        n_sentences = sum(len(a['sentences']) for a in data.values())
        print(f'{split}: {len(data)} videos, {n_sentences} sentences -> {getattr(paths, split)}')
    if not args.no_features:
        print(f'features -> {paths.c3d}, {paths.clip_dir}/')
    print(f'done in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    cli.main(main)
