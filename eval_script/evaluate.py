"""Evaluate any checkpoint of the suite: the script dispatches on the checkpoint's `kind`.

    python eval_script/evaluate.py --checkpoint runs/wsdec_final/checkpoints/last.pt [--data-root DIR]

* wsdec_final, wsdec_noregress, wsdec_noclass → dense captioning (spec wsdec §4.4; models/wsdec/evaluation.py
  `evaluate_dense`): `--n-rand` random initial segments → caption → localize → drop rule → hull merge →
  re-caption; scored with the 2018 toolkit, missing videos = 0, refs val_1 + val_2.
* wsdec_cg_pretrain → `evaluate_pretrain` (random segments); wsdec_cg → `evaluate_cg` (GT segments);
  wsdec_sl → `evaluate_localization`; ilcacm → models/ilcacm/evaluation.py (both protocols).

`python eval_script/evaluate.py --checkpoint CKPT --help` shows the flags of that checkpoint's procedure.
Output: runs/<run-name>/predictions/*.json (submission) and metrics/*.json (stamped scores); the table is printed.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from models.ilcacm.evaluation import evaluate as evaluate_ilcacm
from models.wsdec.evaluation import EVALUATIONS
from utils import cli
from utils.run import RunFolderError, read_checkpoint


def dispatch(argv=None):
    """Evaluate `--checkpoint` with the procedure of its kind; returns the scorer's result."""
    pre = cli.parser(__doc__, add_help=False)
    pre.add_argument('--checkpoint')
    known, _ = pre.parse_known_args(argv)
    if known.checkpoint is None:
        full = cli.parser(__doc__)
        full.add_argument('--checkpoint', required=True, help='any checkpoint (.pt) of this suite')
        return full.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    kind = read_checkpoint(known.checkpoint)['kind']
    print(f"{known.checkpoint}: kind '{kind}'")
    if str(kind).startswith('ilcacm'):
        return evaluate_ilcacm(argv)
    if kind in EVALUATIONS:
        print(f"→ models/wsdec/evaluation.py {EVALUATIONS[kind].__name__}")
        return EVALUATIONS[kind](argv)
    raise RunFolderError(f"{known.checkpoint}: unknown checkpoint kind {kind!r}; expected one of "
                         f"{sorted(EVALUATIONS)} or ilcacm")


if __name__ == '__main__':
    cli.main(dispatch)
