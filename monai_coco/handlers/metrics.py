"""Ignite handler of the confusion-matrix segmentation metrics (method.md §6), for MONAI evaluators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from monai.handlers import IgniteMetricHandler

from monai_coco.metrics import SegmentationConfusionMatrix

__all__ = ["PathologySegmentationMetric"]


class PathologySegmentationMetric(IgniteMetricHandler):
    """Ignite handler for :class:`SegmentationConfusionMatrix`, in the shape of MONAI's ``MeanDice``.

    Use one instance per reported score, e.g. in a MONAI bundle config::

        key_val_metric:
          val_miou: {_target_: PathologySegmentationMetric, metric_name: miou,
                     output_transform: "$monai.handlers.from_engine(['pred', 'label'])"}
        additional_metrics:
          val_acc: {_target_: PathologySegmentationMetric, metric_name: accuracy, output_transform: ...}

    Args:
        metric_name, num_classes, average, foreground: as in :class:`SegmentationConfusionMatrix`.
        output_transform: extracts ``(y_pred, y)`` from ``engine.state.output``.
        save_details: store each image's own score in ``engine.state.metric_details[name]`` (shape
            ``(N,)`` or ``(N, K)``), which ``MetricsSaver(metric_details=...)`` writes per file.
    """

    def __init__(
        self,
        metric_name: str = "miou",
        num_classes: int = 2,
        average: Optional[str] = None,
        foreground: int = 1,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = SegmentationConfusionMatrix(
            num_classes=num_classes, metric_name=metric_name, average=average, foreground=foreground
        )
        self.metric_name = metric_fn.metric_name
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)

    def compute(self) -> Any:
        """The data-set score (float, or a ``(K,)`` tensor for ``average="none"``)."""
        result = super().compute()
        if self.save_details:
            self._engine.state.metric_details[self._name] = self.metric_fn.per_image()  # type: ignore[union-attr]
        return result
