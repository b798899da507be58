"""Classic distillation losses that CoCo is compared against (method.md §8).

Each takes the student's tensors first and the teacher's second, like :class:`CoCoDistillationLoss`,
so one config line swaps them: logits ``(B, K, H, W)`` for :class:`PixelwiseKDLoss` and
:class:`ChannelWiseDistillationLoss`, one feature map each for :class:`PairwiseSimilarityLoss` and
:class:`AttentionTransferLoss`, a (shallow, deep) pair each for :class:`FSPLoss`. Each computes a value
per image and reduces it over the batch by ``reduction`` (``"none"`` gives ``(B,)``), in float32 or
better with autocast off. Teacher tensors are expected to carry no gradient (the trainer runs the
teacher under ``no_grad``); nothing is detached here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .coco import correlation_gap
from .per_image import (
    PerImageLoss,
    align_feature_pairs,
    check_same_grid,
    max_pool_by_fraction,
    validate_pool_scale,
)

__all__ = [
    "AttentionTransferLoss",
    "ChannelWiseDistillationLoss",
    "FSPLoss",
    "PairwiseSimilarityLoss",
    "PixelwiseKDLoss",
]


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}.")
    return float(value)


def _check_same_shape(loss_name: str, student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.ndim != 4 or student.shape != teacher.shape:
        raise ValueError(
            f"{loss_name} expects student and teacher logits of one shape (B, K, H, W); got student "
            f"{tuple(student.shape)}, teacher {tuple(teacher.shape)}."
        )


def _check_feature_pair(loss_name: str, student: torch.Tensor, teacher: torch.Tensor) -> None:
    check_same_grid(loss_name, {"student_feature": student, "teacher_feature": teacher})


def _kl_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, dim: int) -> torch.Tensor:
    """``KL(softmax(teacher) ‖ softmax(student))`` along ``dim``, which is summed away."""
    log_p_student = F.log_softmax(student_logits, dim=dim)
    log_p_teacher = F.log_softmax(teacher_logits, dim=dim)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=dim)


class PixelwiseKDLoss(PerImageLoss):
    """Pixel-wise knowledge distillation: Hinton et al., "Distilling the Knowledge in a Neural Network"
    (2015), applied at every pixel as in SKD (Liu et al., "Structured Knowledge Distillation for Semantic
    Segmentation", CVPR 2019).

    Per image: ``τ² · mean_pixels KL(softmax(z_T/τ) ‖ softmax(z_S/τ))``, the softmax over the classes.
    (SKD's code uses the cross-entropy ``−Σ p_T log p_S``, which differs by the teacher's entropy, a
    constant for the student; the KL is 0 when the two agree.)

    Args:
        temperature: ``τ > 0``. Default 1.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``) over the batch.
    """

    def __init__(self, temperature: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.temperature = _positive("temperature", temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """``student_logits``, ``teacher_logits``: ``(B, K, H, W)``. Returns a scalar or ``(B,)``."""
        _check_same_shape(type(self).__name__, student_logits, teacher_logits)
        return self.reduced(self._per_image, student_logits, teacher_logits)

    def _per_image(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        tau = self.temperature
        return tau**2 * _kl_divergence(student / tau, teacher / tau, dim=1).mean(dim=(1, 2))


class ChannelWiseDistillationLoss(PerImageLoss):
    """Channel-wise distillation (CWD): Shu et al., "Channel-wise Knowledge Distillation for Dense
    Prediction", ICCV 2021.

    Each channel is turned into a distribution over the ``N = H·W`` pixels, ``φ(y_c) = softmax(y_c/τ)``;
    per image: ``τ²/K · Σ_c KL(φ(T_c) ‖ φ(S_c))`` (the paper's normalisation by the channel count).

    Args:
        tau: temperature ``τ > 0``. Default 1 (the paper uses 4 on logits).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``) over the batch.
    """

    def __init__(self, tau: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.tau = _positive("tau", tau)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """``student_logits``, ``teacher_logits``: ``(B, K, H, W)``. Returns a scalar or ``(B,)``."""
        _check_same_shape(type(self).__name__, student_logits, teacher_logits)
        return self.reduced(self._per_image, student_logits, teacher_logits)

    def _per_image(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        tau = self.tau
        kl = _kl_divergence(student.flatten(2) / tau, teacher.flatten(2) / tau, dim=2)  # (B, K)
        return tau**2 * kl.mean(dim=1)


class PairwiseSimilarityLoss(PerImageLoss):
    """Pair-wise distillation of SKD: Liu et al., "Structured Knowledge Distillation for Semantic
    Segmentation", CVPR 2019 — the same-layer special case of CoCo.

    Both maps are max-pooled (``pool_scale``, see :func:`max_pool_by_fraction`), each pixel's channel
    vector is L2-normalised, ``S = F̂ᵀF̂`` is the ``(N, N)`` cosine similarity between pixels; per image
    ``Σ_ij (S_T − S_S)²_ij / N²``. Computed exactly without ``S`` (``correlation_gap(s, s, t, t)``, the
    Gram identity of :mod:`monai_coco.losses.coco`), in float64.

    Args:
        pool_scale: SKD's pooling fraction; default 0.5 (SKD's and the CoCo authors' setting: a 2×2 grid
            of pooled nodes); ``None`` for every pixel.
        eps: added to each pixel's channel norm (SKD: 1e-8).
        detach_norm: divide by the norm detached from the graph, as SKD does (default); False gives the
            exact gradient of the formula (see :class:`~monai_coco.losses.CoCoDistillationLoss`).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``) over the batch.
    """

    def __init__(
        self,
        pool_scale: float | None = 0.5,
        eps: float = 1e-8,
        detach_norm: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        self.pool_scale = validate_pool_scale(pool_scale)
        self.eps = float(eps)
        self.detach_norm = bool(detach_norm)

    def forward(self, student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
        """Features ``(B, C_s, H, W)`` and ``(B, C_t, H, W)``; returns a scalar or ``(B,)``."""
        _check_feature_pair(type(self).__name__, student_feature, teacher_feature)
        return self.reduced(self._per_image, student_feature, teacher_feature)

    def _per_image(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student, teacher = (max_pool_by_fraction(m, self.pool_scale) for m in (student, teacher))
        return correlation_gap(student, student, teacher, teacher, eps=self.eps, detach_norm=self.detach_norm)


class AttentionTransferLoss(PerImageLoss):
    """Attention transfer (AT): Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017.

    The spatial attention map of a feature ``f`` ``(B, C, H, W)`` is ``q = mean_c |f_c|^p`` flattened to
    ``(B, N)`` and L2-normalised; per image ``mean_pixels (q_S − q_T)²`` (the authors' code).
    Channel counts may differ; the maps must share ``(B, H, W)``.

    Args:
        p: the power, ``> 0``. Default 2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``) over the batch.
    """

    def __init__(self, p: float = 2.0, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.p = _positive("p", p)

    def forward(self, student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
        """Features ``(B, C_s, H, W)`` and ``(B, C_t, H, W)``; returns a scalar or ``(B,)``."""
        _check_feature_pair(type(self).__name__, student_feature, teacher_feature)
        return self.reduced(self._per_image, student_feature, teacher_feature)

    def _attention(self, feature: torch.Tensor) -> torch.Tensor:
        return F.normalize(feature.abs().pow(self.p).mean(dim=1).flatten(1), dim=1)

    def _per_image(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (self._attention(student) - self._attention(teacher)).pow(2).mean(dim=1)


class FSPLoss(PerImageLoss):
    """Flow of solution procedure (FSP): Yim et al., "A Gift from Knowledge Distillation", CVPR 2017.

    For one network, ``G = F1 F2ᵀ / N`` ``(B, C1, C2)`` relates the channels of a shallow map ``F1`` to
    those of a deep map ``F2`` (the deep map is first resized to the shallow one, bilinear); per image
    ``mean_ij (G_S − G_T)²_ij`` (the Knowledge-Distillation-Zoo form of the paper's squared L2 norm).
    Student and teacher must have the same channel counts at each tap (e.g. teacher paraphraser factors).

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``) over the batch.
    """

    def forward(
        self,
        student_shallow: torch.Tensor,
        student_deep: torch.Tensor,
        teacher_shallow: torch.Tensor,
        teacher_deep: torch.Tensor,
    ) -> torch.Tensor:
        """Per network ``(B, C1, H, W)`` and ``(B, C2, h, w)``, the same ``C1, C2``; scalar or ``(B,)``."""
        return self.reduced(self._per_image, student_shallow, student_deep, teacher_shallow, teacher_deep)

    def _per_image(self, *maps: torch.Tensor) -> torch.Tensor:
        s1, s2, t1, t2 = align_feature_pairs(type(self).__name__, *maps)
        if s1.shape[1] != t1.shape[1] or s2.shape[1] != t2.shape[1]:
            raise ValueError(
                f"{type(self).__name__} needs equal student and teacher channel counts at each tap; got "
                f"student {s1.shape[1]}/{s2.shape[1]}, teacher {t1.shape[1]}/{t2.shape[1]} (shallow/deep)."
            )
        return (self._flow(s1, s2) - self._flow(t1, t2)).pow(2).mean(dim=(1, 2))

    @staticmethod
    def _flow(shallow: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        return torch.bmm(shallow.flatten(2), deep.flatten(2).transpose(1, 2)) / shallow[0, 0].numel()
