"""The CoCo loss of method.md §3 computed literally, through the (B, N, N) similarity matrices.

An independent reference for the tests, and the "naive" side of ``scripts/benchmarks/loss.py``. It builds
``A`` (1 GiB per image in float32 at 128×128 taps): never train with it; it is not exported by
:mod:`monai_coco.losses`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def naive_similarity(
    shallow: torch.Tensor, deep: torch.Tensor, eps: float, pool_scale: float | None
) -> torch.Tensor:
    """A = X̂1ᵀX̂2, (B, N, N), for one network's shallow (B, C, H, W) and deep (B, C', h, w) maps."""
    if deep.shape[-2:] != shallow.shape[-2:]:
        deep = F.interpolate(deep, size=tuple(shallow.shape[-2:]), mode="bilinear", align_corners=False)
    if pool_scale is not None:
        h, w = shallow.shape[-2:]
        window = (max(1, int(h * pool_scale)), max(1, int(w * pool_scale)))
        pool = torch.nn.MaxPool2d(window, stride=window, ceil_mode=True)
        shallow, deep = pool(shallow), pool(deep)
    x1, x2 = shallow.flatten(2), deep.flatten(2)
    x1 = x1 / (x1.norm(dim=1, keepdim=True) + eps)
    x2 = x2 / (x2.norm(dim=1, keepdim=True) + eps)
    return torch.einsum("bcm,bcn->bmn", x1, x2)


def naive_coco_loss(
    student_shallow: torch.Tensor,
    student_deep: torch.Tensor,
    teacher_shallow: torch.Tensor,
    teacher_deep: torch.Tensor,
    eps: float = 1e-8,
    pool_scale: float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Σ_b Σ_ij (A_T − A_S)² / (N²·B) ("mean"), its batch sum ("sum") or per image (B,) ("none")."""
    a_s = naive_similarity(student_shallow, student_deep, eps, pool_scale)
    a_t = naive_similarity(teacher_shallow, teacher_deep, eps, pool_scale)
    per_image = (a_t - a_s).pow(2).sum(dim=(1, 2)) / a_s.shape[-1] ** 2
    return {"mean": per_image.mean, "sum": per_image.sum, "none": lambda: per_image}[reduction]()
