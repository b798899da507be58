"""TerminalProgressBar and loss_line_filter on real Ignite engines; a pseudo-terminal is the terminal."""

from __future__ import annotations

import io
import os
import select

import pytest
from ignite.engine import Engine, Events

from monai_coco.handlers import TerminalProgressBar, loss_line_filter


def _engine() -> Engine:
    return Engine(lambda engine, batch: {"loss": float(batch)})


def test_a_terminal_gets_a_bar_per_epoch_and_a_pipe_gets_nothing():
    master, replica = os.openpty()
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
