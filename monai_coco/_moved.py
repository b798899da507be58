"""Names that moved to another module keep working from the old one (lazily, without an upward import).

A module whose public name moved up the floors (see ``DESIGN.md``) sets
``__getattr__ = moved_names(__name__, {"Name": "new.module"})``: ``old.Name`` then imports ``new.module``
on first use, so old imports keep working while the old module's own imports stay on its floor.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_names"]


def moved_names(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that finds each name of ``moved`` in its new module.

    Args:
        module: the old module's ``__name__``, named in the ``AttributeError`` for an unknown name.
        moved: ``{name: new module}``.
    """

    def __getattr__(name: str) -> Any:
        if name in moved:
            return getattr(importlib.import_module(moved[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
