"""Train ILCACM (spec ilcacm §4): stage 1 (full-mode captioning, epochs [0, cap_epochs)), stage-1 paragraphs on
val_1 (they fix the event counts, spec §4.1.6), stage 2 (complementary masked captioning, two clipped optimiser
steps per batch: models/ilcacm/steps.py) to --epochs, then evaluation under the ILCACM and WSDEC protocols.

    python train_script/train_ilcacm.py --data-root DIR [--gpt2 data/distilgpt2]
    torchrun --nproc_per_node N train_script/train_ilcacm.py ...   # same training, --batch-size is global
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.ilcacm.config import resolve_model_args, training_parser
from models.ilcacm.runs import train
from utils import cli


def main(argv=None):
    train(resolve_model_args(cli.parse(training_parser(__doc__), argv)))


if __name__ == '__main__':
    cli.main(main)
