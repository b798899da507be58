"""Counter-based noise for procedural tissue: hashed random numbers and smooth random fields that are
pure functions of world coordinates, so any window of a world renders the same values."""

from __future__ import annotations

import math

import numpy as np

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)
_BSPLINE_STD = 151.0 / 315.0  # std of 2-D cubic B-spline interpolated unit-variance lattice noise


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _K2
        z = (z ^ (z >> np.uint64(27))) * _K3
    return z ^ (z >> np.uint64(31))


def _as_u64(a: np.ndarray | int) -> np.ndarray:
    return np.asarray(a, dtype=np.int64).astype(np.uint64)


class Hash:
    """Counter-based random numbers: a pure function of (seed, stream, coordinates)."""

    def __init__(self, seed: int) -> None:
        with np.errstate(over="ignore"):
            self.seed = _mix(_as_u64(seed & 0x7FFFFFFFFFFFFFFF) * _K1 + _K3)

    def bits(self, stream: int, *coords: np.ndarray | int) -> np.ndarray:
        with np.errstate(over="ignore"):
            h = _mix(self.seed ^ (_as_u64(stream) * _K1))
            for c in coords:
                h = _mix(h ^ (_as_u64(c) * _K2 + _K1))
        return h

    def uniform(self, stream: int, *coords: np.ndarray | int) -> np.ndarray:
        """Uniform in [0, 1), float64, broadcast over ``coords``."""
        return (self.bits(stream, *coords) >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)

    def centred(self, stream: int, *coords: np.ndarray | int) -> np.ndarray:
        """Uniform with mean 0 and variance 1, float64."""
        return (self.uniform(stream, *coords) - 0.5) * math.sqrt(12.0)

    def value(self, stream: int, *index: int) -> float:
        return float(self.uniform(stream, *index))

    def pixel_uniform(self, stream: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """(h, w) float32 uniform noise in [-0.5, 0.5) at world pixels [y0, y0+h) x [x0, x0+w)."""
        hy = _mix(self.bits(stream, 0) ^ (_as_u64(np.arange(y0, y0 + h)) * _K2))
        hx = _as_u64(np.arange(x0, x0 + w)) * _K3
        b = _mix(hy[:, None] ^ hx[None, :])
        return ((b >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 2**24)) - np.float32(0.5)


def _bspline(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cubic B-spline weights of the lattice points floor(u)-1 .. floor(u)+2 for fractions ``t``."""
    t2 = t * t
    t3 = t2 * t
    return (1 - t) ** 3 / 6, (3 * t3 - 6 * t2 + 4) / 6, (-3 * t3 + 3 * t2 + 3 * t + 1) / 6, t3 / 6


class Field:
    """Smooth Gaussian random field: B-spline interpolated lattice noise, unit variance on average."""

    def __init__(self, rng: Hash, stream: int, spacing: float) -> None:
        self.rng, self.stream, self.spacing = rng, stream, float(spacing)

    def grid(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """(h, w) float32 values at world pixels [y0, y0+h) x [x0, x0+w)."""
        uy = np.arange(y0, y0 + h, dtype=np.float64) / self.spacing
        ux = np.arange(x0, x0 + w, dtype=np.float64) / self.spacing
        iy, ix = np.floor(uy).astype(np.int64), np.floor(ux).astype(np.int64)
        wy, wx = _bspline(uy - iy), _bspline(ux - ix)
        gy = iy[0] - 1 + np.arange(iy[-1] - iy[0] + 4)
        gx = ix[0] - 1 + np.arange(ix[-1] - ix[0] + 4)
        lattice = self.rng.centred(self.stream, gy[:, None], gx[None, :]) / _BSPLINE_STD
        cx, cy = ix - ix[0], iy - iy[0]
        rows = sum(wx[k][None, :] * lattice[:, cx + k] for k in range(4))
        return sum(wy[k][:, None] * rows[cy + k, :] for k in range(4)).astype(np.float32)

    def points(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Values at arbitrary world points (float arrays of one shape)."""
        uy, ux = np.asarray(y, np.float64) / self.spacing, np.asarray(x, np.float64) / self.spacing
        iy, ix = np.floor(uy).astype(np.int64), np.floor(ux).astype(np.int64)
        wy, wx = _bspline(uy - iy), _bspline(ux - ix)
        if uy.size == 0:
            return np.zeros(uy.shape, np.float32)
        # the lattice over the points' bounding box, then 16 gathers per point
        y0, x0 = iy.min() - 1, ix.min() - 1
        gy, gx = np.arange(y0, iy.max() + 3), np.arange(x0, ix.max() + 3)
        lattice = self.rng.centred(self.stream, gy[:, None], gx[None, :]).ravel()
        base = (iy - 1 - y0) * gx.size + (ix - 1 - x0)  # lattice point floor(u) - 1
        out = np.zeros(uy.shape)
        for a in range(4):
            row = sum(wx[b] * lattice.take(base + (a * gx.size + b)) for b in range(4))
            out += wy[a] * row
        return (out / _BSPLINE_STD).astype(np.float32)


class Coords:
    """World positions to evaluate at: a pixel window (fields by separable lattice sums) or points."""

    def __init__(self, y: np.ndarray, x: np.ndarray, window: tuple[int, int, int, int] | None = None):
        self.y, self.x, self.window = y, x, window

    @classmethod
    def pixels(cls, y0: int, x0: int, h: int, w: int) -> Coords:
        y, x = np.meshgrid(
            np.arange(y0, y0 + h, dtype=np.float32), np.arange(x0, x0 + w, dtype=np.float32), indexing="ij"
        )
        return cls(y, x, (y0, x0, h, w))

    def field(self, f: Field) -> np.ndarray:
        return f.grid(*self.window) if self.window is not None else f.points(self.y, self.x)
