"""A SupervisedTrainer whose loss is the sum of named terms, to which handlers may add."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.inferers import SimpleInferer
from monai.utils.enums import CommonKeys as Keys
from torch.optim import Optimizer

__all__ = ["MultiTermTrainer", "TERMS"]

TERMS = "terms"
"""Key of the mutable ``{name: weighted scalar tensor}`` mapping in ``engine.state.output`` while a
step runs (from ``FORWARD_COMPLETED`` to ``BACKWARD_COMPLETED``)."""


class MultiTermTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` whose loss is a sum of named, weighted terms.

    One iteration, in the order (and with the events) of MONAI's ``SupervisedTrainer._iteration``:

    1. :meth:`forward` (under ``torch.autocast`` when ``amp`` is on and the device is CUDA) puts what
       handlers need (``PRED``, ...) into ``engine.state.output`` and returns what :meth:`loss_terms` needs;
       ``output[TERMS]`` is an empty mapping; ``FORWARD_COMPLETED`` fires: handlers may put their
       weighted terms into ``output[TERMS]``.
    2. :meth:`loss_terms` adds the trainer's own terms, computed outside autocast (cast them to float32);
       ``LOSS = Σ terms``; ``LOSS_COMPLETED`` fires.
    3. backward (through ``engine.scaler`` under AMP, divided by ``accumulation_steps``);
       ``BACKWARD_COMPLETED``; the optimiser steps every ``accumulation_steps`` iterations (and at the end
       of an epoch whose length is not a multiple).
    4. ``output[TERMS]`` is replaced by one float per term, ``output[name]``; ``MODEL_COMPLETED`` fires.

    Subclasses implement :meth:`forward` and :meth:`loss_terms`. Arguments are those of
    ``SupervisedTrainer``; its ``inferer`` must be ``SimpleInferer`` (the default: a plain network call, as
    the forward pass reads intermediate features through hooks) and ``compile`` is not supported.
    """

    reserved_keys = frozenset({Keys.IMAGE, Keys.LABEL, Keys.PRED, Keys.LOSS, TERMS})

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        **kwargs: Any,
    ) -> None:
        inferer = kwargs.get("inferer")
        if inferer is not None and type(inferer) is not SimpleInferer:
            raise ValueError(
                f"{type(self).__name__} runs the network as SimpleInferer does (the forward pass reads "
                f"intermediate features through hooks); inferer {type(inferer).__name__} is not supported."
            )
        if kwargs.get("compile"):
            raise ValueError(
                f"{type(self).__name__} does not support the SupervisedTrainer argument 'compile'."
            )
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            **kwargs,
        )

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor | None) -> Any:
        """Run the networks on ``inputs`` ``(B, C, H, W)``; put what handlers need into
        ``self.state.output``; return the context (e.g. intermediate features) for :meth:`loss_terms`."""
        raise NotImplementedError

    def loss_terms(self, context: Any, targets: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The trainer's own weighted terms ``{name: scalar tensor}``."""
        raise NotImplementedError

    def _accumulation(self) -> tuple[bool, bool]:
        """``(zero the gradients, step the optimiser)`` for this iteration, as ``SupervisedTrainer`` does."""
        acc = self.accumulation_steps
        if acc == 1:
            return True, True
        epoch_length = self.state.epoch_length
        local_iter = self.state.iteration - 1
        if epoch_length is not None:
            local_iter %= epoch_length
            return local_iter % acc == 0, (local_iter + 1) % acc == 0 or (local_iter + 1) == epoch_length
        return local_iter % acc == 0, (local_iter + 1) % acc == 0

    def _iteration(self, engine: MultiTermTrainer, batchdata: dict[str, torch.Tensor]) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        inputs, targets = engine.prepare_batch(
            batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs
        )[:2]
        zero_grad, step = engine._accumulation()
        use_amp = engine.amp and engine.scaler is not None and engine.scaler.is_enabled() and inputs.is_cuda

        engine.network.train()
        if zero_grad:
            engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        output = engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets, TERMS: {}}
        with torch.autocast("cuda", enabled=use_amp, **engine.amp_kwargs):
            context = engine.forward(inputs, targets)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)

        terms = output[TERMS]
        for name, value in engine.loss_terms(context, targets).items():
            if name in terms:
                raise ValueError(f"the loss term '{name}' was added twice (by the trainer and a handler).")
            terms[name] = value
        clashes = engine.reserved_keys.intersection(terms)
        if clashes:
            raise ValueError(f"loss term names {sorted(clashes)} clash with engine output keys.")
        loss = output[Keys.LOSS] = torch.stack([t.float() for t in terms.values()]).sum()
        engine.fire_event(IterationEvents.LOSS_COMPLETED)

        scaled = loss / engine.accumulation_steps
        (engine.scaler.scale(scaled) if use_amp else scaled).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if step:
            if use_amp:
                engine.scaler.step(engine.optimizer)
                engine.scaler.update()
            else:
                engine.optimizer.step()

        for name, value in output.pop(TERMS).items():
            output[name] = value.detach().float().item()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output  # decollated on MODEL_COMPLETED when `decollate` is on
