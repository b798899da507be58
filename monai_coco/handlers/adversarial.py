"""Adversarial distillation (method.md §5): a WGAN-GP critic on teacher vs student logits, as a handler."""

from __future__ import annotations

from typing import Any

import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from monai_coco.checkpoints import load_module_state
from monai_coco.engines.distillation import TEACHER_PRED, DistillationTrainer
from monai_coco.engines.multi_term import TERMS
from monai_coco.losses.adversarial import GP_SCORES, critic_loss, generator_loss

__all__ = ["AdversarialDistillationHandler"]


class AdversarialDistillationHandler:
    """Adds ``weight · generator_loss`` to the student's loss and trains the critic, for a
    :class:`~monai_coco.engines.DistillationTrainer`.

    - ``FORWARD_COMPLETED``: ``output["terms"][name] = weight · (−mean D(student logits))``; the gradient
      reaches the student through the critic and never the critic's own ``.grad``.
    - ``MODEL_COMPLETED`` (after the student's step): ``critic_steps`` steps of the critic's own
      ``optimizer`` on ``critic_loss(critic, teacher logits, student logits, gp_weight)`` with both logits
      detached; under ``amp`` (CUDA only) with autocast and the handler's own ``GradScaler``.
      The last critic loss is put into the output as the float ``"critic"``. The critic steps every
      iteration, also when the trainer accumulates the student's gradients over several; then its
      ``lr_scheduler`` (if any) steps once.

    ``state_dict`` / ``load_state_dict`` hold the critic, its optimiser, its scaler and its LR scheduler, so
    the handler can be listed in a ``save_dict`` (``ResumableCheckpoint``, MONAI's
    ``CheckpointSaver``/``CheckpointLoader``) and a resumed run continues the critic's schedule.

    Args:
        critic: the critic ``D``, e.g. ``LogitCritic(in_channels=K)``: logits ``(B, K, H, W)`` -> scores.
        optimizer: the critic's optimiser (method.md §5: Adam, lr 2e-5, betas (0.9, 0.99)).
        weight: λ_adv, the weight of the generator term in the student's loss.
        gp_weight: λ_gp of the gradient penalty.
        gp_score: the penalty's convention: ``"sum"`` (SKD, default) or ``"mean"``, see
            :mod:`monai_coco.losses.adversarial`.
        lr_scheduler: a per-iteration LR scheduler of ``optimizer``, stepped after each iteration's critic
            steps; the CoCo authors' loop decays the critic's LR by poly(0.9) over the run
            (``torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=iterations, power=0.9)``).
            None keeps the LR constant.
        critic_steps: critic steps per student iteration.
        amp: autocast and gradient scaling for the critic (effective on CUDA tensors only).
        name: the term's name in the output.
    """

    def __init__(
        self,
        critic: torch.nn.Module,
        optimizer: Optimizer,
        weight: float = 0.1,
        gp_weight: float = 10.0,
        gp_score: str = "sum",
        lr_scheduler: LRScheduler | None = None,
        critic_steps: int = 1,
        amp: bool = False,
        name: str = "adv",
    ) -> None:
        if not weight >= 0.0 or not gp_weight >= 0.0:
            raise ValueError(f"weight and gp_weight must be >= 0, got {weight!r} and {gp_weight!r}.")
        if critic_steps < 1:
            raise ValueError(f"critic_steps must be a positive integer, got {critic_steps!r}.")
        if gp_score not in GP_SCORES:
            raise ValueError(f"gp_score must be one of {GP_SCORES}, got {gp_score!r}.")
        if lr_scheduler is not None and lr_scheduler.optimizer is not optimizer:
            raise ValueError("lr_scheduler must schedule the critic's optimizer.")
        if name == "critic":
            raise ValueError("name 'critic' is taken by the critic loss in the output.")
        self.critic = critic
        self.optimizer = optimizer
        self.weight = float(weight)
        self.gp_weight = float(gp_weight)
        self.gp_score = gp_score
        self.lr_scheduler = lr_scheduler
        self.critic_steps = critic_steps
        self.amp = amp
        self.name = name
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and torch.cuda.is_available())
        self._logits: tuple[torch.Tensor, torch.Tensor] | None = None

    def attach(self, engine: Engine) -> None:
        """Register the generator term on ``FORWARD_COMPLETED`` and the critic step on ``MODEL_COMPLETED``."""
        if not isinstance(engine, DistillationTrainer):
            raise ValueError(
                f"AdversarialDistillationHandler needs a DistillationTrainer, got {type(engine).__name__}."
            )
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self.add_generator_term)
        engine.add_event_handler(IterationEvents.MODEL_COMPLETED, self.critic_step)

    def _autocast(self, tensor: torch.Tensor) -> torch.autocast:
        return torch.autocast("cuda", enabled=self.amp and tensor.is_cuda)

    def add_generator_term(self, engine: Engine) -> None:
        """Put ``weight · generator_loss(critic, student logits)`` into ``output["terms"]``."""
        output = engine.state.output
        terms = output[TERMS]
        if self.name in terms:
            raise ValueError(f"the loss term '{self.name}' was added twice.")
        fake = output[Keys.PRED]
        # kept for the critic step: by MODEL_COMPLETED the engine may have decollated its output
        self._logits = (output[TEACHER_PRED].detach().float(), fake.detach().float())
        self.critic.train()
        with self._autocast(fake):
            terms[self.name] = self.weight * generator_loss(self.critic, fake).float()

    def critic_step(self, engine: Engine) -> None:
        """``critic_steps`` optimiser steps of the critic on this iteration's detached teacher ("real") and
        student ("fake") logits; stores the last critic loss as ``output["critic"]`` (in every item when
        the engine has decollated its output)."""
        real, fake = self._logits
        self._logits = None
        self.critic.train()
        for _ in range(self.critic_steps):
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast(fake):
                loss = critic_loss(self.critic, real, fake, self.gp_weight, self.gp_score).float()
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        value = loss.detach().item()
        output = engine.state.output
        for item in output if isinstance(output, list) else [output]:
            item["critic"] = value

    def state_dict(self) -> dict[str, Any]:
        """The critic's, its optimiser's, its scaler's and its LR scheduler's state (``lr_scheduler``
        only with a scheduler)."""
        state = {
            "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        if self.lr_scheduler is not None:
            state["lr_scheduler"] = self.lr_scheduler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; raises ``ValueError`` when a part is missing (the
        scheduler's too, when this handler has one) or naming the first critic key that does not fit the
        critic's architecture."""
        needed = {"critic", "optimizer", "scaler"} | ({"lr_scheduler"} if self.lr_scheduler else set())
        missing = needed.difference(state_dict)
        if missing:
            raise ValueError(f"the adversarial handler's state lacks {sorted(missing)}.")
        load_module_state(self.critic, state_dict["critic"], "critic")
        self.optimizer.load_state_dict(state_dict["optimizer"])
        if state_dict["scaler"]:  # empty when saved without AMP
            self.scaler.load_state_dict(state_dict["scaler"])
        if self.lr_scheduler is not None:
            self.lr_scheduler.load_state_dict(state_dict["lr_scheduler"])
