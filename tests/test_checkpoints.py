"""save_checkpoint / load_checkpoint: atomic writes, weights_only reads, architecture checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from tiny_networks import STUDENT_FEATURES, TEACHER_FEATURES, identical, snapshot, tiny_unet

from monai_coco.atomic_files import remove_partial_writes
from monai_coco.checkpoints import load_checkpoint, save_checkpoint
from monai_coco.folder_lock import FolderLock


def test_round_trip_restores_module_optimizer_and_engine(tmp_path):
    net = tiny_unet(STUDENT_FEATURES, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.rand(2, 3, 32, 32)).mean().backward()
    opt.step()
    engine = Engine(lambda e, b: None)
    engine.run([0, 1, 2], max_epochs=2)
    path = save_checkpoint(tmp_path / "sub" / "state.pt", {"model": net, "optimizer": opt, "trainer": engine})
    assert path.is_file() and os.listdir(path.parent) == ["state.pt"]  # no temporary file left behind

    net2 = tiny_unet(STUDENT_FEATURES, 5)
    opt2 = torch.optim.Adam(net2.parameters(), lr=1e-3)
    engine2 = Engine(lambda e, b: None)
    load_checkpoint(path, {"model": net2, "optimizer": opt2, "trainer": engine2})
    assert identical(snapshot(net2), snapshot(net))
    torch.testing.assert_close(
        opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    assert (engine2.state.epoch, engine2.state.iteration) == (2, 6)


def test_wrong_architecture_names_the_file_and_the_first_mismatching_key(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", {"model": tiny_unet(TEACHER_FEATURES, 1)})
    student = tiny_unet(STUDENT_FEATURES, 2)
    first_key = next(iter(student.state_dict()))  # the very first weight already has another shape
    with pytest.raises(ValueError) as info:
        load_checkpoint(path, {"model": student})
    message = str(info.value)
    assert str(path) in message and f"'{first_key}'" in message
    assert "(4, 3, 3, 3)" in message and "(2, 3, 3, 3)" in message  # found vs expected shape


def test_missing_and_extra_keys_are_reported(tmp_path):
    net = tiny_unet(STUDENT_FEATURES, 2)
    state = net.state_dict()
    del state["final_conv.bias"]
    torch.save({"model": state}, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"missing.pt.*'final_conv.bias' is missing"):
        load_checkpoint(tmp_path / "missing.pt", {"model": net})
    state = net.state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="'extra.weight' is in the checkpoint but not in the model"):
        load_checkpoint(tmp_path / "extra.pt", {"model": net})


def test_bare_state_dict_as_monai_checkpoint_saver_writes_it_loads_into_one_object(tmp_path):
    net = tiny_unet(STUDENT_FEATURES, 2)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    other = tiny_unet(STUDENT_FEATURES, 7)
    load_checkpoint(tmp_path / "model.pt", {"network": other})
    assert identical(snapshot(other), snapshot(net))
    with pytest.raises(
        ValueError, match=r"model.pt has no entry 'network'; its entries: conv_0.*\(136 in all\)"
    ):
        load_checkpoint(
            tmp_path / "model.pt", {"network": other, "optimizer": torch.optim.SGD(other.parameters())}
        )


class Payload:
    """Not a tensor, not a plain container: weights_only loading must refuse it."""


def test_unsafe_truncated_empty_and_missing_files_are_refused_with_the_file_name(tmp_path):
    torch.save({"model": Payload()}, tmp_path / "pickle.pt")
    with pytest.raises(ValueError, match=r"pickle.pt holds pickled Python objects \(test_checkpoints.Pay"):
        load_checkpoint(tmp_path / "pickle.pt", {"model": torch.nn.Linear(1, 1)})
    good = save_checkpoint(tmp_path / "good.pt", {"model": tiny_unet(STUDENT_FEATURES, 2)})
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut.pt is not a readable PyTorch checkpoint: .* bytes, truncated"):
        load_checkpoint(tmp_path / "cut.pt", {"model": tiny_unet(STUDENT_FEATURES, 2)})
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pt is not a readable PyTorch checkpoint: it is empty"):
        load_checkpoint(tmp_path / "empty.pt", {"model": torch.nn.Linear(1, 1)})
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_checkpoint(tmp_path / "absent.pt", {"model": torch.nn.Linear(1, 1)})


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "state.pt", {"model": torch.nn.Linear(2, 2)})
    before = path.read_bytes()

    class Unsaveable:
        def state_dict(self):
            return {"f": lambda: None}  # torch.save cannot pickle a lambda

    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises
        save_checkpoint(path, {"model": torch.nn.Linear(2, 2), "bad": Unsaveable()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["state.pt"]


def test_sigkill_while_rewriting_never_leaves_a_truncated_checkpoint(tmp_path):
    """A process rewrites an ~8 MB checkpoint in a loop; killed at an arbitrary moment, the file it
    leaves is always complete. (Written in place, the kill would nearly always land mid-write.)"""
    script = tmp_path / "rewrite.py"
    script.write_text(
        textwrap.dedent(
            f"""
        import torch
        from monai_coco.checkpoints import save_checkpoint
        net = torch.nn.Linear(1024, 2048)
        step = 0
        while True:
            step += 1
            with torch.no_grad():
                net.bias.fill_(step)
            save_checkpoint({str(tmp_path / "state.pt")!r}, {{"model": net}})
            open({str(tmp_path / "saved")!r}, "w").write(str(step))
        """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "saved").exists() or int((tmp_path / "saved").read_text() or 0) < 3:
            assert proc.poll() is None, "the writer died on its own"
            assert time.monotonic() < deadline, "the writer never saved three checkpoints"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    net = torch.nn.Linear(1024, 2048)
    load_checkpoint(tmp_path / "state.pt", {"model": net})
    assert torch.all(net.bias == net.bias[0]) and net.bias[0] >= 3


def test_numpy_numbers_beside_the_weights_load_and_a_pickled_module_gets_one_short_line(tmp_path):
    """Older code kept a best metric as np.float64 and an epoch as np.int64 beside the weights: safe to
    rebuild, so they load. A whole pickled module cannot be loaded safely: one line, how to re-save."""
    net = torch.nn.Linear(2, 3)
    torch.save({"model": net.state_dict(), "best_metric": np.float64(0.625), "epoch": np.int64(7),
                "history": np.array([0.5, 0.625])}, tmp_path / "old.pt")  # fmt: skip
    other = torch.nn.Linear(2, 3)
    loaded = load_checkpoint(tmp_path / "old.pt", {"model": other})
    assert torch.equal(other.weight, net.weight)
    assert loaded["best_metric"] == 0.625 and loaded["epoch"] == 7
    assert loaded["history"].tolist() == [0.5, 0.625]

    torch.save(net, tmp_path / "module.pt")
    with pytest.raises(ValueError) as error:
        load_checkpoint(tmp_path / "module.pt", {"model": other})
    message = str(error.value)
    expected = f"{tmp_path}/module.pt holds pickled Python objects (torch.nn.modules.linear.Linear)"
    assert message.startswith(expected)
    assert "torch.save(obj.state_dict()" in message
    assert "\n" not in message and "\x1b" not in message and len(message) < 400


def test_a_second_lock_on_a_folder_is_refused_until_the_holder_dies(tmp_path):
    """A SIGKILLed holder leaves no stuck lock: the operating system releases flock on process death."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from monai_coco.folder_lock import FolderLock; "
         f"lock = FolderLock({str(tmp_path)!r}, 'the first run').acquire(); print('held', flush=True); "
         "time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = rf"{tmp_path} is in use by the first run \(process {holder.pid}\)"
        with pytest.raises(ValueError, match=busy):
            FolderLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = FolderLock(tmp_path).acquire()  # the dead holder's lock is gone
    assert lock.held
    lock.release()


