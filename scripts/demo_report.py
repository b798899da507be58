"""The end of ``scripts/demo.sh``: a results table and one PNG panel per test tile.

    .venv/bin/python scripts/demo_report.py --bundle-root bundle --eval-root bundle/eval/demo \\
        --out bundle/eval/demo --configs bundle/configs/base.yaml bundle/configs/demo_cpu.yaml \\
        bundle/configs/evaluate.yaml [-- OVERRIDES]

``--configs`` are the config files the demo evaluated with (base, presets, ``evaluate.yaml``) and the
arguments after ``--`` its bundle overrides: the networks, the test split and its transforms come from
them, so the report sees exactly what ``run evaluating`` saw. For each of the teacher, the student
trained without distillation and the distilled student the table gives the test scores that
``evaluate.yaml`` wrote (``<eval-root>/<name>/metrics.csv``), the parameters, the GFLOPs of one 256² tile
(counted, in the papers' convention) and the milliseconds of one 256² tile (median forward time on this
machine). Each panel (one per test tile unless ``--panels N``; the last line says how many of how many)
shows image | ground truth | teacher | student | distilled student, predictions drawn over the image, each
with the tile's Dice, or on a tile without cancer "Dice n/a" and the share of pixels wrongly called cancer
(see :func:`tile_score`).
"""

from __future__ import annotations

import argparse
import ast
import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from benchmarks.networks import network_counts, tile_throughput
from monai.bundle import ConfigParser

from monai_coco.checkpoints import load_checkpoint

PAPER = (  # METHOD.md §7: authors' code base, gastric cancer, 256 x 256
    ("teacher FANet", 0.9030, 0.8230),
    ("student Mobile U-Net, no distillation", 0.8555, 0.7476),
    ("student + Graph Flow (the authors' later method)", 0.8872, 0.7973),
)


@dataclass(frozen=True)
class Model:
    label: str
    title: str  # panel column title
    definition: str  # config id of its network definition in evaluate.yaml
    checkpoint: str  # file name in <bundle_root>/models
    eval_name: str  # folder in <eval-root> holding evaluate.yaml's metrics.csv


MODELS = (
    Model("teacher (FANet)", "teacher", "teacher_def", "teacher.pt", "teacher"),
    Model("student, no distillation", "student", "network_def", "student_none.pt", "student_none"),
    Model("student, CoCo distilled", "distilled", "network_def", "student_coco.pt", "student_coco"),
    Model(
        "student, KD + unannotated tiles (recommended)",
        "KD + unannotated",
        "network_def",
        "model.pt",
        "student_unlabelled",
    ),
)


def parse_overrides(tokens: Sequence[str]) -> dict[str, object]:
    """``["--roi_size", "[128,128]", ...]`` -> ``{"roi_size": [128, 128], ...}`` (values as Python literals
    where they parse, else strings), as ``python -m monai.bundle`` reads them."""
    if len(tokens) % 2:
        raise SystemExit(f"demo_report: overrides must come in --key value pairs, got {list(tokens)}")
    overrides = {}
    for key, value in zip(tokens[::2], tokens[1::2]):
        if not key.startswith("--"):
            raise SystemExit(f"demo_report: expected --key before {value!r}, got {key!r}")
        try:
            overrides[key[2:]] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key[2:]] = value
    return overrides


def read_metrics(path: Path) -> dict[str, float]:
    """``metrics.csv`` of MONAI's ``MetricsSaver``: one ``name,value`` row per metric."""
    with open(path, newline="") as f:
        return {row[0]: float(row[1]) for row in csv.reader(f) if len(row) >= 2}


def predict(network: torch.nn.Module, image: torch.Tensor) -> np.ndarray:
    """Class map ``(H, W)`` of one preprocessed image ``(C, H, W)``."""
    device = next(network.parameters()).device
    with torch.inference_mode():
        logits = network(image[None].to(device))
    return logits[0].argmax(0).cpu().numpy()


def tile_score(pred: np.ndarray, truth: np.ndarray) -> str:
    """A panel caption's score of one tile's class map ``pred`` against ``truth`` (both ``(H, W)``).

    With cancer in the truth: the Dice of the cancer class, 2|P∩T| / (|P| + |T|). Without: Dice is
    undefined (0/0 when nothing is predicted, 0 for any stray pixel, which would read as total failure),
    so the caption says "n/a" and gives the share of the tile's pixels wrongly called cancer.
    """
    predicted, true = pred == 1, truth == 1
    if not true.any():
        return f"Dice n/a (no cancer)\nfalse cancer {100 * predicted.mean():.1f}% px"
    return f"Dice {2 * np.logical_and(predicted, true).sum() / (predicted.sum() + true.sum()):.2f}"


