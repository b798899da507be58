"""The model files a training stage delivers (best by the key metric, final), written atomically."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from monai_coco.checkpoints import save_checkpoint
from monai_coco.handlers.finite import first_non_finite

__all__ = ["AtomicCheckpointSaver"]


class AtomicCheckpointSaver:
    """MONAI's ``CheckpointSaver`` for the key-metric and final files, without its two gaps.

    MONAI's saver (ignite's ``Checkpoint``) deletes the previous best file and then writes the new one, so
    a kill in between leaves no model or a truncated one, and its best value is not part of any training
    state, so a resumed run may replace a better model with a worse one. Here each file is replaced
    atomically (:func:`~monai_coco.checkpoints.save_checkpoint`; one object's ``state_dict`` alone, as
    MONAI's saver writes it), the best value is
    this handler's ``state_dict`` (list the handler in ``ResumableCheckpoint``'s ``save_dict``), a
    non-finite metric never counts as best, and weights that are NaN or infinite are never written.

    Args:
        path: the file, e.g. ``models/teacher.pt``.
        save_dict: ``{name: obj}`` with ``state_dict()``, e.g. ``{"model": network}``.
        save_key_metric: attach to an evaluator: save when its key metric (``engine.state.key_metric_name``,
            or ``key_metric_name``) improves on the best so far, at ``EPOCH_COMPLETED``.
        save_final: attach to a trainer: save at ``COMPLETED``.
        key_metric_name: the metric to follow instead of the engine's key metric.
        key_metric_negative_sign: the smaller the better (e.g. a loss), as in MONAI's ``CheckpointSaver``.
        name: logger name; defaults to the engine's logger.

    Raises:
        ValueError: when neither or both of ``save_key_metric`` and ``save_final`` are set.
        FloatingPointError: when a module to save holds a non-finite value (naming it).
        OSError: naming ``path`` when it cannot be written; the previous file is kept.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        save_dict: Mapping[str, Any],
        save_key_metric: bool = False,
        save_final: bool = False,
        key_metric_name: str | None = None,
        key_metric_negative_sign: bool = False,
        name: str | None = None,
    ) -> None:
        if save_key_metric == save_final:
            raise ValueError("AtomicCheckpointSaver saves either on the key metric or at the end: set one of "
                             "save_key_metric and save_final.")  # fmt: skip
        self.path = Path(path)
        self.save_dict = dict(save_dict)
        self.save_key_metric = save_key_metric
        self.key_metric_name = key_metric_name
        self.sign = -1.0 if key_metric_negative_sign else 1.0
        self.best_metric: float | None = None
        self.best_metric_epoch = -1
        self.logger = logging.getLogger(name)
        self._name = name

    def attach(self, engine: Engine) -> None:
        if self._name is None:
            self.logger = engine.logger
        event = Events.EPOCH_COMPLETED if self.save_key_metric else Events.COMPLETED
        engine.add_event_handler(event, self)

    def __call__(self, engine: Engine) -> None:
        if not self.save_key_metric:
            self._save(f"at the end of epoch {engine.state.epoch}")
            return
        metric_name = self.key_metric_name or engine.state.key_metric_name
        value = float(engine.state.metrics[metric_name])
        if not math.isfinite(value):
            self.logger.warning(f"{metric_name}={value} at epoch {engine.state.epoch}: not a best model")
            return
        if self.best_metric is not None and self.sign * value <= self.sign * self.best_metric:
            return
        self._save(f"{metric_name}={value:.4f} at epoch {engine.state.epoch}")
        self.best_metric, self.best_metric_epoch = value, engine.state.epoch

    def _save(self, why: str) -> None:
        bad = first_non_finite(self.save_dict)
        if bad is not None:
            raise FloatingPointError(f"{bad} holds NaN or infinite values: {self.path} not written ({why}).")
        save_checkpoint(self.path, self.save_dict, bare=len(self.save_dict) == 1)
        self.logger.info(f"saved {self.path} ({why})")

    def state_dict(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_metric_epoch": self.best_metric_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_metric = state["best_metric"]
        self.best_metric_epoch = int(state["best_metric_epoch"])
