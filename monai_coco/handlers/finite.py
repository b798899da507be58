"""Stop a training run whose loss or weights stop being finite, naming the stage and the iteration."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.utils import CommonKeys

__all__ = ["NonFiniteStop", "first_non_finite"]


def first_non_finite(objects: Mapping[str, Any]) -> str | None:
    """The first floating-point parameter or buffer (``"name.key"``) of a module in ``objects`` that is
    NaN or infinite, else ``None``. ``DataParallel`` wrappers are looked through."""
    for name, obj in objects.items():
        module = getattr(obj, "module", obj)
        if isinstance(module, torch.nn.Module):
            for key, value in module.state_dict().items():
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    return f"{name}.{key}"
    return None


def _first(output: Any) -> Any:
    return output[0] if isinstance(output, (list, tuple)) else output


class NonFiniteStop:
    """Raise ``FloatingPointError`` as soon as the loss is NaN or infinite (checked every iteration) or the
    networks' weights are (checked every epoch, before validation and checkpoints when attached first).

    Unlike ignite's ``TerminateOnNan``, which ends the run quietly as if it had finished, the run stops
    with an error naming the stage, epoch and iteration, so that no later handler saves the weights.

    Args:
        stage: the stage named in the message, e.g. ``"teacher"``.
        networks: ``{name: module}`` whose weights are checked at every ``EPOCH_COMPLETED``.
        output_transform: the loss from ``engine.state.output`` (a dict, or a decollated list of dicts);
            defaults to the ``CommonKeys.LOSS`` entry (of the first item of a list: MONAI repeats the
            batch's loss in each decollated item).

    Raises:
        FloatingPointError: ``"<stage>: the training loss is nan at epoch E, iteration I ..."``.
    """

    def __init__(
        self,
        stage: str,
        networks: Mapping[str, torch.nn.Module] | None = None,
        output_transform: Callable[[Any], Any] = lambda output: _first(output)[CommonKeys.LOSS],
    ) -> None:
        self.stage = stage
        self.networks = dict(networks or {})
        self.output_transform = output_transform

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.check_loss)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.check_weights)

    def _where(self, engine: Engine) -> str:
        return f"{self.stage}: at epoch {engine.state.epoch}, iteration {engine.state.iteration}"

    def check_loss(self, engine: Engine) -> None:
        loss = float(self.output_transform(engine.state.output))
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"{self._where(engine)} the training loss is {loss}; the run stops and keeps its last good "
                "checkpoints (try a lower learning_rate, or amp false)."
            )

    def check_weights(self, engine: Engine) -> None:
        bad = first_non_finite(self.networks)
        if bad is not None:
            raise FloatingPointError(
                f"{self._where(engine)} {bad} holds NaN or infinite values; the run stops and keeps its last "
                "good checkpoints (try a lower learning_rate, or amp false)."
            )
