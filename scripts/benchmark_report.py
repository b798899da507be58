"""The benchmark report: Markdown tables and PNG plots from the results of ``scripts/benchmark.py``.

Every sentence that judges a result is computed from the numbers (a method "helps" only when its mean
beats the student's by more than twice the standard error of the difference over seeds), so a rerun on
other data or another machine cannot leave a stale claim behind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PLOT_DIR = "benchmarks"


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _percent(fraction: float) -> str:
    return "—" if math.isnan(fraction) else f"{100 * fraction:.0f} %"


def _mean_std(row: Mapping, key: str, digits: int = 4) -> str:
    std = row[f"{key}_std"]
    return _fmt(row[key], digits) + ("" if math.isnan(std) else f" ± {_fmt(std, digits)}")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def difference(row: Mapping, base: Mapping, key: str = "miou") -> tuple[float, float]:
    """``(mean of row − mean of base, standard error of that difference)``; the error is NaN with 1 seed."""
    if row["n"] < 2 or base["n"] < 2:
        return row[key] - base[key], float("nan")
    se = math.sqrt(row[f"{key}_std"] ** 2 / row["n"] + base[f"{key}_std"] ** 2 / base["n"])
    return row[key] - base[key], se


def _delta(row: Mapping, base: Mapping) -> str:
    delta, se = difference(row, base)
    return f"{delta:+.4f}" + ("" if math.isnan(se) else f" ± {2 * se:.4f}")


def verdict(row: Mapping, base: Mapping, key: str = "miou") -> str:
    """ "helps" / "hurts" when the mean differs from the student's by more than twice the standard error of
    the difference (seed spread), else "no clear effect"; "1 seed" when there is no spread to judge by."""
    delta, se = difference(row, base, key)
    if math.isnan(se):
        return "1 seed: not judged"
    if delta > 2 * se:
        return "helps"
    if delta < -2 * se:
        return "hurts"
    return "no clear effect"


# ---------------------------------------------------------------------------------------------- plots
def plot_loss(rows: Sequence[Mapping], path: Path) -> None:
    """Time and peak memory of the naive and the exact CoCo loss against N = S², log-log."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for method, style in (("naive", "o-"), ("exact", "s-")):
        done = [r for r in rows if r["method"] == method and r["time_s"] is not None]
        n = [r["size"] ** 2 for r in done]
        axes[0].loglog(n, [r["time_s"] for r in done], style, label=f"{method}")
        axes[1].loglog(n, [max(r["peak_mib"], 1e-2) for r in done], style, label=f"{method}")
    for ax, ylabel in zip(axes, ("forward + backward (s)", "peak memory (MiB)")):
        ax.set_xlabel("N = H·W of the taps")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("CoCo loss: naive N×N vs exact Gram identity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accuracy(summary: Sequence[Mapping], teacher: Mapping, path: Path) -> None:
    """mIoU per method (mean ± std over seeds), the teacher as a line."""
    rows = list(summary)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.6))
    labels = [r["label"] + ("" if r["is_main"] else f" (λ={r['lambda_coco']:g})") for r in rows]
    errors = [0.0 if math.isnan(r["miou_std"]) else r["miou_std"] for r in rows]
    colors = [
        "tab:gray" if r["method"] == "student" else "tab:blue" if r["is_main"] else "tab:cyan" for r in rows
    ]
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [r["miou"] for r in rows], xerr=errors, color=colors, capsize=3)
    ax.axvline(teacher["miou"], color="tab:red", linestyle="--", label=f"teacher {teacher['miou']:.3f}")
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    low = min(min(r["miou"] - e for r, e in zip(rows, errors)), teacher["miou"])
    ax.set_xlim(max(0.0, low - 0.05), min(1.0, max(teacher["miou"], max(r["miou"] for r in rows)) + 0.03))
    ax.set_xlabel("test mIoU (mean ± std over seeds)")
    ax.legend(loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------- sections
def _machine_section(machine: Mapping) -> str:
    rows = [(k, str(v)) for k, v in machine.items()]
    return "## Machine and run\n\n" + _table(("", ""), rows, "ll")


def _loss_section(rows: Sequence[Mapping], setup: Mapping) -> str:
    table = []
    for r in rows:
        head = (f"{r['size']}²", f"{r['size'] ** 2}", r["method"])
        if r["time_s"] is None:
            table.append((*head, "skipped", "", r.get("skipped", ""), ""))
        else:
            numbers = (_fmt(r["time_s"], 4), _fmt(r.get("cpu_s"), 4), _fmt(r["peak_mib"], 1))
            table.append((*head, *numbers, f"{r['value']:.6g}"))
    by = {(r["size"], r["method"]): r for r in rows if r["time_s"] is not None}
    ratios = []
    for size in sorted({r["size"] for r in rows}):
        naive, exact = by.get((size, "naive")), by.get((size, "exact"))
        if naive and exact:
            memory = naive["peak_mib"] / exact["peak_mib"] if exact["peak_mib"] > 0 else math.inf
            ratios.append((f"{size}²", f"×{naive['time_s'] / exact['time_s']:.1f}", f"×{memory:.1f}"))
    text = [
        "## 1. CoCo loss: naive N×N vs exact",
        "",
        f"Forward + backward of the loss on random taps, B = {setup['batch']}, C_s = {setup['c_student']}, "
        f"C_t = {setup['c_teacher']}, float32, {setup['device']}; median of {setup['repeats']} runs after a "
        "warm-up, each (method, size) in a fresh process (peak memory: growth of the peak resident set on "
        "CPU, `max_memory_allocated` on CUDA). Naive: the literal formula through the (B, N, N) matrices "
        "(`monai_coco/losses/naive_coco.py`); exact: `CoCoDistillationLoss` (Gram identity, O(N·C²) time, "
        "O(C²) memory; its peak is the normalised and float64 copies of the taps, linear in N). The `loss` "
        "column shows the two agree. CPU: the process's CPU time, which a busy "
        "machine inflates less than the wall time.",
        "",
        _table(("taps", "N", "method", "time (s)", "CPU (s)", "peak (MiB)", "loss"), table),
        "",
        "Naive / exact:",
        "",
        _table(("taps", "time", "memory"), ratios) if ratios else "(no size has both)",
        "",
        f"![CoCo loss time and memory against N]({PLOT_DIR}/loss_scaling.png)",
    ]
    return "\n".join(text)


def _networks_section(net: Mapping) -> str:
    peak = net["matmul_gflops"]
    counts = []
    for r in net["networks"]:
        counts.append(
            (
                r["name"],
                r["config"],
                f"{r['params'] / 1e6:.3f}",
                _fmt(r["gflops"], 2),
                _fmt(r["paper_gflops"], 2),
            )
        )
    tiles = []
    for r in net["networks"]:
        t = r.get("tile")
        if t:
            achieved = r["gflops"] * t["tiles_per_s"]
            tiles.append(
                (
                    r["name"],
                    r["config"],
                    _fmt(t["s_per_batch"] / net["tile_batch"], 4),
                    _fmt(t["tiles_per_s"], 2),
                    _fmt(t["mpix_per_s"], 3),
                    _fmt(achieved, 1),
                    f"{100 * achieved / peak:.0f} %",
                )
            )
    windows = []
    for r in net["networks"]:
        w = r.get("sliding_window")
        if w:
            achieved = r["gflops"] * w["windows_per_s"]
            windows.append(
                (
                    r["name"],
                    r["config"],
                    str(w["windows"]),
                    _fmt(w["seconds"], 2),
                    _fmt(w["windows_per_s"], 2),
                    _fmt(w["mpix_per_s"], 3),
                    _fmt(achieved, 1),
                    f"{100 * achieved / peak:.0f} %",
                )
            )
    size, side = net["tile_size"], net["large_side"]
    text = [
        "## 2. Networks: size, counted FLOPs, inference throughput",
        "",
        f"FLOPs of one {net['in_channels']}×{size}×{size} tile counted by `torch.utils.flop_counter` "
        '(2 FLOPs per multiply-add, `monai_coco.networks.summary.count_flops`); the papers\' "GFLOPs" '
        "column counts `thop` multiply-adds (171.6 for FANet, 1.49 for Mobile U-Net at 1×256×256).",
        "",
        _table(
            ("network", "configuration", "params (M)", "GFLOPs (counted)", "GFLOPs (paper convention)"),
            counts,
            "llrrr",
        ),
        "",
        f"Machine yardstick: fp32 `torch.matmul` of {net['matmul_n']}×{net['matmul_n']} matrices, "
        f"**{peak:.1f} GFLOP/s** (best of 3, measured in this run with the same threads).",
        "",
        f"Tiles: {net['tile_batch']} tile(s) of {size}×{size} per forward pass, fp32, `inference_mode`, "
        "median after a warm-up.",
        "",
        _table(
            ("network", "configuration", "s / tile", "tiles/s", "MP/s", "GFLOP/s", "of matmul peak"),
            tiles,
            "llrrrrr",
        ),
        "",
        f"One {side}×{side} RGB tile through the sliding-window path (`monai_coco.data.segment_image`: "
        f"MONAI `SlidingWindowInferer`, {size}×{size} windows, overlap {net['overlap']}, "
        f"{net['sw_batch_size']} windows per call, softmax blending, argmax; every window run):",
        "",
        _table(
            (
                "network",
                "configuration",
                "windows",
                "seconds",
                "windows/s",
                "MP/s",
                "GFLOP/s",
                "of matmul peak",
            ),
            windows,
            "llrrrrrr",
        ),
    ]
    return "\n".join(text)


def _training_section(cost: Mapping, setup: Mapping) -> str:
    student, full = cost["student"], cost["distillation"]
    keys = list(full)
    rows = []
    for key in keys:
        s = student.get(key)
        f = full[key]
        rows.append(
            (
                key if key != "iteration" else "**whole iteration**",
                _fmt(s, 3) if s is not None else "—",
                _fmt(f, 3),
                f"{100 * f / full['iteration']:.0f} %",
            )
        )
    ratio = full["iteration"] / student["iteration"]
    text = [
        "## 3. Training cost: student alone vs a full distillation iteration",
        "",
        f"Median seconds per iteration over {setup['iterations']} iterations after {setup['warmup']} "
        f"warm-up, batch {setup['batch']} × {setup['in_channels']}×{setup['size']}×{setup['size']}, the "
        f"accuracy experiment's networks ({setup['networks']}). Student alone: MONAI `SupervisedTrainer`, "
        "cross-entropy. Full iteration: `DistillationTrainer` (teacher forward without gradients, frozen "
        "paraphraser encoders, CE + λ·CoCo) with `AdversarialDistillationHandler` (generator term, then one "
        "WGAN-GP critic step). Parts are timed from the engine's `IterationEvents` and forward hooks.",
        "",
        _table(("part", "student alone (s)", "full distillation (s)", "share of full"), rows),
        "",
        f"A full distillation iteration costs **×{ratio:.1f}** a student-only iteration.",
    ]
    return "\n".join(text)


def _accuracy_section(acc: Mapping, summary: Sequence[Mapping], setup: Mapping) -> str:
    teacher = acc["teacher"]
    main = [r for r in summary if r["is_main"]]
    base = next((r for r in main if r["method"] == "student"), None)
    rows = [
        (
            "**teacher** (FANet)",
            _fmt(teacher["acc"], 4),
            _fmt(teacher["miou"], 4),
            "1",
            f"{teacher['miou'] - base['miou']:+.4f}" if base else "—",
            "100 %",
            "—",
            _fmt(teacher["train_s"], 0),
        )
    ]
    for r in main:
        compared = r is not base and base is not None
        rows.append(
            (
                r["label"],
                _mean_std(r, "acc"),
                _mean_std(r, "miou"),
                str(r["n"]),
                _delta(r, base) if compared else "—",
                _percent(r["miou_gap_closed"]) if compared else "0 %",
                verdict(r, base) if compared else "—",
                _fmt(r["train_s"], 0),
            )
        )
    sweep = sorted(
        (r for r in summary if r["method"] == setup["swept_method"]), key=lambda r: r["lambda_coco"]
    )
    sweep_rows = [
        (
            f"{r['lambda_coco']:g}",
            _mean_std(r, "acc"),
            _mean_std(r, "miou"),
            str(r["n"]),
            _delta(r, base) if base else "—",
            _percent(r["miou_gap_closed"]),
            verdict(r, base) if base else "—",
        )
        for r in sweep
    ]
    errors = ", ".join(f"{e:.3f}" for e in acc["paraphraser_error"]) or "—"
    judged = [r for r in main if r is not base and base is not None]
    helps = [r["label"] for r in judged if verdict(r, base) == "helps"]
    hurts = [r["label"] for r in judged if verdict(r, base) == "hurts"]
    gap = teacher["miou"] - base["miou"] if base else float("nan")
    if not gap > 0:
        finding = "The teacher does not beat the student here: there is no gap to close, nothing is judged."
    elif judged and judged[0]["n"] > 1:
        finding = (
            f"On this data and budget, {len(helps)} of {len(judged)} distillation variants beat the "
            f"student without distillation beyond seed noise ({', '.join(helps) or 'none'}); "
            f"{len(hurts)} did worse ({', '.join(hurts) or 'none'}); the others are within seed noise."
        )
    else:
        finding = "One seed only: differences are not judged against seed noise."
    full = next((r for r in main if r["method"] == "coco_pm_ad"), None)
    if full is not None and gap > 0:
        effect = verdict(full, base)
        finding += (
            f" The paper's full method ({full['label'].lstrip('+ ')}) reaches mIoU "
            f"{_mean_std(full, 'miou')}, {_percent(full['miou_gap_closed'])} of the gap ({effect})."
        )
    text = [
        "## 4. Accuracy on the built-in synthetic data, equal budget",
        "",
        setup["description"],
        "",
        f"Teacher–student gap to close: **{_fmt(gap, 4)} mIoU** (teacher {_fmt(teacher['miou'], 4)}, "
        f"student without distillation {_fmt(base['miou'] if base else None, 4)}). "
        '"Gap closed" = (mIoU − mIoU_student) / (mIoU_teacher − mIoU_student) of the means; "effect": '
        "the mean mIoU differs from the student's by more than twice the standard error (SE) of the "
        "difference over seeds: with 3 seeds and this seed spread, only differences of a few hundredths "
        "of mIoU can be told from noise. ACC and mIoU: one confusion matrix over all test pixels "
        "(`monai_coco.metrics.PathologySegmentationMetric`), mean ± sample std over seeds. Train time: "
        "seconds of one run (the teacher's is its own, longer, stage 0).",
        "",
        _table(
            (
                "model",
                "ACC",
                "mIoU",
                "seeds",
                "Δ mIoU vs student (± 2 SE)",
                "gap closed",
                "effect",
                "train (s)",
            ),
            rows,
            "lrrrrrlr",
        ),
        "",
        f"**Finding.** {finding}",
        "",
        f"Paraphraser reconstruction error on the test set (‖P(f) − f‖² / ‖f‖², per tap): {errors}.",
        "",
        f"![mIoU per method]({PLOT_DIR}/accuracy_miou.png)",
        "",
        f"### λ_coco sweep ({next((r['label'] for r in sweep), setup['swept_method'])})",
        "",
        _table(
            ("λ_coco", "ACC", "mIoU", "seeds", "Δ mIoU (± 2 SE)", "gap closed", "effect"),
            sweep_rows,
            "rrrrrrl",
        )
        if len(sweep_rows) > 1
        else "(no sweep in this mode)",
    ]
    return "\n".join(text)


def write_report(results: Mapping, out_dir: Path) -> Path:
    """Write ``out_dir/benchmarks.md`` and its plots in ``out_dir/benchmarks/``; returns the Markdown path."""
    out_dir = Path(out_dir)
    (out_dir / PLOT_DIR).mkdir(parents=True, exist_ok=True)
    parts = [
        "# Benchmarks",
        "",
        "Generated by `scripts/benchmark.py` (the command is below); every number on this page comes from "
        "that one run, on the machine described below. Timings on a machine shared with other jobs are "
        "noisy: compare ratios within a table rather than absolute seconds across runs.",
        "",
        _machine_section(results["machine"]),
    ]
    if "loss" in results:
        plot_loss(results["loss"]["rows"], out_dir / PLOT_DIR / "loss_scaling.png")
        parts += ["", _loss_section(results["loss"]["rows"], results["loss"]["setup"])]
    if "networks" in results:
        parts += ["", _networks_section(results["networks"])]
    if "training" in results:
        parts += ["", _training_section(results["training"]["cost"], results["training"]["setup"])]
    if "accuracy" in results:
        acc = results["accuracy"]
        plot_accuracy(
            [r for r in acc["summary"] if r["is_main"] or r["method"] == acc["setup"]["swept_method"]],
            acc["result"]["teacher"],
            out_dir / PLOT_DIR / "accuracy_miou.png",
        )
        parts += ["", _accuracy_section(acc["result"], acc["summary"], acc["setup"])]
    if "deployment" in results:
        from benchmark_deployment import table

        dep = results["deployment"]
        parts += [
            "",
            "## Whole-slide deployment",
            "",
            f"The student (Mobile U-Net, width 1.0) on one synthetic {dep['side']}² slide at level 0, each "
            f"candidate in a fresh process, {dep['rounds']} interleaved round(s), median time, "
            f"{dep['threads']} thread(s); `monai` is WSIReader + one SlidingWindowInferer pass "
            "(every window, no tissue skipping). Ratios are the comparable figures on a shared machine.",
            "",
            table(dep),
        ]
    path = out_dir / "benchmarks.md"
    path.write_text("\n".join(parts) + "\n")
    return path
