"""Stage 1 (method.md §4): paraphrasers learn to reconstruct the frozen teacher's tap features (and, as a
variant, to segment as the teacher does from their factors)."""

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

    With ``task_weight > 0`` (a variant, not Factor Transfer's), each paraphraser's factor is also decoded by
    its segmentation head (:meth:`~monai_coco.networks.Paraphraser.segment`) into logits at the teacher's
    output size, and ``task_weight · H(p_T, softmax(head))`` is added per tap (``"task[<layer>]"``), the
    cross-entropy against the teacher's class probabilities ``p_T``: the factor must keep what the teacher
    segments with, not only what reconstructs its feature. Its gradient reaches the encoder and the head,
    not the decoder.

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
        task_weight: weight of the task term (above); 0 (default): reconstruction alone, as the paper.
            Needs paraphrasers built with ``num_classes``.
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
        task_weight: float = 0.0,
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
        if isinstance(task_weight, bool) or not (0 <= task_weight < float("inf")):
            raise ValueError(f"task_weight must be a finite number >= 0, got {task_weight!r}.")
        self.task_weight = float(task_weight)
        headless = [i for i, p in enumerate(network) if getattr(p, "segmentation_head", None) is None]
        if self.task_weight > 0 and headless:
            raise ValueError(
                f"task_weight {self.task_weight} needs paraphrasers with a segmentation head (num_classes); "
                f"paraphrasers {headless} have none."
            )

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor | None) -> dict[str, Any]:
        """``{"pairs": [(feature, reconstruction)] per tap, "factors": [factor] per tap, "logits": the
        teacher's logits (B, num_classes, H, W)}``."""
        self.teacher.eval()
        with torch.no_grad():
            logits, teacher = self.teacher_taps(inputs)
        features = [teacher[name] for name in self.teacher_taps.layers]
        factors = [paraphraser.encode(f) for paraphraser, f in zip(self.network, features)]
        pairs = [(f, paraphraser.decode(z)) for paraphraser, f, z in zip(self.network, features, factors)]
        return {"pairs": pairs, "factors": factors, "logits": logits}

    def loss_terms(self, context: dict[str, Any], targets: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The reconstruction loss of each tap, and with ``task_weight`` its task term, in float32."""
        layers = self.teacher_taps.layers
        terms = {
            f"mse[{name}]": self.loss_function(reconstruction.float(), feature.float())
            for name, (feature, reconstruction) in zip(layers, context["pairs"])
        }
        if self.task_weight > 0:
            target = torch.softmax(context["logits"].float(), dim=1)
            for name, paraphraser, factor in zip(layers, self.network, context["factors"]):
                logits = paraphraser.segment(factor, tuple(target.shape[-2:])).float()
                cross_entropy = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
                terms[f"task[{name}]"] = self.task_weight * cross_entropy
        return terms
