"""BLEU-1..4, ROUGE-L and CIDEr-D of one video's items, bit-identical to pycocoevalcap 1.2 but cached.

Each video is one pooled scoring set (spec evaluation §3.3 step 6); items are (tokenized hypothesis, tokenized
reference) pairs. What does not depend on the rest of the video is computed once per sentence or pair and
reused across videos and tIoUs:
* BLEU: pycocoevalcap's ``cook_refs`` / ``cook_test`` per pair (integer counts, from the cached n-grams),
  pooled by its own ``BleuScorer``;
* ROUGE-L: ``Rouge.calc_score`` per pair (an integer LCS, then the same float expression), averaged with
  ``np.mean`` as ``Rouge.compute_score``;
* CIDEr-D: the document frequencies come from the video's references, so the arithmetic of
  ``CiderScorer.compute_cider`` is re-done per video, in the same operation order, with Python floats instead
  of numpy scalars (IEEE results are the same) and cached n-gram counts and logarithms.
``tests/test_scorer_metrics.py`` checks equality with the pycocoevalcap classes.
"""
import math

import numpy as np
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider.cider_scorer import precook

CIDER_N, CIDER_SIGMA = 4, 6.0  # pycocoevalcap Cider() defaults (CIDEr-D)
ROUGE_BETA = 1.2  # pycocoevalcap Rouge().beta


def longest_common_subsequence(a, b):
    """Length of the LCS of two token lists (``rouge.my_lcs``'s value, one DP row at a time)."""
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            if token == other:
                current.append(previous[j] + 1)
            else:
                current.append(previous[j + 1] if previous[j + 1] > current[j] else current[j])
        previous = current
    return previous[-1]


def rouge_l(hyp, ref):
    """``Rouge().calc_score([hyp], [ref])``: same tokens (split on ' '), same float expression."""
    token_c, token_r = hyp.split(" "), ref.split(" ")
    lcs = longest_common_subsequence(token_r, token_c)
    prec_max = lcs / float(len(token_c))
    rec_max = lcs / float(len(token_r))
    if prec_max != 0 and rec_max != 0:
        return ((1 + ROUGE_BETA ** 2) * prec_max * rec_max) / float(rec_max + ROUGE_BETA ** 2 * prec_max)
    return 0.0


