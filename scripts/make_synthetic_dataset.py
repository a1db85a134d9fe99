"""Write a synthetic data root in the real ActivityNet Captions formats (utils/synthetic.py explains the data).

    python scripts/make_synthetic_dataset.py --out data/synthetic_tiny --size tiny --seed 0
    python scripts/make_synthetic_dataset.py --out data/synthetic_anet --size anet --no-features
    python scripts/make_synthetic_dataset.py --out data/anet_synth_feats \
        --annotations ../shared/data/activitynet_captions --max-videos 200

Then pass `--data-root DIR` to any training or evaluation script.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import json
import time

from utils import cli
from utils.synthetic import SIZES, SPLITS, make_synthetic_dataset


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, help='data root to write (captions/, features/)')
    parser.add_argument('--size', default='tiny', choices=sorted(SIZES),
                        help='tiny: 24/8 videos of 20-60 s; small: 400/100; anet: 10,009/4,917, ActivityNet-like')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-features', action='store_true', help='write the captions only')
    parser.add_argument('--annotations', default=None,
                        help='folder with real train(.json|_modified.json)/val_1.json/val_2.json: copy them and '
                             'write caption-conditioned features for their videos (ignores --size)')
    parser.add_argument('--max-videos', type=int, default=None, help='keep the first K videos of train and val_1')
    parser.add_argument('--signal-to-noise', type=float, default=2.0,
                        help='event signal along its caption signature, per unit of feature noise')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    paths = make_synthetic_dataset(args.out, args.size, args.seed, features=not args.no_features,
                                   annotations=args.annotations, max_videos=args.max_videos,
                                   signal_to_noise=args.signal_to_noise)
    for split in SPLITS:
        with open(getattr(paths, split)) as f:
            data = json.load(f)
        n_sentences = sum(len(a['sentences']) for a in data.values())
        print(f'{split}: {len(data)} videos, {n_sentences} sentences -> {getattr(paths, split)}')
    if not args.no_features:
        print(f'features -> {paths.c3d}, {paths.clip_dir}/')
    print(f'done in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    cli.main(main)
