"""The official Java tools of the scorer: Stanford PTB tokenizer and METEOR 1.5 (spec evaluation §3.8).

Both jars ship inside the installed ``pycocoevalcap`` 1.2 package; this module runs them with exactly the
command lines of pycocoevalcap's wrappers, but batched:

* ``ptb_tokenize(texts)``: one JVM for any number of sentences (pycocoevalcap's ``PTBTokenizer`` flags
  ``-preserveLines -lowerCase`` and its punctuation filter).
* ``Meteor``: one persistent ``meteor-1.5.jar -stdio -l en -norm`` process. METEOR's stdin protocol is
  ``SCORE ||| ref_1 ||| ... ||| ref_n ||| hyp`` -> one line of sufficient statistics, and
  ``EVAL ||| stats_1 ||| ... ||| stats_k`` -> k per-segment scores, then the aggregate score. Requests are
  pipelined (a writer thread feeds stdin while the caller reads stdout), which is what makes it fast.

Importable on its own (WSDEC's METEOR pseudo-labels, spec wsdec §4.2 / §6.5, use ``Meteor.score_pairs``).
"""
import importlib.util
import math
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

# pycocoevalcap/tokenizer/ptbtokenizer.py: tokens removed after tokenization (spec evaluation §3.3 step 5)
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])
# characters on which the PTB tokenizer starts a new output line even with -preserveLines (checked on
# stanford-corenlp-3.4.1); they are turned into spaces so that output line i is input line i
LINE_BREAKS = ('\n', '\r', '\x0b', '\x0c')
# JVM option of the short-lived tokenizer processes: the quick C1 JIT only (the tokenizer's output does not
# depend on it; it cuts the eight concurrent tokenizations of a val_1 evaluation from ~11 s to ~3 s on 2 cores)
TOKENIZER_JVM_OPTIONS = ('-XX:TieredStopAtLevel=1',)
EVAL_CHUNK = 2000  # segments per EVAL request in score_pairs (keeps request lines short)

INSTALL_JAVA = ("METEOR 1.5 and the PTB tokenizer are the official Java jars bundled with pycocoevalcap; "
                "they need a Java runtime (8 or newer) on PATH. Install one, e.g.\n"
                "  Debian/Ubuntu: sudo apt-get install default-jre-headless\n"
                "  macOS:         brew install openjdk\n"
                "  conda:         conda install -c conda-forge openjdk\n"
                "(in the wsdvc suite: `bash scripts/setup.sh`), then check with `java -version`.")


class JavaNotFoundError(RuntimeError):
    """No ``java`` executable on PATH; the message says how to install one."""


class JavaToolError(RuntimeError):
    """A Java tool (tokenizer or METEOR) failed or answered out of protocol."""


def _pycocoevalcap_dir():
    spec = importlib.util.find_spec('pycocoevalcap')
    if spec is None or not spec.submodule_search_locations:
        raise JavaToolError("pycocoevalcap is not installed (pip install pycocoevalcap==1.2): "
                            "it provides the METEOR 1.5 and Stanford CoreNLP jars")
    return Path(list(spec.submodule_search_locations)[0])


def java_executable():
    """Path of ``java``, or JavaNotFoundError with install instructions."""
    java = shutil.which('java')
    if java is None:
        raise JavaNotFoundError("Java runtime not found. " + INSTALL_JAVA)
    return java


def tokenizer_jar():
    return _pycocoevalcap_dir() / 'tokenizer' / 'stanford-corenlp-3.4.1.jar'


def meteor_jar():
    return _pycocoevalcap_dir() / 'meteor' / 'meteor-1.5.jar'


def one_line(text):
    """``text`` with every character the Java tools would treat as a line break replaced by a space."""
    for ch in LINE_BREAKS:
        text = text.replace(ch, ' ')
    return text


def ptb_tokenize(texts):
    """PTB-tokenize, lower-case and strip punctuation tokens, in one Java call (spec evaluation §3.3 step 5).

    Same result per line as pycocoevalcap's ``PTBTokenizer.tokenize`` on the same list: the file is written
    the same way ('\n'-joined, no final newline). The tokenizer looks ahead past the end of a line (``capital
    T.`` keeps its period unless the next line starts with a capital), so a sentence's tokens can depend on
    the sentence after it; callers that must match the official numbers pass the official lists.
    Inputs should be ASCII (the scorer removes non-ASCII characters first, as the official tool does).
    """
    return ptb_tokenize_lists([texts])[0]


