"""The per-image base of the distillation losses and the feature-map helpers they share.

Each distillation loss computes one value per image ``(B,)``, in float32 or better with autocast off,
and reduces it over the batch by MONAI's ``LossReduction``. The pooling follows SKD (Liu et al.,
"Structured Knowledge Distillation for Semantic Segmentation", CVPR 2019), the authors' base code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = [
    "PerImageLoss",
    "align_feature_pairs",
    "check_same_grid",
    "max_pool_by_fraction",
    "reduce_per_image",
    "validate_pool_scale",
]


def reduce_per_image(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce per-image values ``(B,)``: ``"mean"``/``"sum"`` over the batch; ``"none"`` keeps ``(B,)``."""
    if reduction == LossReduction.MEAN.value:
        return values.mean()
    if reduction == LossReduction.SUM.value:
        return values.sum()
    return values


def _shapes(shown: dict[str, torch.Size]) -> str:
    return ", ".join(f"{name} {tuple(shape)}" for name, shape in shown.items())


def _require_4d(loss_name: str, maps: dict[str, torch.Tensor], shown: dict[str, torch.Size]) -> None:
    if any(m.ndim != 4 for m in maps.values()):
        raise ValueError(f"{loss_name} expects (B, C, H, W) maps; got {_shapes(shown)}.")


def check_same_grid(
    loss_name: str, maps: dict[str, torch.Tensor], shown: dict[str, torch.Size] | None = None
) -> None:
    """Raise ``ValueError`` unless every map in ``maps`` is ``(B, C, H, W)`` with one ``(B, H, W)``.

    Args:
        loss_name: the loss named in the message.
        maps: the maps to check, by argument name.
        shown: the shapes to print, by argument name (default: those of ``maps``).
    """
    shown = {name: m.shape for name, m in maps.items()} if shown is None else shown
    _require_4d(loss_name, maps, shown)
    if len({(m.shape[0], *m.shape[2:]) for m in maps.values()}) > 1:
        raise ValueError(
            f"{loss_name}: all maps must share (B, H, W) (each deep map is first resized to its shallow "
            f"map); got {_shapes(shown)}."
        )


def align_feature_pairs(
    loss_name: str,
    student_shallow: torch.Tensor,
    student_deep: torch.Tensor,
    teacher_shallow: torch.Tensor,
    teacher_deep: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Resize each network's deep map to its shallow map (bilinear) and check one ``(B, H, W)`` grid.

    Args:
        loss_name: the loss named in a ``ValueError``.
        student_shallow, student_deep: ``(B, C_s, H, W)`` and ``(B, C_s', h, w)``.
        teacher_shallow, teacher_deep: ``(B, C_t, H, W)`` and ``(B, C_t', h', w')``.

    Returns:
        The four maps on the ``(H, W)`` grid, shallow maps unchanged.

    Raises:
        ValueError: a map is not 4-D, or after resizing the four maps do not share ``(B, H, W)``;
            the message lists the four input shapes.
    """
    names = ("student_shallow", "student_deep", "teacher_shallow", "teacher_deep")
    given = dict(zip(names, (student_shallow, student_deep, teacher_shallow, teacher_deep)))
    shown = {name: m.shape for name, m in given.items()}
    _require_4d(loss_name, given, shown)
    aligned = (
        student_shallow,
        _resize_to(student_deep, student_shallow),
        teacher_shallow,
        _resize_to(teacher_deep, teacher_shallow),
    )
    check_same_grid(loss_name, dict(zip(names, aligned)), shown)
    return aligned


def _resize_to(deep: torch.Tensor, shallow: torch.Tensor) -> torch.Tensor:
    """``deep`` ``(B, C, h, w)`` resized bilinearly to ``shallow``'s ``(H, W)`` when they differ."""
    if deep.shape[-2:] == shallow.shape[-2:]:
        return deep
    return F.interpolate(deep, size=tuple(shallow.shape[-2:]), mode="bilinear", align_corners=False)


def validate_pool_scale(pool_scale: float | None) -> float | None:
    """Return ``pool_scale`` if it is ``None`` or in ``(0, 1]``, else raise ``ValueError``."""
    if pool_scale is not None and not 0.0 < float(pool_scale) <= 1.0:
        raise ValueError(
            f"pool_scale must be None (no pooling) or in (0, 1] (the fraction of the map's side that one "
            f"max-pooling window covers, as in SKD; 0.5 gives a 2x2 grid), got {pool_scale}."
        )
    return pool_scale


def max_pool_by_fraction(x: torch.Tensor, pool_scale: float | None) -> torch.Tensor:
    """Max-pool ``x`` ``(B, C, H, W)`` as SKD does (Liu et al., CVPR 2019).

    The window and stride are ``(max(1, int(H·s)), max(1, int(W·s)))`` with ``s = pool_scale``, with
    ``ceil_mode``: ``s = 0.5`` gives a 2×2 grid, ``s = 1/8`` an 8×8 grid. ``None`` returns ``x``.
    """
    if pool_scale is None:
        return x
    kernel = (max(1, int(x.shape[-2] * pool_scale)), max(1, int(x.shape[-1] * pool_scale)))
    return F.max_pool2d(x, kernel_size=kernel, stride=kernel, ceil_mode=True)


def _output_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 for float64 inputs."""
    return torch.promote_types(x.dtype, torch.float32)


class PerImageLoss(_Loss):
    """Base of the distillation losses: a per-image value ``(B,)`` reduced by ``reduction``.

    :meth:`reduced` switches autocast off, casts half/bfloat16 inputs to float32 (float64 stays), calls the
    subclass's per-image function and reduces: ``"mean"``/``"sum"`` over the batch, ``"none"`` -> ``(B,)``.
    The result is float32 (float64 for float64 inputs).
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction=LossReduction(reduction).value)

    def reduced(self, per_image: Callable[..., torch.Tensor], *maps: torch.Tensor) -> torch.Tensor:
        """``reduce(per_image(*maps))``, computed in float32 or better outside autocast."""
        with torch.autocast(device_type=maps[0].device.type, enabled=False):
            values = per_image(*(m.to(_output_dtype(m)) for m in maps))
        return reduce_per_image(values, self.reduction).to(_output_dtype(maps[0]))
