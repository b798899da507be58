"""The benchmark's one recipe: every stage is built from the bundle's own configs, never from a Python copy.

A stage is the bundle's ``base.yaml``, the protocol overlay ``benchmark.yaml``, the mode's sizes and data
(``cpu.yaml``, ``histology.yaml`` of ``bundle/configs``), the size preset ``benchmark_<mode>.yaml`` (these
presets are the benchmark's, in ``scripts/benchmarks/configs``) and the stage's overlay
(``train_teacher.yaml``, ``train_paraphraser.yaml``, ``train.yaml``, ``evaluate.yaml``), with overrides. Every
stage is built by :func:`load_stage`, MONAI's ``ConfigWorkflow``, the workflow ``python -m monai.bundle run``
builds, and runs as it runs it: ``initialize()``, ``run()`` (the stage's ``training`` or ``evaluating``),
``finalize()``. An arm of the accuracy protocol is a set of ``train.yaml`` overrides (``--distill kd
--lambda_adv 0``, ...), so each baseline's weights and taps are exactly those of ``train.yaml``'s
``distill_terms``.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser, ConfigWorkflow

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundle" / "configs"  # the bundle's configs
PRESETS = Path(__file__).resolve().parent / "configs"  # the benchmark's own: benchmark*.yaml
MODES = ("smoke", "cpu", "gpu")
# the id each stage file's `python -m monai.bundle run <id>` runs, and MONAI's workflow type of the stage
RUN_IDS = {"evaluate.yaml": "evaluating", "inference.yaml": "inference"}  # the training stages: "training"
WORKFLOW_TYPES = {"evaluate.yaml": "eval", "inference.yaml": "infer"}  # the training stages: "train"


def load_stage(
    config_files: Sequence[str | PathLike],
    overrides: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    workflow_type: str | None = None,
    meta_file: str | PathLike | None = None,
) -> ConfigWorkflow:
    """A bundle stage as ``python -m monai.bundle run <run_id> --config_file <config_files> --<id> <value>
    ...`` builds it: MONAI's ``ConfigWorkflow`` on ``config_files`` (merged in order; ``metadata.json`` and
    ``logging.conf`` from the folder of the first one, unless ``meta_file``) with ``overrides``, not yet
    initialised. ``run_id`` and ``workflow_type`` default to the last file's stage (``evaluate.yaml``:
    ``evaluating``, ``eval``; ``inference.yaml``: ``inference``, ``infer``; a training stage: ``training``,
    ``train``).

    Run it as the command does: ``initialize()``, ``run()``, ``finalize()``; its built objects are then
    ``workflow.parser.get_parsed_content(id)`` (e.g. ``train#trainer``, with its final state). For a stage
    only read (settings, networks, data lists), ``workflow.parser`` alone.
    """
    files = [str(f) for f in config_files]
    stage = Path(files[-1]).name
    return ConfigWorkflow(
        config_file=files,
        meta_file=None if meta_file is None else str(meta_file),
        run_id=run_id or RUN_IDS.get(stage, "training"),
        workflow_type=workflow_type or WORKFLOW_TYPES.get(stage, "train"),
        **dict(overrides or {}),
    )


@dataclass(frozen=True)
class Arm:
    """One student recipe of the protocol: ``train.yaml`` with ``overrides``, distilled from the trained
    teacher (``teacher="trained"``) or from the same architecture randomly initialised (``"random"``, the
    random-teacher control: its own ``teacher.pt``, :func:`benchmarks.accuracy.save_random_teacher`)."""

    name: str
    label: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    teacher: str = "trained"

    @property
    def distill(self) -> str:
        return str(self.overrides.get("distill", "kd"))  # base.yaml's default

    def command(self) -> str:
        """The overrides as typed after ``python -m monai.bundle run training --config_file ...``."""
        return " ".join(f"--{key} {value}" for key, value in self.overrides.items())


STUDENT_ALONE = Arm("none", "student alone", {"distill": "none"})  # needs no teacher
RANDOM_TEACHER = "random_teacher"  # the control arm's name


def protocol_arms(
    baseline: str,
    lambdas: Mapping[str, float],
    noop_lambda: float,
    unlabelled_dir: str | None = None,
    pool_overrides: Mapping[str, Any] | None = None,
    control: str = "kd_pool",
) -> list[Arm]:
    """The accuracy protocol's arms, in the report's order:

    - ``none``: the student alone; ``kd``: KD (``--distill kd``);
    - ``kd_pool``: KD on the labelled tiles and the unlabelled pool ``unlabelled_dir``;
    - ``coco``: CoCo as the paper computes it, on the teacher's taps (``coco_standardize`` false);
    - ``coco_std``: CoCo's best variant, per-channel standardised taps (``--coco_standardize True``);
    - ``kd_coco_pool``: KD + CoCo's best variant (``--distill kd_coco``) with the pool;
    - ``full_pool``: the full method, CoCo on the paraphraser factors + the adversarial critic, with the pool;
    - the best baseline (``baseline``, when it is not KD); ``noop``: CoCo + paraphraser at ``noop_lambda``;
    - ``random_teacher``: the arm named ``control`` again, from a randomly initialised teacher (the
      random-teacher control: a gain that is knowledge, not regularisation, vanishes there).

    The pool arms only with ``unlabelled_dir``, each with ``pool_overrides`` too (e.g. their epochs); without
    a pool the control is ``kd`` whatever ``control`` says. ``lambdas``: ``lambda_coco`` of CoCo on the taps
    (``"plain"``), on standardised taps (``"standardized"``, also KD + CoCo's) and on the paraphraser factors
    (``"paraphraser"``). No adversarial term but in ``full_pool``.
    """
    pool = {"unlabelled_dir": unlabelled_dir, **dict(pool_overrides or {})} if unlabelled_dir else None
    plain = {"distill": "coco", "use_paraphraser": False, "coco_standardize": False}
    standardized = {"use_paraphraser": False, "coco_standardize": True}
    standardized["lambda_coco"] = lambdas["standardized"]
    arms = [
        STUDENT_ALONE,
        Arm("kd", "+ KD", {"distill": "kd", "lambda_adv": 0}),
        *([Arm("kd_pool", "+ KD, + pool", {"distill": "kd", "lambda_adv": 0, **pool})] if pool else []),
        Arm("coco", "+ CoCo (paper)", {**plain, "lambda_coco": lambdas["plain"], "lambda_adv": 0}),
        Arm("coco_std", "+ CoCo (standardised)", {"distill": "coco", **standardized, "lambda_adv": 0}),
    ]
    if pool:
        arms += [
            Arm(
                "kd_coco_pool",
                "+ KD + CoCo (standardised), + pool",
                {"distill": "kd_coco", **standardized, "lambda_adv": 0, **pool},
            ),
            Arm(
                "full_pool",
                "+ CoCo + paraphraser + adversarial, + pool",
                {"distill": "coco", "lambda_coco": lambdas["paraphraser"], "lambda_adv": 0.1, **pool},
            ),
        ]
    if baseline != "kd":
        arms.append(
            Arm(baseline, f"+ {baseline.upper()} (best baseline)", {"distill": baseline, "lambda_adv": 0})
        )
    arms.append(
        Arm(
            "noop",
            "no-op (CoCo + paraphraser, tiny λ)",
            {"distill": "coco", "lambda_coco": noop_lambda, "lambda_adv": 0},
        )
    )
    source = next((a for a in arms if a.name == (control if pool else "kd")), None)
    if source is None:
        raise ValueError(f"control arm {control!r} is not one of the arms {[a.name for a in arms]}.")
    arms.append(
        Arm(RANDOM_TEACHER, f"{source.label} from a random teacher (control)", source.overrides, "random")
    )
    return arms


def curve_arms(arm: Arm, pools: Mapping[int, str], overrides: Mapping[str, Any]) -> list[Arm]:
    """The pool-size curve: ``arm`` once per pool size, ``{size: folder}`` (in size order), its
    ``unlabelled_dir`` that folder, with ``overrides`` too (the curve's fixed iteration budget)."""
    return [
        Arm(
            f"{arm.name}_{size}",
            f"{arm.label} ({size} tiles)",
            {**arm.overrides, "unlabelled_dir": folder, **dict(overrides)},
            arm.teacher,
        )
        for size, folder in sorted(pools.items())
    ]


def budget_arms(
    arm: Arm, size: int, folder: str, epochs: Sequence[int], iterations_per_epoch: int
) -> list[Arm]:
    """``arm`` with the pool of ``size`` tiles (``folder``) at each budget of ``epochs ×
    iterations_per_epoch`` iterations (:func:`budget_overrides`), named ``<arm>_<size>_<iterations>it``:
    the curve's largest pool trained longer, in runs of their own."""
    arms = []
    for n in epochs:
        budget = budget_overrides(int(n), iterations_per_epoch)
        base, iterations = curve_arms(arm, {size: folder}, budget)[0], budget["iterations"]
        label = f"{base.label}, {iterations} iterations"
        arms.append(replace(base, name=f"{base.name}_{iterations}it", label=label))
    return arms


def budget_overrides(epochs: int, iterations_per_epoch: int) -> dict[str, Any]:
    """``train.yaml`` overrides for a fixed budget of ``epochs × iterations_per_epoch`` iterations whatever
    the data's size: Ignite's ``epoch_length`` (a shorter epoch goes on with the same loader's iterator), and
    ``iterations``, the length of the LR schedule, to match (the bundle computes it from the loader)."""
    if epochs < 1 or iterations_per_epoch < 1:
        raise ValueError(
            f"epochs and iterations_per_epoch must be >= 1, got {epochs} and {iterations_per_epoch}."
        )
    return {
        "epochs": epochs,
        "train#trainer#epoch_length": iterations_per_epoch,
        "iterations": epochs * iterations_per_epoch,
    }


def pool_subset(source: str | PathLike, size: int, folder: str | PathLike) -> str:
    """``folder`` holding hard links to the first ``size`` files of ``source`` by name (an unlabelled pool
    cut to ``size`` tiles; the built-in pool's first tiles are those of a smaller built-in pool); returns it.
    An existing ``folder`` is emptied first.

    Raises:
        ValueError: ``size`` below 1 or above the files of ``source``.
    """
    files = sorted(p for p in Path(source).iterdir() if p.is_file() and not p.name.startswith("."))
    if not 1 <= size <= len(files):
        raise ValueError(f"pool size {size}: {source} holds {len(files)} tiles (need 1 to {len(files)}).")
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in files[:size]:
        os.link(path, folder / path.name)
    return str(folder)


def screening_arms(baselines: Sequence[str]) -> list[Arm]:
    """One arm per baseline ``--distill`` choice (no adversarial term), for picking the best baseline."""
    return [Arm(name, f"+ {name.upper()}", {"distill": name, "lambda_adv": 0}) for name in baselines]


@dataclass(frozen=True)
class StageRun:
    """A finished stage: its parser (every built object) and the seconds its run took."""

    parser: ConfigParser
    seconds: float


class Recipe:
    """The bundle's stages in one work folder, at one size preset.

    Args:
        mode: ``"smoke"``, ``"cpu"`` or ``"gpu"``: the preset ``benchmark_<mode>.yaml``.
        workdir: the bundle root of the runs: ``data/synthetic`` (the built-in data, when no ``dataset_dir``),
            ``models/`` (every checkpoint), ``eval/``.
        dataset_dir: a data folder in any layout the bundle reads; None: the built-in synthetic data (the
            fine-structure data set of ``histology.yaml`` in the cpu and gpu modes, the plain one in smoke).
        configs: the bundle's config folder and ``presets`` the benchmark's, both copied to
            ``<workdir>/configs`` first: every stage of the run reads that snapshot (``bundle_root`` is
            ``workdir``), whatever the repository does meanwhile.
    """

    def __init__(
        self,
        mode: str,
        workdir: Path,
        dataset_dir: str | None = None,
        configs: Path = CONFIGS,
        presets: Path = PRESETS,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        self.mode = mode
        self.workdir = Path(workdir)
        self.configs = self.workdir / "configs"
        shutil.copytree(configs, self.configs, dirs_exist_ok=True)
        shutil.copytree(presets, self.configs, dirs_exist_ok=True)
        sizes = [] if mode == "gpu" else [configs / "cpu.yaml"]  # the paper's sizes are base.yaml's
        data = [] if mode == "smoke" else [configs / "histology.yaml"]  # the fine-structure data set
        sources = [presets / "benchmark.yaml", *sizes, *data, presets / f"benchmark_{mode}.yaml"]
        self.presets = [self.configs / p.name for p in sources]
        # where each preset comes from, as the report names them (paths in the repository)
        self.sources = [_in_repo(p) for p in sources]
        self.common: dict[str, Any] = {
            "bundle_root": str(self.workdir),
            "ckpt_dir": str(self.workdir / "models"),
        }
        if dataset_dir is not None:
            self.common["dataset_dir"] = str(dataset_dir)

    def files(self, stage: str) -> list[str]:
        """The ``--config_file`` list of ``stage``: base, the benchmark's presets, the stage's overlay."""
        return [str(p) for p in (self.configs / "base.yaml", *self.presets, self.configs / stage)]

    def stage(self, stage: str, overrides: Mapping[str, Any] | None = None) -> ConfigWorkflow:
        """:func:`load_stage` of ``stage`` with the work folder's settings and ``overrides``."""
        return load_stage(self.files(stage), {**self.common, **(overrides or {})})

    def parser(self, stage: str, overrides: Mapping[str, Any] | None = None) -> ConfigParser:
        """The parser of :meth:`stage`, parsed, for reading settings and building objects without running
        it."""
        parser = self.stage(stage, overrides).parser
        parser.parse()
        return parser

    @property
    def settings(self) -> dict[str, Any]:
        """The ``benchmark`` block of the presets (the protocol's own settings), as written."""
        return dict(self.parser("train.yaml").get("benchmark"))

    def unlabelled_dir(self) -> str | None:
        """``<data root>/unlabelled`` (the built-in fine-structure data set's pool, or a ``dataset_dir``'s)
        if that folder exists, else None; makes the built-in data set if it is missing."""
        pool = Path(self.parser("train.yaml").get_parsed_content("data_root")) / "unlabelled"
        return str(pool) if pool.is_dir() else None

    def has_setting(self, stage: str, key: str) -> bool:
        """Whether ``stage``'s configs define the top-level id ``key`` (e.g. ``unlabelled_dir``)."""
        return key in self.parser(stage).get()

    def run(self, stage: str, overrides: Mapping[str, Any] | None = None) -> StageRun:
        """``python -m monai.bundle run`` of ``stage`` in this process: ``initialize()``, ``run()``,
        ``finalize()`` of its :meth:`stage` workflow."""
        return run_stage(self.stage(stage, overrides))

    def train(
        self, stage: str, overrides: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Any], ConfigParser]:
        """Run a training stage; returns ``({"train_s", "best_val_miou", "best_epoch", "epochs"}, the
        stage's parser)`` (for a stage without validation the mIoU is NaN and the epoch 0)."""
        done = self.run(stage, overrides)
        return training_record(done, validated=stage != "train_paraphraser.yaml"), done.parser

    def evaluate(self, model_name: str, **overrides: Any) -> dict[str, float]:
        """``evaluate.yaml`` on the test split for ``<ckpt_dir>/<model_name>``; ``{metric: value}`` (mIoU and
        the cancer class's accuracy, Dice, IoU, precision, recall, specificity). ``overrides``: e.g.
        ``network_def="@teacher_def"`` for a network other than the student, or another ``ckpt_dir``."""
        output_dir = self.workdir / "eval" / Path(model_name).stem
        overrides = {"model_name": model_name, "output_dir": str(output_dir), **overrides}
        done = self.run("evaluate.yaml", overrides)
        metrics = done.parser.get_parsed_content("evaluator").state.metrics
        return {name: float(value) for name, value in metrics.items()}


def run_stage(workflow: ConfigWorkflow) -> StageRun:
    """``initialize()``, ``run()`` and ``finalize()`` of ``workflow`` (a :func:`load_stage`), timed."""
    start = time.perf_counter()
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return StageRun(workflow.parser, time.perf_counter() - start)


def training_record(done: StageRun, validated: bool = True) -> dict[str, Any]:
    """``{"train_s", "best_val_miou", "best_epoch", "epochs"}`` of a finished training stage (without
    validation, ``validated=False``: the mIoU NaN and the epoch 0). The best is the checkpoint saver's
    (``validate#checkpoint_saver``), which a resumed stage restores: a stage rerun on a finished work folder
    runs no validation, and its validator's own record would say epoch -1."""
    trainer = done.parser.get_parsed_content("train#trainer")
    saver = done.parser.get_parsed_content("validate#checkpoint_saver") if validated else None
    best = None if saver is None else saver.best_metric
    return {
        "train_s": done.seconds,
        "best_val_miou": math.nan if best is None else float(best),
        "best_epoch": int(saver.best_metric_epoch) if saver is not None else 0,
        "epochs": int(trainer.state.max_epochs),
    }


def _in_repo(path: Path) -> str:
    """``path`` relative to the repository (as the report and a command line from its root name it)."""
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


def term_signature(terms: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: {"loss", "weight", "inputs", "settings"}}`` of a ``DistillationTrainer``'s terms: the loss
    class, its weight, its inputs and the loss's own public settings (``temperature``, ``tau``, ...)."""
    return {
        name: {
            "loss": type(term.loss).__name__,
            "weight": term.weight,
            "inputs": term.inputs if isinstance(term.inputs, str) else list(term.inputs),
            "settings": {
                k: v for k, v in vars(term.loss).items() if not k.startswith("_") and k != "training"
            },
        }
        for name, term in terms.items()
    }