def ptb_tokenize_lists(lists):
    """``ptb_tokenize`` of several independent lists, one Java process each, run concurrently. Each process
    writes to its own file, not to a pipe: with pipes, all but the one being read would stall on a full pipe
    buffer and the processes would in effect run one after another."""
    with tempfile.TemporaryDirectory(prefix='ptb_') as tmp:
        procs = []
        for k, texts in enumerate(lists):
            texts = [one_line(t) for t in texts]
            path = Path(tmp) / f'sentences_{k}.txt'
            path.write_bytes('\n'.join(texts).encode())
            if not texts:
                procs.append(None)
                continue
            with open(Path(tmp) / f'tokens_{k}.txt', 'wb') as out, open(Path(tmp) / f'errors_{k}.txt', 'wb') as err:
                procs.append(subprocess.Popen(
                    [java_executable(), *TOKENIZER_JVM_OPTIONS, '-cp', str(tokenizer_jar()),
                     'edu.stanford.nlp.process.PTBTokenizer', '-preserveLines', '-lowerCase', str(path)],
                    stdout=out, stderr=err))
        return [_tokenizer_output(proc, texts, Path(tmp), k) for k, (proc, texts) in enumerate(zip(procs, lists))]


def _tokenizer_output(proc, texts, folder, k):
    if proc is None:
        return []
    proc.wait()
    if proc.returncode != 0:
        stderr = (folder / f'errors_{k}.txt').read_bytes()
        raise JavaToolError(f"PTB tokenizer failed (exit {proc.returncode}): {stderr.decode()[-2000:]}")
    lines = (folder / f'tokens_{k}.txt').read_bytes().decode().split('\n')[:len(texts)]
    missing = len(texts) - len(lines)
    if missing and any(t.strip() for t in texts[-missing:]):
        raise JavaToolError(f"PTB tokenizer returned {len(lines)} lines for {len(texts)} sentences")
    lines += [''] * missing  # trailing blank lines produce no output line
    return [' '.join(w for w in line.rstrip().split(' ') if w not in PUNCTUATIONS) for line in lines]


# METEOR 1.5 '-l en' defaults (MeteorConfiguration, task 'default'): alpha, beta, gamma, delta and the weights
# of the exact, stem, synonym and paraphrase modules
METEOR_EN_PARAMETERS = (0.85, 0.2, 0.6, 0.75)
METEOR_EN_MODULE_WEIGHTS = (1.0, 0.6, 0.8, 0.6)
N_STAGES = 4
STATS_LENGTH = 4 + 4 * N_STAGES + 3


def _ieee_div(a, b):
    """Java's double division: x/0 is +-inf and 0/0 (or nan/0) is NaN instead of an exception."""
    if b != 0:
        return a / b
    if a != a or a == 0:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


