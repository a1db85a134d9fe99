"""Dense captions of your own videos with a checkpoint (README "Caption your own videos").

    python scripts/caption_video.py VIDEO|DIR... --checkpoint CKPT [--out DIR] [--device auto|cpu|cuda]
        [--dtype fp32|bf16|fp16] [--clip-model DIR] [--c3d-model FILE --c3d-pca FILE --c3d-mean FILE|channel]

The checkpoint decides the features: C3D for WSDEC (wsdec_final, wsdec_noregress, wsdec_noclass: dense
captioning; wsdec_cg_pretrain: one random segment), CLIP for ILCACM; their width must be the checkpoint's. They
are extracted into OUT/features/ (a rerun skips the videos already there) and the model's own test procedure
captions each video (models/video_captioning.py). Per video, in OUT: <vid>.json (submission format), <vid>.srt,
<vid>.vtt (subtitles on the video's timeline) and <vid>.html (thumbnails, timeline, captions; offline). The video
id is the file name without its extension. Weights are local files only (defaults under the repository's data/);
nothing is downloaded. Exit status 1 if a video failed (listed at the end), 2 on bad arguments, checkpoints or
missing weights.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse

from utils import cli
from models.extractors.pipeline import add_extractor_args, extractor_options
from models.video_captioning import caption_videos


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument('videos', nargs='+', metavar='VIDEO', help='video files and/or folders of video files')
    cli.add_flag(parser, '--checkpoint', required=True, default=None,
                 help='a WSDEC or ILCACM checkpoint (.pt) of this suite, converted original ones included')
    parser.add_argument('--out', default='captions', help='output folder (features cached in OUT/features/)')
    parser.add_argument('--vocab', default=None,
                        help="vocabulary (JSON or the original pickle) of a converted WSDEC checkpoint without "
                             "config['vocab']")
    add_extractor_args(parser)
    parser.add_argument('--workers', type=int, default=2, help='decoding threads of the extraction')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    cli.add_debug_flag(parser)
    return parser


def run(argv=None) -> int:
    args = cli.parse(build_parser(), argv)
    report = caption_videos(args.videos, args.checkpoint, args.out, args.vocab, args.workers, not args.quiet,
                            **extractor_options(args))
    print(report.summary())
    return 1 if report.failed else 0


if __name__ == '__main__':
    cli.main(run)
