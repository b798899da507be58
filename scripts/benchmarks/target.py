"""The accuracy protocol's sanity figure: does the teacher's CoCo target carry the labels' structure?

CoCo's target for a pair of pixels ``(i, j)`` of one image is the teacher's cross-layer similarity
``A_T[i, j] = x̂1_i · x̂2_j``, the cosine between the shallow tap's channel vector at ``i`` and the deep tap's
(resized to the shallow grid) at ``j`` (``monai_coco.losses.CoCoDistillationLoss``). The label affinity of
the pair is 1 when both pixels have the same label (nearest-neighbour label on the tap grid), else 0. On the
test tiles that hold both classes, ``pairs`` random pairs per tile, the figure is Pearson's r between the two
over all pairs: near 0, matching ``A_T`` teaches the student nothing about where the classes are.

The tap report (:func:`tap_report`) asks the same of each tap alone, for the trained teacher and a randomly
initialised one: its checkerboard score (r between the within-layer cosine of a pixel pair and "both pixels
at the same position of a 2×2 block": near 1, the tap's geometry is an up-sampler's pattern, not the
tissue), r and AUC of its within-layer cosine with label affinity, and a linear probe's test AUC (how much
of the label its channels hold, whatever their geometry).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from monai_coco.losses.per_image import align_feature_pairs
from monai_coco.networks import feature_taps


def _auc(score: torch.Tensor, target: torch.Tensor) -> float:
    """Area under the ROC curve of ``score`` for the binary ``target`` (Mann–Whitney U over ranks, ties
    averaged); NaN when ``target`` holds one class only."""
    score, target = score.double().flatten(), target.flatten().bool()
    positives, negatives = int(target.sum()), int((~target).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = torch.argsort(score)
    ranks = torch.empty_like(score)
    ranks[order] = torch.arange(1, len(score) + 1, dtype=torch.float64)
    values, inverse, counts = torch.unique(score, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, ranks)
    ranks = (sums / counts)[inverse]  # tied scores share their mean rank
    return float((ranks[target].sum() - positives * (positives + 1) / 2) / (positives * negatives))


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


def checkerboard_score(feature: torch.Tensor, pairs: int = 20000, seed: int = 0) -> float:
    """Pearson r between the cosine of random pixel pairs of ``feature`` ``(B, C, H, W)`` (within each image)
    and whether the two pixels sit at the same position of a 2×2 block (row and column parities equal).
    A 2×2, stride-2 transposed convolution's output scores near 1; a map whose geometry follows the image
    scores near 0."""
    generator = torch.Generator().manual_seed(seed)
    b, c, h, w = feature.shape
    x = F.normalize(feature.flatten(2).double(), dim=1).cpu()
    i = torch.randint(0, h * w, (b, pairs), generator=generator)
    j = torch.randint(0, h * w, (b, pairs), generator=generator)
    cosine = (x.gather(2, i[:, None].expand(-1, c, -1)) * x.gather(2, j[:, None].expand(-1, c, -1))).sum(1)
    position = lambda k: (k // w % 2) * 2 + k % w % 2  # noqa: E731
    return _pearson(cosine.flatten(), (position(i) == position(j)).flatten().double())


def probe_auc(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Test AUC of a logistic-regression probe fitted on ``train`` = (features ``(n, C)``, labels ``(n,)``)
    (standardised with the training pixels' statistics, L2 1e-3, L-BFGS), scored on ``test``."""
    x, y = train[0].double(), train[1].double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    weight = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight], max_iter=200, line_search_fn="strong_wolfe")
    standardised = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = F.binary_cross_entropy_with_logits(standardised @ weight, y)
        value = value + 1e-3 * weight[:-1].square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    test_x = torch.cat([(test[0].double() - mean) / std, torch.ones(len(test[0]), 1, dtype=torch.float64)], 1)
    return _auc((test_x @ weight).detach(), test[1])


