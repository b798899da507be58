"""Paired comparisons over seeds: the mean difference with a Student t interval, and the verdict it gives.

For one seed every arm of the accuracy protocol starts from the same student weights and sees the same
batches, so the arms are compared seed by seed: ``d_s = x_s − y_s``, mean ``d̄``, sample standard deviation
``s_d``, and the two-sided interval ``d̄ ± t_{(1+c)/2, n−1} · s_d / √n`` (the paired t interval; e.g.
Montgomery & Runger, *Applied Statistics and Probability for Engineers*, §10-4). ``t`` is SciPy's quantile.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from scipy import stats


def paired_interval(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """The paired difference ``x − y`` (same seeds, same order).

    Returns:
        ``{"n", "mean", "sd", "half_width", "low", "high"}``; with one pair ``sd``, ``half_width``, ``low``
        and ``high`` are NaN (no spread to judge by).

    Raises:
        ValueError: ``x`` and ``y`` of different lengths, empty, or ``confidence`` outside ``(0, 1)``.
    """
    if len(x) != len(y) or not x:
        raise ValueError(f"paired samples need equal, non-zero lengths; got {len(x)} and {len(y)}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    d = [a - b for a, b in zip(x, y)]
    n, mean = len(d), statistics.fmean(d)
    if n < 2:
        return {
            "n": n,
            "mean": mean,
            "sd": math.nan,
            "half_width": math.nan,
            "low": math.nan,
            "high": math.nan,
        }
    sd = statistics.stdev(d)
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "half_width": half, "low": mean - half, "high": mean + half}


def verdict(vs_student: Mapping[str, float], vs_noop: Mapping[str, float] | None = None) -> str:
    """What the paired intervals say of an arm: ``"gain"`` (its interval against the student alone lies above
    0 and, given ``vs_noop``, so does its interval against the no-op arm), ``"above 0, not above the no-op"``,
    ``"loss"`` (the interval against the student lies below 0), ``"no resolved difference"`` (it holds 0),
    ``"1 seed: not judged"``."""
    if math.isnan(vs_student["low"]):
        return "1 seed: not judged"
    if vs_student["high"] < 0:
        return "loss"
    if vs_student["low"] <= 0:
        return "no resolved difference"
    if vs_noop is not None and not vs_noop["low"] > 0:
        return "above 0, not above the no-op"
    return "gain"
