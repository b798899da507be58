"""A ``(H, W)`` ``uint8`` map kept in a raw file, written and read by row bands, never memory-mapped.

Whole-slide inference builds its class mask and probability map at the scale the network runs, which can
be tens of thousands of pixels a side; holding them in memory, or in a ``numpy.memmap`` (whose touched pages
count as the process's resident memory until it is unmapped), would make memory grow with the slide. A
:class:`RawMap` reads and writes with plain file I/O at row offsets instead, so memory is one band.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["RawMap"]


class RawMap:
    """A ``(H, W)`` ``uint8`` map in the raw file ``path`` (created zero-filled, replaced if it exists).

    Rows are read with slicing, ``map[top:bottom]`` -> ``(bottom - top, W)`` array (steps other than 1
    are not supported); :meth:`write_rows` writes a band. :meth:`remove` deletes the file.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int]) -> None:
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(np.uint8)
        self.ndim = 2
        with open(self.path, "wb") as f:
            f.truncate(self.shape[0] * self.shape[1])

    def write_rows(self, top: int, band: np.ndarray) -> None:
        """Write ``band`` ``(h, W)`` as rows ``[top, top + h)``."""
        with open(self.path, "r+b") as f:
            f.seek(top * self.shape[1])
            f.write(np.ascontiguousarray(band, dtype=np.uint8).tobytes())

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("RawMap reads row ranges only: map[top:bottom].")
        top, bottom, _ = rows.indices(self.shape[0])
        count = max(0, bottom - top) * self.shape[1]
        data = np.fromfile(self.path, dtype=np.uint8, count=count, offset=top * self.shape[1])
        return data.reshape(-1, self.shape[1])

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
