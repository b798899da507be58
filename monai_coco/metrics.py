"""Confusion-matrix segmentation metrics accumulated over a whole data set (method.md §6).

The scores of the paper — pixel accuracy (ACC), IoU per class and mIoU, Dice/F1, precision, recall and
specificity — come from **one** confusion matrix summed over every pixel of the validation or test set,
not from a mean of per-image scores. :class:`SegmentationConfusionMatrix` is a MONAI
``CumulativeIterationMetric`` that keeps one ``(K, K)`` matrix per image and sums them in ``aggregate``;
:class:`~monai_coco.handlers.PathologySegmentationMetric` is its Ignite handler, usable as an evaluator's
``key_val_metric`` (``metric_name="miou"``) or in ``additional_metrics``, with per-image scores in
``engine.state.metric_details`` for MONAI's ``MetricsSaver``.

Conventions: confusion matrix rows are the true class, columns the predicted class. A score whose
denominator is zero (e.g. precision of a class never predicted) is NaN, and class means skip NaNs.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from monai.metrics import CumulativeIterationMetric

__all__ = [
    "SegmentationConfusionMatrix",
    "segmentation_scores",
    "METRIC_NAMES",
]

#: canonical metric names; ``miou`` is ``iou`` averaged over all classes.
METRIC_NAMES = ("accuracy", "iou", "miou", "dice", "precision", "recall", "specificity")
_ALIASES = {"acc": "accuracy", "f1": "dice", "sensitivity": "recall", "mean_iou": "miou"}
_AVERAGES = ("foreground", "mean", "none")


def segmentation_scores(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """All scores of a confusion matrix (rows: true class, columns: predicted class).

    Args:
        confusion: counts of shape ``(..., K, K)``; leading dimensions (e.g. images) are kept.

    Returns:
        float64 tensors: ``"accuracy"`` of shape ``(...)``; ``"iou"``, ``"dice"``, ``"precision"``,
        ``"recall"`` and ``"specificity"`` per class, of shape ``(..., K)`` (one-vs-rest for each class).
        Undefined ratios (zero denominator) are NaN.
    """
    cm = confusion.to(torch.float64)
    tp = torch.diagonal(cm, dim1=-2, dim2=-1)
    fn = cm.sum(dim=-1) - tp
    fp = cm.sum(dim=-2) - tp
    total = cm.sum(dim=(-2, -1))
    tn = total.unsqueeze(-1) - tp - fn - fp

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, float("nan")))

    return {
        "accuracy": ratio(tp.sum(dim=-1), total),
        "iou": ratio(tp, tp + fp + fn),
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
    }


class SegmentationConfusionMatrix(CumulativeIterationMetric):
    """Segmentation scores from a confusion matrix summed over every image seen since ``reset``.

    Each call adds one ``(K, K)`` matrix per image to the buffer; :meth:`aggregate` sums them and computes
    the requested score, so a data set's score weights every pixel equally (method.md §6).

    Args:
        num_classes: number of classes ``K`` (>= 2); background is class 0.
        metric_name: one of ``"accuracy"``, ``"iou"``, ``"miou"``, ``"dice"`` (alias ``"f1"``),
            ``"precision"``, ``"recall"`` (alias ``"sensitivity"``), ``"specificity"``.
        average: how a per-class score becomes the result: ``"foreground"`` (the score of class
            ``foreground``; for binary tasks the cancer class), ``"mean"`` (mean over all classes, NaNs
            skipped) or ``"none"`` (a ``(K,)`` vector). Defaults to ``"mean"`` for ``"miou"`` (the only
            value it accepts) and ``"foreground"`` otherwise; ignored for ``"accuracy"``.
        foreground: class index reported by ``average="foreground"``. Defaults to 1.

    Inputs ``y_pred`` and ``y`` are batch-first tensors ``(B, C, H, W[, D])`` or lists of channel-first
    tensors, each either a label map (``C == 1``, integer-valued class indices) or one-hot / scores over
    the classes (``C == K``, reduced by argmax) — the forms MONAI post transforms produce.
    """

    def __init__(
        self,
        num_classes: int = 2,
        metric_name: str = "miou",
        average: Optional[str] = None,
        foreground: int = 1,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}.")
        name = _ALIASES.get(metric_name.lower(), metric_name.lower())
        if name not in METRIC_NAMES:
            raise ValueError(
                f"metric_name must be one of {METRIC_NAMES} (or {tuple(_ALIASES)}), got {metric_name!r}."
            )
        if average is None:
            average = "mean" if name == "miou" else "foreground"
        if average not in _AVERAGES:
            raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}.")
        if name == "miou" and average != "mean":
            raise ValueError(f"metric_name 'miou' is the mean IoU over classes; got average={average!r}.")
        if not 0 <= foreground < num_classes:
            raise ValueError(f"foreground must be a class index in [0, {num_classes}), got {foreground}.")
        self.num_classes = num_classes
        self.metric_name = name
        self.average = average
        self.foreground = foreground

    def _labels(self, t: torch.Tensor, what: str) -> torch.Tensor:
        """Class indices ``(B, *spatial)`` from a label map ``(B, 1, ...)`` or scores ``(B, K, ...)``."""
        if t.ndim < 3:
            raise ValueError(f"{what} must be batch-first (B, C, H, W[, D]), got shape {tuple(t.shape)}.")
        if t.shape[1] == self.num_classes:
            return t.argmax(dim=1)
        if t.shape[1] != 1:
            raise ValueError(
                f"{what} must have 1 channel (label map) or num_classes={self.num_classes} channels "
                f"(one-hot), got shape {tuple(t.shape)}."
            )
        labels = t[:, 0].round().long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"{what} label map holds values outside [0, {self.num_classes - 1}]: "
                f"min {labels.min().item()}, max {labels.max().item()}."
            )
        return labels

    def _compute_tensor(
        self, y_pred: torch.Tensor, y: Optional[torch.Tensor] = None, **kwargs: Any
    ) -> torch.Tensor:
        """Per-image confusion matrices ``(B, K, K)`` (int64) of one batch."""
        if y is None:
            raise ValueError("SegmentationConfusionMatrix needs the ground truth y.")
        pred = self._labels(y_pred, "y_pred")
        true = self._labels(y, "y")
        if pred.shape != true.shape:
            raise ValueError(
                f"y_pred and y differ in batch or spatial shape: {tuple(y_pred.shape)} vs {tuple(y.shape)}."
            )
        k = self.num_classes
        batch = pred.shape[0]
        image = torch.arange(batch, device=pred.device).view(-1, *([1] * (pred.ndim - 1)))
        index = (image * k + true.to(pred.device)) * k + pred
        return torch.bincount(index.flatten(), minlength=batch * k * k).view(batch, k, k)

    def confusion_matrix(self) -> torch.Tensor:
        """The summed confusion matrix ``(K, K)`` (int64) of every image seen since ``reset``."""
        return self._buffered().sum(dim=0)

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        """The score over every image seen since ``reset``: a scalar, or ``(K,)`` for ``average="none"``."""
        return self._select(segmentation_scores(self.confusion_matrix()))

    def per_image(self) -> torch.Tensor:
        """Each image's own score: ``(N,)``, or ``(N, K)`` for ``average="none"`` (for metric details)."""
        return self._select(segmentation_scores(self._buffered()))

    def _buffered(self) -> torch.Tensor:
        buffer = self.get_buffer()
        if not isinstance(buffer, torch.Tensor) or buffer.numel() == 0:
            raise ValueError(f"{type(self).__name__} has no data to aggregate: call it on a batch first.")
        return buffer

    def _select(self, scores: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.metric_name == "accuracy":
            return scores["accuracy"]
        per_class = scores["iou" if self.metric_name == "miou" else self.metric_name]
        if self.average == "none":
            return per_class
        if self.average == "mean":
            return per_class.nanmean(dim=-1)
        return per_class[..., self.foreground]


