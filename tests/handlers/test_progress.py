"""TerminalProgressBar and loss_line_filter on real Ignite and MONAI engines; a pseudo-terminal is the
terminal (in this process, and as a training's stdout in another)."""

from __future__ import annotations

import fcntl
import io
import os
import select
import struct
import termios

import pytest
from ignite.engine import Engine, Events
from terminal import PYTHON, run_in_terminal, run_piped

from monai_coco.handlers import TerminalProgressBar, loss_line_filter


def _engine() -> Engine:
    return Engine(lambda engine, batch: {"loss": float(batch)})


def test_a_terminal_gets_a_bar_per_epoch_and_a_pipe_gets_nothing():
    master, replica = os.openpty()
    fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal's size
    with os.fdopen(replica, "w") as terminal:
        bar = TerminalProgressBar(lambda output: {"loss": output["loss"]}, stream=terminal, mininterval=0)
        engine = _engine()
        bar.attach(engine)
        engine.run([1, 2, 3], max_epochs=2)
        terminal.flush()
        drawn = b""
        while select.select([master], [], [], 0.5)[0]:  # everything the terminal received
            drawn += os.read(master, 65536)
    os.close(master)
    drawn = drawn.decode()
    assert bar.attached
    assert "Epoch [1/2]" in drawn and "Epoch [2/2]" in drawn  # a bar per epoch
    assert "[3/3]" in drawn and "loss=3" in drawn  # redrawn at every iteration (mininterval=0), last loss

    piped = io.StringIO()
    bar = TerminalProgressBar(stream=piped)
    engine = _engine()
    bar.attach(engine)
    engine.run([1, 2, 3])
    assert not bar.attached and piped.getvalue() == ""


# a training as the bundle runs one: root's console handler on stdout (logging.conf), a MONAI StatsHandler
# (whose logger has a stdout handler of its own) writing a loss line per iteration, the trainer's bar, and a
# MONAI evaluator validating after each epoch (train#handlers' ValidationHandler, before the bar closes)
_TRAINING = """
import logging, sys, torch
from ignite.engine import Engine
from monai.engines import SupervisedEvaluator
from monai.handlers import StatsHandler, ValidationHandler
from monai_coco.handlers import TerminalProgressBar
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(name)s - %(message)s")
batch = {"image": torch.zeros(1, 1, 2, 2), "label": torch.zeros(1, 1, 2, 2)}
validator = SupervisedEvaluator("cpu", [batch] * 4, torch.nn.Identity())
TerminalProgressBar(desc="validation", per_run=True, mininterval=0).attach(validator)
trainer = Engine(lambda engine, batch: {"loss": float(batch)})
ValidationHandler(1, validator).attach(trainer)
StatsHandler(tag_name="train_loss", output_transform=lambda output: output["loss"]).attach(trainer)
TerminalProgressBar(lambda output: output, mininterval=0).attach(trainer)
before = {name: list(logging.getLogger(name).handlers) for name in ("", "monai.handlers.StatsHandler")}
trainer.run([1, 2, 3], max_epochs=2)
kept = all(logging.getLogger(name).handlers == handlers for name, handlers in before.items())
print("handlers given back" if kept else "handlers NOT given back")
"""


def test_log_lines_go_above_the_bars_and_validation_has_a_bar_of_its_own():
    drawn = run_in_terminal([PYTHON, "-c", _TRAINING])
    visible = [line.split("\r")[-1] for line in drawn.split("\n")]  # each line as the terminal shows it
    loss_lines = [line for line in visible if "train_loss" in line]
    assert len(loss_lines) == 6  # one per iteration, each on a line of its own: the bar cleared first
    assert all(line[:4].isdigit() for line in loss_lines), loss_lines  # the time the line starts with
    assert not any("%|" in line and " - " in line for line in visible)  # no log line inside a bar
    assert "Epoch [2/2]: [3/3]" in drawn and "loss=3" in drawn  # the trainer's bar
    assert "validation: [4/4]" in drawn and "validation [" not in drawn  # a bar per validation run
    assert "handlers given back" in drawn

    logged = run_piped([PYTHON, "-c", _TRAINING])  # a log file: the same lines, no bar
    assert logged.count("train_loss") == 6 and "%|" not in logged and "handlers given back" in logged


@pytest.mark.parametrize(
    ("log_interval", "epoch_length", "epochs", "expected"),
    [
        (10, 3, 2, [3, 6]),  # interval longer than an epoch: one line at each epoch's end
        (2, 3, 2, [2, 3, 4, 6]),  # every 2nd iteration, plus the end of epoch 1 (iteration 3)
        (1, 2, 1, [1, 2]),
    ],
)
def test_loss_lines_fall_every_interval_and_at_each_epoch_end(log_interval, epoch_length, epochs, expected):
    engine = _engine()
    logged = []
    engine.add_event_handler(
        Events.ITERATION_COMPLETED(event_filter=loss_line_filter(log_interval)),
        lambda e: logged.append(e.state.iteration),
    )
    engine.run(list(range(epoch_length)), max_epochs=epochs)
    assert logged == expected


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_a_bad_log_interval_is_refused(bad):
    with pytest.raises(ValueError, match="log_interval"):
        loss_line_filter(bad)
