"""What the training stages report to TensorBoard and MLflow (MONAI's handlers do the writing).

TensorBoard: ``training_scalars(prefix="train/")`` for ``TensorBoardStatsHandler``'s iterations and
``grouped_metrics("val/")`` for its epochs give ``train/loss``, ``train/ce``, ... and ``val/miou``, ...

MLflow: ``python -m monai.bundle run ... --tracking mlflow`` adds MONAI's ``MLFlowHandler`` to
``train#handlers`` and ``validate#handlers`` (``monai.bundle.utils.DEFAULT_MLFLOW_SETTINGS``); its store,
experiment and run are the configs' ``tracking_uri``, ``experiment_name`` and ``run_name``, which the runner
leaves as the configs set them. :func:`mlflow_tracked` then gives that handler what this stage adds: its
params, its checkpoint as an artifact and every loss term, and continues the run of its ``run_name`` that an
interrupted stage left running, unless that run was logged with other params (a resumed stage given more
``epochs``, say), which MLflow never changes: then that run is marked ``KILLED`` and a new one of the same
name goes on, with a warning line naming the params that changed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

from ignite.engine import Engine
from monai.handlers import MLFlowHandler
from monai.utils import flatten_dict, is_scalar
from torch.optim import Optimizer

__all__ = ["grouped_metrics", "mlflow_tracked", "training_scalars"]

logger = logging.getLogger(__name__)


def training_scalars(
    optimizer: Optional[Optimizer] = None, prefix: str = ""
) -> Callable[[Any], dict[str, float]]:
    """An ``output_transform`` for ``StatsHandler`` / ``TensorBoardStatsHandler`` / ``ProgressBar`` /
    ``MLFlowHandler``: every scalar of a trainer's ``engine.state.output`` by its own name (``loss`` and each
    term: ``ce``, ``coco``, ``adv``, ``critic``, ``mse[<layer>]``, ...) and, with ``optimizer``, ``lr``, the
    learning rate of its first parameter group at that iteration; each name after ``prefix`` (``"train/"``:
    TensorBoard's group).

    The output is one mapping (``decollate=False``) or, decollated, a list of mappings each holding the
    same scalars (MONAI replicates them), of which the first is read.
    """

    def transform(output: Any) -> dict[str, float]:
        first = output[0] if isinstance(output, list) else output
        scalars = {k: float(v) for k, v in first.items() if is_scalar(v)}
        if optimizer is not None:
            scalars["lr"] = float(optimizer.param_groups[0]["lr"])
        return {prefix + name: value for name, value in scalars.items()}

    return transform


def grouped_metrics(prefix: str) -> Callable[[Engine, Any], None]:
    """An ``epoch_event_writer`` for MONAI's ``TensorBoardStatsHandler``: each scalar of
    ``engine.state.metrics`` as ``prefix + name`` (``"val/"``: ``val/miou``, ...) at ``engine.state.epoch``
    (a validator's epoch is its trainer's)."""

    def write(engine: Engine, writer: Any) -> None:
        for name, value in engine.state.metrics.items():
            if is_scalar(value):
                writer.add_scalar(prefix + name, value, engine.state.epoch)
        writer.flush()

    return write


def _mlflow_name(name: str) -> str:
    """``mse[decoder.0]`` -> ``mse.decoder.0``: MLflow refuses metric names with characters other than
    letters, digits and ``_-. /:``."""
    return re.sub(r"[^\w\-. /:]", "", name.replace("[", "."))


def _run_to_continue(handler: MLFlowHandler) -> Callable[[Engine], None]:
    """``handler.start``, first setting ``handler.cur_run`` to the newest run of its ``run_name`` still
    ``RUNNING`` (one an interrupted stage left, or this stage's other handler started) whose params agree
    with ``handler.experiment_param``; when that run's params disagree it is marked ``KILLED`` and a new run
    of the name is created; with no such run, or no ``run_name``, MONAI's own choice stands."""
    start = handler.start

    def start_in_its_run(engine: Engine) -> None:
        if handler.cur_run is None and handler.run_name:
            handler.cur_run = _running(handler)
        start(engine)

    return start_in_its_run


def _running(handler: MLFlowHandler) -> Any:
    """The run :func:`_run_to_continue` chooses, or ``None`` for MONAI's choice."""
    client, name = handler.client, handler.run_name
    experiment = client.get_experiment_by_name(handler.experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], "attributes.status = 'RUNNING'", order_by=["attributes.start_time DESC"]
    )
    run = next((run for run in runs if run.info.run_name == name), None)
    if run is None:
        return None
    logged, params = run.data.params, {k: str(v) for k, v in (handler.experiment_param or {}).items()}
    changed = [f"{k} {logged[k]} -> {v}" for k, v in params.items() if logged.get(k, v) != v]
    if changed:
        client.set_terminated(run.info.run_id, "KILLED")
        run = client.create_run(experiment.experiment_id, run_name=name)
        logger.warning(
            f"MLflow run '{name}' was interrupted with other settings ({', '.join(changed)}); MLflow keeps a "
            "run's params, so it is marked KILLED and this one goes on in a new run of that name."
        )
    return run


def mlflow_tracked(
    handlers: Sequence[Any],
    params: Optional[Mapping[str, Any]] = None,
    artifacts: Sequence[str] = (),
    output_transform: Optional[Callable[[Any], Mapping[str, float]]] = None,
    close_on_complete: Optional[bool] = None,
) -> list[Any]:
    """``handlers`` with each of MONAI's ``MLFlowHandler`` among them (those ``--tracking mlflow`` adds; none
    without it, and then the list is returned as it is) set up for this stage, and moved last so that on
    every event it logs after the others (a checkpoint it uploads is written by then).

    Args:
        handlers: an engine's handlers, before the engine attaches them.
        params: logged as the run's MLflow params when the engine starts (``experiment_param``); nested
            mappings flattened (their keys kept); values as ``str``. A resumed run must log the same values
            (MLflow refuses to change a param).
        artifacts: files (or folders, every file in them) uploaded when the engine completes, after the
            handler's own (MONAI's: the run's config, ``save_execute_config``); a missing one is skipped.
        output_transform: replaces the handler's per-iteration ``output_transform`` (MONAI's: the loss
            alone); its names are made MLflow-safe (``mse[decoder.0]`` -> ``mse.decoder.0``).
        close_on_complete: replaces whether the run is closed when the engine completes (MONAI's: the
            trainer's yes, the validator's no).
    """
    tracked = [h for h in handlers if isinstance(h, MLFlowHandler)]
    for handler in tracked:
        if params:
            handler.experiment_param = {**(handler.experiment_param or {}), **flatten_dict(dict(params))}
        handler.artifacts = (*handler.artifacts, *artifacts)
        if output_transform is not None:
            transform = output_transform
            handler.output_transform = lambda output, t=transform: {
                _mlflow_name(k): v for k, v in t(output).items()
            }
        if close_on_complete is not None:
            handler.close_on_complete = close_on_complete
        handler.start = _run_to_continue(handler)  # before attach(), which registers handler.start
    return [h for h in handlers if not isinstance(h, MLFlowHandler)] + tracked
