"""Pretrain WSDEC's caption generator with the segment fixed to the whole video (spec wsdec §4.1).

    python train_script/train_cg_pretrain.py --data-root DIR --run-name wsdec_cg_pretrain

Paper defaults: 100 epochs, batch 36, SGD lr 1e-2 (momentum 0.8, wd 1e-4) ×0.1 at epochs 20, 50, 70
(0.3.1 scheduler semantics), one random sentence per video per epoch, (c, w) = (0.5, 1.0) for every sample,
loss L_cap (summed over tokens / sentences). A checkpoint is saved every epoch; the original's choice of
epoch for cg_pretrain.ckp is unknown. `--pretrain-segment caption-order` (fix flag, issue 14) pairs sentence j of n
with the j-th of n equal parts of the video instead. Evaluate with eval_script/evaluate.py (→ evaluate_pretrain).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.wsdec.config import inference_defaults
from models.wsdec.runs import caption_generator_script
from models.wsdec.steps import PRETRAIN_SEGMENTS
from utils import cli

# evaluate_pretrain.py: one random segment per video, batch 36 (spec §4.4)
build_parser, main = caption_generator_script(__doc__, 'wsdec_cg_pretrain', 36, PRETRAIN_SEGMENTS,
                                              inference_defaults(procedure='random_segment', batch_size=36))

if __name__ == '__main__':
    cli.main(main)
