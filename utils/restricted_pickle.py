"""Unpickling that runs no code from the file: only an allow-list of globals is ever resolved.

A pickle can name any importable callable and have it called (``__reduce__``), so reading a pickle from
elsewhere with ``pickle.load`` runs whatever it names. ``RestrictedUnpickler`` resolves only the
``(module, name)`` pairs in its ``ALLOWED`` set and refuses every other global with
``ForbiddenGlobalError``, which names it. Plain containers and scalars (dict, list, tuple, str, bytes,
numbers, bools, None) need no global and are always read. Used for the original WSDEC vocabulary pickle
(``utils/vocab.py``: no global at all) and the authors' PyTorch 0.3.1 checkpoints
(``scripts/convert_wsdec_checkpoint.py``: tensor rebuilds and ``OrderedDict``).
"""
import pickle
import types


class ForbiddenGlobalError(pickle.UnpicklingError):
    """The pickle refers to a global outside the allow-list; ``qualname`` is ``module.name``."""

    def __init__(self, module, name):
        self.qualname = f'{module}.{name}'
        super().__init__(f"refers to {self.qualname}, which is not allowed")


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals of ``ALLOWED`` (none here; subclasses add some)."""
    ALLOWED: frozenset = frozenset()

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise ForbiddenGlobalError(module, name)
        return super().find_class(module, name)


def as_pickle_module(unpickler_class):
    """A module object with ``Unpickler`` and ``load`` built on ``unpickler_class``, for APIs that take a
    ``pickle_module`` (``torch.load``)."""
    module = types.ModuleType(f'restricted_pickle.{unpickler_class.__name__}')
    module.Unpickler = unpickler_class
    module.load = lambda file, **kwargs: unpickler_class(file, **kwargs).load()
    return module
