"""CLI of the scorer: ``python PATH/TO/densevid_eval/evaluate.py -s SUBMISSION [-r REF ...] [...]``, or
``python -m densevid_eval -s ...`` with this folder's parent on ``PYTHONPATH`` (``README.md`` in this folder).

Run as a script, it imports this folder as a package from its parent directory, whatever the folder is called
and wherever it was copied: nothing outside the folder is needed.
"""
import importlib
import pathlib
import sys

if __name__ == '__main__':
    if __package__:  # python -m <package>.evaluate
        from .cli import main
    else:
        here = pathlib.Path(__file__).resolve().parent
        sys.path[0] = str(here.parent)  # the folder's parent, not the folder: its modules are a package
        main = importlib.import_module(f'{here.name}.cli').main
    sys.exit(main())
