"""Errors inside a MONAI engine's run that name their file or setting end it with one line."""

from __future__ import annotations

import errno

from ignite.engine import Engine, Events

from monai_coco.fail import fail

__all__ = ["ExitOnError"]

# errors that name the offending file or setting themselves: raised at the edge by the package (ValueError,
# FileNotFoundError), by a write that failed (OSError naming the file), by a non-finite stop
_ONE_LINE_ERRORS = (ValueError, OSError, FloatingPointError)


class ExitOnError:
    """Stop a MONAI engine's run with the one-line message of an error that names its file or setting.

    An error raised inside ``engine.run()`` (a training state that does not fit, a full disk, a loss that
    became NaN) reaches the user as the message under several screens of Ignite's and MONAI's traceback,
    and ``StatsHandler`` logs that traceback once more. Attached first (before any ``StatsHandler``) to
    the trainer and to the evaluator, this handler turns ``ValueError``, ``OSError`` and
    ``FloatingPointError`` into :func:`fail` on ``EXCEPTION_RAISED`` before the other handlers see it;
    other exceptions (a bug) are re-raised unchanged, with their traceback.
    """

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EXCEPTION_RAISED, self)

    def __call__(self, engine: Engine, error: BaseException) -> None:
        if isinstance(error, _ONE_LINE_ERRORS) and not _is_a_bug(error):
            fail(str(error))
        raise error


def _is_a_bug(error: BaseException) -> bool:
    """An ``OSError`` that is no file problem (e.g. a broken pipe between processes) keeps its traceback."""
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
        return error.errno not in (errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EDQUOT,
                                   errno.EISDIR, errno.ENOTDIR, errno.EEXIST)  # fmt: skip
    return False