class MeteorStats:
    """The sufficient statistics of one segment or a sum of segments, as METEOR 1.5's ``MeteorStats``.

    A stats line is ``test_len ref_len test_fw ref_fw``, then per stage (exact, stem, synonym, paraphrase)
    ``test_content ref_content test_function ref_function``, then ``chunks test_word_matches
    ref_word_matches`` (``MeteorStats(String)``). All values are integer counts, so sums are exact.
    """
    __slots__ = ('lengths', 'stages', 'test_total', 'ref_total', 'chunks', 'word_matches')

    def __init__(self):
        self.lengths = [0.0] * 4  # test_len, ref_len, test_function_words, ref_function_words
        self.stages = [[0.0] * 4 for _ in range(N_STAGES)]
        self.test_total = self.ref_total = self.chunks = 0.0
        self.word_matches = [0.0, 0.0]

    @classmethod
    def parse(cls, line):
        values = [float(v) for v in line.split()]
        if len(values) != STATS_LENGTH:
            raise JavaToolError(f"METEOR stats line has {len(values)} values, expected {STATS_LENGTH}: {line!r}")
        return cls.from_values(values)

    @classmethod
    def from_values(cls, values):
        """Stats from the 23 numbers of a stats line (or of a sum of lines, see ``aggregate_groups``)."""
        values = [float(v) for v in values]
        stats = cls()
        stats.lengths = values[:4]
        stats.stages = [values[4 + 4 * i:8 + 4 * i] for i in range(N_STAGES)]
        for test_content, ref_content, test_function, ref_function in stats.stages:
            stats.test_total = stats.test_total + test_content + test_function
            stats.ref_total = stats.ref_total + ref_content + ref_function
        stats.chunks = values[20]
        stats.word_matches = values[21:23]
        return stats

    def perfect(self):
        """One chunk covering both sentences: METEOR gives no fragmentation penalty."""
        return self.test_total == self.lengths[0] and self.ref_total == self.lengths[1] and self.chunks == 1

    def add(self, other):
        """``MeteorStats.addStats``: sums, except that a perfect segment's chunk is not counted."""
        self.lengths = [a + b for a, b in zip(self.lengths, other.lengths)]
        self.test_total += other.test_total
        self.ref_total += other.ref_total
        self.stages = [[a + b for a, b in zip(mine, theirs)] for mine, theirs in zip(self.stages, other.stages)]
        if not other.perfect():
            self.chunks += other.chunks
        self.word_matches = [a + b for a, b in zip(self.word_matches, other.word_matches)]

    def score(self):
        """``MeteorScorer.computeMetrics`` of METEOR 1.5 '-l en', double arithmetic in the same order."""
        alpha, beta, gamma, delta = METEOR_EN_PARAMETERS
        test_len, ref_len, test_fw, ref_fw = self.lengths
        test_weighted_len = delta * (test_len - test_fw) + (1 - delta) * test_fw
        ref_weighted_len = delta * (ref_len - ref_fw) + (1 - delta) * ref_fw
        weighted = [0.0, 0.0]  # test, reference; summed content matches first, then function words
        for column, factor in ((0, delta), (1, delta), (2, 1 - delta), (3, 1 - delta)):
            for stage, weight in zip(self.stages, METEOR_EN_MODULE_WEIGHTS):
                weighted[column % 2] += stage[column] * weight * factor
        test_matches, ref_matches = weighted
        precision = _ieee_div(test_matches, test_weighted_len)
        recall = _ieee_div(ref_matches, ref_weighted_len)
        f_mean = _ieee_div(1.0, _ieee_div(1 - alpha, precision) + _ieee_div(alpha, recall))
        if self.perfect():
            fragmentation = 0.0
        else:
            fragmentation = _ieee_div(self.chunks, (self.word_matches[0] + self.word_matches[1]) / 2.0)
        penalty = gamma * math.pow(fragmentation, beta) if fragmentation == fragmentation else math.nan
        score = f_mean * (1 - penalty)
        if score != score:
            return 0.0
        return score if score > 0 else 0.0


def aggregate_stats(group):
    """Python equivalent of METEOR's ``EVAL ||| stats_1 ||| ... ||| stats_k`` aggregate (not the per-segment
    scores); ``tests/test_scorer_java.py`` checks it against the jar."""
    total = MeteorStats()
    for stats in group:
        total.add(stats if isinstance(stats, MeteorStats) else MeteorStats.parse(stats))
    return total.score()


def stats_matrix(lines):
    """``(n, 23)`` float64 array of METEOR stats lines (every value is an integer count)."""
    rows = [line.split() for line in lines]
    for line, row in zip(lines, rows):
        if len(row) != STATS_LENGTH:
            raise JavaToolError(f"METEOR stats line has {len(row)} values, expected {STATS_LENGTH}: {line!r}")
    return np.array(rows, dtype=np.float64).reshape(len(rows), STATS_LENGTH)


def aggregate_groups(matrix, groups):
    """``aggregate_stats`` of many groups at once: ``groups`` are non-empty lists of row indices of ``matrix``
    (``stats_matrix``). ``MeteorStats.add`` sums integer counts (exact in any order) and skips the chunk count
    of a perfect segment, so each group's total is a vectorised sum of its rows with those chunks zeroed;
    the score of every total is then ``MeteorStats.score`` itself. Equal to ``aggregate_stats`` bit for bit."""
    if not groups:
        return []
    stages = matrix[:, 4:20].reshape(-1, N_STAGES, 4)
    perfect = ((stages[:, :, 0] + stages[:, :, 2]).sum(axis=1) == matrix[:, 0]) & \
              ((stages[:, :, 1] + stages[:, :, 3]).sum(axis=1) == matrix[:, 1]) & (matrix[:, 20] == 1)
    counted = matrix.copy()
    counted[perfect, 20] = 0.0
    sizes = [len(group) for group in groups]
    if min(sizes) == 0:
        raise ValueError("METEOR cannot evaluate an empty group of segments")
    order = np.fromiter((row for group in groups for row in group), dtype=np.int64, count=sum(sizes))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    totals = np.add.reduceat(counted[order], starts, axis=0)
    return [MeteorStats.from_values(total).score() for total in totals.tolist()]


