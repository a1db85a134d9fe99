"""Build the WSDEC vocabulary from a training annotation file (spec wsdec §2.3) and/or print caption statistics.

    python scripts/build_vocab.py --train data/densecap/train.json --out data/vocab6000.json
    python scripts/build_vocab.py --train data/densecap/train.json --stats
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

from collections import Counter

from utils import cli
from utils.annotations import annotation_statistics, load_annotations
from utils.text import wsdec_tokenize
from utils.vocab import Vocabulary


def format_statistics(annotations, vocab, top=20):
    st = annotation_statistics(annotations)
    counts = Counter(w for a in annotations.values() for s in a['sentences'] for w in wsdec_tokenize(s))
    line = '{:<26}{}'.format
    fmt = lambda d, p='': f"min {d['min']:{p}} / max {d['max']:{p}} / mean {d['mean']:.2f}"  # noqa: E731
    rows = [
        line('videos', st['videos']),
        line('sentences', st['sentences']),
        line('sentences per video', fmt(st['sentences_per_video'])),
        line('videos > 12 sentences', st['videos_over_12_sentences']),
        line('words per sentence', fmt(st['words_per_sentence'])),
        line('tokens per sentence', fmt(st['tokens_per_sentence']) + "  (wsdec_tokenize: '.' and ',' count)"),
        line('duration (s)', fmt(st['duration'], '.2f')),
        line('videos < 32 s', st['videos_under_32s']),
        line('distinct tokens', len(counts)),
        line('vocabulary size', f"{len(vocab)} (<bos>=0, <eos>=1, <oov>={vocab.oov_id})"),
        f"top-{top} tokens: " + ', '.join(f"{w} {counts[w]}" for w in vocab.id_to_word[2:2 + top]),
    ]
    return '\n'.join(rows)


def main(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument('--train', required=True, help='training annotation JSON')
    parser.add_argument('--out', help='vocabulary JSON to write')
    parser.add_argument('--threshold', type=int, default=1, help='keep words with count > threshold')
    parser.add_argument('--vocab-size', type=int, default=6000,
                        help='total size incl. <bos>, <eos>, <oov>; -1: no limit')
    parser.add_argument('--stats', action='store_true', help='print caption statistics and the top-20 words')
    args = parser.parse_args(argv)
    if not (args.out or args.stats):
        parser.error('nothing to do: give --out and/or --stats')

    annotations = load_annotations(args.train)
    vocab = Vocabulary.build(annotations, count_threshold=args.threshold, vocab_size=args.vocab_size)
    if args.stats:
        print(format_statistics(annotations, vocab))
    if args.out:
        vocab.save(args.out)
        print(f"wrote {args.out}: {len(vocab)} entries")


if __name__ == '__main__':
    cli.main(main)
