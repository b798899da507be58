"""The accuracy protocol: can distillation's gain be told from noise? Every stage is the bundle's.

1. Teacher: ``train_teacher.yaml`` on the full labelled training set, ``benchmark#teacher`` epochs; scored on
   the test split by ``evaluate.yaml`` (the checkpoint at its best validation mIoU).
2. Paraphrasers: ``train_paraphraser.yaml`` on the frozen teacher.
3. Sanity figure: Pearson r of the teacher's CoCo target with label affinity on test tiles with both classes
   (:mod:`benchmarks.target`).
4. λ_coco: the gradient norms of CE and of CoCo (λ = 1) on the student's parameters for the first batch of
   the first seed; ``λ = gradient_ratio · ‖∇CE‖ / ‖∇CoCo‖`` (two significant digits), once for CoCo on the
   teacher's taps and once on the paraphraser factors.
5. The best baseline: each ``benchmark#baselines`` choice trained once on ``screen_seed`` (not a paired
   seed), picked by best validation mIoU.
6. Every arm (:func:`benchmarks.bundle.protocol_arms`) on every seed: ``train.yaml`` with the arm's overrides,
   ``benchmark#student`` (the small labelled subset ``n_labelled``, the epochs) and ``seed``; each scored by
   ``evaluate.yaml`` at its best validation mIoU. For one seed every arm starts from the same student weights
   and sees the same batches and flips (``benchmark.yaml`` seeds the loader's generator), so arms are
   compared by paired differences with a t interval (:mod:`benchmarks.stats`).

Runs are independent processes' work: with ``jobs > 1`` each training run (the teacher, the screening and
every arm) goes to one of ``jobs`` fresh processes (``spawn``) of ``threads`` threads, so a run's numbers do
not depend on ``jobs`` or on the order runs finish in (an arm is what its ``python -m monai.bundle run``
command gives, tested). The student-alone arms need no teacher and run beside it.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from benchmarks.bundle import STUDENT_ALONE, Arm, Recipe, protocol_arms, screening_arms, term_signature
from benchmarks.stats import paired_interval, verdict
from benchmarks.target import reconstruction_error, tap_report, target_label_correlation
from monai_coco.checkpoints import preprocessing_record_path
from monai_coco.networks.summary import count_parameters

PAPER_FANET_TAPS = ("encoder.2", "decoder.0.up")  # the paper's pair (method.md §2), reported too


def gradient_norms(recipe: Recipe, overrides: Mapping[str, Any]) -> dict[str, float]:
    """``{term: ‖∇ term‖₂}`` over the student's parameters, for the first batch of ``train.yaml`` with
    ``overrides`` (the student at its seeded initialisation, the distillation terms at their weights)."""
    workflow = recipe.stage("train.yaml", overrides)
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    batch = next(iter(trainer.data_loader))
    inputs, targets = trainer.prepare_batch(batch, trainer.state.device, trainer.non_blocking)[:2]
    trainer.network.train()
    trainer.state.batch, trainer.state.output = batch, {"image": inputs, "label": targets}
    terms = trainer.loss_terms(trainer.forward(inputs, targets), targets)
    params = [p for p in trainer.network.parameters() if p.requires_grad]
    norms = {}
    for name, value in terms.items():
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        norms[name] = math.sqrt(sum(float(g.double().square().sum()) for g in grads if g is not None))
    return norms


def choose_lambda(norms: Mapping[str, float], ratio: float) -> float:
    """``ratio · ‖∇CE‖ / ‖∇CoCo‖`` of :func:`gradient_norms` measured at λ = 1, to two significant digits."""
    return float(f"{ratio * norms['ce'] / norms['coco']:.2g}")


def run_arm(recipe: Recipe, arm: Arm, seed: int, student: Mapping[str, Any]) -> dict[str, Any]:
    """Train and test one arm at one seed; the row of the results (with the built trainer's terms).

    The run has a ``ckpt_dir`` of its own, ``<ckpt_dir>/<arm>_s<seed>/`` (a training run locks its folder),
    holding hard links to the trained teacher and paraphrasers (:func:`link_prerequisites`)."""
    model_name = f"{arm.name}_s{seed}.pt"
    folder = {"ckpt_dir": str(link_prerequisites(recipe, Path(model_name).stem))}
    record, parser = recipe.train(
        "train.yaml", {**student, **arm.overrides, "seed": seed, "model_name": model_name, **folder}
    )
    trainer = parser.get_parsed_content("train#trainer")
    return {
        "arm": arm.name,
        "seed": seed,
        **record,
        **recipe.evaluate(model_name, **folder),
        "terms": term_signature(trainer.terms),
        "adversarial": parser.get_parsed_content("adversarial") is not None,
    }


def link_prerequisites(recipe: Recipe, name: str) -> Path:
    """``<ckpt_dir>/<name>/`` with hard links to the teacher's and the paraphrasers' checkpoints of
    ``<ckpt_dir>`` (``train.yaml``'s ``teacher#path`` and ``paraphrasers#path``) and their preprocessing
    records, those that exist; returns the folder."""
    shared = recipe.parser("train.yaml")
    folder = Path(recipe.common["ckpt_dir"]) / name
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("teacher#path", "paraphrasers#path"):
        checkpoint = Path(shared.get_parsed_content(key))
        for source in (checkpoint, preprocessing_record_path(checkpoint)):
            if source.exists() and not (folder / source.name).exists():
                os.link(source, folder / source.name)
    return folder


def train_teacher(recipe: Recipe, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``train_teacher.yaml`` with ``overrides``, then its test scores: the teacher's row of the results."""
    record, _ = recipe.train("train_teacher.yaml", overrides)
    return {**record, **recipe.evaluate("teacher.pt", network_def="@teacher_def")}


def _set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


class _Inline(Executor):
    """``jobs == 1``: each task runs in this process when submitted, in submission order."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # handed to the caller by future.result()
            future.set_exception(error)
        return future


def _executor(jobs: int) -> Executor:
    if jobs <= 1:
        return _Inline()
    threads = torch.get_num_threads()
    return ProcessPoolExecutor(jobs, get_context("spawn"), initializer=_set_threads, initargs=(threads,))


def _network_sizes(recipe: Recipe) -> dict[str, Any]:
    parser = recipe.parser("train.yaml")
    return {
        "teacher_params": count_parameters(parser.get_parsed_content("teacher_def")),
        "student_params": count_parameters(parser.get_parsed_content("network_def")),
        "teacher_features": list(parser.get("teacher_def#features")),
        "student_width": parser.get("network_def#width_mult"),
        "roi_size": list(parser.get("roi_size")),
        "batch_size": parser.get("batch_size"),
        "n_train": len(parser.get_parsed_content("train#datalist")),
    }


def run_protocol(
    recipe: Recipe, unlabelled_dir: str | None = None, log: Callable[[str], None] = print, jobs: int = 1
) -> dict[str, Any]:
    """The whole protocol (module docstring) with ``jobs`` training runs at a time; returns every raw
    number (JSON-serialisable)."""
    executor = _executor(jobs)
    try:
        return _protocol(recipe, unlabelled_dir, log, executor)
    finally:
        executor.shutdown(cancel_futures=True)  # on a failure, the queued runs are dropped


def _protocol(
    recipe: Recipe, unlabelled_dir: str | None, log: Callable[[str], None], executor: Executor
) -> dict[str, Any]:
    settings = recipe.settings
    student = dict(settings["student"])
    seeds = [int(s) for s in settings["seeds"]]
    sizes = _network_sizes(recipe)

    def arm_runs(arms: list[Arm], seeds: list[int]) -> dict[tuple[int, str], Future]:
        return {(s, a.name): executor.submit(run_arm, recipe, a, s, student) for s in seeds for a in arms}

    def finished(future: Future, what: str, metric: str = "miou") -> dict[str, Any]:
        row = future.result()
        label = {"miou": "test mIoU", "best_val_miou": "validation mIoU"}[metric]
        log(f"{what}: {label} {row[metric]:.4f} ({row['train_s']:.0f} s)")
        return row

    teacher_run = executor.submit(train_teacher, recipe, settings["teacher"])
    pending = arm_runs([STUDENT_ALONE], seeds)
    teacher = finished(teacher_run, "teacher")
    paraphraser, _ = recipe.train("train_paraphraser.yaml", settings["paraphraser"])
    log(f"paraphrasers: {paraphraser['train_s']:.0f} s")

    parser = recipe.parser("train.yaml", student)
    teacher_net, paraphrasers = (
        parser.get_parsed_content("teacher"),
        parser.get_parsed_content("paraphrasers"),
    )
    taps = parser.get_parsed_content("teacher_layers")  # the resolved names (teacher_taps: null = found)
    tests = recipe.parser("evaluate.yaml").get_parsed_content("validate#dataloader")
    sanity = target_label_correlation(teacher_net, taps, tests, paraphrasers, int(settings["sanity_pairs"]))
    sanity["paraphraser_error"] = reconstruction_error(teacher_net, taps, paraphrasers, tests)
    torch.manual_seed(seeds[0])  # the control: the same architecture, randomly initialised
    teachers = {"trained": teacher_net, "random": parser.get_parsed_content("teacher_def")}
    tap_sets = [list(taps)] + ([list(PAPER_FANET_TAPS)] if type(teacher_net).__name__ == "FANet" else [])
    sanity["tap_report"] = [
        row
        for pair in dict.fromkeys(map(tuple, tap_sets))
        for row in tap_report(teachers, list(pair), list(tests), int(settings["sanity_pairs"]), seed=seeds[0])
    ]
    log(
        f"sanity: r(CoCo target, label affinity) taps {sanity['r_taps']:.3f}, "
        f"factors {sanity['r_factors']:.3f}"
    )

    ratio = float(settings["gradient_ratio"])
    first = {**student, "seed": seeds[0], "lambda_coco": 1.0, "lambda_adv": 0}
    gradients = {
        "plain": gradient_norms(recipe, {**first, "distill": "coco", "use_paraphraser": False}),
        "paraphraser": gradient_norms(recipe, {**first, "distill": "coco"}),
    }
    lambdas = {variant: choose_lambda(norms, ratio) for variant, norms in gradients.items()}
    log(f"lambda_coco: {lambdas} (gradient norms {gradients})")

    if not unlabelled_dir:
        unlabelled_note = "no unlabelled pool (give --unlabelled-dir, or a --dataset-dir with unlabelled/)"
    elif not recipe.has_setting("train.yaml", "unlabelled_dir"):
        unlabelled_note = f"train.yaml has no unlabelled_dir setting to pass {unlabelled_dir} to"
        unlabelled_dir = None
    else:
        unlabelled_note = f"unlabelled pool: {unlabelled_dir}"
    log(f"unlabelled arms: {'run' if unlabelled_dir else 'skipped'} ({unlabelled_note})")
    noop = float(settings["noop_lambda_coco"])
    baselines = [str(b) for b in settings["baselines"]]
    screens = screening_arms(baselines) if len(baselines) > 1 else []
    screen_runs = arm_runs(screens, [int(settings["screen_seed"])])
    # every arm but the best baseline's is known now: the long unlabelled arms first, for the fewest idle jobs
    known = protocol_arms("kd", lambdas["plain"], lambdas["paraphraser"], noop, unlabelled_dir)
    rest = [a for a in known if a != STUDENT_ALONE]
    pending |= arm_runs(sorted(rest, key=lambda a: "unlabelled_dir" not in a.overrides), seeds)
    screening = [finished(f, f"screen {name}", "best_val_miou") for (_, name), f in screen_runs.items()]
    baseline = max(screening, key=lambda row: row["best_val_miou"])["arm"] if screening else baselines[0]
    arms = protocol_arms(baseline, lambdas["plain"], lambdas["paraphraser"], noop, unlabelled_dir)
    pending |= arm_runs([a for a in arms if a not in known], seeds)
    runs = [finished(pending[s, a.name], f"seed {s} {a.name}") for s in seeds for a in arms]
    return {
        "files": recipe.sources,
        "settings": settings,
        "dataset_dir": recipe.common.get("dataset_dir"),
        "sizes": sizes,
        "teacher": teacher,
        "paraphraser": paraphraser,
        "sanity": sanity,
        "gradients": gradients,
        "lambdas": lambdas,
        "noop_gradient_ratio": noop * gradients["paraphraser"]["coco"] / gradients["paraphraser"]["ce"],
        "screening": screening,
        "baseline": baseline,
        "unlabelled_dir": unlabelled_dir,
        "unlabelled_note": unlabelled_note,
        "arms": [
            {"name": a.name, "label": a.label, "command": a.command(), "distill": a.distill} for a in arms
        ],
        "runs": runs,
    }


def summarise(result: Mapping[str, Any], confidence: float = 0.95) -> list[dict[str, Any]]:
    """One row per arm, in arm order: mean and sample std over seeds of the test mIoU and Dice, mean train
    seconds, the share of the teacher–student gap closed ``(m − m_student) / (m_teacher − m_student)`` of the
    means, the paired intervals of the mIoU against the student alone and against the no-op arm, and the
    :func:`benchmarks.stats.verdict`."""
    by_arm: dict[str, dict[int, Mapping]] = {}
    for run in result["runs"]:
        by_arm.setdefault(run["arm"], {})[run["seed"]] = run
    student, noop = by_arm.get("none", {}), by_arm.get("noop")
    teacher = result["teacher"]["miou"]
    rows = []
    for arm in result["arms"]:
        runs = by_arm.get(arm["name"], {})
        seeds = sorted(runs)
        miou = [runs[s]["miou"] for s in seeds]
        row = {
            **arm,
            "n": len(seeds),
            "miou": statistics.fmean(miou),
            "miou_std": statistics.stdev(miou) if len(miou) > 1 else math.nan,
            "dice": statistics.fmean(runs[s]["dice"] for s in seeds),
            "train_s": statistics.fmean(runs[s]["train_s"] for s in seeds),
            "best_epoch": statistics.fmean(runs[s]["best_epoch"] for s in seeds),
            "epochs": runs[seeds[0]]["epochs"],
        }
        if arm["name"] != "none" and set(seeds) <= set(student):
            row["vs_student"] = paired_interval(miou, [student[s]["miou"] for s in seeds], confidence)
            base = statistics.fmean(student[s]["miou"] for s in seeds)
            row["gap_closed"] = (row["miou"] - base) / (teacher - base) if teacher > base else math.nan
            if noop is not None and arm["name"] != "noop" and set(seeds) <= set(noop):
                row["vs_noop"] = paired_interval(miou, [noop[s]["miou"] for s in seeds], confidence)
            row["verdict"] = verdict(row["vs_student"], row.get("vs_noop"))
        rows.append(row)
    return rows
