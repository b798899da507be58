"""Stage 1 (method.md §4): paraphrasers learn to reconstruct the frozen teacher's tap features."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from monai_coco.engines.multi_term import MultiTermTrainer
from monai_coco.networks.taps import feature_taps

__all__ = ["ParaphraserTrainer"]


class ParaphraserTrainer(MultiTermTrainer):
    """MONAI ``SupervisedTrainer`` for the unsupervised paraphraser stage (Factor Transfer).

    Each iteration the teacher runs in ``eval()`` under ``torch.no_grad()``; paraphraser ``i`` reconstructs
    the feature of teacher tap ``i``; the loss is the sum over taps of ``loss_function(reconstruction,
    feature)`` (MSE by default). Labels are not used (a batch may have none). ``engine.state.output``
    holds ``IMAGE``, ``LOSS`` and one float per tap, ``"mse[<layer>]"``.

    The paraphrasers are one ``nn.ModuleList``, the trainer's ``network``: its ``state_dict`` is the
    single ``paraphraser.pt`` that the distillation stage loads (e.g. with MONAI's ``CheckpointSaver``,
    ``save_dict={"paraphrasers": ...}``, or :func:`~monai_coco.checkpoints.save_checkpoint`).

    Args:
        device, max_epochs, train_data_loader, optimizer: as in ``SupervisedTrainer``; ``optimizer``
            holds the paraphrasers' parameters (method.md §4: SGD, momentum 0.9, weight decay 2e-4, 3e-4).
        network: one ``Paraphraser`` per teacher tap, e.g. an ``nn.ModuleList``, each mapping
            ``(B, C_t, h, w)`` to a reconstruction of the same shape.
        teacher: the trained teacher network; frozen here.
        teacher_taps: names of the teacher layers to reconstruct; default ``teacher.default_taps``.
        loss_function: reconstruction loss ``(reconstruction, feature) -> scalar``; default ``MSELoss()``.
        kwargs: any other ``SupervisedTrainer`` argument (``train_handlers``, ``amp``, ...).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: Sequence[torch.nn.Module],
        optimizer: Optimizer,
        teacher: torch.nn.Module,
        teacher_taps: Sequence[str] | None = None,
        loss_function: Callable | None = None,
        **kwargs: Any,
    ) -> None:
        network = network if isinstance(network, torch.nn.ModuleList) else torch.nn.ModuleList(network)
        loss_function = torch.nn.MSELoss() if loss_function is None else loss_function
        super().__init__(device, max_epochs, train_data_loader, network, optimizer, loss_function, **kwargs)
        self.teacher_taps = feature_taps(teacher, teacher_taps)
        if len(network) != len(self.teacher_taps.layers):
            raise ValueError(
                f"give one paraphraser per teacher tap {list(self.teacher_taps.layers)}, got {len(network)}."
            )
        self.teacher = teacher.requires_grad_(False).eval()

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor | None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Teacher features and their reconstructions, ``[(feature, reconstruction)]`` per tap."""
        self.teacher.eval()
        with torch.no_grad():
            _, teacher = self.teacher_taps(inputs)
        features = [teacher[name] for name in self.teacher_taps.layers]
        return [(f, paraphraser(f)) for paraphraser, f in zip(self.network, features)]

    def loss_terms(
        self, context: list[tuple[torch.Tensor, torch.Tensor]], targets: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """The reconstruction loss of each tap, in float32."""
        return {
            f"mse[{name}]": self.loss_function(reconstruction.float(), feature.float())
            for name, (feature, reconstruction) in zip(self.teacher_taps.layers, context)
        }
