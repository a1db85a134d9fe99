"""Does a captioner read the video? Its teacher-forced caption loss (nats per token) on the held-out videos of its
data root with their own features, an all-zero video and another video's features (utils/diagnostics.py; issue 14),
for one or more checkpoints, e.g. every epoch of a run:

    python scripts/video_reliance.py --checkpoint runs/pre/checkpoints/epoch_*.pt

WSDEC caption generators are measured at the ground-truth segments of val_1; ILCACM checkpoints in full mode (the
paragraph) and in positive masked mode at the ground-truth masks. `reliance` = loss(another video) - loss(own):
about 0 when the captioner ignores the video. Every evaluation stores these numbers in its metrics JSON too.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import json

from utils import cli
from utils.run import read_checkpoint, resolve_device


def reliance_of(path, args) -> dict:
    """The video-reliance numbers of one checkpoint (WSDEC: a caption generator; ILCACM: the captioner)."""
    state = read_checkpoint(path)
    device = resolve_device(args.device)
    if str(state['kind']).startswith('ilcacm'):
        from models.ilcacm.evaluation import data_files, load_split
        from models.ilcacm.factory import model_from_checkpoint
        from models.ilcacm.inference import video_reliance
        from utils.features import open_features
        config = argparse.Namespace(**{**state['config'], 'eval_batch_size': args.batch_size,
                                       **({'data_root': args.data_root} if args.data_root else {})})
        model, tokenizer = model_from_checkpoint(state)
        _, val_path, _, features = data_files(config)
        return video_reliance(model.to(device), load_split(val_path, open_features(features), tokenizer, config),
                              device, config)
    from models.wsdec.evaluation import eval_models
    from models.wsdec.inference import video_reliance
    from models.wsdec.runs import checkpoint_vocab, eval_dataset, stored_data_paths
    from utils.distributed import make_loader
    from utils.wsdec_data import wsdec_collate
    (cg,) = eval_models(state, path, ('cg',), device)
    settings = argparse.Namespace(data_root=args.data_root, features=None, missing_features='error', seed=0)
    dataset = eval_dataset(stored_data_paths(settings, state['config']), checkpoint_vocab(state, path),
                           settings, state['config'])
    loader = make_loader(dataset, args.batch_size, shuffle=False, drop_last=False, collate_fn=wsdec_collate, seed=0,
                         epoch_sampler=False)
    return video_reliance(cg, loader, device)


def build_parser():
    parser = cli.parser(__doc__)
    parser.add_argument('--checkpoint', nargs='+', required=True, help='checkpoints (.pt) of this suite')
    parser.add_argument('--data-root', default=None, help="override the checkpoints' data root")
    parser.add_argument('--batch-size', type=int, default=16, help='videos per batch')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda, cuda:N')
    parser.add_argument('--json', default=None, metavar='FILE', help='also write {checkpoint: numbers} here')
    cli.add_debug_flag(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = {}
    for path in args.checkpoint:
        numbers = reliance_of(path, args)
        out[str(path)] = numbers
        print(f"{path}: " + ', '.join(f'{k} {v:.4f}' for k, v in numbers.items() if v is not None), flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1) + '\n')
    return out


if __name__ == '__main__':
    cli.main(main)
