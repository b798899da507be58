"""CoCo: the cross-layer correlation distillation loss of CoCo DistillNet (method.md §3).

For one network take a shallow map ``F1`` and a deep map ``F2`` on one ``(H, W)`` grid, L2-normalise
every pixel's channel vector and flatten to ``X1, X2`` of shape ``(B, C, N)``, ``N = H·W``. The
cross-layer similarity ``A = X1ᵀ X2`` is ``(B, N, N)``; the loss compares the student's ``A_S`` with
the teacher's ``A_T``: ``Σ (A_T − A_S)² / (N²·B)``.

``A`` is never built. Per image, with ``P1, P2`` the teacher's normalised maps::

    ‖A_S − A_T‖²_F = ⟨X1X1ᵀ, X2X2ᵀ⟩ + ⟨P1P1ᵀ, P2P2ᵀ⟩ − 2 ⟨X1P1ᵀ, X2P2ᵀ⟩

Every product is a channel-by-channel matrix: O(N·C²) time and O(C²) memory instead of O(N²·C) and
O(N²) (at 128×128 taps one ``A`` is 1 GiB per image in float32). The three terms are large and can
cancel, so the small matrices are computed and summed in float64 whatever the input dtype (autocast is
switched off inside) and the difference is clamped at 0.

The per-pixel norm can be detached from the graph (``detach_norm``), as SKD's ``similarity`` does
(``L2(f).detach()`` in ``sim_dis_compute``, which the CoCo authors' code borrows): the loss value is the
same, the gradient is not. With ``u = f / n``, ``n = ‖f‖₂ + eps`` and ``g = ∂L/∂u`` at one pixel, the
exact gradient is ``∂L/∂f = (g − u·(uᵀg)·‖f‖/n) / n`` (with ``eps = 0``: ``g``'s component orthogonal to
``f``, divided by ``‖f‖``; the loss is blind to each pixel's scale, so is its gradient), while the
detached norm gives ``g / n``: the same plus a radial component ``u·(uᵀg)·‖f‖/n²`` that also grows or
shrinks the feature's norm.

``standardize`` (a variant, not the paper's) first standardises every channel of each map over the pixels
of its image (zero mean, unit variance), then takes the cosines as above: a channel with a large shared
offset or scale no longer dominates every pixel's direction, so the few directions that separate the
classes count as much as the others. Still exact and without ``N × N``: standardising is per map, before
the Gram identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .per_image import (
    PerImageLoss,
    align_feature_pairs,
    max_pool_by_fraction,
    reduce_per_image,
    validate_pool_scale,
)

__all__ = ["CoCoDistillationLoss", "MultiPairCoCoDistillationLoss", "correlation_gap", "standardize_channels"]


def _normalised_columns(x: torch.Tensor, eps: float, detach_norm: bool) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, N)`` float64, every pixel's channel vector divided by ``(‖·‖₂ + eps)``
    (the norm detached from the graph when ``detach_norm``)."""
    x = x.to(torch.float64).flatten(2)
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / ((norm.detach() if detach_norm else norm) + eps)


