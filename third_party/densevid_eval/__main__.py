"""``python -m densevid_eval ...`` (or ``python -m third_party.densevid_eval`` in the suite): the scorer's CLI."""
import sys

from .cli import main

sys.exit(main())
