"""The accuracy protocol: can distillation's gain be told from noise? Every stage is the bundle's.

1. Teacher: ``train_teacher.yaml`` on the full labelled training set, ``benchmark#teacher`` epochs, keeping
   two checkpoints: ``teacher_best.pt`` (its best validation mIoU, the bundle's checkpoint saver) and
   ``teacher_last.pt`` (its last epoch, ``benchmark.yaml``'s ``last_saver``: an override of the stage's
   handlers); both scored on the test split by ``evaluate.yaml``. The one ``benchmark#teacher_checkpoint``
   names (``last`` by default: a small validation split selects noise) becomes ``teacher.pt``, the teacher
   every later stage reads. A randomly initialised teacher of the same architecture, saved as ``teacher.pt``
   in a folder of its own, is the random-teacher control's (:func:`save_random_teacher`).
2. Paraphrasers: ``train_paraphraser.yaml`` on the frozen teacher.
3. Sanity figure: Pearson r of the teacher's CoCo target with label affinity on test tiles with both classes
   (:mod:`benchmarks.target`).
4. λ_coco: the gradient norms of CE and of CoCo (λ = 1) on the student's parameters after
   ``gradient_warmup_iterations`` training iterations of the first seed (CE + CoCo at λ = 1, the bundle's
   optimiser and LR schedule), on the next batch; ``λ = gradient_ratio · ‖∇CE‖ / ‖∇CoCo‖`` (two significant
   digits), for CoCo on the teacher's taps, on standardised taps and on the paraphraser factors. The norms at
   step 0 are kept too (the ratio there is the wrong one once training moves).
5. The best baseline: each ``benchmark#baselines`` choice trained once on ``screen_seed`` (not a paired
   seed), picked by best validation mIoU.
6. Every arm (:func:`benchmarks.bundle.protocol_arms`) on every seed: ``train.yaml`` with the arm's overrides,
   ``benchmark#student`` (the small labelled subset ``n_labelled``, the epochs) and ``seed``; each scored by
   ``evaluate.yaml`` at its best validation mIoU. For one seed every arm starts from the same student weights
   and sees the same batches and flips (``benchmark.yaml`` seeds the loader's generator), so arms are
   compared by paired differences with a t interval and the minimum detectable difference at 80 % power
   (:mod:`benchmarks.stats`).
7. The pool-size curve (``parts`` holding ``"curve"``): ``benchmark#curve#arm`` with the first
   ``pool_sizes`` tiles of the unlabelled pool, on ``benchmark#curve#seeds``, at a fixed iteration budget,
   against the student alone of the same seeds (:func:`summarise_curve`); with ``benchmark#curve#budgets``
   (epochs), the curve arm at the largest pool trained for those epochs of ``iterations_per_epoch``, on the
   curve's seeds, paired against the curve's budget.
8. The comparison (``parts`` holding ``"compare"``): the curve arm at the curve's largest pool and budget,
   and each of ``benchmark#compare#arms`` at that pool and budget, on ``benchmark#compare#seeds`` (more seeds
   than the curve's: the comparison needs the power), paired against the curve arm
   (:func:`summarise_comparison`). Its own part, so that the curve's time stays the curve's.

Runs are independent processes' work: with ``jobs > 1`` each training run (the teacher, the screening and
every arm) goes to one of ``jobs`` fresh processes (``spawn``) of ``threads`` threads, so a run's numbers do
not depend on ``jobs`` or on the order runs finish in (an arm is what its ``python -m monai.bundle run``
command gives, tested). The student-alone arms need no teacher and run beside it.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from benchmarks.bundle import (
    RANDOM_TEACHER,
    STUDENT_ALONE,
    Arm,
    Recipe,
    budget_arms,
    budget_overrides,
    curve_arms,
    pool_subset,
    protocol_arms,
    screening_arms,
    term_signature,
)
from benchmarks.stats import minimum_detectable_difference, paired_interval, verdict
from benchmarks.target import reconstruction_error, tap_report, target_label_correlation
from monai_coco.checkpoints import preprocessing_record_path, save_checkpoint
from monai_coco.networks.summary import count_parameters

PAPER_FANET_TAPS = ("encoder.2", "decoder.0.up")  # the paper's pair (method.md §2), reported too
PARTS = ("table", "curve", "compare")
# protocol_arms' lambdas where no CoCo arm runs (or only the arms' names are wanted)
NO_LAMBDAS = {"plain": math.nan, "standardized": math.nan, "paraphraser": math.nan}


def gradient_norms(
    recipe: Recipe, overrides: Mapping[str, Any], warmup: int = 0
) -> dict[str, dict[str, float]]:
    """``{"start": {term: ‖∇ term‖₂}, "warm": {...}}`` over the student's parameters of ``train.yaml`` with
    ``overrides``: ``start`` on the first batch (the student at its seeded initialisation), ``warm`` on the
    batch after ``warmup`` training iterations of the trainer as built (its loss at its weights, its
    optimiser, the LR schedule stepped per iteration as the bundle's ``LrScheduleHandler`` does; no
    validation, no critic). ``warmup`` 0: both are the first batch's."""
    workflow = recipe.stage("train.yaml", overrides)
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    scheduler = workflow.parser.get_parsed_content("lr_scheduler")
    batches = _cycle(trainer.data_loader)
    first = next(batches)
    norms = {"start": _term_gradients(trainer, first)}
    batch = first
    for _ in range(warmup):
        trainer.state.iteration += 1
        trainer.state.batch = batch
        trainer.state.output = trainer._iteration(trainer, batch)
        scheduler.step()
        batch = next(batches)
    norms["warm"] = _term_gradients(trainer, batch) if warmup else dict(norms["start"])
    return norms


