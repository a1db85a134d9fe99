"""Convert video features between one hdf5 file (``f[vid][key]``) and a folder of per-video ``<vid>.npy``.

    python scripts/convert_features.py --to npy --input data/anet_v1.3.c3d.hdf5 --output data/c3d_npy
    python scripts/convert_features.py --to hdf5 --input data/clip_features --output data/clip.hdf5 --key clip_features
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from pathlib import Path

from utils import cli
from utils.features import hdf5_to_npy, npy_to_hdf5


def main(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument('--to', choices=('npy', 'hdf5'), required=True, help='target layout')
    parser.add_argument('--input', required=True, help='hdf5 file (--to npy) or folder of .npy (--to hdf5)')
    parser.add_argument('--output', required=True, help='folder (--to npy) or hdf5 file (--to hdf5)')
    parser.add_argument('--key', default='c3d_features', help='dataset name inside each video group')
    parser.add_argument('--overwrite', action='store_true', help='allow writing into an existing output')
    args = parser.parse_args(argv)

    output = Path(args.output)
    if output.exists() and (output.is_file() or any(output.iterdir())) and not args.overwrite:
        parser.error(f"{output} exists; pass --overwrite to write into it")
    (hdf5_to_npy if args.to == 'npy' else npy_to_hdf5)(args.input, output, args.key)
    print(f"wrote {output}")


if __name__ == '__main__':
    cli.main(main)
