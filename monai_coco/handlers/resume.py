"""Resumable training: the training state saved atomically every N epochs and reloaded on the next run."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
from ignite.engine import Engine, Events

from monai_coco.checkpoints import load_checkpoint, save_checkpoint

__all__ = ["ResumableCheckpoint"]


class ResumableCheckpoint:
    """Save the whole training state to one file every ``save_interval`` epochs; resume from it on start.

    Unlike MONAI's ``CheckpointSaver`` (which writes in place and deletes the previous file first), the
    file is replaced atomically (:func:`~monai_coco.checkpoints.save_checkpoint`), so a run killed
    at any moment, even with ``SIGKILL``, leaves the last complete checkpoint and loses at most the epochs
    since. Rerunning the same command finds the file on ``STARTED``, loads it and logs
    ``"resuming from <file> at epoch N"``; the engine then continues with epoch N + 1 up to its own
    ``max_epochs`` (which may be larger than the first run's).

    The engine the handler is attached to is saved too, under ``engine_key``: a bundle config need not
    (and cannot, without a cycle) list the trainer in ``save_dict``.

    Args:
        path: the training-state file, e.g. ``models/train_state.pt``.
        save_dict: ``{name: obj}`` for everything else to keep: student, optimiser, LR scheduler, the
            ``AdversarialDistillationHandler`` (critic, its optimiser and scaler), ...
        save_interval: save every this many epochs.
        engine_key: the entry that holds the engine's state (epoch, iteration).
        name: logger name; defaults to the engine's logger.
        map_location: passed to ``torch.load``.

    Example (bundle config)::

        {"_target_": "ResumableCheckpoint", "path": "$@bundle_root + '/models/train_state.pt'",
         "save_dict": {"model": "@network", "optimizer": "@optimizer", "lr": "@lr_scheduler",
                       "adversarial": "@adversarial"}}
    """

    def __init__(
        self,
        path: str | os.PathLike,
        save_dict: Mapping[str, Any],
        save_interval: int = 1,
        engine_key: str = "trainer",
        name: str | None = None,
        map_location: Any = "cpu",
    ) -> None:
        if save_interval < 1:
            raise ValueError(f"save_interval must be a positive number of epochs, got {save_interval!r}.")
        if engine_key in save_dict:
            raise ValueError(
                f"save_dict must not use the key '{engine_key}': it holds the engine's own state."
            )
        self.path = Path(path)
        self.save_dict = dict(save_dict)
        self.save_interval = save_interval
        self.engine_key = engine_key
        self.map_location = map_location
        self.logger = logging.getLogger(name)
        self._name = name

    def attach(self, engine: Engine) -> None:
        """Resume on ``STARTED``; save on every ``save_interval``-th ``EPOCH_COMPLETED``."""
        if self._name is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.STARTED, self.resume)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save)

    def _objects(self, engine: Engine) -> dict[str, Any]:
        return {**self.save_dict, self.engine_key: engine}

    def resume(self, engine: Engine) -> None:
        """Load the training state if the file exists; keep the engine's own ``max_epochs``."""
        if not self.path.is_file():
            self.logger.info(f"no training state at {self.path}: starting from epoch 0")
            return
        max_epochs = engine.state.max_epochs
        load_checkpoint(self.path, self._objects(engine), map_location=self.map_location)
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(
                f"{self.path} was saved at epoch {engine.state.epoch}, beyond max_epochs={max_epochs}: "
                "raise max_epochs to train on, or remove the file to start again."
            )
        engine.state.max_epochs = max_epochs
        self.logger.info(f"resuming from {self.path} at epoch {engine.state.epoch}")

    def save(self, engine: Engine) -> None:
        """Write the training state atomically (on the first process only, in distributed training)."""
        if idist.get_rank() != 0:
            return
        save_checkpoint(self.path, self._objects(engine))
        self.logger.info(f"saved training state at epoch {engine.state.epoch} to {self.path}")
