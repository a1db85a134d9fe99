"""Command-line conventions of every entry point (DESIGN.md "Errors"; issue 15).

* `parser(doc)`: an ArgumentParser described by the script's docstring whose `--help` shows every flag's default.
* `add_flag(group, '--kebab-name', 'snake_alias', ...)`: kebab-case is the one documented spelling; the originals'
  snake_case spellings (`--checkpoint_cg`, `--n_rand`, ...) stay accepted as hidden aliases.
* `add_common_args`: the flags every training and evaluation script shares.
* `main(entry)`: runs `entry()`; an expected error (bad data, flags or files: the suite's own `ValueError`
  subclasses, missing or unreadable files, Java absent, a non-finite loss) ends the process with one line
  `error: ...` and exit status 2. A plain `ValueError` raised inside a library is a bug and keeps its traceback.
  `--debug` or `SUITE_DEBUG=1` shows the traceback of every error.
"""
import argparse
import os
import signal
import sys

DEBUG_ENV = 'SUITE_DEBUG'


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keep the docstring's layout and show every flag's default."""

    def _get_help_string(self, action):
        text = action.help or ''
        if action.option_strings and action.default is not argparse.SUPPRESS and '%(default)' not in text:
            shown = '(required)' if action.required or getattr(action, 'required_flag', False) else \
                '(default: %(default)s)'
            text += (' ' if text else '') + shown
        return text


class Parser(argparse.ArgumentParser):
    """argparse prints no line for a flag without a help text: give every flag one, so its default shows."""

    def format_help(self):
        for action in self._actions:
            if action.help is None and action.option_strings:
                action.help = ''
                action.help = HelpFormatter(self.prog)._get_help_string(action)
        return super().format_help()


def parser(doc: str | None, **kwargs) -> argparse.ArgumentParser:
    """The parser of an entry point, described by its module docstring."""
    return Parser(description=doc, formatter_class=HelpFormatter, **kwargs)


def add_flag(group, name: str, *aliases: str, **kwargs):
    """`group.add_argument(name, **kwargs)` plus hidden snake_case `aliases` with the same destination.

    `required=True` is checked by `check_required` after parsing (argparse would refuse an alias alone)."""
    dest = kwargs.setdefault('dest', name.lstrip('-').replace('-', '_'))
    required = kwargs.pop('required', False)
    action = group.add_argument(name, **kwargs)
    action.required_flag = required
    hidden = {k: v for k, v in kwargs.items() if k not in ('help', 'default', 'metavar')}
    for alias in aliases:
        group.add_argument(alias, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **hidden)
    return dest


def check_required(parser_: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Refuse a run without the flags that `add_flag(..., required=True)` declared."""
    for action in parser_._actions:
        if getattr(action, 'required_flag', False) and getattr(args, action.dest, None) is None:
            parser_.error(f"the following argument is required: {action.option_strings[0]}")
    return args


def parse(parser_: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    return check_required(parser_, parser_.parse_args(argv))


def add_common_args(parser_, *, epochs: int, batch_size: int, seed: int, run_name: str | None):
    """The flags every training (and evaluation) script shares; the keyword values are the experiment's defaults."""
    g = parser_.add_argument_group('run (every script)')
    g.add_argument('--data-root', default=None,
                   help='data root with captions/ and features/ (default: the ActivityNet files in data/)')
    g.add_argument('--run-name', default=run_name, help='run folder name under --runs-dir')
    g.add_argument('--runs-dir', default='runs', help='folder holding the run folders')
    g.add_argument('--epochs', type=int, default=epochs)
    g.add_argument('--batch-size', type=int, default=batch_size,
                   help='global batch size (split between torchrun processes)')
    g.add_argument('--seed', type=int, default=seed)
    g.add_argument('--device', default='auto', help="auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    g.add_argument('--resume', action='store_true', help='continue the run in runs/<run-name>/ from its newest '
                   'intact checkpoint (checkpoints/last.pt)')
    g.add_argument('--resume-from', default=None, metavar='CKPT',
                   help="with --resume: continue from this checkpoint of the run (e.g. checkpoints/epoch_004.pt) "
                        "instead of last.pt")
    g.add_argument('--clear-stale-lock', action='store_true',
                   help='remove the run folder\'s lock left by a process that no longer exists')
    g.add_argument('--quiet', action='store_true', help='no progress bars')
    g.add_argument('--num-workers', type=int, default=0, help='DataLoader worker processes')
    g.add_argument('--missing-features', choices=('error', 'skip'), default='error',
                   help='videos with annotations but no features: stop with an error, or skip them (listed in '
                        'the run folder\'s skipped_videos.json)')
    g.add_argument('--keep-checkpoints', type=int, default=0, metavar='K',
                   help='keep only the K newest checkpoints/epoch_NNN.pt (last.pt is always kept); '
                        '0 keeps every epoch, as the originals did')
    add_debug_flag(g)
    return parser_


def add_debug_flag(group):
    group.add_argument('--debug', action='store_true', help=f'show the traceback of an expected error (or set '
                       f'{DEBUG_ENV}=1)')


SUITE_PACKAGES = ('utils', 'models', 'third_party', 'train_script', 'eval_script', 'scripts', '__main__')


def is_expected(error: BaseException) -> bool:
    """Bad input rather than a bug: the suite's own ValueError subclasses, file-system errors, Java absent or
    failing, a non-finite loss."""
    from third_party.densevid_eval.meteor import JavaNotFoundError, JavaToolError
    from utils.checkpoint import NonFiniteLossError
    if isinstance(error, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError,
                          JavaNotFoundError, JavaToolError, NonFiniteLossError)):
        return True
    cls = type(error)
    return isinstance(error, ValueError) and cls is not ValueError and cls.__module__.split('.')[0] in SUITE_PACKAGES


def _debugging(argv) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return '--debug' in argv or os.environ.get(DEBUG_ENV, '') not in ('', '0')


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(entry, argv=None) -> None:
    """Run `entry(argv)`; an expected error ends the process with one line and exit status 2. An int returned by
    `entry` is the exit status. SIGTERM (`kill`) ends it like an exception, so run folders release their lock."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        status = entry(argv)
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 (re-raised unless expected)
        if _debugging(argv) or not is_expected(error):
            raise
        message = ' '.join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    if isinstance(status, int) and not isinstance(status, bool):
        sys.exit(status)
