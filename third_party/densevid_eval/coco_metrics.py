"""BLEU-1..4, ROUGE-L and CIDEr-D of one video's items, bit-identical to pycocoevalcap 1.2 but cached.

Each video is one pooled scoring set (spec evaluation §3.3 step 6); items are (tokenized hypothesis, tokenized
reference) pairs. What does not depend on the rest of the video is computed once per sentence or pair and
reused across videos and tIoUs:
* BLEU: pycocoevalcap's ``cook_refs`` / ``cook_test`` per pair (integer counts, from the cached n-grams),
  summed per video, then ``BleuScorer.compute_score``'s final arithmetic;
* ROUGE-L: ``Rouge.calc_score`` per pair (an integer LCS, then the same float expression), averaged with
  ``np.mean`` as ``Rouge.compute_score``;
* CIDEr-D: the document frequencies come from the video's references, so the arithmetic of
  ``CiderScorer.compute_cider`` is re-done per video, in the same operation order, with Python floats instead
  of numpy scalars (IEEE results are the same) and cached n-gram counts and logarithms.
``tests/test_scorer_metrics.py`` checks equality with the pycocoevalcap classes.
"""
import math

import numpy as np
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
        self._log = []
        self._penalty = {}
        self._by_order = {}

    def scores(self, items):
        return self.bleu(items), self.rouge(items), self.cider(items)

    def bleu(self, items):
        """``BleuScorer(n=4)`` fed the items, ``compute_score(option='closest')[0]``. That score depends only on
        the summed integer counts (test and reference lengths, guesses and matches per order), so those are
        summed here and its final arithmetic is repeated as written (the per-sentence list is not needed)."""
        testlen = reflen = 0
        guess, correct = [0] * 4, [0] * 4
        cooked = self._bleu_cooked
        for pair in items:
            if pair not in cooked:
                cooked[pair] = self._cook(*pair)
            pair_testlen, pair_reflen, pair_guess, pair_correct = cooked[pair]
            testlen += pair_testlen
            reflen += pair_reflen  # 'closest' of a single reference is that reference's length
            for k in range(4):
                guess[k] += pair_guess[k]
                correct[k] += pair_correct[k]
        small, tiny = 1e-9, 1e-15
        bleus, bleu = [], 1.
        for k in range(4):
            bleu *= float(correct[k] + tiny) / (guess[k] + small)
            bleus.append(bleu ** (1. / (k + 1)))
        ratio = (testlen + tiny) / (reflen + small)
        if ratio < 1:
            for k in range(4):
                bleus[k] *= math.exp(1 - 1 / ratio)
        return bleus

    def _cook(self, hyp, ref):
        """pycocoevalcap's ``cook_refs([ref])`` and ``cook_test(hyp, refs)`` from the cached n-gram counts
        (BLEU's ``precook`` counts the same n-grams as CIDEr's; a single reference is its own max count):
        ``(testlen, reflen, guess[4], correct[4])``."""
        ref_counts = self._counts(ref)
        test_len = len(hyp.split())
        correct = [0] * 4
        for ngram, count in self._counts(hyp).items():
            correct[len(ngram) - 1] += min(ref_counts.get(ngram, 0), count)
        return test_len, len(ref.split()), [max(0, test_len - k + 1) for k in range(1, 5)], correct

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
        """The sentence's (n-gram, float term frequency) pairs per order, each in ``precook`` order, and its
        'length' (bigram count), as ``CiderScorer.counts2vec`` derives them."""
        if sentence not in self._by_order:
            orders = [[] for _ in range(CIDER_N)]
            for ngram, term_freq in self._counts(sentence).items():
                orders[len(ngram) - 1].append((ngram, float(term_freq)))
            self._by_order[sentence] = tuple(map(tuple, orders)), sum(int(tf) for _, tf in orders[1])
        return self._by_order[sentence]

    def _log_table(self, n):
        """``[0.0, log(1), log(2), ..., log(n)]`` with ``np.log`` (index 0 stands for log(max(1, 0)) = 0)."""
        table = self._log
        while len(table) <= n:
            table.append(float(np.log(float(max(len(table), 1)))))
        return table

    def _gaussian(self, delta):
        if delta not in self._penalty:
            self._penalty[delta] = np.e ** (-(delta ** 2) / (2 * CIDER_SIGMA ** 2))
        return self._penalty[delta]

    def cider(self, items):
        """CIDEr-D of the items with document frequencies from these items' references (one per item).

        ``CiderScorer.compute_cider`` re-done with the same operations in the same order: a tf-idf value is
        ``tf * (ref_len - log(max(1, df)))``; each order's norm is the square root of the squares summed in
        ``counts2vec``'s visiting order; ``sim`` adds ``min(v_hyp, v_ref) * v_ref`` over the hypothesis'
        n-grams in its order (an n-gram absent from the reference adds ``min(v, 0) * 0 = 0.0``: skipped), then
        divides by the norms and applies the length penalty; an item's score is ``np.mean`` of the 4 orders
        (sequential for 4 values) times 10; the video's is ``np.mean`` of its items'.
        """
        counts, orders_of = self._counts, self._orders
        document_frequency = {}
        for _, ref in items:
            for ngram in counts(ref):
                document_frequency[ngram] = document_frequency.get(ngram, 0) + 1
        logs = self._log_table(len(items))
        ref_len = logs[len(items)]
        df = document_frequency.get
        norms = {}  # a sentence's norms depend only on the video's document frequencies

        def norms_of(sentence):
            if sentence not in norms:
                out = []
                for grams in orders_of(sentence)[0]:
                    square_sum = 0.0
                    for ngram, term_freq in grams:
                        square_sum += (term_freq * (ref_len - logs[df(ngram, 0)])) ** 2
                    out.append(math.sqrt(square_sum))
                norms[sentence] = out
            return norms[sentence]

        scores = []
        for hyp, ref in items:
            hyp_orders, hyp_length = orders_of(hyp)
            ref_counts = counts(ref)
            norm_hyp, norm_ref = norms_of(hyp), norms_of(ref)
            penalty = self._gaussian(float(hyp_length - orders_of(ref)[1]))
            val = [0.0] * CIDER_N
            for n, grams in enumerate(hyp_orders):
                acc = 0.0
                for ngram, term_freq in grams:
                    if ngram in ref_counts:
                        weight = ref_len - logs[df(ngram)]
                        hyp_value = term_freq * weight
                        ref_value = float(ref_counts[ngram]) * weight
                        acc += min(hyp_value, ref_value) * ref_value
                if norm_hyp[n] != 0 and norm_ref[n] != 0:
                    acc /= (norm_hyp[n] * norm_ref[n])
                val[n] = acc * penalty
            scores.append((((val[0] + val[1]) + val[2]) + val[3]) / 4 * 10.0)
        return np.mean(np.array(scores))
