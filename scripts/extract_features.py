"""Extract the papers' features from video files into a data root (README "Caption your own videos").

    python scripts/extract_features.py --videos DIR|FILE... --out DATA_ROOT --features clip|c3d [clip c3d]
        [--clip-model DIR] [--c3d-model FILE --c3d-pca FILE --c3d-mean FILE|channel] [--device auto|cpu|cuda]
        [--dtype fp32|bf16|fp16] [--batch-size N] [--workers N]

clip (ILCACM): DATA_ROOT/features/clip/<vid>.npy, float32 (T, 768), CLIP ViT-L/14 image features at 1 fps.
c3d (WSDEC): DATA_ROOT/features/c3d.hdf5, f[vid]['c3d_features'] float32 (n_windows, 500), C3D fc7 + PCA.
The video id is the file name without its extension. Finished videos are skipped (resumable). Weights are local
files only (defaults under the repository's data/); nothing is downloaded. Exit status 1 if a video failed
(listed at the end), 2 on bad arguments or missing weights.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse

from utils import cli
from models.extractors.pipeline import DEFAULT_BATCH, FEATURES, add_extractor_args, extract_features, extractor_options


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument('--videos', nargs='+', required=True, help='video files and/or folders of video files')
    parser.add_argument('--out', required=True, help='data root: writes DATA_ROOT/features/...')
    parser.add_argument('--features', nargs='+', choices=FEATURES, required=True,
                        help='clip (ILCACM) and/or c3d (WSDEC)')
    add_extractor_args(parser)
    parser.add_argument('--batch-size', type=int, default=None,
                        help=f"model inputs per batch (default: clip {DEFAULT_BATCH['clip']} frames, "
                             f"c3d {DEFAULT_BATCH['c3d']} windows)")
    parser.add_argument('--workers', type=int, default=2, help='decoding threads')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    cli.add_debug_flag(parser)
    return parser


def run(argv=None) -> None:
    args = build_parser().parse_args(argv)
    reports = extract_features(args.videos, args.out, args.features, args.batch_size, args.workers,
                               not args.quiet, **extractor_options(args))
    for feature, report in reports.items():
        print(report.summary(feature))
    return 1 if any(report.failed for report in reports.values()) else 0


if __name__ == '__main__':
    cli.main(run)
