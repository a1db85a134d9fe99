"""BLEU-1..4, ROUGE-L and CIDEr-D of one video's items, bit-identical to pycocoevalcap 1.2 but cached.

Each video is one pooled scoring set (spec evaluation §3.3 step 6); items are (tokenized hypothesis, tokenized
reference) pairs. What does not depend on the rest of the video is computed once per sentence or pair and
reused across videos and tIoUs:
* BLEU: pycocoevalcap's ``cook_refs`` / ``cook_test`` per pair, pooled by its own ``BleuScorer``;
* ROUGE-L: pycocoevalcap's ``Rouge.calc_score`` per pair, averaged with ``np.mean`` as ``Rouge.compute_score``;
* CIDEr-D: the document frequencies come from the video's references, so the arithmetic of
  ``CiderScorer.compute_cider`` is re-done per video, in the same operation order, with Python floats instead
  of numpy scalars (IEEE results are the same) and cached n-gram counts and logarithms.
``tests/test_scorer_metrics.py`` checks equality with the pycocoevalcap classes.
"""
import math
from collections import defaultdict

import numpy as np
from pycocoevalcap.bleu.bleu_scorer import BleuScorer, cook_refs, cook_test
from pycocoevalcap.cider.cider_scorer import precook
from pycocoevalcap.rouge.rouge import Rouge

CIDER_N, CIDER_SIGMA = 4, 6.0  # pycocoevalcap Cider() defaults (CIDEr-D)


class CachedCocoMetrics:
    """``scores(items) -> (bleu[4], rouge_l, cider_d)`` for one video, with per-sentence/pair caches."""

    def __init__(self):
        self._rouge = Rouge()
        self._bleu_cooked = {}
        self._rouge_pair = {}
        self._ngrams = {}
        self._log = {}

    def scores(self, items):
        return self.bleu(items), self.rouge(items), self.cider(items)

    def bleu(self, items):
        scorer = BleuScorer(n=4)
        for pair in items:
            if pair not in self._bleu_cooked:
                refs = cook_refs([pair[1]])
                self._bleu_cooked[pair] = (refs, cook_test(pair[0], refs))
            refs, test = self._bleu_cooked[pair]
            scorer.crefs.append(refs)
            scorer.ctest.append(test)
        score, _ = scorer.compute_score(option='closest', verbose=0)
        return list(score)

    def rouge(self, items):
        for pair in items:
            if pair not in self._rouge_pair:
                self._rouge_pair[pair] = self._rouge.calc_score([pair[0]], [pair[1]])
        return np.mean(np.array([self._rouge_pair[pair] for pair in items]))

    def _counts(self, sentence):
        if sentence not in self._ngrams:
            self._ngrams[sentence] = dict(precook(sentence, CIDER_N))
        return self._ngrams[sentence]

    def _np_log(self, x):
        if x not in self._log:
            self._log[x] = float(np.log(x))
        return self._log[x]

    def _tfidf(self, counts, document_frequency, ref_len):
        """CiderScorer.counts2vec: per-order tf-idf dicts, their norms, and the 'length' (bigram count)."""
        vec = [{} for _ in range(CIDER_N)]
        norm = [0.0] * CIDER_N
        length = 0
        for ngram, term_freq in counts.items():
            df = self._np_log(max(1.0, document_frequency.get(ngram, 0.0)))
            n = len(ngram) - 1
            vec[n][ngram] = float(term_freq) * (ref_len - df)
            norm[n] += pow(vec[n][ngram], 2)
            if n == 1:
                length += term_freq
        return vec, [math.sqrt(x) for x in norm], length

    def _sim(self, hyp, ref):
        """CiderScorer.compute_cider.sim: Gaussian-penalised, clipped cosine per n-gram order."""
        (vec_hyp, norm_hyp, length_hyp), (vec_ref, norm_ref, length_ref) = hyp, ref
        delta = float(length_hyp - length_ref)
        val = [0.0] * CIDER_N
        for n in range(CIDER_N):
            for ngram, value in vec_hyp[n].items():
                ref_value = vec_ref[n].get(ngram, 0.0)
                val[n] += min(value, ref_value) * ref_value
            if norm_hyp[n] != 0 and norm_ref[n] != 0:
                val[n] /= (norm_hyp[n] * norm_ref[n])
            val[n] *= np.e ** (-(delta ** 2) / (2 * CIDER_SIGMA ** 2))
        return val

    def cider(self, items):
        """CIDEr-D of the items with document frequencies from these items' references (one per item)."""
        document_frequency = defaultdict(float)
        for _, ref in items:
            for ngram in set(self._counts(ref)):
                document_frequency[ngram] += 1
        ref_len = self._np_log(float(len(items)))
        scores = []
        for hyp, ref in items:
            total = [0.0] * CIDER_N
            sim = self._sim(self._tfidf(self._counts(hyp), document_frequency, ref_len),
                            self._tfidf(self._counts(ref), document_frequency, ref_len))
            for n in range(CIDER_N):
                total[n] += sim[n]
            score_avg = np.mean(np.array(total))
            score_avg /= 1  # one reference per item
            score_avg *= 10.0
            scores.append(score_avg)
        return np.mean(np.array(scores))
