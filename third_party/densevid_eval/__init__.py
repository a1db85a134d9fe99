"""Python-3 re-implementation of the ActivityNet Captions scorer densevid_eval (2018 and 2021 toolkits),
SODA_c and the sentence-localization metrics (spec evaluation.md). CLI: ``evaluate.py`` in this folder."""
from .localization import evaluate_localization
from .report import format_table, save_result
from .scorer import PROTOCOLS, SUITE_VERSION, evaluate
from .submission import SubmissionError

__all__ = ['evaluate', 'evaluate_localization', 'PROTOCOLS', 'format_table', 'save_result', 'SubmissionError',
           'SUITE_VERSION']
