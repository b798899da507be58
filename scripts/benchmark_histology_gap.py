"""Does the fine-structure data set leave room for distillation? Teacher (full labels) against student
(few labels), and whether the teacher's cross-layer similarity knows the label.

Trains, with plain PyTorch, a narrow FANet on every labelled training tile of
:func:`monai_coco.data.synthetic.histology_dataset` and a narrow MobileUNet on a small subset of them
(spread over the training slides), each with cross-entropy, Adam, random windows and flips and a cosine
learning-rate decay, and reports test mIoU (one confusion matrix over the test set, whose slides neither
saw) and its history on the validation slides (to show the plateau). Then, on test tiles holding both
classes, the Pearson correlation between the teacher's cross-layer similarity ``A = X1^T X2`` (per-pixel
channel vectors of its shallow and deep METHOD §2 taps, L2-normalised, on random pixel pairs) and label
affinity (1 where the two pixels share a label).

    python scripts/benchmark_histology_gap.py --data /tmp/histology --threads 1

prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.utils import set_determinism
from PIL import Image
from torch import nn

from monai_coco.data.synthetic import histology_dataset
from monai_coco.metrics import SegmentationConfusionMatrix
from monai_coco.networks import FANet, FeatureTaps, MobileUNet


def load_split(folder: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images ``(N, 3, H, W)`` float, standardised per image and channel; masks ``(N, H, W)`` int64; the
    tile names, sorted."""
    stems = sorted(p.stem for p in folder.glob("*.png"))
    images = np.stack([np.asarray(Image.open(folder / f"{s}.jpg").convert("RGB")) for s in stems])
    masks = np.stack([np.asarray(Image.open(folder / f"{s}.png")) for s in stems])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    # per image and channel to zero mean, unit variance (MONAI's NormalizeIntensity(channel_wise=True))
    x = (x - x.mean((2, 3), keepdim=True)) / (x.std((2, 3), keepdim=True) + 1e-6)
    return x, torch.from_numpy(masks.astype(np.int64)), stems


def count(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def evaluate(network: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 8) -> float:
    """mIoU over the whole set (one confusion matrix)."""
    metric = SegmentationConfusionMatrix(num_classes=2, metric_name="miou")
    network.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            metric(network(x[i : i + batch]).argmax(1, keepdim=True), y[i : i + batch, None])
    network.train()
    return float(metric.aggregate())


def train(
    network: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    val: tuple[torch.Tensor, torch.Tensor],
    iterations: int,
    batch: int,
    lr: float,
    seed: int,
    crop: int,
    evals: int = 6,
) -> list[tuple[int, float]]:
    """Cross-entropy training on random ``crop`` x ``crop`` windows (one per batch) with random flips;
    returns ``[(iteration, val mIoU), ...]``."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(network.parameters(), lr=lr, weight_decay=2e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)
    history = []
    network.train()
    for it in range(1, iterations + 1):
        idx = torch.randint(len(x), (batch,), generator=g)
        oy, ox = (int(torch.randint(x.shape[-1] - crop + 1, (), generator=g)) for _ in range(2))
        xb, yb = x[idx, :, oy : oy + crop, ox : ox + crop], y[idx, oy : oy + crop, ox : ox + crop]
        if torch.rand((), generator=g) < 0.5:
            xb, yb = xb.flip(-1), yb.flip(-1)
        if torch.rand((), generator=g) < 0.5:
            xb, yb = xb.flip(-2), yb.flip(-2)
        loss = F.cross_entropy(network(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % max(iterations // evals, 1) == 0 or it == iterations:
            history.append((it, round(evaluate(network, *val), 4)))
            print(f"{type(network).__name__} iteration {it}: val mIoU {history[-1][1]}", file=sys.stderr)
    return history


def similarity_label_correlation(
    network: nn.Module, taps: Sequence[str], x: torch.Tensor, y: torch.Tensor, pairs: int, seed: int
) -> float:
    """Pearson r between ``A[i, j] = x1(i) . x2(j)`` (L2-normalised channel vectors of the two taps) and
    ``[label(i) == label(j)]`` over ``pairs`` random pixel pairs per tile, on tiles holding both classes.
    """
    g = torch.Generator().manual_seed(seed)
    sims, same = [], []
    network.eval()
    with FeatureTaps(network, taps) as tapper, torch.no_grad():
        for i in range(len(x)):
            if y[i].min() == y[i].max():
                continue
            _, feats = tapper(x[i : i + 1])
            f1, f2 = (F.normalize(feats[name][0].flatten(1), dim=0) for name in taps)  # (C, n)
            h, w = feats[taps[0]].shape[-2:]
            label = F.interpolate(y[i][None, None].float(), size=(h, w), mode="nearest").flatten()
            a, b = torch.randint(h * w, (pairs,), generator=g), torch.randint(h * w, (pairs,), generator=g)
            sims.append((f1[:, a] * f2[:, b]).sum(0))
            same.append((label[a] == label[b]).float())
    network.train()
    s, t = torch.cat(sims), torch.cat(same)
    return float(torch.corrcoef(torch.stack([s, t]))[0, 1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="data set folder (generated once, then reused)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--mpp", type=float, default=1.5)
    parser.add_argument("--n-train", type=int, default=96)
    parser.add_argument("--n-small", type=int, default=12, help="labelled tiles of the student")
    parser.add_argument("--teacher-features", type=int, nargs=4, default=(8, 16, 64, 320))
    parser.add_argument("--student-width", type=float, default=0.25)
    parser.add_argument("--teacher-iters", type=int, default=150)
    parser.add_argument("--student-iters", type=int, default=300)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=96, help="training window side (multiple of 32)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--pairs", type=int, default=4000, help="pixel pairs per tile for r")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    root = Path(histology_dataset(args.data, n_train=args.n_train, size=args.size, mpp=args.mpp))
    xtr, ytr, stems = load_split(root / "train")
    val = load_split(root / "val")[:2]
    xte, yte, _ = load_split(root / "test")
    # the student's few labels: one tile from each of the first slides, spread over the training slides
    small = np.linspace(0, len(stems) - 1, args.n_small).round().astype(int)
    report: dict = {"data": str(root), "train_tiles": len(xtr), "small_tiles": [stems[i] for i in small]}

    set_determinism(args.seed)
    teacher = FANet(features=args.teacher_features, dropout=0.1)
    set_determinism(args.seed)
    student = MobileUNet(width_mult=args.student_width)
    report["params"] = {"teacher": count(teacher), "student": count(student)}
    report["params"]["ratio"] = round(report["params"]["teacher"] / report["params"]["student"], 2)
    for name, net, x, y, iters in (
        ("teacher", teacher, xtr, ytr, args.teacher_iters),
        ("student", student, xtr[small], ytr[small], args.student_iters),
    ):
        t0 = time.time()
        history = train(net, x, y, val, iters, args.batch, args.lr, args.seed, args.crop)
        report[name] = {
            "test_miou": round(evaluate(net, xte, yte), 4),
            "val_history": history,
            "train_s": round(time.time() - t0, 1),
        }
    report["gap"] = round(report["teacher"]["test_miou"] - report["student"]["test_miou"], 4)
    report["r_teacher"] = round(
        similarity_label_correlation(teacher, FANet.default_taps, xte, yte, args.pairs, args.seed), 4
    )
    report["r_student"] = round(
        similarity_label_correlation(student, MobileUNet.default_taps, xte, yte, args.pairs, args.seed), 4
    )
    report["total_s"] = round(time.time() - start, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
