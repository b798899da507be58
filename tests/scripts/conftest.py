"""The benchmark scripts import each other by name (``from benchmark_bundle import Recipe``), as Python allows
when it runs ``python scripts/benchmark.py``; for the tests here ``scripts/`` goes on ``sys.path`` for the
session, and comes off again at its end."""

from __future__ import annotations

from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
_syspath = pytest.MonkeyPatch()
_syspath.syspath_prepend(str(SCRIPTS))


def pytest_unconfigure(config: pytest.Config) -> None:
    _syspath.undo()
