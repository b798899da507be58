"""Training cost: one student iteration alone vs one full CoCo DistillNet iteration, and where the time goes.

Both trainers are the bundle's (``train.yaml`` at the benchmark's size preset, built by
:class:`benchmarks.bundle.Recipe`): ``--distill none`` (the student alone, cross-entropy) and the paper's
full method, ``--distill coco --lambda_adv 0.1`` (teacher forward, paraphraser encoders, CE + CoCo, and the
``AdversarialDistillationHandler``: generator term, critic step). The networks are freshly initialised (the
cost does not depend on the weights). Each part's time comes from the engine's own events
(``IterationEvents``) and from forward hooks on the networks and the CoCo loss:

- forward phase: student forward, teacher forward (no grad), paraphraser encoders, the rest (taps, casts);
- loss phase: CoCo loss forward, the rest (adversarial generator term: a critic forward; cross-entropy);
- backward; optimiser step; critic step (WGAN-GP loss with its gradient penalty, backward, Adam step).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict

import torch
from ignite.engine import Events
from monai.engines.utils import IterationEvents

from benchmarks.bundle import Recipe
from monai_coco.checkpoints import save_checkpoint

# engine phases, each ending at an event; "critic step" runs from MODEL_COMPLETED to the iteration's end
PHASES = (
    ("forward", IterationEvents.FORWARD_COMPLETED),
    ("loss", IterationEvents.LOSS_COMPLETED),
    ("backward", IterationEvents.BACKWARD_COMPLETED),
    ("optimiser step", IterationEvents.MODEL_COMPLETED),
)
# parts timed by forward hooks, and the phase each belongs to
PARTS = {
    "student forward": "forward",
    "teacher forward": "forward",
    "paraphraser encoders": "forward",
    "CoCo loss forward": "loss",
}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepTimer:
    """Times an engine's iterations by phase (between its events) and chosen modules' forward passes.

    Attach it before any other handler, so that its ``MODEL_COMPLETED`` mark comes before the adversarial
    handler's critic step. The first ``warmup`` iterations are not recorded.
    """

    def __init__(self, warmup: int = 1) -> None:
        self.warmup = warmup
        self.samples: dict[str, list[float]] = defaultdict(list)
        self._current: dict[str, float] = defaultdict(float)
        self._started: dict[str, float] = {}
        self._mark = self._begin = 0.0
        self._handles: list = []

    def time_module(self, name: str, module: torch.nn.Module) -> None:
        """Add the time of every ``module`` forward pass to part ``name``."""

        def start(module, args) -> None:
            _sync()
            self._started[name] = time.perf_counter()

        def stop(module, args, output) -> None:
            _sync()
            self._current[name] += time.perf_counter() - self._started.pop(name)

        self._handles += [module.register_forward_pre_hook(start), module.register_forward_hook(stop)]

    def _phase_end(self, name: str):
        def handler(engine) -> None:
            _sync()
            now = time.perf_counter()
            self._current[name] += now - self._mark
            self._mark = now

        return handler

    def _iteration_started(self, engine) -> None:
        self._current = defaultdict(float)
        _sync()
        self._mark = self._begin = time.perf_counter()

    def _iteration_completed(self, engine) -> None:
        self._phase_end("critic step")(engine)
        self._current["iteration"] = self._mark - self._begin
        if engine.state.iteration > self.warmup:
            for key, value in self._current.items():
                self.samples[key].append(value)

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self._iteration_started)
        for name, event in PHASES:
            engine.add_event_handler(event, self._phase_end(name))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def breakdown(self) -> dict[str, float]:
        """Median seconds of the iteration and of each part; a phase's hooked parts are taken out of it
        (its remainder is reported as "<phase> (other)"); hooked parts that never ran are left out, and
        "critic step" is what follows the optimiser step (≈ 0 without a critic)."""
        medians = {key: statistics.median(values) for key, values in self.samples.items()}
        out = {"iteration": medians.pop("iteration")}
        for phase, _ in (*PHASES, ("critic step", None)):
            parts = {k: v for k, v in medians.items() if PARTS.get(k) == phase}
            out.update(parts)
            rest = medians.get(phase, 0.0) - sum(parts.values())
            out[f"{phase} (other)" if parts else phase] = rest
        return out


ARMS = {
    "student": {"distill": "none"},
    "distillation": {"distill": "coco", "lambda_adv": 0.1},
}  # the paper's full method: CoCo on the paraphraser factors + the adversarial critic


def benchmark_training(recipe: Recipe, iterations: int = 5, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Median seconds per iteration, and per part, of the student alone (``"student"``) and of a full
    distillation iteration (``"distillation"``), over at least ``iterations`` iterations after ``warmup``,
    each trainer built from ``train.yaml`` by ``recipe`` (its data, sizes and batch). The teacher and
    paraphrasers are freshly initialised and saved to ``<workdir>/cost_models`` for the stage to load."""
    models = recipe.workdir / "cost_models"
    parser = recipe.parser("train.yaml", {"ckpt_dir": str(models), **ARMS["distillation"]})
    save_checkpoint(models / "teacher.pt", {"model": parser.get_parsed_content("teacher_def")})
    save_checkpoint(models / "paraphraser.pt", {"model": parser.get_parsed_content("paraphraser_def")})
    per_epoch = math.ceil(len(parser.get_parsed_content("train#datalist")) / parser.get("batch_size"))
    timed = {  # the timer attaches first, so that its MODEL_COMPLETED mark precedes the critic step
        "ckpt_dir": str(models),
        "epochs": math.ceil((iterations + warmup) / per_epoch),
        "benchmark_timer": {"_target_": "benchmarks.training.StepTimer", "warmup": warmup},
        "train#handlers#0": "@benchmark_timer",  # and the LR schedule (#2), nothing else
        **{f"train#handlers#{i}#_disabled_": True for i in (1, 3, 4)},
        "train#main_handlers": [],
    }
    results = {}
    for name, arm in ARMS.items():
        workflow = recipe.stage("train.yaml", {**timed, **arm, "model_name": f"cost_{name}.pt"})
        workflow.initialize()
        trainer = workflow.parser.get_parsed_content("train#trainer")
        timer = workflow.parser.get_parsed_content("benchmark_timer")
        timer.time_module("student forward", trainer.network)
        if trainer.teacher is not None:
            timer.time_module("teacher forward", trainer.teacher)
            for paraphraser in trainer.paraphrasers or ():
                timer.time_module("paraphraser encoders", paraphraser.encoder)
            for term in trainer.terms.values():
                timer.time_module("CoCo loss forward", term.loss)
        workflow.run()  # the stage's `training`: the trainer's run
        workflow.finalize()
        timer.close()
        results[name] = timer.breakdown()
    return results
