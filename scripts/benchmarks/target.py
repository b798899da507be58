"""The accuracy protocol's sanity figure: does the teacher's CoCo target carry the labels' structure?

CoCo's target for a pair of pixels ``(i, j)`` of one image is the teacher's cross-layer similarity
``A_T[i, j] = x̂1_i · x̂2_j``, the cosine between the shallow tap's channel vector at ``i`` and the deep tap's
(resized to the shallow grid) at ``j`` (``monai_coco.losses.CoCoDistillationLoss``). The label affinity of
the pair is 1 when both pixels have the same label (nearest-neighbour label on the tap grid), else 0. On the
test tiles that hold both classes, ``pairs`` random pairs per tile, the figure is Pearson's r between the two
over all pairs: near 0, matching ``A_T`` teaches the student nothing about where the classes are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from monai_coco.losses.per_image import align_feature_pairs
from monai_coco.networks import feature_taps


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denominator = (a.square().sum() * b.square().sum()).sqrt()
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def target_label_correlation(
    teacher: torch.nn.Module,
    taps: Sequence[str],
    batches: Iterable[dict],
    paraphrasers: Sequence[torch.nn.Module] | None = None,
    pairs: int = 20000,
    seed: int = 0,
) -> dict[str, float]:
    """Pearson r between the teacher's CoCo target and label affinity (module docstring).

    Args:
        teacher: the trained teacher.
        taps: its (shallow, deep) layer names.
        batches: ``{"image": (B, C, H, W), "label": (B, 1, H, W)}`` with labels in {0, 1}.
        paraphrasers: one per tap; given, the target is also taken on their factors (CoCo + paraphraser).
        pairs: random pixel pairs per tile (with replacement, from a generator seeded with ``seed``).

    Returns:
        ``{"tiles": tiles with both classes, "pairs": pairs in all, "r_taps": r on the raw taps, "r_factors":
        r on the paraphraser factors (NaN without paraphrasers), "same_label_fraction": mean affinity}``.
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(teacher.parameters()).device
    teacher.eval()
    targets: dict[str, list[torch.Tensor]] = {"taps": [], "factors": []}
    affinity: list[torch.Tensor] = []
    with feature_taps(teacher, list(taps)) as tapped, torch.no_grad():
        for batch in batches:
            labels = batch["label"][:, :1].float()
            keep = [b for b in range(labels.shape[0]) if 0 < labels[b].mean() < 1]
            if not keep:
                continue
            _, features = tapped(batch["image"][keep].to(device))
            raw = [features[name].float() for name in taps]
            maps = {"taps": raw}
            if paraphrasers is not None:
                maps["factors"] = [p.encode(f) for p, f in zip(paraphrasers, raw)]
            shallow_grid = raw[0].shape[-2:]
            grid_labels = F.interpolate(labels[keep], size=shallow_grid, mode="nearest").flatten(1)
            n = grid_labels.shape[1]
            i = torch.randint(0, n, (len(keep), pairs), generator=generator)
            j = torch.randint(0, n, (len(keep), pairs), generator=generator)
            affinity.append((grid_labels.gather(1, i) == grid_labels.gather(1, j)).flatten().float())
            for kind, (shallow, deep) in maps.items():
                shallow, deep, _, _ = align_feature_pairs(
                    "target_label_correlation", shallow, deep, shallow, deep
                )
                x1 = F.normalize(shallow.flatten(2).double(), dim=1).cpu()  # (B, C, N)
                x2 = F.normalize(deep.flatten(2).double(), dim=1).cpu()
                c = x1.shape[1]
                a = (
                    x1.gather(2, i[:, None].expand(-1, c, -1)) * x2.gather(2, j[:, None].expand(-1, c, -1))
                ).sum(1)
                targets[kind].append(a.flatten())
    if not affinity:
        nan = float("nan")
        return {"tiles": 0, "pairs": 0, "r_taps": nan, "r_factors": nan, "same_label_fraction": nan}
    same = torch.cat(affinity)
    r = {kind: _pearson(torch.cat(v), same) if v else float("nan") for kind, v in targets.items()}
    return {
        "tiles": len(same) // pairs,
        "pairs": len(same),
        "r_taps": r["taps"],
        "r_factors": r["factors"],
        "same_label_fraction": float(same.mean()),
    }


def reconstruction_error(
    teacher: torch.nn.Module,
    taps: Sequence[str],
    paraphrasers: Sequence[torch.nn.Module],
    batches: Iterable[dict],
) -> list[float]:
    """Per tap, ``Σ‖P(f) − f‖² / Σ‖f‖²`` of the paraphrasers over ``batches``' images (0: perfect, 1: no
    better than predicting zeros): how much of the teacher's feature its factor keeps."""
    device = next(teacher.parameters()).device
    error, energy = [0.0] * len(taps), [0.0] * len(taps)
    teacher.eval()
    with feature_taps(teacher, list(taps)) as tapped, torch.no_grad():
        for batch in batches:
            _, features = tapped(batch["image"].to(device))
            for k, (name, paraphraser) in enumerate(zip(taps, paraphrasers)):
                f = features[name].float()
                error[k] += float((paraphraser(f) - f).double().square().sum())
                energy[k] += float(f.double().square().sum())
    return [e / n if n > 0 else float("nan") for e, n in zip(error, energy)]