def _cycle(loader: Any) -> Any:
    while True:
        yield from loader


def _term_gradients(trainer: Any, batch: Any) -> dict[str, float]:
    """``{term: ‖∇ term‖₂}`` of one batch over the trainer's student parameters (nothing is updated)."""
    inputs, targets = trainer.prepare_batch(batch, trainer.state.device, trainer.non_blocking)[:2]
    trainer.network.train()
    trainer.state.batch, trainer.state.output = batch, {"image": inputs, "label": targets}
    terms = trainer.loss_terms(trainer.forward(inputs, targets), targets)
    params = [p for p in trainer.network.parameters() if p.requires_grad]
    norms = {}
    for name, value in terms.items():
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        norms[name] = math.sqrt(sum(float(g.double().square().sum()) for g in grads if g is not None))
    trainer.optimizer.zero_grad(set_to_none=True)
    return norms


def choose_lambda(norms: Mapping[str, float], ratio: float) -> float:
    """``ratio · ‖∇CE‖ / ‖∇CoCo‖`` of :func:`gradient_norms` measured at λ = 1, to two significant digits."""
    return float(f"{ratio * norms['ce'] / norms['coco']:.2g}")


def run_arm(recipe: Recipe, arm: Arm, seed: int, student: Mapping[str, Any]) -> dict[str, Any]:
    """Train and test one arm at one seed; the row of the results (with the built trainer's terms).

    The run has a ``ckpt_dir`` of its own, ``<ckpt_dir>/<arm>_s<seed>/`` (a training run locks its folder),
    holding hard links to the trained teacher and paraphrasers (:func:`link_prerequisites`); for the
    random-teacher control (``arm.teacher == "random"``), to those of ``<ckpt_dir>/random_teacher/``."""
    model_name = f"{arm.name}_s{seed}.pt"
    source = Path(recipe.common["ckpt_dir"]) / (RANDOM_TEACHER if arm.teacher == "random" else "")
    folder = {"ckpt_dir": str(link_prerequisites(recipe, Path(model_name).stem, source))}
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


