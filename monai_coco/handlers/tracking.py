"""What the training stages report to logs and TensorBoard (MONAI's handlers do the writing).

MLflow needs nothing here: ``python -m monai.bundle run ... --tracking mlflow`` adds MONAI's
``MLFlowHandler`` to ``train#trainer``, ``validate#evaluator`` or ``evaluator`` of any stage config, with the
store ``<output_dir>/mlruns.db`` (SQLite) and each stage's own ``experiment_name``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from monai.utils import is_scalar
from torch.optim import Optimizer

__all__ = ["training_scalars"]


def training_scalars(optimizer: Optional[Optimizer] = None) -> Callable[[Any], dict[str, float]]:
    """An ``output_transform`` for ``StatsHandler`` / ``TensorBoardStatsHandler`` / ``ProgressBar``: every
    scalar of a trainer's ``engine.state.output`` by its own name (``loss`` and each term: ``ce``, ``coco``,
    ``adv``, ``critic``, ``mse[<layer>]``, ...) and, with ``optimizer``, ``lr``, the learning rate of its
    first parameter group at that iteration.

    The output is one mapping (``decollate=False``) or, decollated, a list of mappings each holding the
    same scalars (MONAI replicates them), of which the first is read.
    """

    def transform(output: Any) -> dict[str, float]:
        first = output[0] if isinstance(output, list) else output
        scalars = {k: float(v) for k, v in first.items() if is_scalar(v)}
        if optimizer is not None:
            scalars["lr"] = float(optimizer.param_groups[0]["lr"])
        return scalars

    return transform
