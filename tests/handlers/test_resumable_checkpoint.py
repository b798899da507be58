"""ResumableCheckpoint: a SIGKILLed distillation run, rerun with the same command, resumes and finishes
exactly as an uninterrupted run does."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from monai_coco.checkpoints import load_checkpoint, save_checkpoint
from monai_coco.folder_lock import FolderLock
from monai_coco.handlers import ResumableCheckpoint

TRAIN_SCRIPT = textwrap.dedent(
    """
    import logging, os, sys, time
    import torch
    from ignite.engine import Events
    from monai.handlers import LrScheduleHandler
    from monai.networks.nets import BasicUNet
    from monai_coco.checkpoints import save_checkpoint
    from monai_coco.engines import DistillationTerm, DistillationTrainer
    from monai_coco.handlers import AdversarialDistillationHandler, ResumableCheckpoint
    from monai_coco.losses import CoCoDistillationLoss
    from monai_coco.networks import LogitCritic

    workdir = sys.argv[1]
    torch.set_num_threads(1)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    teacher = BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, features=(4, 4, 8, 8, 8, 4))
    student = BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, features=(2, 2, 4, 4, 4, 2))
    critic = LogitCritic(in_channels=2, channels=(8, 16))
    images = [torch.rand(2, 3, 32, 32) for _ in range(3)]
    data = [{"image": x, "label": (x.mean(1) > 0.5).long()} for x in images]

    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    adversarial = AdversarialDistillationHandler(critic, torch.optim.Adam(critic.parameters(), lr=1e-3))
    resume = ResumableCheckpoint(
        os.path.join(workdir, "state.pt"),
        {"model": student, "optimizer": optimizer, "lr": scheduler, "adversarial": adversarial},
    )
    trainer = DistillationTrainer(
        device="cpu", max_epochs=4, train_data_loader=data, network=student, optimizer=optimizer,
        loss_function=torch.nn.CrossEntropyLoss(), teacher=teacher,
        terms={"coco": DistillationTerm(CoCoDistillationLoss(), inputs=(0, 1))},
        student_taps=("down_2", "upcat_3"), teacher_taps=("down_2", "upcat_3"),
        train_handlers=[LrScheduleHandler(scheduler, print_lr=False), adversarial, resume],
    )
    # per-epoch seeds (the gradient penalty draws random interpolations): resumed == uninterrupted
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: torch.manual_seed(e.state.epoch))
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED,
        lambda e: print(f"ran epoch {e.state.epoch} iteration {e.state.iteration}", flush=True),
    )
    pause = os.environ.get("PAUSE_AT_ITERATION")
    if pause:
        def hang(engine):  # stand still mid-epoch until the test kills the process
            if engine.state.iteration == int(pause):
                open(os.path.join(workdir, "paused"), "w").close()
                time.sleep(600)
        trainer.add_event_handler(Events.ITERATION_STARTED, hang)
    trainer.run()
    save_checkpoint(os.path.join(workdir, "final.pt"), {"model": student, "critic": critic})
    """
)


def start(script: Path, workdir: Path, pause: int | None = None) -> subprocess.Popen:
    workdir.mkdir(exist_ok=True)
    env = dict(os.environ, PAUSE_AT_ITERATION=str(pause or ""))
    return subprocess.Popen(
        [sys.executable, str(script), str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


@pytest.mark.slow
def test_sigkilled_run_resumes_from_the_last_epoch_and_ends_as_an_uninterrupted_run(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    # 3 iterations per epoch: iteration 5 is the middle of epoch 2, after epoch 1 was saved
    proc = start(script, killed, pause=5)
    uninterrupted = start(script, reference)  # runs alongside
    try:
        deadline = time.monotonic() + 300
        while not (killed / "paused").exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the run never reached iteration 5"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        first_out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert "ran epoch 2 iteration 4" in first_out and "iteration 5" not in first_out
    state = killed / "state.pt"
    assert state.is_file() and not (killed / "final.pt").exists()

    second_out = finish(start(script, killed))  # the same command again
    assert f"resuming from {state} at epoch 1" in second_out
    ran = [line for line in second_out.splitlines() if line.startswith("ran epoch")]
    assert ran[0] == "ran epoch 2 iteration 4" and ran[-1] == "ran epoch 4 iteration 12" and len(ran) == 9

    assert f"no training state at {reference / 'state.pt'}: starting from epoch 0" in finish(uninterrupted)
    resumed = torch.load(killed / "final.pt", weights_only=True)
    straight = torch.load(reference / "final.pt", weights_only=True)
    for part in ("model", "critic"):
        assert resumed[part].keys() == straight[part].keys()
        for key in resumed[part]:
            torch.testing.assert_close(resumed[part][key], straight[part][key], rtol=0, atol=0, msg=key)
    assert torch.load(state, weights_only=True)["trainer"]["iteration"] == 12


def engine_at(epochs: int, max_epochs: int) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.run([0, 1], max_epochs=epochs)
    engine.state.max_epochs = max_epochs
    return engine


def test_resume_keeps_the_new_max_epochs_and_refuses_a_checkpoint_beyond_it(tmp_path, caplog):
    net = torch.nn.Linear(2, 2)
    path = save_checkpoint(tmp_path / "state.pt", {"model": net, "trainer": engine_at(3, 3)})

    longer = Engine(lambda e, b: None)
    handler = ResumableCheckpoint(path, {"model": torch.nn.Linear(2, 2)}, name="resume-test")
    handler.attach(longer)
    seen = []
    longer.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append(e.state.epoch))
    with caplog.at_level("INFO", logger="resume-test"):
        longer.run([0, 1], max_epochs=5)
    assert f"resuming from {path} at epoch 3" in caplog.text
    assert seen == [4, 5] and longer.state.iteration == 10
    saved = load_checkpoint(path, {"model": torch.nn.Linear(2, 2)})
    assert saved["trainer"]["epoch_length"] == 2 and saved["trainer"]["iteration"] == 10

    shorter = Engine(lambda e, b: None)
    ResumableCheckpoint(path, {"model": torch.nn.Linear(2, 2)}).attach(shorter)
    with pytest.raises(ValueError, match=r"saved at epoch 5, beyond max_epochs=2"):
        shorter.run([0, 1], max_epochs=2)


def shuffled_run(path: Path, epochs: int, epoch_length: int, generator: bool = False) -> list[list[float]]:
    """A run on 6 batches shuffled by torch's global generator (or the loader's own ``generator``), from a
    ``ConcatDataset`` of two MONAI data sets (the shape of the annotated tiles plus the unannotated pool),
    each item scaled at random by its data set's transform (its own ``R``), the step drawing from torch too;
    returns what each iteration saw."""
    from monai.data import DataLoader, Dataset
    from monai.transforms import RandScaleIntensityd

    seen = []

    def step(engine, batch):
        seen.append(batch["x"].flatten().tolist() + torch.rand(1).tolist())

    torch.manual_seed(0)
    parts = [
        Dataset([{"x": torch.full((1,), float(i + 1))} for i in range(first, first + 6)],
                RandScaleIntensityd(keys="x", factors=factor, prob=1.0))
        for first, factor in ((0, 0.5), (6, 0.9))
    ]  # fmt: skip
    own = torch.Generator().manual_seed(3) if generator else None
    loader = DataLoader(torch.utils.data.ConcatDataset(parts), batch_size=2, shuffle=True, generator=own)
    engine = Engine(step)
    ResumableCheckpoint(path, {"model": torch.nn.Linear(2, 2)}, name="resume-test").attach(engine)
    engine.run(loader, max_epochs=epochs, epoch_length=epoch_length)
    return seen


@pytest.mark.parametrize(
    ("epoch_length", "generator", "replayed"),
    [(4, False, 2), (3, False, None), (6, False, None), (4, True, 2), (3, True, 6), (6, True, 6)],
)
def test_a_resume_inside_the_data_s_pass_draws_the_batches_an_uninterrupted_run_draws(
    tmp_path, caplog, epoch_length, generator, replayed
):
    """An epoch shorter than the data (``epoch_length`` 4 or 3 of 6 batches: the pool curve's fixed budget)
    continues Ignite's data iterator across epochs; a run stopped after epoch 2 and resumed must see the
    batches (shuffle, each data set's random transform) and random draws of an uninterrupted run from epoch 3
    on. With 4, the stop falls inside the second pass (its 2 batches drawn again); with 3 and 6 at a pass's
    end, where a loader's own generator has one more draw to replay (torch's exhausted ``RandomSampler``),
    so the whole pass is drawn again."""
    straight = shuffled_run(tmp_path / "straight.pt", 5, epoch_length, generator)
    first = shuffled_run(tmp_path / "stopped.pt", 2, epoch_length, generator)
    with caplog.at_level("INFO", logger="resume-test"):
        resumed = shuffled_run(tmp_path / "stopped.pt", 5, epoch_length, generator)
    assert first + resumed == straight
    assert len(straight) == 5 * epoch_length and len({tuple(x) for x in straight}) == len(straight)
    drawn = re.search(r"drew again the (\d+) of 6 batches", caplog.text)
    assert (int(drawn.group(1)) if drawn else None) == replayed


def test_a_state_of_older_code_inside_a_pass_says_it_is_not_bit_identical(tmp_path, caplog):
    """A training state without ``data_pass`` (saved before it existed) cannot replay its pass: a warning."""
    path = tmp_path / "state.pt"
    shuffled_run(path, 2, 4)
    state = torch.load(path, weights_only=True)
    del state["data_pass"]
    torch.save(state, path)
    with caplog.at_level("INFO", logger="resume-test"):
        shuffled_run(path, 3, 4)
    assert "saved by older code" in caplog.text and "not bit-identical" in caplog.text


@pytest.mark.parametrize("epoch_length", [6, 4])
def test_a_state_of_older_code_without_the_pool_s_random_transforms_resumes_with_a_warning(
    tmp_path, caplog, epoch_length
):
    """Older code saved the random states of ``loader.dataset.transform`` only: none for a ``ConcatDataset``
    (every run with an unannotated pool), in the state and in its ``data_pass``. Such a state resumes (at a
    pass's end, 6, and inside one, 4), says it is not bit-identical, and restores the generators it has:
    torch's, so the shuffle and the step's draws are the uninterrupted run's while the transforms' are not."""
    straight = shuffled_run(tmp_path / "straight.pt", 3, epoch_length)
    path = tmp_path / "state.pt"
    shuffled_run(path, 2, epoch_length)
    state = torch.load(path, weights_only=True)
    for states in (state["random_states"], state["data_pass"]["random_states"]):
        states["transforms"] = []
    torch.save(state, path)
    with caplog.at_level("INFO", logger="resume-test"):
        resumed = shuffled_run(path, 3, epoch_length)
    assert "none of the data's 6 random transforms" in caplog.text  # 2 data sets x 3 (inner ones)
    assert [row[-1] for row in resumed] == [row[-1] for row in straight[2 * epoch_length :]]
    assert resumed != straight[2 * epoch_length :]
    state["random_states"]["transforms"] = [state["random_states"]["generators"]] * 2  # some, but not 6
    torch.save(state, path)
    with pytest.raises(ValueError, match="of 2 random transforms, the data loader now has 6"):
        shuffled_run(path, 3, epoch_length)
    state["random_states"] |= {"transforms": [], "generators": {"loader": torch.Generator().get_state()}}
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"Generator of \['loader'\], the data loader now has that of \[\]"):
        shuffled_run(path, 3, epoch_length)
    del state["random_states"]
    torch.save(state, path)
    with caplog.at_level("INFO", logger="resume-test"):
        shuffled_run(path, 3, epoch_length)
    assert "holds no random states (older code)" in caplog.text


def test_first_run_starts_from_scratch_and_bad_settings_are_refused(tmp_path):
    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    ResumableCheckpoint(tmp_path / "new" / "state.pt", {"model": net}, save_interval=2).attach(engine)
    engine.run([0, 1], max_epochs=3)
    saved = load_checkpoint(tmp_path / "new" / "state.pt", {"model": torch.nn.Linear(2, 2)})
    assert saved["trainer"]["iteration"] == 4  # saved after epoch 2 only
    with pytest.raises(ValueError, match="save_interval"):
        ResumableCheckpoint(tmp_path / "x.pt", {"model": net}, save_interval=0)
    with pytest.raises(ValueError, match="'trainer'"):
        ResumableCheckpoint(tmp_path / "x.pt", {"trainer": net})


def poly_run(tmp_path, epochs: int, record: dict | None = None, seed: int = 0, lr: float = 0.1):
    """A linear model trained for ``epochs`` epochs of 2 iterations with PolynomialLR over the whole run."""
    torch.manual_seed(seed)
    net = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=2 * epochs, power=1.0)

    def step(engine, batch):
        optimizer.zero_grad()
        net(batch).sum().backward()
        optimizer.step()
        scheduler.step()

    engine = Engine(step)
    handler = ResumableCheckpoint(tmp_path / "state.pt", {"model": net, "optimizer": optimizer,
                                                          "lr": scheduler}, record=record)  # fmt: skip
    handler.attach(engine)
    engine.run([torch.ones(1, 2), torch.ones(1, 2)], max_epochs=epochs)
    return net, optimizer, handler


def test_a_finished_run_resumed_with_more_epochs_continues_on_the_longer_schedule(tmp_path):
    """The restored PolynomialLR keeps the new total (4 epochs × 2 iterations), not the
    first run's (2 × 2, whose rate had reached 0), so the extra epochs train: lr after 4 of 8 steps is
    0.1 × (1 − 4/8) = 0.05, and the last 4 steps (lrs 0.05, 0.0375, 0.025, 0.0125) move each weight."""
    net, optimizer, _ = poly_run(tmp_path, epochs=2)
    assert optimizer.param_groups[0]["lr"] == 0.0
    before = net.weight.detach().clone()
    net, optimizer, _ = poly_run(tmp_path, epochs=4)
    assert optimizer.param_groups[0]["lr"] == 0.0  # the end of the longer schedule
    # gradient of sum(w·x + b) with x = (1, 1) is 1 for each weight: the step sum is 0.125
    torch.testing.assert_close(net.weight.detach(), before - 0.125, rtol=0, atol=1e-7)


def test_a_chained_poly_and_step_schedule_continues_on_the_longer_run(tmp_path):
    """The bundle's schedule: ChainedScheduler(PolynomialLR over the run, StepLR(step 3, gamma 0.5)).
    Run 1: one epoch of 2 iterations with total 2 (rate 0). Resumed with total 8, at iteration t the rate
    is 0.1 × (1 − t/8) × 0.5^(t // 3): 0.075 at t = 2, 0.03125 at t = 3 (the chain's own steps on)."""

    def run(total: int, steps: int):
        net = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.ChainedScheduler([
            torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total, power=1.0),
            torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5),
        ])  # fmt: skip
        engine = Engine(lambda e, b: scheduler.step())
        rates = []
        record = lambda e: rates.append(optimizer.param_groups[0]["lr"])  # noqa: E731
        engine.add_event_handler(Events.ITERATION_STARTED, record)
        ResumableCheckpoint(tmp_path / "state.pt", {"optimizer": optimizer, "lr": scheduler}).attach(engine)
        engine.run([0] * steps, max_epochs=1 if total == 2 else 2)
        return rates, optimizer.param_groups[0]["lr"]

    assert run(2, 2)[1] == 0.0
    rates, _ = run(8, 2)  # epoch 2: iterations t = 2 and 3
    torch.testing.assert_close(rates, [0.075, 0.03125], rtol=0, atol=1e-12)


def test_a_resume_with_another_learning_rate_is_refused_naming_both(tmp_path):
    poly_run(tmp_path, epochs=1)
    expected = r"state.pt was saved with other optimizer settings for 'optimizer' \(lr 0.1 -> 0.01\); rerun"
    with pytest.raises(ValueError, match=expected):
        poly_run(tmp_path, epochs=2, lr=0.01)


def test_a_scheduler_without_closed_form_on_other_settings_is_refused(tmp_path):
    net = torch.nn.Linear(2, 1)
    for step_size in (1, 2):
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.CyclicLR(optimizer, 0.01, 0.1, step_size_up=step_size)
        engine = Engine(lambda e, b: None)
        ResumableCheckpoint(tmp_path / "state.pt", {"optimizer": optimizer, "lr": scheduler}).attach(engine)
        if step_size == 1:
            engine.run([0], max_epochs=1)
    with pytest.raises(ValueError, match=r"'lr' \(CyclicLR\) was saved with other settings \(total_size 2"):
        engine.run([0], max_epochs=2)


def test_a_state_of_another_data_set_is_refused_naming_what_differs(tmp_path):
    """The record (data set, tile size, ...) is stored and compared on resume."""
    poly_run(tmp_path, epochs=1, record={"dataset": "/demo/synthetic", "roi_size": (64, 64)})
    with pytest.raises(ValueError) as error:
        poly_run(tmp_path, epochs=2, record={"dataset": "/my/tiles", "roi_size": [64, 64]})
    assert str(error.value) == (
        f"{tmp_path}/state.pt was saved by a run with other settings: dataset='/demo/synthetic' (now "
        f"'/my/tiles'); rerun with those settings to resume, or delete {tmp_path}/state.pt (or use another "
        "ckpt_dir) to start afresh."
    )


@pytest.mark.parametrize("damage", ["empty", "truncated", "foreign", "unsafe"])
def test_a_bad_state_file_is_one_line_naming_it(tmp_path, damage):
    """An empty, truncated, foreign or pickle-holding state file is refused before the run
    (ResumableCheckpoint.check), with one line naming it."""
    path = tmp_path / "state.pt"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        poly_run(tmp_path, epochs=1)
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        torch.save({"trainer": torch.nn.Linear(2, 1)}, path)  # a pickled module
    handler = ResumableCheckpoint(path, {"model": torch.nn.Linear(2, 1)})
    with pytest.raises(ValueError) as error:
        handler.check()
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message and len(message) < 400
    expected = {"empty": "it is empty", "truncated": "truncated", "foreign": "is not a training state",
                "unsafe": "holds pickled Python objects"}[damage]  # fmt: skip
    assert expected in message


def test_a_second_run_on_the_folder_is_refused_and_leftovers_are_removed(tmp_path):
    """The folder of a running training (locked from STARTED) is refused to a second
    process with one line naming the holder; leftovers of killed writes are removed by check()."""
    (tmp_path / ".teacher.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    ResumableCheckpoint(tmp_path / "state.pt", {"model": torch.nn.Linear(2, 1)}).check()
    assert not (tmp_path / ".teacher.pt.k1ll3d.tmp").exists()
    running = FolderLock(tmp_path, "the training run writing state.pt").acquire()  # as a run from STARTED
    second = [sys.executable, "-c", "import torch; from monai_coco.handlers import ResumableCheckpoint; "
              f"ResumableCheckpoint({str(tmp_path / 'state.pt')!r}, {{'m': torch.nn.Linear(2, 1)}}).check()"]
    refused = subprocess.run(second, capture_output=True, text=True, timeout=120)  # fmt: skip
    busy = f"ValueError: {tmp_path} is in use by the training run writing state.pt (process {os.getpid()})"
    assert refused.returncode == 1 and busy in refused.stderr
    running.release()
    assert subprocess.run(second, capture_output=True, timeout=120).returncode == 0


def test_random_states_round_trip_every_generator():
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, RandFlipd, RandScaleIntensityd

    from monai_coco.handlers import RandomStates

    transform = Compose([RandFlipd("x", prob=0.5), RandScaleIntensityd("x", factors=0.1, prob=1.0)])
    loader = DataLoader(Dataset([{"x": torch.ones(1, 2, 2)}], transform), num_workers=0)
    states = RandomStates(loader)
    saved = states.state_dict()

    def draw():
        inner = transform.transforms[1].scaler  # RandScaleIntensityd's own RandScaleIntensity
        return (torch.rand(1).item(), np.random.rand(), random.random(),
                [t.R.rand() for t in transform.transforms], inner.R.rand())  # fmt: skip

    first = draw()
    states.load_state_dict(saved)
    assert draw() == first