def save_panel(path: Path, image: np.ndarray, masks: Sequence[tuple[str, np.ndarray]]) -> None:
    """``image`` (H, W, 3) in [0, 1], then each ``(title, mask)`` drawn over it in green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(masks), figsize=(3.0 * (1 + len(masks)), 3.6), layout="constrained")
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=10)
    green = np.array([0.0, 0.85, 0.0])
    for ax, (title, mask) in zip(axes[1:], masks):
        alpha = 0.5 * (mask == 1)[..., None]
        ax.imshow(image * (1 - alpha) + green * alpha)
        ax.set_title(title, fontsize=10)
    for ax in axes:
        ax.axis("off")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_table(rows: Sequence[dict], device: str, tile: int) -> str:
    """The results table: the teacher, the student alone, then distilled students (``gap closed``: the share
    of the teacher-student mIoU gap a distilled student closes, (mIoU - alone) / (teacher - alone))."""
    lines = [
        "| model | network | ACC | mIoU | Dice | gap closed | params (M) "
        f"| GFLOPs / {tile}² tile | ms / {tile}² tile |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    teacher, alone = rows[0]["miou"], rows[1]["miou"]
    for i, r in enumerate(rows):
        closed = f"{(r['miou'] - alone) / (teacher - alone):+.0%}" if i >= 2 and teacher != alone else ""
        lines.append(
            f"| {r['label']} | {r['network']} | {r['accuracy']:.4f} | {r['miou']:.4f} | {r['dice']:.4f} | "
            f"{closed} | {r['params'] / 1e6:.2f} | {r['gflops']:.3f} | {r['ms']:.1f} |"
        )
    lines += [
        "",
        "Test slides of the demo's data (never seen in training); ACC, mIoU (both classes) and Dice (cancer)"
        " from one confusion matrix over all test pixels; one run, not a paired-seed estimate"
        " (scripts/benchmark.py has that). GFLOPs: multiply-adds as the papers count them (thop); ms: median"
        " forward time of one"
        f" {tile}×{tile} tile on {device}.",
        "",
        "Reference (METHOD.md §7, the authors' code base, Gastric Cancer, 256×256; not this data):",
        "",
        "| model | ACC | mIoU |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {acc:.4f} | {miou:.4f} |" for label, acc, miou in PAPER]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="scripts/demo_report.py", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle-root", default="bundle")
    parser.add_argument(
        "--configs", nargs="+", default=None, help="default: <bundle-root>/configs/{base,evaluate}.yaml"
    )
    parser.add_argument("--eval-root", required=True, help="folder of the evaluate.yaml outputs per model")
    parser.add_argument("--out", required=True, help="where results.md and panels/ are written")
    parser.add_argument("--panels", type=int, default=0, help="number of test tiles drawn (0: every one)")
    args = parser.parse_args(argv)

    config = ConfigParser()
    default_configs = [f"{args.bundle_root}/configs/{name}" for name in ("base.yaml", "evaluate.yaml")]
    config.read_config(args.configs or default_configs)
    config.read_meta(f"{args.bundle_root}/configs/metadata.json")  # as python -m monai.bundle run reads it
    config.update({"bundle_root": args.bundle_root, **parse_overrides(overrides)})
    in_channels = config.get_parsed_content("in_channels")
    tile = int(config.get_parsed_content("roi_size")[0])  # the size the demo ran at
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    (out / "panels").mkdir(parents=True, exist_ok=True)

    rows, networks = [], []
    for model in MODELS:
        network = config.get_parsed_content(model.definition, lazy=False)
        load_checkpoint(Path(args.bundle_root) / "models" / model.checkpoint, {"model": network})
        network = network.to(device).eval()
        counts = network_counts(
            lambda model=model: config.get_parsed_content(model.definition, lazy=False), in_channels, tile
        )
        timing = tile_throughput(network, in_channels, tile, repeats=5)
        metrics = read_metrics(Path(args.eval_root) / model.eval_name / "metrics.csv")
        rows.append(
            {
                "label": model.label,
                "network": type(network).__name__,
                **{k: metrics[k] for k in ("accuracy", "miou", "dice")},
                "params": counts["params"],
                "gflops": counts["paper_gflops"],
                "ms": 1e3 * timing["s_per_batch"],
            }
        )
        networks.append(network)
        print(f"[report] measured {model.label}", flush=True)

    table = format_table(rows, "CUDA" if device.type == "cuda" else "this CPU", tile)
    (out / "results.md").write_text(table + "\n")

    transform = config.get_parsed_content("validate#preprocessing")
    tiles = [transform(item) for item in config.get_parsed_content("validate#datalist")]
    tiles.sort(key=lambda data: not bool(data["label"].any()))  # tiles with cancer first
    drawn = tiles[: args.panels] if args.panels > 0 else tiles
    with_cancer = sum(bool(data["label"].any()) for data in tiles)
    for i, data in enumerate(drawn):
        image, truth = data["image"], data["label"][0].numpy().astype(np.int64)
        masks = [("ground truth", truth)]
        for model, network in zip(MODELS, networks):
            pred = predict(network, image)
            masks.append((f"{model.title}\n{tile_score(pred, truth)}", pred))
        rgb = image.numpy()
        rgb = np.repeat(rgb, 3, axis=0) if rgb.shape[0] == 1 else rgb[:3]
        save_panel(out / "panels" / f"panel_{i:02d}.png", np.clip(np.moveaxis(rgb, 0, -1), 0, 1), masks)
    print(table)
    print(f"\n[report] table: {out / 'results.md'}")
    print(
        f"[report] panels: {len(drawn)} of {len(tiles)} test tiles drawn ({with_cancer} with cancer, drawn "
        f"first), {out / 'panels'}/panel_*.png"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