def test_leftovers_of_killed_writes_are_removed(tmp_path):
    save_checkpoint(tmp_path / "state.pt", {"model": torch.nn.Linear(2, 2)})
    (tmp_path / ".state.pt.abc123.tmp").write_bytes(b"partial")
    (tmp_path / ".teacher.pt.x.tmp").write_bytes(b"partial")
    (tmp_path / "notes.tmp").write_text("not ours")
    removed = remove_partial_writes(tmp_path)
    assert [p.name for p in removed] == [".state.pt.abc123.tmp", ".teacher.pt.x.tmp"]
    assert sorted(os.listdir(tmp_path)) == ["notes.tmp", "state.pt"]


def test_a_full_disk_keeps_the_previous_file_and_names_it(tmp_path):
    """A real failed write: RLIMIT_FSIZE (a file-size limit, no root needed) makes write() fail with EFBIG
    in a subprocess, as a full disk fails with ENOSPC; both reach the same code path (an OSError)."""
    script = textwrap.dedent(
        f"""
        import resource, signal, torch
        from monai_coco.checkpoints import save_checkpoint
        path = {str(tmp_path / "teacher.pt")!r}
        save_checkpoint(path, {{"model": torch.nn.Linear(2, 2)}})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            save_checkpoint(path, {{"model": torch.nn.Linear(256, 256)}})
        except OSError as exc:
            print(exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"[Errno 27] cannot write {tmp_path}/teacher.pt: File too large; the previous file (if any) is kept"
    )
    load_checkpoint(tmp_path / "teacher.pt", {"model": torch.nn.Linear(2, 2)})  # the first file, whole
    assert os.listdir(tmp_path) == ["teacher.pt"]


def test_a_folder_lock_that_cannot_be_made_is_a_value_error_naming_the_folder(tmp_path):
    (tmp_path / "afile").write_text("")
    expected = rf"^{tmp_path / 'afile' / 'sub'} cannot be made: Not a directory\.$"
    with pytest.raises(ValueError, match=expected):
        FolderLock(tmp_path / "afile" / "sub").acquire()


def test_a_released_folder_lock_leaves_no_file_and_a_second_holder_takes_it(tmp_path):
    with FolderLock(tmp_path, "the first run", name=".x.lock"):
        assert (tmp_path / ".x.lock").read_text().startswith("the first run (process ")
    assert not (tmp_path / ".x.lock").exists()
    with FolderLock(tmp_path, "the second run", name=".x.lock"):
        assert (tmp_path / ".x.lock").read_text().startswith("the second run (process ")