def _gram_inner(a1: torch.Tensor, b1: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """Per image ``⟨a1 b1ᵀ, a2 b2ᵀ⟩`` for ``(B, C, N)`` inputs: two ``(B, C, C')`` products, ``(B,)``."""
    return (torch.bmm(a1, b1.transpose(1, 2)) * torch.bmm(a2, b2.transpose(1, 2))).sum(dim=(1, 2))


def standardize_channels(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(B, C, H, W)`` with every channel of every image shifted to zero mean and scaled to unit variance
    over its ``H·W`` pixels (population variance, ``+ eps`` in the square root: a constant channel becomes
    0)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    variance = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(variance + eps)


def correlation_gap(
    student_shallow: torch.Tensor,
    student_deep: torch.Tensor,
    teacher_shallow: torch.Tensor,
    teacher_deep: torch.Tensor,
    eps: float = 1e-8,
    detach_norm: bool = True,
) -> torch.Tensor:
    """``‖A_S − A_T‖²_F / N²`` per image, exactly, without any ``N × N`` tensor.

    Args:
        student_shallow, student_deep: ``(B, C_s, H, W)`` each.
        teacher_shallow, teacher_deep: ``(B, C_t, H, W)`` each; all four on one
            ``(B, H, W)`` grid (see :func:`align_feature_pairs`).
        eps: added to each pixel's channel norm before dividing.
        detach_norm: divide by the norm detached from the graph (SKD's gradient; the same value), see the
            module docstring.

    Returns:
        ``(B,)`` float64, ``≥ 0``. With ``A = X1ᵀX2`` from the per-pixel L2-normalised maps flattened to
        ``(B, C, N)``: ``Σ_ij (A_S − A_T)²_ij / N²``, from the Gram identity in the module docstring.
    """
    xs1, xs2, xt1, xt2 = (
        _normalised_columns(m, eps, detach_norm)
        for m in (student_shallow, student_deep, teacher_shallow, teacher_deep)
    )
    n = xs1.shape[-1]
    student = _gram_inner(xs1, xs1, xs2, xs2)
    teacher = _gram_inner(xt1, xt1, xt2, xt2)
    cross = _gram_inner(xs1, xt1, xs2, xt2)
    return (student + teacher - 2.0 * cross).clamp_min(0.0) / float(n) ** 2


class CoCoDistillationLoss(PerImageLoss):
    """Cross-layer correlation (CoCo) loss, Zou & Sun, "CoCo DistillNet", IEEE BIBM 2021 (method.md §3).

    ``L = Σ_b Σ_ij (A_T − A_S)²_ij / (N²·B)`` with ``A = X̂1ᵀ X̂2`` ``(B, N, N)``, the cosine similarity
    of every shallow pixel with every deep pixel of one network; computed exactly through ``C × C``
    Gram matrices in float64 (module docstring), never through ``A``. Autocast is disabled inside; the
    result is float32 (float64 for float64 inputs).

    Args:
        eps: added to each pixel's channel norm (``f / (‖f‖₂ + eps)``). Default 1e-8 (SKD's).
        standardize: standardise every channel of each map over its image's pixels first
            (:func:`standardize_channels`; the module docstring). Default False: the paper's CoCo.
        detach_norm: divide by the per-pixel norm detached from the graph, as SKD's ``sim_dis_compute``
            (borrowed by the CoCo authors' code) does: the same value, a gradient with an extra radial
            component (module docstring). Default True, to train as the method's sources do; False gives
            the exact gradient of the formula, which leaves every pixel's feature norm alone.
        pool_scale: ``None`` (default, full resolution) or the SKD max-pooling fraction in ``(0, 1]``
            applied to all four maps after resizing (see :func:`max_pool_by_fraction`).
        reduction: ``"mean"`` (default, over the batch: method.md §3 exactly), ``"sum"`` over the batch,
            or ``"none"``: per image, ``(B,)``.

    Raises:
        ValueError: ``pool_scale`` outside ``(0, 1]``, an unknown ``reduction``, or (in ``forward``) maps
            that do not share ``(B, H, W)`` after resizing, or a network whose two maps have different
            channel counts.
    """

    def __init__(
        self,
        eps: float = 1e-8,
        detach_norm: bool = True,
        pool_scale: float | None = None,
        reduction: str = "mean",
        standardize: bool = False,
    ) -> None:
        super().__init__(reduction=reduction)
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}.")
        if not isinstance(standardize, bool):
            raise ValueError(f"standardize must be True or False, got {standardize!r}.")
        self.eps = float(eps)
        self.detach_norm = bool(detach_norm)
        self.pool_scale = validate_pool_scale(pool_scale)
        self.standardize = standardize

    def forward(
        self,
        student_shallow: torch.Tensor,
        student_deep: torch.Tensor,
        teacher_shallow: torch.Tensor,
        teacher_deep: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            student_shallow: ``(B, C_s, H, W)``; student_deep: ``(B, C_s, h, w)``, resized to ``(H, W)``.
            teacher_shallow: ``(B, C_t, H, W)`` (the paraphraser factor in CoCo DistillNet);
            teacher_deep: ``(B, C_t, h', w')``, resized to ``(H, W)``. ``C_s`` and ``C_t`` may differ.

        Returns:
            A scalar, or ``(B,)`` with ``reduction="none"``.
        """
        return self.reduced(self._per_image, student_shallow, student_deep, teacher_shallow, teacher_deep)

    def _per_image(self, *maps: torch.Tensor) -> torch.Tensor:
        s1, s2, t1, t2 = align_feature_pairs(type(self).__name__, *(m.to(torch.float64) for m in maps))
        if s1.shape[1] != s2.shape[1] or t1.shape[1] != t2.shape[1]:
            raise ValueError(
                f"{type(self).__name__}: a network's shallow and deep maps need one channel count (A = X1ᵀX2 "
                f"pairs their channel vectors); got student {s1.shape[1]}/{s2.shape[1]}, teacher "
                f"{t1.shape[1]}/{t2.shape[1]} (shallow/deep)."
            )
        maps = (s1, s2, t1, t2)
        pooled = (max_pool_by_fraction(m, self.pool_scale) for m in maps)
        if self.standardize:
            pooled = (standardize_channels(m, self.eps) for m in pooled)
        return correlation_gap(*pooled, eps=self.eps, detach_norm=self.detach_norm)


class MultiPairCoCoDistillationLoss(PerImageLoss):
    """Weighted sum of CoCo losses over several (shallow, deep) tap pairs (method.md §3, last line).

    ``forward(*maps)`` takes the ``n`` student maps followed by the ``n`` teacher maps, in the same tap
    order (the calling convention of ``DistillationTerm`` with a sequence of taps); each pair ``(i, j)``
    compares the cross-layer similarity between maps ``i`` (shallow) and ``j`` (deep) of both networks.

    Args:
        pairs: ``(shallow index, deep index)`` per pair, e.g. ``((0, 1), (1, 2))``.
        weights: one weight per pair; default all 1.
        eps, detach_norm, pool_scale, reduction, standardize: as in :class:`CoCoDistillationLoss`
            (``"none"`` gives ``(B,)``).

    Raises:
        ValueError: empty or malformed ``pairs``, or ``weights`` of another length; in ``forward``, an odd
            number of maps or a pair index beyond ``n``.
    """

    def __init__(
        self,
        pairs: Sequence[Sequence[int]],
        weights: Sequence[float] | None = None,
        eps: float = 1e-8,
        detach_norm: bool = True,
        pool_scale: float | None = None,
        reduction: str = "mean",
        standardize: bool = False,
    ) -> None:
        super().__init__(reduction=reduction)
        pairs = [tuple(int(i) for i in pair) for pair in pairs]
        if not pairs or any(len(pair) != 2 or min(pair) < 0 for pair in pairs):
            raise ValueError(f"pairs must be a non-empty list of (shallow, deep) indices >= 0; got {pairs}.")
        weights = [1.0] * len(pairs) if weights is None else [float(w) for w in weights]
        if len(weights) != len(pairs):
            raise ValueError(f"weights must give one weight per pair ({len(pairs)}), got {len(weights)}.")
        self.pairs = pairs
        self.weights = weights
        self.coco = CoCoDistillationLoss(
            eps=eps, detach_norm=detach_norm, pool_scale=pool_scale, reduction="none", standardize=standardize
        )

    def forward(self, *maps: torch.Tensor) -> torch.Tensor:
        """
        Args:
            maps: ``s_0, …, s_{n-1}, t_0, …, t_{n-1}``, each ``(B, C, H_i, W_i)``.

        Returns:
            ``Σ_k w_k · CoCo(s_i, s_j, t_i, t_j)`` over the pairs ``(i, j)``, reduced over the batch.
        """
        n, odd = divmod(len(maps), 2)
        needed = 1 + max(max(pair) for pair in self.pairs)
        if odd or n < needed:
            raise ValueError(
                f"{type(self).__name__} expects the n student maps then the n teacher maps, n >= "
                f"{needed} (pairs {self.pairs}); got {len(maps)} maps."
            )
        students, teachers = maps[:n], maps[n:]
        total = sum(
            w * self.coco(students[i], students[j], teachers[i], teachers[j])
            for (i, j), w in zip(self.pairs, self.weights)
        )
        return reduce_per_image(total, self.reduction)
