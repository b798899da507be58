"""Paired comparisons over seeds: the mean difference with a Student t interval, and the verdict it gives.

For one seed every arm of the accuracy protocol starts from the same student weights and sees the same
batches, so the arms are compared seed by seed: ``d_s = x_s − y_s``, mean ``d̄``, sample standard deviation
``s_d``, and the two-sided interval ``d̄ ± t_{(1+c)/2, n−1} · s_d / √n`` (the paired t interval; e.g.
Montgomery & Runger, *Applied Statistics and Probability for Engineers*, §10-4). ``t`` is SciPy's quantile.

What the seeds can see: the minimum detectable difference of a paired comparison, the true mean difference
that a two-sided test at level ``α`` finds with probability ``power``, from the measured spread ``s_d``:
``MDD = (t_{1−α/2, n−1} + t_{power, n−1}) · s_d / √n`` (the usual approximation that ignores the far tail;
e.g. Montgomery & Runger §9-3.3 for the one-sample case, which a paired comparison is).
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


def minimum_detectable_difference(sd: float, n: int, confidence: float = 0.95, power: float = 0.8) -> float:
    """``(t_{(1+c)/2, n−1} + t_{power, n−1}) · sd / √n``: the smallest true paired mean difference that the
    two-sided test at level ``1 − confidence`` detects with probability ``power`` (module docstring), for
    ``n`` seeds whose differences spread by ``sd``. NaN with fewer than 2 seeds or a NaN ``sd``.

    Raises:
        ValueError: ``confidence`` or ``power`` outside ``(0, 1)``, or ``sd`` negative.
    """
    if not 0.0 < confidence < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"confidence and power must be in (0, 1), got {confidence} and {power}.")
    if n < 2 or math.isnan(sd):
        return math.nan
    if sd < 0:
        raise ValueError(f"sd must be >= 0, got {sd}.")
    quantiles = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) + float(stats.t.ppf(power, n - 1))
    return quantiles * sd / math.sqrt(n)


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