def _sanitize_hypothesis(hyp):
    # pycocoevalcap Meteor._stat: the hypothesis loses '|||' and double spaces are halved
    return one_line(hyp).replace('|||', '').replace('  ', ' ')


class Meteor:
    """One persistent METEOR 1.5 process (``-l en -norm``, ``-Xmx2G`` as in pycocoevalcap); a context manager.

    ``stats``/``aggregate`` expose METEOR's two requests; ``score_pairs`` gives sentence-level scores.
    """

    def __init__(self, memory='2G'):
        cmd = [java_executable(), '-jar', f'-Xmx{memory}', str(meteor_jar()),
               '-', '-', '-stdio', '-l', 'en', '-norm']
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, cwd=str(meteor_jar().parent), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr)
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        proc = getattr(self, '_proc', None)
        if proc is not None and proc.poll() is None:
            proc.stdin.close()
            proc.kill()
            proc.wait()
        if proc is not None:
            self._stderr.close()
        self._proc = None

    def __del__(self):
        self.close()

    def _exchange(self, requests, n_answers):
        """Write ``requests`` (lines) from a thread while reading ``n_answers`` lines back, in order."""
        if self._proc is None:
            raise JavaToolError("METEOR process already closed")
        payload = ''.join(r + '\n' for r in requests).encode()
        failure = []

        def write():
            try:
                self._proc.stdin.write(payload)
                self._proc.stdin.flush()
            except OSError as err:
                failure.append(err)

        with self._lock:
            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            answers = self._read_lines(n_answers)
            writer.join()
        if failure or len(answers) != n_answers:
            self._stderr.seek(0)
            raise JavaToolError(f"METEOR process answered {len(answers)} of {n_answers} lines: "
                                f"{self._stderr.read().decode()[-2000:]}")
        return [a.decode().strip() for a in answers]

    def _read_lines(self, n_lines):
        """``n_lines`` lines of stdout, read in large blocks: few GIL acquisitions, so that reading does not
        slow down (nor get slowed down by) Python work running in another thread meanwhile."""
        blocks, count = [], 0
        while count < n_lines:
            block = self._proc.stdout.read1(1 << 16)
            if not block:  # the process ended
                break
            blocks.append(block)
            count += block.count(b'\n')
        return b''.join(blocks).split(b'\n')[:count]

    def stats(self, hyps, refs):
        """METEOR sufficient statistics of each (hypothesis, list of references) pair."""
        if len(hyps) != len(refs):
            raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference lists")
        lines = []
        for hyp, ref_list in zip(hyps, refs):
            if not ref_list:
                raise ValueError("every hypothesis needs at least one reference")
            lines.append(' ||| '.join(('SCORE', ' ||| '.join(one_line(r) for r in ref_list),
                                       _sanitize_hypothesis(hyp))))
        return self._exchange(lines, len(lines))

    def aggregate(self, groups):
        """For each non-empty list of stats lines: (aggregate METEOR, per-segment scores), as pycocoevalcap's
        ``Meteor.compute_score`` returns them for the same items in the same order."""
        requests, n_answers = [], 0
        for group in groups:
            if not group:
                raise ValueError("METEOR cannot evaluate an empty group of segments")
            requests.append('EVAL ||| ' + ' ||| '.join(group))
            n_answers += len(group) + 1
        answers = iter(self._exchange(requests, n_answers))
        results = []
        for group in groups:
            per_segment = [float(next(answers)) for _ in group]
            results.append((float(next(answers)), per_segment))
        return results

    def score_pairs(self, hyps, refs):
        """Sentence-level METEOR of each hypothesis against its list of references (one process, batched)."""
        stats = self.stats(hyps, refs)
        chunks = [stats[i:i + EVAL_CHUNK] for i in range(0, len(stats), EVAL_CHUNK)]
        return [s for _, per_segment in self.aggregate(chunks) for s in per_segment]
