"""One validation tile's image, label and prediction as named TensorBoard images, each epoch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import torch
from ignite.engine import Engine, Events
from monai.handlers import TensorBoardHandler, from_engine

__all__ = ["TensorBoardTileImages"]


class TensorBoardTileImages(TensorBoardHandler):
    """MONAI's ``TensorBoardImageHandler`` for 2D segmentation, with named tags: at each epoch's end the
    ``index``-th item of the last batch as ``<prefix>image``, ``<prefix>label`` and ``<prefix>prediction``
    (MONAI's handler names them ``input_0_CHW``, ``input_1_HW``, ``output_HW_0``), at ``engine.state.epoch``.

    Args:
        summary_writer, log_dir: as for MONAI's ``TensorBoardHandler`` (a writer, or a folder for a new one).
        output_transform: ``engine.state.output`` -> ``(images, labels, predictions)``, each a sequence of
            ``(C, H, W)`` tensors: the image with values in [0, 1] and 1 or 3 channels (others: the first),
            the label and the prediction ``(1, H, W)`` class indices (an ``argmax``-ed prediction).
        num_classes: class indices are drawn as grey levels ``index / (num_classes - 1)``.
        index: which item of the batch.
        prefix: the tags' group, e.g. ``"val/"``.
    """

    def __init__(
        self,
        summary_writer: Optional[Any] = None,
        log_dir: str = "./runs",
        output_transform: Callable[[Any], Sequence[Sequence[torch.Tensor]]] = from_engine(
            ["image", "label", "pred"]
        ),
        num_classes: int = 2,
        index: int = 0,
        prefix: str = "val/",
    ) -> None:
        super().__init__(summary_writer=summary_writer, log_dir=log_dir)
        self.output_transform = output_transform
        self.num_classes = num_classes
        self.index = index
        self.prefix = prefix

    def attach(self, engine: Engine) -> None:
        """Write at every ``EPOCH_COMPLETED`` of ``engine``."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        """Write the three images of the ``index``-th item of ``engine.state.output``."""
        image, label, prediction = (items[self.index] for items in self.output_transform(engine.state.output))
        image = torch.as_tensor(image).detach().float().cpu()
        image = image if image.shape[0] in (1, 3) else image[:1]
        scale = max(self.num_classes - 1, 1)
        panels = {"image": image.clamp(0.0, 1.0), "label": label, "prediction": prediction}
        for name, panel in panels.items():
            panel = torch.as_tensor(panel).detach().float().cpu()
            panel = panel if name == "image" else (panel[:1] / scale).clamp(0.0, 1.0)
            self._writer.add_image(self.prefix + name, panel.numpy(), engine.state.epoch, dataformats="CHW")
        self._writer.flush()