def _pair_cosines(a: torch.Tensor, b: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Cosine of pixel ``i`` of ``a`` with pixel ``j`` of ``b`` (``(T, C, h, w)`` maps, ``(T, P)`` indices),
    flattened to ``(T * P,)``."""
    x1, x2 = (F.normalize(m.flatten(2).double(), dim=1) for m in (a, b))
    c = x1.shape[1]
    products = x1.gather(2, i[:, None].expand(-1, c, -1)) * x2.gather(2, j[:, None].expand(-1, c, -1))
    return products.sum(1).flatten()


def _pixels(
    feature: torch.Tensor, label: torch.Tensor, count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random pixels of ``(T, C, h, w)`` features as ``(count, C)``, with their ``label``s."""
    x = feature.permute(0, 2, 3, 1).reshape(-1, feature.shape[1])
    pick = torch.randint(0, len(x), (min(count, len(x)),), generator=generator)
    return x[pick], label.flatten()[pick]


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """A MONAI ``MetaTensor`` (a data loader's batch) as a plain tensor: slicing a batch of them with
    per-image metadata fails."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor


def _teacher_maps(
    teacher: torch.nn.Module, taps: Sequence[str], batches: Sequence[dict]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The teacher's two taps on one grid, ``(T, C, h, w)`` each, and the labels there ``(T, 1, h, w)``."""
    device = next(teacher.parameters()).device
    teacher.eval()
    maps: list[list[torch.Tensor]] = [[], []]
    labels = []
    with feature_taps(teacher, list(taps)) as tapped, torch.no_grad():
        for batch in batches:
            _, found = tapped(_plain(batch["image"]).to(device))
            raw = [_plain(found[tap]).float() for tap in taps]
            aligned = align_feature_pairs("tap_report", *raw, *raw)[:2]
            for k, feature in enumerate(aligned):
                maps[k].append(feature.cpu())
            labels.append(F.interpolate(_plain(batch["label"])[:, :1].float(), size=aligned[0].shape[-2:]))
    return [torch.cat(m) for m in maps], torch.cat(labels)


def tap_report(
    teachers: dict[str, torch.nn.Module],
    taps: Sequence[str],
    batches: Sequence[dict],
    pairs: int = 20000,
    probe_pixels: int = 20000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per teacher (e.g. ``{"trained": ..., "random": ...}``) and tap, the module docstring's figures.

    Args:
        teachers: networks with the layers ``taps``, by name.
        taps: (shallow, deep) layer names.
        batches: ``{"image": (B, C, H, W), "label": (B, 1, H, W)}`` with labels in {0, 1}; the probe is
            fitted on the first half of the tiles and tested on the rest.
        pairs: random pixel pairs per tile (tiles with both classes) for the cosines.
        probe_pixels: pixels drawn for each of the probe's training and test sets.

    Returns:
        rows ``{"teacher", "tap", "checkerboard_r", "label_r", "label_auc", "probe_auc"}``, and per teacher
        one row with ``tap`` ``"shallow x deep"`` holding the CoCo target's ``label_r`` and ``label_auc``.
    """
    rows = []
    for name, teacher in teachers.items():
        maps, label = _teacher_maps(teacher, taps, batches)
        both = [t for t in range(len(label)) if 0 < label[t].mean() < 1]
        half = len(label) // 2
        generator = torch.Generator().manual_seed(seed)
        i = torch.randint(0, label[0].numel(), (len(both), pairs), generator=generator)
        j = torch.randint(0, label[0].numel(), (len(both), pairs), generator=generator)
        flat = label[both].flatten(1)
        affinity = (flat.gather(1, i) == flat.gather(1, j)).flatten().double()
        for tap, feature in zip(taps, maps):
            similarity = _pair_cosines(feature[both], feature[both], i, j)
            train = _pixels(feature[:half], label[:half], probe_pixels, generator)
            test = _pixels(feature[half:], label[half:], probe_pixels, generator)
            rows.append({
                "teacher": name, "tap": tap, "checkerboard_r": checkerboard_score(feature, pairs, seed),
                "label_r": _pearson(similarity, affinity), "label_auc": _auc(similarity, affinity),
                "probe_auc": probe_auc(train, test),
            })  # fmt: skip
        target = _pair_cosines(maps[0][both], maps[1][both], i, j)
        rows.append({
            "teacher": name, "tap": f"{taps[0]} x {taps[1]}", "checkerboard_r": float("nan"),
            "label_r": _pearson(target, affinity), "label_auc": _auc(target, affinity),
            "probe_auc": float("nan"),
        })  # fmt: skip
    return rows
