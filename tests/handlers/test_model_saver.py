"""AtomicCheckpointSaver and NonFiniteStop: the best model survives resumes and is never non-finite."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events

from monai_coco.checkpoints import load_checkpoint
from monai_coco.handlers import AtomicCheckpointSaver, NonFiniteStop


def evaluator_with(metrics: list[float], saver: AtomicCheckpointSaver, net: torch.nn.Module) -> Engine:
    """An evaluator whose key metric at epoch e is ``metrics[e - 1]``; the net's bias is set to e."""

    def step(engine, batch):
        with torch.no_grad():
            net.bias.fill_(engine.state.epoch)

    engine = Engine(step)
    engine.state.key_metric_name = "val_miou"

    @engine.on(Events.EPOCH_COMPLETED)
    def measure(engine):
        engine.state.metrics["val_miou"] = metrics[engine.state.epoch - 1]

    saver.attach(engine)
    return engine


def test_the_best_metric_survives_a_resume_and_nan_never_counts(tmp_path):
    """A resumed run with a new saver (state restored) keeps the better model."""
    net = torch.nn.Linear(1, 1)
    saver = AtomicCheckpointSaver(tmp_path / "teacher.pt", {"model": net}, save_key_metric=True)
    evaluator_with([0.5, 0.7, math.nan], saver, net).run([0], max_epochs=3)
    assert saver.state_dict() == {"best_metric": 0.7, "best_metric_epoch": 2}

    resumed = AtomicCheckpointSaver(tmp_path / "teacher.pt", {"model": net}, save_key_metric=True)
    resumed.load_state_dict(saver.state_dict())
    evaluator_with([0.6, 0.6, 0.6], resumed, net).run([0], max_epochs=3)  # worse than 0.7: not saved
    other = torch.nn.Linear(1, 1)
    load_checkpoint(tmp_path / "teacher.pt", {"model": other})
    assert other.bias.item() == 2.0  # the model of epoch 2 (metric 0.7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.pt"]


def test_non_finite_weights_are_never_written(tmp_path):
    net = torch.nn.Linear(1, 1)
    with torch.no_grad():
        net.weight.fill_(math.inf)
    saver = AtomicCheckpointSaver(tmp_path / "model.pt", {"model": net}, save_final=True)
    engine = Engine(lambda e, b: None)
    saver.attach(engine)
    with pytest.raises(FloatingPointError, match=r"model.weight holds NaN or infinite values: .*model.pt no"):
        engine.run([0], max_epochs=1)
    assert not (tmp_path / "model.pt").exists()
    with pytest.raises(ValueError, match="set one of save_key_metric and save_final"):
        AtomicCheckpointSaver(tmp_path / "x.pt", {"model": net})


@pytest.mark.parametrize("decollated", [False, True])
def test_a_nan_loss_stops_the_run_naming_stage_epoch_and_iteration(decollated):
    """The loss of iteration 3 (epoch 2 of 2-iteration epochs) is NaN; the output is a
    dict, or MONAI's decollated list of dicts (each item repeating the batch's loss)."""
    losses = iter([1.0, 0.5, math.nan, 0.1])

    def step(engine, batch):
        output = {"loss": torch.tensor(next(losses))}
        return [output, dict(output)] if decollated else output

    engine = Engine(step)
    NonFiniteStop("teacher").attach(engine)
    with pytest.raises(FloatingPointError) as error:
        engine.run([0, 1], max_epochs=2)
    assert str(error.value).startswith("teacher: at epoch 2, iteration 3 the training loss is nan;")
    assert engine.state.iteration == 3


def test_non_finite_weights_stop_the_run_at_the_end_of_the_epoch():
    net = torch.nn.Linear(1, 1)

    def step(engine, batch):
        with torch.no_grad():
            net.bias.fill_(math.nan if engine.state.iteration == 2 else 0.0)
        return {"loss": torch.tensor(1.0)}

    engine = Engine(step)
    NonFiniteStop("student", networks={"model": net}).attach(engine)
    with pytest.raises(FloatingPointError, match=r"^student: at epoch 1, iteration 2 model.bias holds NaN"):
        engine.run([0, 1], max_epochs=3)
