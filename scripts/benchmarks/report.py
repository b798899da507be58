"""The benchmark report: Markdown tables and PNG plots from the results of ``scripts/benchmark.py``.

Every sentence that judges a result is computed from the numbers (an arm "gains" only when its paired t
interval against the student alone, over the same seeds, lies above 0 and so does its interval against the
no-op arm; :mod:`benchmarks.stats`), so a rerun on other data or another machine cannot leave a stale claim
behind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.accuracy import choose_lambda  # noqa: E402
from monai_coco.atomic_files import atomic_path  # noqa: E402

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


def _tap_report_text(rows: Sequence[Mapping]) -> list[str]:
    """The tap report's table (``benchmarks.target.tap_report``), or nothing for a run without one."""
    if not rows:
        return []
    header = ["teacher", "tap", "checkerboard r", "r (label affinity)", "AUC (label affinity)", "probe AUC"]
    keys = ("checkerboard_r", "label_r", "label_auc", "probe_auc")
    table = [[r["teacher"], f"`{r['tap']}`", *(_fmt(r[k]) for k in keys)] for r in rows]
    return [
        "",
        "Tap report, on the same test tiles: per tap, the checkerboard score (r of the within-layer cosine "
        "of a pixel pair with \"same position of a 2×2 block\": near 1, the tap's geometry is an "
        "up-sampler's pattern), r and AUC of its within-layer cosine with label affinity, and a linear "
        "probe's test AUC on its pixels (the label its channels hold); per pair (`shallow x deep`), r and "
        "AUC of CoCo's cross-layer target; for the trained teacher and for the same network randomly "
        "initialised.",
        "",
        _table(header, table),
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


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


def plot_accuracy(summary: Sequence[Mapping], path: Path) -> None:
    """Each arm's paired mIoU difference from the student alone, with its t interval (a forest plot)."""
    rows = [r for r in summary if "vs_student" in r]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.6))
    y = list(range(len(rows)))[::-1]
    for yi, r in zip(y, rows):
        d = r["vs_student"]
        color = "tab:gray" if r["name"] == "noop" else "tab:blue"
        if not math.isnan(d["half_width"]):
            ax.plot([d["low"], d["high"]], [yi, yi], color=color, linewidth=2)
        ax.plot([d["mean"]], [yi], "o", color=color)
    noop = next((r for r in rows if r["name"] == "noop"), None)
    if noop is not None and not math.isnan(noop["vs_student"]["half_width"]):
        ax.axvspan(
            noop["vs_student"]["low"],
            noop["vs_student"]["high"],
            color="tab:gray",
            alpha=0.15,
            label="no-op arm's interval (noise)",
        )
        ax.legend(loc="lower right")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([r["label"] for r in rows])
    ax.set_xlabel("test mIoU − student alone's, paired over seeds (mean and t interval)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(rows: Sequence[Mapping], path: Path) -> None:
    """The pool-size curve: the share of the teacher–student gap closed against the unlabelled pool's size
    (evenly spaced ticks), each with its paired t interval."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    sizes = [r["pool"] for r in rows]
    closed = [100 * r["gap_closed"] for r in rows]
    low = [100 * (r["gap_closed"] - r["gap_closed_low"]) for r in rows]
    high = [100 * (r["gap_closed_high"] - r["gap_closed"]) for r in rows]
    low, high = ([0.0 if math.isnan(v) else v for v in side] for side in (low, high))
    x = list(range(len(sizes)))  # evenly spaced: the sizes grow geometrically
    ax.errorbar(x, closed, yerr=[low, high], fmt="o-", capsize=4)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([str(n) for n in sizes])
    ax.set_xlabel("unannotated tiles in the pool")
    ax.set_ylabel("gap closed (%), paired t interval")
    ax.grid(True, alpha=0.3)
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


def _achieved(row: Mapping, per_s: float, peak: float) -> tuple[str, str]:
    """The GFLOP/s a network reaches at ``per_s`` tiles or windows a second, and that as a share of
    ``peak`` (the matmul yardstick's GFLOP/s)."""
    achieved = row["gflops"] * per_s
    return _fmt(achieved, 1), f"{100 * achieved / peak:.0f} %"


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
    tiles = [
        (r["name"], r["config"], _fmt(t["s_per_batch"] / net["tile_batch"], 4), _fmt(t["tiles_per_s"], 2))
        + (_fmt(t["mpix_per_s"], 3), *_achieved(r, t["tiles_per_s"], peak))
        for r in net["networks"]
        if (t := r.get("tile"))
    ]
    teacher = next((r for r in net["networks"] if r["config"].startswith("paper") and r.get("tile")
                    and r["name"].startswith("FANet")), None)  # fmt: skip
    speedups = [
        f"×{r['tile']['tiles_per_s'] / teacher['tile']['tiles_per_s']:.0f} "
        f"({r['config'].removeprefix('paper: ')})"
        for r in net["networks"]
        if teacher and r["config"].startswith("paper") and r.get("tile") and r["name"].startswith("Mobile")
    ]
    windows = [
        (r["name"], r["config"], str(w["windows"]), _fmt(w["seconds"], 2), _fmt(w["windows_per_s"], 2))
        + (_fmt(w["mpix_per_s"], 3), *_achieved(r, w["windows_per_s"], peak))
        for r in net["networks"]
        if (w := r.get("sliding_window"))
    ]
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
        *(
            [f"Per tile, the paper-sized student is {', '.join(speedups)} as fast as the paper-sized teacher "
             "(eager), in this run.", ""]
            if speedups
            else []
        ),  # fmt: skip
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
        f"accuracy protocol's networks ({setup['networks']}), both trainers built from `train.yaml` with "
        f"{', '.join(f'`{f}`' for f in setup['files'])}: `--distill none` (the student alone, "
        "cross-entropy) and "
        "the paper's `--distill coco --lambda_adv 0.1` (teacher forward without gradients, frozen "
        "paraphraser encoders, CE + "
        "λ·CoCo, and `AdversarialDistillationHandler`: generator term, then one WGAN-GP critic step). "
        "Parts are timed from the engine's `IterationEvents` and forward hooks.",
        "",
        _table(("part", "student alone (s)", "full distillation (s)", "share of full"), rows),
        "",
        f"A full distillation iteration costs **×{ratio:.1f}** a student-only iteration.",
    ]
    return "\n".join(text)


def _mdd(d: Mapping | None) -> str:
    return "—" if d is None or math.isnan(d.get("mdd", math.nan)) else f"{d['mdd']:.4f}"


def _interval(d: Mapping | None) -> str:
    if d is None:
        return "—"
    if math.isnan(d["half_width"]):
        return f"{d['mean']:+.4f}"
    return f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def _terms(terms: Mapping[str, Mapping]) -> str:
    if not terms:
        return "— (cross-entropy alone)"
    parts = []
    for name, t in terms.items():
        settings = ", ".join(
            f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in t["settings"].items()
        )
        parts.append(f"{name}: {t['weight']:g} × {t['loss']}({settings}) on {t['inputs']}")
    return "; ".join(parts)


def _accuracy_section(acc: Mapping, summary: Sequence[Mapping], setup: Mapping) -> str:
    settings, sizes, teacher = acc["settings"], acc["sizes"], acc["teacher"]
    student = dict(settings["student"])
    confidence = float(settings["confidence"])
    files = ["bundle/configs/base.yaml", *acc["files"], "bundle/configs/train.yaml"]
    config = '--config_file "' + repr(files) + '"'
    overrides = " ".join(f"--{k} {v}" for k, v in student.items())
    base = next((r for r in summary if r["name"] == "none"), None)
    noop = next((r for r in summary if r["name"] == "noop"), None)
    gap = teacher["miou"] - base["miou"] if base else math.nan
    level = f"{100 * confidence:.0f} %"
    sanity = acc["sanity"]
    builtin = (
        "the built-in fine-structure data set (`histology.yaml`)"
        if "bundle/configs/histology.yaml" in acc["files"]
        else "the built-in synthetic data"
    )
    data = f"`{acc['dataset_dir']}`" if acc["dataset_dir"] else builtin
    errors = ", ".join(f"{e:.3f}" for e in sanity["paraphraser_error"])
    description = [
        f"- Data: {data}, {sizes['n_train']} labelled training tiles of {sizes['roi_size'][0]}² px, "
        f"batch {sizes['batch_size']}; "
        "validation and test splits as the bundle reads them.",
        f"- Teacher: FANet features {tuple(sizes['teacher_features'])}, "
        f"**{sizes['teacher_params'] / 1e6:.2f} M** parameters, trained on all {sizes['n_train']} tiles "
        f"({_kv(settings['teacher'])}), distilled from its **{teacher['checkpoint']}** checkpoint "
        f"(`teacher_checkpoint`; {_teacher_scores(teacher)}); students: Mobile U-Net "
        f"width {sizes['student_width']}, **{sizes['student_params'] / 1e6:.2f} M** "
        f"(teacher / student: ×{sizes['teacher_params'] / sizes['student_params']:.1f}), each from the first "
        f"{student.get('n_labelled', 'all')} tiles ({_kv(student)}), kept at its best validation mIoU.",
        f"- Every run is a bundle stage: `python -m monai.bundle run training {config} {overrides} "
        "--seed S` plus the arm's overrides below (the teacher's and paraphrasers' stages likewise with "
        "`train_teacher.yaml`, `train_paraphraser.yaml`), scored by `evaluate.yaml` on the test split.",
        f"- Seeds {list(settings['seeds'])}, paired: for one seed every arm starts from the same student "
        "weights and sees the same batches and flips. Differences are paired per seed; the interval is the "
        f"two-sided {level} Student t interval of the mean difference (n − 1 degrees of freedom). "
        "Verdict: **gain** when the interval against the student alone lies above 0 and so does the one "
        "against the no-op arm; **loss** when it lies below 0; otherwise no resolved difference.",
        "- Seeds needed: MDD, the minimum detectable difference of a comparison, is the true mean difference "
        f"the paired test at {level} finds with {100 * float(settings['power']):.0f} % power, "
        "(t_{1−α/2, n−1} + t_{power, n−1}) · s_d / √n from the measured spread s_d of the paired "
        "differences; "
        f"the goal is MDD ≤ {float(settings['mdd_goal']):g} mIoU.",
        f"- Arms with unlabelled tiles (distilling on the labelled subset plus the pool): "
        f"{'run' if acc['unlabelled_dir'] else 'not run'}, {acc['unlabelled_note']}"
        + (f" (its first {settings['pool_size']} tiles: `{acc['unlabelled_dir']}`)" if settings["pool_size"]
           and acc["unlabelled_dir"] else "")
        + (f"; their own overrides `{_cmd(settings['pool_student'])}`" if settings["pool_student"] else "")
        + ".",
        f"- Random-teacher control: the `{settings['control_arm']}` arm again, distilled from `teacher_def` "
        f"randomly initialised (seed {acc['random_teacher']['seed']}, `teacher.pt` of its own folder, never "
        f"trained; its test mIoU {_fmt(acc['random_teacher']['miou'], 4)}): a gain that is the teacher's "
        "knowledge vanishes there, one that is regularisation stays.",
        f"- {setup['note']}",
    ]
    sanity_text = [
        "### 4.1 Sanity: does the teacher's CoCo target know the labels?",
        "",
        "Pearson r between the teacher's cross-layer similarity (CoCo's target, "
        "`scripts/benchmarks/target.py`) and "
        f"label affinity (1 when both pixels have the same label) over {sanity['pairs']} random pixel "
        f"pairs of the {sanity['tiles']} test tiles with both classes "
        f"({100 * sanity['same_label_fraction']:.0f} % of the pairs share a label): "
        f"**r = {_fmt(sanity['r_taps'])}** on the teacher's taps (plain CoCo's target), "
        f"**r = {_fmt(sanity['r_factors'])}** on the paraphraser factors (CoCo + paraphraser's target). "
        "Near 0, matching the target teaches the student little about where the classes are. Paraphraser "
        f"reconstruction error on the test tiles (‖P(f) − f‖² / ‖f‖², per tap): {errors}.",
        *_tap_report_text(sanity.get("tap_report", [])),
    ]
    grads = acc["gradients"]
    warmup = int(settings["gradient_warmup_iterations"])
    lambda_rows = [
        (
            variant,
            _fmt(grads[variant]["start"]["ce"], 4),
            _fmt(grads[variant]["start"]["coco"], 4),
            _fmt(choose_lambda(grads[variant]["start"], float(settings["gradient_ratio"])), 2),
            _fmt(grads[variant]["warm"]["ce"], 4),
            _fmt(grads[variant]["warm"]["coco"], 4),
            f"**{acc['lambdas'][variant]:g}**",
        )
        for variant in grads
    ]
    lambda_text = [
        "### 4.2 λ_coco from the gradient ratio",
        "",
        f"Gradient norms on the student's parameters, seed {settings['seeds'][0]}, CoCo at λ = 1, no "
        "critic: at "
        f"step 0 (the student at its initial weights, first batch) and after {warmup} training iterations "
        "(CE + CoCo at λ = 1, the bundle's optimiser and LR schedule; the next batch). λ_coco = "
        f"{settings['gradient_ratio']:g} × ‖∇CE‖ / ‖∇CoCo‖ after the warm-up, two significant digits: once "
        f"training moves, CoCo pulls the student {settings['gradient_ratio']:g}× as hard as the labels "
        "(plain: the paper's CoCo on the taps; standardized: on per-channel standardised taps, also KD + "
        "CoCo's; "
        "paraphraser: on the factors, the full method's).",
        "",
        _table(
            ("CoCo on", "‖∇CE‖ step 0", "‖∇CoCo‖ step 0", "λ at step 0", f"‖∇CE‖ after {warmup}",
             f"‖∇CoCo‖ after {warmup}", "chosen λ_coco"),
            lambda_rows,
            "lrrrrrr",
        ),  # fmt: skip
        "",
        f"No-op arm: λ_coco = {settings['noop_lambda_coco']:g}, i.e. its CoCo gradient is "
        f"{acc['noop_gradient_ratio']:.2g} × the CE gradient after the warm-up.",
    ]
    if acc["screening"]:
        screen_rows = [(f"`--distill {r['arm']}`", _fmt(r["best_val_miou"], 4)) for r in acc["screening"]]
        screen_text = [
            "",
            f"Best baseline: each screened once on seed {settings['screen_seed']} (not a paired seed), by "
            f"best validation mIoU; **`--distill {acc['baseline']}`** was picked.",
            "",
            _table(("baseline", "validation mIoU"), screen_rows, "lr"),
        ]
    else:
        screen_text = ["", f"Best baseline: `--distill {acc['baseline']}` (the only one listed)."]
    rows = [
        (
            f"**teacher** (FANet, {teacher['checkpoint']} checkpoint)",
            "`train_teacher.yaml`",
            _fmt(teacher["miou"], 4),
            _fmt(teacher["dice"], 4),
            "—",
            "—",
            "—",
            "100 %",
            "—",
            f"{teacher['epoch']} / {teacher['epochs']}",
            _fmt(teacher["train_s"], 0),
        )
    ]
    for r in summary:
        std = "" if math.isnan(r["miou_std"]) else f" ± {r['miou_std']:.4f}"
        rows.append(
            (
                r["label"],
                f"`{r['command']}`",
                f"{r['miou']:.4f}{std}",
                _fmt(r["dice"], 4),
                _interval(r.get("vs_student")),
                _mdd(r.get("vs_student")),
                _interval(r.get("vs_noop")),
                _percent(r["gap_closed"]) if "gap_closed" in r else "0 %",
                r.get("verdict", "—"),
                f"{r['best_epoch']:.0f} / {r['epochs']}",
                _fmt(r["train_s"], 0),
            )
        )
    judged = [r for r in summary if "verdict" in r and r["name"] != "noop"]
    gains = [r["label"] for r in judged if r["verdict"] == "gain"]
    losses = [r["label"] for r in judged if r["verdict"] == "loss"]
    if not gap > 0:
        finding = "The teacher does not beat the student alone here: there is no gap to close."
    elif not judged or judged[0]["n"] < 2:
        finding = "One seed only: differences are not judged."
    else:
        finding = (
            f"{len(gains)} of {len(judged)} arms gain over the student alone beyond the noise "
            f"({', '.join(gains) or 'none'}); {len(losses)} lose ({', '.join(losses) or 'none'})."
        )
        if noop is not None and "vs_student" in noop:
            finding += f" The no-op arm, which should not differ, moves by {_interval(noop['vs_student'])}."
        control = next((r for r in summary if "vs_trained" in r), None)
        if control is not None:
            d = control["vs_trained"]
            knowledge = "knowledge, not regularisation" if d["low"] > 0 else "not shown to be knowledge"
            finding += (
                f" The trained teacher's `{control['control_of']}` beats the same arm from a random teacher "
                "by "
                f"{_interval(d)} (MDD {_mdd(d)}): {knowledge}."
            )
        mdds = [r["vs_student"].get("mdd", math.nan) for r in judged]
        mdds = [m for m in mdds if not math.isnan(m)]
        if mdds:
            goal = float(settings["mdd_goal"])
            met = sum(m <= goal for m in mdds)
            finding += (
                f" Minimum detectable differences against the student alone: {min(mdds):.4f}–{max(mdds):.4f} "
                f"mIoU over {judged[0]['n']} seeds; the goal MDD ≤ {goal:g} is "
                + ("met for every arm." if met == len(mdds) else f"met for {met} of {len(mdds)} arms.")
            )
        full = next((r for r in summary if r["name"] == "full_pool"), None)
        if full is not None:
            finding += (
                f" The full method closes {_percent(full['gap_closed'])} of the gap ({full['verdict']})."
            )
    term_rows = [
        (r["label"], f"`{r['command']}`", _terms(run["terms"]), "yes" if run["adversarial"] else "no")
        for r in summary
        for run in [next(x for x in acc["runs"] if x["arm"] == r["name"])]
    ]
    text = [
        "## 4. Accuracy protocol: distillation's gain against the noise",
        "",
        *description,
        "",
        *sanity_text,
        "",
        *lambda_text,
        *screen_text,
        "",
        "### 4.3 Results",
        "",
        f"Teacher–student gap to close: **{_fmt(gap, 4)} mIoU** (teacher {_fmt(teacher['miou'], 4)}, "
        f"student alone {_fmt(base['miou'] if base else None, 4)}). mIoU and Dice (of the cancer class): one "
        "confusion matrix over all test pixels, mean (± sample std) over seeds; Δ: paired mean difference of "
        "the mIoU "
        f"[{level} t interval]; MDD: its minimum detectable difference at "
        f"{100 * float(settings['power']):.0f} % power; gap closed: (mIoU − student's) / (teacher's − "
        "student's) of the means; "
        "best epoch: the epoch of the kept checkpoint, the mean over seeds (at the last epoch, the run "
        "was still improving; well before it, it had reached its plateau).",
        "",
        _table(
            (
                "model",
                "arm (train.yaml overrides)",
                "mIoU",
                "Dice",
                "Δ vs student alone",
                "MDD",
                "Δ vs no-op",
                "gap closed",
                "verdict",
                "best epoch",
                "train (s)",
            ),
            rows,
            "llrrrrrrlrr",
        ),
        "",
        f"**Finding.** {finding}",
        "",
        f"![paired differences]({PLOT_DIR}/accuracy_paired.png)",
        "",
        "The distillation terms each arm ran, read from its built trainer (the baselines' are `train.yaml`'s "
        "`distill_terms`, so `--distill <name>` reproduces each row):",
        "",
        _table(("arm", "overrides", "terms", "adversarial"), term_rows, "llll"),
    ]
    return "\n".join(text)


def _teacher_scores(teacher: Mapping) -> str:
    """Both test scores of the teacher: at its best validation epoch and at its last."""
    return (
        f"test mIoU {_fmt(teacher['best']['miou'], 4)} at its best validation epoch "
        f"({teacher['best_epoch']}, validation mIoU {_fmt(teacher['best_val_miou'], 4)}), "
        f"{_fmt(teacher['last']['miou'], 4)} at its last ({teacher['epochs']})"
    )


def _cmd(overrides: Mapping) -> str:
    return " ".join(f"--{k} {v}" for k, v in overrides.items())


def _closed(row: Mapping) -> str:
    """The share of the gap closed with its interval's ends, as percentages."""
    low, high = _percent(row["gap_closed_low"]), _percent(row["gap_closed_high"])
    return f"{_percent(row['gap_closed'])} [{low}, {high}]"


def _curve_section(acc: Mapping, rows: Sequence[Mapping]) -> str:
    """The pool-size curve: gap closed against the unlabelled pool's size, paired over the curve's seeds."""
    curve, settings, teacher = acc["curve"], acc["settings"], acc["teacher"]
    if "skipped" in curve:
        return f"## 5. Pool-size curve\n\nNot run: {curve['skipped']}."
    budget = curve["budget"]
    level = f"{100 * float(settings['confidence']):.0f} %"
    table = [
        (
            f"{r['pool']}",
            f"{r['miou']:.4f}" + ("" if math.isnan(r["miou_std"]) else f" ± {r['miou_std']:.4f}"),
            _interval(r["vs_student"]),
            _mdd(r["vs_student"]),
            _closed(r),
            _fmt(r["train_s"], 0),
        )
        for r in rows
    ]
    student = rows[0]["student"] if rows else math.nan
    text = [
        "## 5. Pool-size curve",
        "",
        f"The `{curve['arm']}` arm with the first N tiles of the unlabelled pool "
        f"(`{acc['unlabelled_pool']}`), "
        f"N in {sorted(int(n) for n in curve['pools'])}, on seeds {curve['seeds']} (fewer than the "
        "table's), at a "
        f"fixed budget of {budget['iterations']} iterations whatever N (`{_cmd(budget)}`: epochs of "
        f"{budget['train#trainer#epoch_length']} iterations, the LR schedule over the budget), each kept at "
        "its best validation mIoU; against the student alone of the same seeds (mIoU "
        f"{_fmt(student, 4)}) and the {teacher['checkpoint']} teacher ({_fmt(teacher['miou'], 4)}). Gap "
        "closed: "
        f"the paired mean difference over the gap of the means, with the ends of its {level} t interval.",
        "",
        _table(("pool tiles", "mIoU", "Δ vs student alone", "MDD", "gap closed [interval]", "train (s)"),
               table, "rrrrrr"),  # fmt: skip
        "",
        f"![gap closed against pool size]({PLOT_DIR}/pool_curve.png)",
    ]
    return "\n".join(text)


def _reading(d: Mapping, goal: float) -> str:
    """What a paired difference's interval says: a resolved gain or loss, or the largest gain it allows."""
    if d["low"] > 0:
        return f"a resolved gain, of at least {d['low']:+.4f} mIoU."
    if d["high"] < goal:
        return f"the interval rules out a gain above {d['high']:+.4f} mIoU."
    return f"the interval allows a gain up to {d['high']:+.4f} mIoU."


def _comparison_section(acc: Mapping, rows: Sequence[Mapping], part: str = "compare") -> str:
    """The arms compared at the curve's largest pool, paired against the curve's arm at its budget: each
    difference's interval and MDD against the protocol's goal. ``part``: ``"compare"`` (section 6, other
    arms, on the comparison's seeds) or ``"budgets"`` (5.1, the curve's arm trained longer, on the curve's
    seeds)."""
    settings = acc["settings"]
    comparison = acc["compare"] if part == "compare" else acc["curve"][part]
    level, goal = f"{100 * float(settings['confidence']):.0f} %", float(settings["mdd_goal"])
    reference = rows[0]
    others = ", ".join(f"`{r['name']}`" for r in rows[1:])
    if part == "budgets":
        title = f"### 5.1 At the largest pool ({comparison['pool']} tiles), trained longer"
        intro = (f"The curve's arm at its largest pool at its budget ({acc['curve']['budget']['iterations']} "
                 f"iterations) against the same arm trained longer ({others}: epochs of "
                 f"{acc['curve']['budget']['train#trainer#epoch_length']} iterations, the LR schedule over "
                 f"each budget), on the curve's seeds {comparison['seeds']}")  # fmt: skip
    else:
        title = f"## 6. At the curve's largest pool ({comparison['pool']} tiles), on {reference['n']} seeds"
        intro = (f"The curve's arm at its largest pool and budget ({comparison['budget']['iterations']} "
                 f"iterations) against {others} at the same pool and budget, on seeds "
                 f"{comparison['seeds']}")  # fmt: skip
    table = [
        (
            r["label"],
            _mean_std(r, "miou"),
            _interval(r["vs_student"]),
            _closed(r),
            _interval(r.get("vs_reference")),
            _mdd(r.get("vs_reference")),
            _fmt(r["train_s"], 0),
        )
        for r in rows
    ]
    lines = []
    for r in rows[1:]:
        d = r["vs_reference"]
        lines.append(
            f"- {r['label']} minus {reference['label']}: {_interval(d)} over {d['n']} seeds, MDD "
            f"{_mdd(d)} ({'within' if d['mdd'] <= goal else 'above'} the goal of {goal:g}); "
            + _reading(d, goal)
        )
    return "\n".join([
        title,
        "",
        f"{intro} (paired per seed; {level} t intervals; MDD at the protocol's power); the student alone of "
        "the same seeds "
        f"{_fmt(reference['student'], 4)}, the teacher {_fmt(acc['teacher']['miou'], 4)}.",
        "",
        _table(("arm", "mIoU", "Δ vs student alone", "gap closed [interval]", f"Δ vs `{reference['name']}`",
                "MDD", "train (s)"), table, "lrrrrrr"),  # fmt: skip
        "",
        *lines,
    ])


def _kv(overrides: Mapping) -> str:
    return ", ".join(f"{k} {v}" for k, v in overrides.items()) or "the bundle's settings"


def _student_sentence(student: Mapping) -> str:
    """How the deployment's student was trained (a results file of before the bundle trained it: steps of
    a Python loop on another synthetic slide)."""
    if "overrides" not in student:
        steps, seconds = student["steps"], student["seconds"]
        return f"The student was trained {steps} steps on another synthetic slide ({seconds:.0f} s)."
    return (
        f"The student was trained by the bundle's `train.yaml` ({_kv(student['overrides'])}): "
        f"{student['steps']} iterations, {student['seconds']:.0f} s, best validation mIoU "
        f"{student['best_val_miou']:.3f} at epoch {student['best_epoch']} of {student['epochs']}."
    )


def _deployment_section(dep: dict) -> str:
    """The whole-slide deployment section: one table per slide of ``benchmarks.deployment.benchmark``."""
    from benchmarks.deployment import table

    int8 = dep["int8"]
    student = dep["student"]
    parts = [
        "## Whole-slide deployment",
        "",
        f"The student (Mobile U-Net, width 1.0) on synthetic {dep['side']}² slides at level 0, each "
        f"candidate in a fresh process, {dep['rounds']} interleaved round(s), median time, "
        f"{dep['threads']} thread(s); `monai` is WSIReader + one SlidingWindowInferer pass "
        "(every window, no tissue skipping, softmax probabilities blended as this package does). "
        "Ratios are the comparable figures on a shared machine. "
        "`onnxruntime` loads the student's ONNX file, exported once beforehand in "
        f"{dep.get('export_s', math.nan):.1f} s (a one-off step per model, not per slide). "
        + _student_sentence(student)
        + " Two slides: `dense`, whose tissue section fills the slide (the "
        "fewest windows to skip), and `sparse`, the same kind of section over 0.6 of its sides with glass "
        "around it, as in a scan of a smaller section; the plain MONAI baseline runs every window of either, "
        "so its mask may differ from the eager checkpoint's in this package where a window with less than "
        "5 % tissue (`min_tissue_fraction`) is skipped: the baseline keeps what the student says on glass "
        "and at tissue edges there.",
    ]
    for slide in dep["slides"]:
        both = 0 < slide["tumour_fraction"] < 1
        parts += [
            "",
            f"**{slide['name']}** (section over {slide['section_fraction']:.1f} of the sides, tissue "
            f"{100 * slide['tissue_fraction']:.1f} % of the level): the eager mask labels "
            f"{100 * slide['tumour_fraction']:.1f} % of this slide tumour, Dice {slide['dice']:.3f} against "
            "the slide's tumour mask, "
            + (
                "so the agreement column compares real decisions."
                if both
                else "**a mask of one class: the agreement column compares nothing** (train it longer)."
            ),
            "",
            table(slide),
        ]
    memory = dep.get("memory")
    if memory:
        parts += ["", "**Peak memory on a large slide**: `onnxruntime` as deployed (one thread, the ONNX "
                  f"file, the README's malloc settings) on a {memory['side']}² synthetic slide whose section "
                  f"fills it, at level 0 (every output at full resolution): **{memory['peak_rss_mib']:.0f} "
                  f"MiB** (`VmHWM`), {memory['seconds']:.0f} s, {memory['windows_run']} of "
                  f"{memory['windows_in_grid']} windows run (goal: ≤ 1 GiB at 20,000²)."]  # fmt: skip
    parts += [
        "",
        f"Not offered, measured: int8. ONNX Runtime's static quantization of the same file (QDQ, "
        f"per-channel, calibrated on {int8['windows']} windows of another synthetic slide) runs a window in "
        f"{int8['int8_ms']:.1f} ms against {int8['float32_ms']:.1f} ms in float32 "
        f"(×{int8['float32_ms'] / int8['int8_ms']:.2f}), but its classes agree with float32 on "
        f"{100 * int8['agree_mean']:.2f} % of the pixels of {int8['windows']} windows of the dense slide "
        f"(the worst window {100 * int8['agree_min']:.2f} %), "
        + ("at or above" if int8["agree_mean"] >= 0.999 else "below")
        + " the 99.9 % the masks must keep.",
    ]
    return "\n".join(parts)


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
        if acc["summary"]:
            plot_accuracy(acc["summary"], out_dir / PLOT_DIR / "accuracy_paired.png")
            parts += ["", _accuracy_section(acc["result"], acc["summary"], acc["setup"])]
        if "curve" in acc["result"]:
            if acc.get("curve"):
                plot_curve(acc["curve"], out_dir / PLOT_DIR / "pool_curve.png")
            parts += ["", _curve_section(acc["result"], acc.get("curve", []))]
            if acc.get("budgets"):
                parts += ["", _comparison_section(acc["result"], acc["budgets"], "budgets")]
        skipped = acc["result"].get("compare", {}).get("skipped")
        if skipped:
            parts += ["", f"## 6. At the curve's largest pool\n\nNot run: {skipped}."]
        elif acc.get("comparison"):
            parts += ["", _comparison_section(acc["result"], acc["comparison"], "compare")]
    if "deployment" in results:
        parts += ["", _deployment_section(results["deployment"])]
    path = out_dir / "benchmarks.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts) + "\n")
    return path