def link_prerequisites(recipe: Recipe, name: str, source: str | Path | None = None) -> Path:
    """``<ckpt_dir>/<name>/`` with hard links to the teacher's and the paraphrasers' checkpoints of
    ``source`` (default ``<ckpt_dir>``; the names of ``train.yaml``'s ``teacher#path`` and
    ``paraphrasers#path``) and their preprocessing records, those that exist; returns the folder."""
    shared = recipe.parser("train.yaml", {"ckpt_dir": str(source or recipe.common["ckpt_dir"])})
    folder = Path(recipe.common["ckpt_dir"]) / name
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("teacher#path", "paraphrasers#path"):
        checkpoint = Path(shared.get_parsed_content(key))
        for source in (checkpoint, preprocessing_record_path(checkpoint)):
            if source.exists() and not (folder / source.name).exists():
                os.link(source, folder / source.name)
    return folder


TEACHER_CHECKPOINTS = ("best", "last")


def train_teacher(recipe: Recipe, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``train_teacher.yaml`` with ``overrides``, keeping ``teacher_best.pt`` (best validation mIoU) and
    ``teacher_last.pt`` (last epoch: ``benchmark.yaml``'s ``last_saver`` added to the stage's main
    handlers), each with the stage's preprocessing record; both scored on the test split. Returns the
    training record with ``{"best": scores, "last": scores}``."""
    ckpt = Path(recipe.common["ckpt_dir"])
    handlers = [*recipe.parser("train_teacher.yaml").get("train#main_handlers"), "@last_saver"]
    stage = {
        **overrides,
        "model_name": "teacher_best.pt",
        "train#main_handlers": handlers,
        "last_saver#path": str(ckpt / "teacher_last.pt"),
    }
    record, _ = recipe.train("train_teacher.yaml", stage)
    best_record = preprocessing_record_path(ckpt / "teacher_best.pt")
    if best_record.exists():
        shutil.copyfile(best_record, preprocessing_record_path(ckpt / "teacher_last.pt"))
    scores = {
        name: recipe.evaluate(f"teacher_{name}.pt", network_def="@teacher_def")
        for name in TEACHER_CHECKPOINTS
    }
    return {**record, **scores}


def select_teacher(recipe: Recipe, teacher: Mapping[str, Any], checkpoint: str) -> dict[str, Any]:
    """Make ``<ckpt_dir>/teacher_<checkpoint>.pt`` (and its record) ``<ckpt_dir>/teacher.pt``, the teacher the
    later stages read; returns the teacher's row: its training record, the chosen checkpoint's test scores,
    ``checkpoint``, and ``epoch``, the epoch of that checkpoint (the best validation epoch or the last).

    Raises:
        ValueError: ``checkpoint`` not ``"best"`` or ``"last"``.
    """
    if checkpoint not in TEACHER_CHECKPOINTS:
        raise ValueError(f"teacher_checkpoint must be one of {TEACHER_CHECKPOINTS}, got {checkpoint!r}.")
    ckpt = Path(recipe.common["ckpt_dir"])
    chosen = ckpt / f"teacher_{checkpoint}.pt"
    for source, target in (
        (chosen, ckpt / "teacher.pt"),
        (preprocessing_record_path(chosen), preprocessing_record_path(ckpt / "teacher.pt")),
    ):
        if source.exists():
            target.unlink(missing_ok=True)
            os.link(source, target)
    epoch = teacher["best_epoch"] if checkpoint == "best" else teacher["epochs"]
    return {**teacher, **teacher[checkpoint], "checkpoint": checkpoint, "epoch": epoch}


def save_random_teacher(recipe: Recipe, seed: int) -> dict[str, Any]:
    """``<ckpt_dir>/random_teacher/``: ``teacher.pt``, ``teacher_def`` as ``torch.manual_seed(seed)``
    initialises it (the trained teacher's architecture, never trained), with the trained teacher's
    preprocessing record, and hard links to the trained paraphrasers (a KD control does not read them; the
    stage loads them when ``use_paraphraser``). The control's teacher, scored on the test split like the
    trained one: returns its scores and the folder."""
    ckpt = Path(recipe.common["ckpt_dir"])
    folder = ckpt / RANDOM_TEACHER
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    network = recipe.parser("train_teacher.yaml").get_parsed_content("teacher_def")
    save_checkpoint(folder / "teacher.pt", {"model": network}, bare=True)
    for source in (preprocessing_record_path(ckpt / "teacher.pt"),):
        if source.exists():
            shutil.copyfile(source, folder / source.name)
    for source in (ckpt / "paraphraser.pt", preprocessing_record_path(ckpt / "paraphraser.pt")):
        if source.exists() and not (folder / source.name).exists():
            os.link(source, folder / source.name)
    scores = recipe.evaluate("teacher.pt", network_def="@teacher_def", ckpt_dir=str(folder),
                             output_dir=str(recipe.workdir / "eval" / RANDOM_TEACHER))  # fmt: skip
    return {**scores, "seed": seed, "folder": str(folder)}


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
    recipe: Recipe,
    unlabelled_dir: str | None = None,
    log: Callable[[str], None] = print,
    jobs: int = 1,
    parts: tuple[str, ...] = ("table",),
) -> dict[str, Any]:
    """The protocol (module docstring) with ``jobs`` training runs at a time: some of its ``parts``,
    ``"table"`` (every arm on every seed), ``"curve"`` (the pool-size curve) and ``"compare"`` (arms at the
    curve's largest pool on many seeds), sharing one teacher; returns every raw number (JSON-serialisable).
    ``unlabelled_dir``: the whole unlabelled pool (the table's is its first ``benchmark#pool_size`` tiles).
    Raises ValueError for other parts."""
    if not parts or not set(parts) <= set(PARTS):
        raise ValueError(f"parts must be some of {PARTS}, got {parts!r}.")
    executor = _executor(jobs)
    try:
        return _protocol(recipe, unlabelled_dir, log, executor, tuple(parts))
    finally:
        executor.shutdown(cancel_futures=True)  # on a failure, the queued runs are dropped


def _unlabelled(recipe: Recipe, unlabelled_dir: str | None) -> tuple[str | None, str]:
    if not unlabelled_dir:
        return None, "no unlabelled pool (give --unlabelled-dir, or a --dataset-dir with unlabelled/)"
    if not recipe.has_setting("train.yaml", "unlabelled_dir"):
        return None, f"train.yaml has no unlabelled_dir setting to pass {unlabelled_dir} to"
    return unlabelled_dir, f"unlabelled pool: {unlabelled_dir}"


def measure_lambdas(
    recipe: Recipe, student: Mapping[str, Any], seed: int, ratio: float, warmup: int
) -> tuple[dict[str, dict], dict[str, float]]:
    """The gradient norms (:func:`gradient_norms`, ``warmup`` iterations) of CoCo on the teacher's taps
    (``plain``), on standardised taps (``standardized``) and on the paraphraser factors (``paraphraser``),
    each at λ = 1 without the critic, and the λ_coco each gives (:func:`choose_lambda` of the warm norms)."""
    first = {**student, "seed": seed, "lambda_coco": 1.0, "lambda_adv": 0, "distill": "coco"}
    variants = {
        "plain": {"use_paraphraser": False, "coco_standardize": False},
        "standardized": {"use_paraphraser": False, "coco_standardize": True},
        "paraphraser": {},
    }
    gradients = {name: gradient_norms(recipe, {**first, **extra}, warmup) for name, extra in variants.items()}
    return gradients, {name: choose_lambda(norms["warm"], ratio) for name, norms in gradients.items()}


def _protocol(
    recipe: Recipe,
    unlabelled_dir: str | None,
    log: Callable[[str], None],
    executor: Executor,
    parts: tuple[str, ...],
) -> dict[str, Any]:
    settings = recipe.settings
    student = dict(settings["student"])
    table = "table" in parts
    curve_settings = dict(settings["curve"])
    seeds = [int(s) for s in settings["seeds"]]
    curve_seeds = [int(s) for s in curve_settings["seeds"]] if "curve" in parts else []
    comparison = dict(settings["compare"] or {}) if "compare" in parts else {}
    compare_seeds = [int(s) for s in comparison.get("seeds", [])]
    sizes = _network_sizes(recipe)
    pending: dict[tuple[int, str], Future] = {}

    def arm_runs(arms: list[Arm], seeds: list[int]) -> dict[tuple[int, str], Future]:
        return {(s, a.name): executor.submit(run_arm, recipe, a, s, student) for s in seeds for a in arms}

    def finished(future: Future, what: str, metric: str = "miou") -> dict[str, Any]:
        row = future.result()
        label = {"miou": "test mIoU", "best_val_miou": "validation mIoU"}[metric]
        log(f"{what}: {label} {row[metric]:.4f} ({row['train_s']:.0f} s)")
        return row

    teacher_run = executor.submit(train_teacher, recipe, settings["teacher"])
    alone_seeds = list(dict.fromkeys((seeds if table else []) + curve_seeds + compare_seeds))
    pending |= arm_runs([STUDENT_ALONE], alone_seeds)
    trained = teacher_run.result()
    log(
        f"teacher: test mIoU {trained['best']['miou']:.4f} at its best validation epoch "
        f"{trained['best_epoch']}, {trained['last']['miou']:.4f} at its last ({trained['epochs']}); "
        f"{trained['train_s']:.0f} s"
    )
    teacher = select_teacher(recipe, trained, str(settings["teacher_checkpoint"]))
    paraphraser, _ = recipe.train("train_paraphraser.yaml", settings["paraphraser"])
    log(f"paraphrasers: {paraphraser['train_s']:.0f} s")
    unlabelled_dir, unlabelled_note = _unlabelled(recipe, unlabelled_dir)
    log(f"unlabelled arms: {'run' if unlabelled_dir else 'skipped'} ({unlabelled_note})")
    pools = recipe.workdir / "pools"
    pool_size = settings["pool_size"]
    table_pool = unlabelled_dir
    if unlabelled_dir and pool_size is not None:
        table_pool = pool_subset(unlabelled_dir, int(pool_size), pools / f"pool_{int(pool_size)}")
    result: dict[str, Any] = {
        "files": recipe.sources,
        "settings": settings,
        "dataset_dir": recipe.common.get("dataset_dir"),
        "sizes": sizes,
        "teacher": teacher,
        "paraphraser": paraphraser,
        "unlabelled_dir": table_pool,
        "unlabelled_pool": unlabelled_dir,
        "unlabelled_note": unlabelled_note,
    }
    ratio, warmup = float(settings["gradient_ratio"]), int(settings["gradient_warmup_iterations"])
    lambdas: dict[str, float] = {}
    noop = float(settings["noop_lambda_coco"])
    pool_overrides = dict(settings["pool_student"])
    control = str(settings["control_arm"])
    runs: list[tuple[int, Arm]] = []
    if table:
        result |= _sanity(recipe, student, seeds[0])
        log(
            f"sanity: r(CoCo target, label affinity) taps {result['sanity']['r_taps']:.3f}, "
            f"factors {result['sanity']['r_factors']:.3f}"
        )
        result["random_teacher"] = save_random_teacher(recipe, seeds[0])
        log(f"random teacher: test mIoU {result['random_teacher']['miou']:.4f}")
        gradients, lambdas = measure_lambdas(recipe, student, seeds[0], ratio, warmup)
        log(f"lambda_coco: {lambdas} (gradient norms {gradients})")
        result |= {
            "gradients": gradients,
            "lambdas": lambdas,
            "noop_gradient_ratio": noop
            * gradients["paraphraser"]["warm"]["coco"]
            / gradients["paraphraser"]["warm"]["ce"],
        }
        baselines = [str(b) for b in settings["baselines"]]
        screens = screening_arms(baselines) if len(baselines) > 1 else []
        screen_runs = arm_runs(screens, [int(settings["screen_seed"])])
        # every arm but the best baseline's is known now: the long pool arms first, for the fewest idle jobs
        known = protocol_arms("kd", lambdas, noop, table_pool, pool_overrides, control)
        rest = [a for a in known if a != STUDENT_ALONE]
        pending |= arm_runs(sorted(rest, key=lambda a: "unlabelled_dir" not in a.overrides), seeds)
    if (curve_seeds or compare_seeds) and unlabelled_dir:
        named = [str(curve_settings["arm"]), *map(str, comparison.get("arms", []))]
        if not lambdas and set(named) - {"kd", "kd_pool"}:  # measured on the curve's first seed, as with it
            _, lambdas = measure_lambdas(recipe, student, int(curve_settings["seeds"][0]), ratio, warmup)
        by_name = {a.name: a for a in protocol_arms("kd", lambdas or NO_LAMBDAS, noop, "-", control=control)}
        largest = max(int(n) for n in curve_settings["pool_sizes"])
        folders = {
            int(n): pool_subset(unlabelled_dir, int(n), pools / f"pool_{int(n)}")
            for n in (curve_settings["pool_sizes"] if curve_seeds else [largest])
        }
        budget = budget_overrides(int(curve_settings["epochs"]), int(curve_settings["iterations_per_epoch"]))
        curve = curve_arms(by_name[named[0]], folders, budget)  # its last: the largest pool's
        if curve_seeds:
            pending |= arm_runs(curve, curve_seeds)
            runs += [(s, a) for s in curve_seeds for a in curve]
            result["curve"] = {
                "arm": named[0],
                "seeds": curve_seeds,
                "budget": budget,
                "pools": {str(n): f for n, f in folders.items()},
                "arms": [_arm_record(a) for a in curve],
            }
            budgets = [int(n) for n in curve_settings.get("budgets") or []]
            if budgets:
                iterations = int(curve_settings["iterations_per_epoch"])
                longer = budget_arms(by_name[named[0]], largest, folders[largest], budgets, iterations)
                pending |= arm_runs(longer, curve_seeds)
                runs += [(s, a) for s in curve_seeds for a in longer]
                result["curve"]["budgets"] = {
                    "pool": largest,
                    "seeds": curve_seeds,
                    "arms": [_arm_record(a) for a in [curve[-1], *longer]],
                }
        if compare_seeds:
            others = [curve_arms(by_name[name], {largest: folders[largest]}, budget)[0] for name in named[1:]]
            for s in compare_seeds:  # seed by seed: a run stopped early has whole pairs to resume from
                arms = ([] if s in curve_seeds else [curve[-1]]) + others
                pending |= arm_runs(arms, [s])
                runs += [(s, a) for a in arms]
            result["compare"] = {
                "pool": largest,
                "seeds": compare_seeds,
                "budget": budget,
                "arms": [_arm_record(a) for a in [curve[-1], *others]],
            }
    else:
        skipped = {"skipped": unlabelled_note}
        result |= {"curve": skipped} if curve_seeds else {}
        result |= {"compare": skipped} if compare_seeds else {}
    if table:
        screening = [finished(f, f"screen {name}", "best_val_miou") for (_, name), f in screen_runs.items()]
        baseline = max(screening, key=lambda row: row["best_val_miou"])["arm"] if screening else baselines[0]
        arms = protocol_arms(baseline, lambdas, noop, table_pool, pool_overrides, control)
        pending |= arm_runs([a for a in arms if a not in known], seeds)
        result |= {"screening": screening, "baseline": baseline, "arms": [_arm_record(a) for a in arms]}
        runs = [(s, a) for s in seeds for a in arms] + runs
    alone = [(s, STUDENT_ALONE) for s in alone_seeds if not table or s not in seeds]
    done = [finished(pending[s, a.name], f"seed {s} {a.name}") for s, a in runs + alone]
    result["runs"] = done
    return result



def _arm_record(arm: Arm) -> dict[str, Any]:
    return {"name": arm.name, "label": arm.label, "command": arm.command(), "distill": arm.distill,
            "teacher": arm.teacher}  # fmt: skip


def _sanity(recipe: Recipe, student: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The sanity figure: the CoCo target's correlation with label affinity, the paraphrasers' error and the
    tap report (trained and random teacher)."""
    parser = recipe.parser("train.yaml", {**student, "distill": "coco"})  # the paper's: taps and paraphrasers
    teacher_net, paraphrasers = (
        parser.get_parsed_content("teacher"),
        parser.get_parsed_content("paraphrasers"),
    )
    taps = parser.get_parsed_content("teacher_layers")  # the resolved names (teacher_taps: null = found)
    tests = recipe.parser("evaluate.yaml").get_parsed_content("validate#dataloader")
    pairs = int(recipe.settings["sanity_pairs"])
    sanity = target_label_correlation(teacher_net, taps, tests, paraphrasers, pairs)
    sanity["paraphraser_error"] = reconstruction_error(teacher_net, taps, paraphrasers, tests)
    torch.manual_seed(seed)  # the control: the same architecture, randomly initialised
    # a new parser: teacher_def of `parser` is the very network `teacher` loaded the trained weights into
    random_teacher = recipe.parser("train.yaml", student).get_parsed_content("teacher_def")
    teachers = {"trained": teacher_net, "random": random_teacher}
    tap_sets = [list(taps)] + ([list(PAPER_FANET_TAPS)] if type(teacher_net).__name__ == "FANet" else [])
    sanity["tap_report"] = [
        row
        for pair in dict.fromkeys(map(tuple, tap_sets))
        for row in tap_report(teachers, list(pair), list(tests), pairs, seed=seed)
    ]
    return {"sanity": sanity}


def compare(x: list[float], y: list[float], confidence: float = 0.95, power: float = 0.8) -> dict[str, float]:
    """:func:`benchmarks.stats.paired_interval` of ``x − y`` with ``mdd``, its minimum detectable difference
    at ``power`` (:func:`benchmarks.stats.minimum_detectable_difference`)."""
    d = paired_interval(x, y, confidence)
    return {**d, "mdd": minimum_detectable_difference(d["sd"], d["n"], confidence, power)}


def summarise(
    result: Mapping[str, Any], confidence: float = 0.95, power: float = 0.8
) -> list[dict[str, Any]]:
    """One row per arm, in arm order: mean and sample std over seeds of the test mIoU and Dice, mean train
    seconds, the share of the teacher–student gap closed ``(m − m_student) / (m_teacher − m_student)`` of the
    means, the paired intervals of the mIoU against the student alone and against the no-op arm, each with its
    minimum detectable difference at ``power`` (:func:`compare`), and the :func:`benchmarks.stats.verdict`.
    The random-teacher control's row also has ``vs_trained``: the control arm (trained teacher) minus it."""
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
            row["vs_student"] = compare(miou, [student[s]["miou"] for s in seeds], confidence, power)
            base = statistics.fmean(student[s]["miou"] for s in seeds)
            row["gap_closed"] = (row["miou"] - base) / (teacher - base) if teacher > base else math.nan
            if noop is not None and arm["name"] != "noop" and set(seeds) <= set(noop):
                row["vs_noop"] = compare(miou, [noop[s]["miou"] for s in seeds], confidence, power)
            row["verdict"] = verdict(row["vs_student"], row.get("vs_noop"))
        if arm.get("teacher") == "random":
            trained = by_arm.get(_control_name(result["arms"], arm), {})
            if set(seeds) <= set(trained):
                row["vs_trained"] = compare([trained[s]["miou"] for s in seeds], miou, confidence, power)
                row["control_of"] = _control_name(result["arms"], arm)
        rows.append(row)
    return rows


def _control_name(arms: list[Mapping[str, Any]], control: Mapping[str, Any]) -> str:
    """The arm the random-teacher ``control`` repeats: the trained-teacher arm of the same overrides."""
    trained = [a for a in arms if a.get("teacher", "trained") == "trained"]
    return next((a["name"] for a in trained if a["command"] == control["command"]), "")


def summarise_curve(result: Mapping[str, Any], confidence: float = 0.95, power: float = 0.8) -> list[dict]:
    """The pool-size curve, one row per pool size (in size order): the arm's mean test mIoU over the curve's
    seeds, its paired interval and MDD against the student alone of the same seeds, and the share of the
    teacher–student gap closed, ``Δ / (m_teacher − m_student)`` for the mean ``Δ`` and for both ends of its
    interval (the gap of the means is held fixed). Empty when the curve did not run."""
    curve = result.get("curve") or {}
    if "arms" not in curve:
        return []
    sizes = sorted(int(n) for n in curve["pools"])
    return _pool_rows(result, curve["arms"], sizes, curve["seeds"], confidence, power)


def summarise_comparison(
    result: Mapping[str, Any], confidence: float = 0.95, power: float = 0.8, part: str = "compare"
) -> list[dict]:
    """The comparison at the curve's largest pool, one row per arm, the curve arm (at the curve's budget)
    first, each as a row of :func:`summarise_curve` over the part's seeds; every other arm also has
    ``vs_reference``: the arm minus the curve arm, paired per seed, with its MDD. ``part``: ``"compare"``
    (``benchmark#compare``: other arms, on the comparison's seeds) or ``"budgets"``
    (``benchmark#curve#budgets``: the curve's arm trained longer, on the curve's seeds). Empty when that
    part did not run."""
    comparison = result.get("compare") if part == "compare" else (result.get("curve") or {}).get(part)
    if not comparison or "arms" not in comparison:
        return []
    arms = comparison["arms"]
    rows = _pool_rows(result, arms, [comparison["pool"]] * len(arms), comparison["seeds"], confidence, power)
    reference = rows[0]["runs"]
    for row in rows[1:]:
        row["vs_reference"] = compare(row["runs"], reference, confidence, power)
    return rows


def _pool_rows(
    result: Mapping[str, Any],
    arms: list[Mapping[str, Any]],
    sizes: list[int],
    seeds: list[int],
    confidence: float,
    power: float,
) -> list[dict]:
    """One row per arm (its pool size in ``sizes``) over the ``seeds`` the student alone ran: mIoU, the
    paired interval against the student alone, the gap closed and its interval's ends (``runs``: the
    arm's mIoU per seed)."""
    by: dict[tuple[str, int], Mapping] = {(r["arm"], r["seed"]): r for r in result["runs"]}
    seeds = [s for s in seeds if ("none", s) in by]
    base = [by["none", s]["miou"] for s in seeds]
    gap = result["teacher"]["miou"] - statistics.fmean(base)
    rows = []
    for arm, size in zip(arms, sizes):
        miou = [by[arm["name"], s]["miou"] for s in seeds]
        d = compare(miou, base, confidence, power)
        closed = [v / gap if gap > 0 else math.nan for v in (d["mean"], d["low"], d["high"])]
        rows.append({
            **arm,
            "pool": size,
            "n": len(seeds),
            "runs": miou,
            "miou": statistics.fmean(miou),
            "miou_std": statistics.stdev(miou) if len(miou) > 1 else math.nan,
            "student": statistics.fmean(base),
            "gap": gap,
            "vs_student": d,
            "gap_closed": closed[0],
            "gap_closed_low": closed[1],
            "gap_closed_high": closed[2],
            "train_s": statistics.fmean(by[arm["name"], s]["train_s"] for s in seeds),
        })  # fmt: skip
    return rows