class CachedCocoMetrics:
    """``scores(items) -> (bleu[4], rouge_l, cider_d)`` for one video, with per-sentence/pair caches."""

    def __init__(self):
        self._bleu_cooked = {}
        self._rouge_pair = {}
        self._ngrams = {}
        self._log = {}
        self._penalty = {}
        self._by_order = {}

    def scores(self, items):
        return self.bleu(items), self.rouge(items), self.cider(items)

    def bleu(self, items):
        scorer = BleuScorer(n=4)
        for pair in items:
            if pair not in self._bleu_cooked:
                self._bleu_cooked[pair] = self._cook(*pair)
            refs, test = self._bleu_cooked[pair]
            scorer.crefs.append(refs)
            scorer.ctest.append(test)
        score, _ = scorer.compute_score(option='closest', verbose=0)
        return list(score)

    def _cook(self, hyp, ref):
        """pycocoevalcap's ``cook_refs([ref])`` and ``cook_test(hyp, refs)`` from the cached n-gram counts
        (BLEU's ``precook`` counts the same n-grams as CIDEr's; a single reference is its own max count)."""
        ref_counts = self._counts(ref)
        refs = ([len(ref.split())], ref_counts)
        test_len = len(hyp.split())
        correct = [0] * 4
        for ngram, count in self._counts(hyp).items():
            correct[len(ngram) - 1] += min(ref_counts.get(ngram, 0), count)
        test = {'reflen': refs[0], 'testlen': test_len, 'guess': [max(0, test_len - k + 1) for k in range(1, 5)],
                'correct': correct}
        return refs, test

    def rouge(self, items):
        for pair in items:
            if pair not in self._rouge_pair:
                self._rouge_pair[pair] = rouge_l(*pair)
        return np.mean(np.array([self._rouge_pair[pair] for pair in items]))

    def _counts(self, sentence):
        if sentence not in self._ngrams:
            self._ngrams[sentence] = dict(precook(sentence, CIDER_N))
        return self._ngrams[sentence]

    def _orders(self, sentence):
        """The sentence's (n-gram, float term frequency) per order, each in ``precook`` order, and its
        'length' (bigram count), as ``CiderScorer.counts2vec`` derives them."""
        if sentence not in self._by_order:
            orders = [[] for _ in range(CIDER_N)]
            for ngram, term_freq in self._counts(sentence).items():
                orders[len(ngram) - 1].append((ngram, float(term_freq)))
            self._by_order[sentence] = orders, sum(int(tf) for _, tf in orders[1])
        return self._by_order[sentence]

    def _np_log(self, x):
        if x not in self._log:
            self._log[x] = float(np.log(x))
        return self._log[x]

    def _tfidf(self, sentence, log_df, ref_len):
        """CiderScorer.counts2vec: per-order tf-idf dicts, their norms, and the 'length' (bigram count).
        ``log_df``: log document frequency of the video's n-grams (absent: log(max(1, 0)) = 0)."""
        orders, length = self._orders(sentence)
        vec, norm = [], []
        for grams in orders:  # each order's squares are summed in the order counts2vec visits them
            values, square_sum = {}, 0.0
            for ngram, term_freq in grams:
                value = values[ngram] = term_freq * (ref_len - log_df.get(ngram, 0.0))
                square_sum += pow(value, 2)
            vec.append(values)
            norm.append(math.sqrt(square_sum))
        return vec, norm, length

    def _gaussian(self, delta):
        if delta not in self._penalty:
            self._penalty[delta] = np.e ** (-(delta ** 2) / (2 * CIDER_SIGMA ** 2))
        return self._penalty[delta]

    def _sim(self, hyp, ref):
        """CiderScorer.compute_cider.sim: Gaussian-penalised, clipped cosine per n-gram order.
        An n-gram missing from the reference adds min(v, 0) * 0 = 0.0 (tf-idf values are >= 0): skipped."""
        (vec_hyp, norm_hyp, length_hyp), (vec_ref, norm_ref, length_ref) = hyp, ref
        penalty = self._gaussian(float(length_hyp - length_ref))
        val = [0.0] * CIDER_N
        for n in range(CIDER_N):
            ref_values = vec_ref[n]
            for ngram, value in vec_hyp[n].items():
                if ngram in ref_values:
                    ref_value = ref_values[ngram]
                    val[n] += min(value, ref_value) * ref_value
            if norm_hyp[n] != 0 and norm_ref[n] != 0:
                val[n] /= (norm_hyp[n] * norm_ref[n])
            val[n] *= penalty
        return val

    def cider(self, items):
        """CIDEr-D of the items with document frequencies from these items' references (one per item)."""
        document_frequency = {}
        for _, ref in items:
            for ngram in self._counts(ref):
                document_frequency[ngram] = document_frequency.get(ngram, 0.0) + 1
        # every df is >= 1, so CiderScorer's log(max(1.0, df)) is log(df)
        log_df = {ngram: self._np_log(df) for ngram, df in document_frequency.items()}
        ref_len = self._np_log(float(len(items)))
        vectors = {}  # a sentence's tf-idf depends only on the video's document frequencies

        def tfidf(sentence):
            if sentence not in vectors:
                vectors[sentence] = self._tfidf(sentence, log_df, ref_len)
            return vectors[sentence]

        scores = []
        for hyp, ref in items:
            total = [0.0] * CIDER_N
            sim = self._sim(tfidf(hyp), tfidf(ref))
            for n in range(CIDER_N):
                total[n] += sim[n]
            score_avg = np.mean(np.array(total))
            score_avg /= 1  # one reference per item
            score_avg *= 10.0
            scores.append(score_avg)
        return np.mean(np.array(scores))
