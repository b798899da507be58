"""The one-line stop: a bad setting or unusable input ends the run with ``monai_coco: <message>``.

MONAI's bundle runner and Ignite wrap every exception raised while a config resolves or an engine runs in
several screens of traceback. :func:`fail` raises ``SystemExit`` instead: it is no ``Exception``, so it
passes those wrappers, and Python prints only its message on stderr and exits with status 1
(``bundle/docs/design.md``, "Conventions": one line naming the file or setting and what was expected).
"""

from __future__ import annotations

from typing import NoReturn

__all__ = ["fail"]


def fail(message: str) -> NoReturn:
    """Stop the run with the one-line message ``monai_coco: <message>`` on stderr (exit status 1)."""
    raise SystemExit(f"monai_coco: {' '.join(str(message).split())}")
