"""Supervised WSDEC caption generator trained on the ground-truth segments (spec wsdec §4.3).

    python train_script/train_cg.py --data-root DIR --run-name wsdec_cg

Paper defaults: 100 epochs, batch 64, SGD lr 1e-2 ×0.1 at epochs 20, 50, 70 (0.3.1 semantics), one random
sentence per video per epoch; segment = GT in feature-index units, `se2cw([s_idx, e_idx]) / L`; loss L_cap.
Used by the "captioning with GT proposals" and two-stage baselines.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.wsdec.config import inference_defaults
from models.wsdec.runs import caption_generator_script
from models.wsdec.steps import gt_segments
from utils import cli

# train_cg.eval: captions at the GT segments of val_1, batch 16 (spec §4.3)
build_parser, main = caption_generator_script(__doc__, 'wsdec_cg', 64, gt_segments,
                                              inference_defaults(procedure='gt_segments', batch_size=16))

if __name__ == '__main__':
    cli.main(main)
