"""A killed bundle run, rerun with the same command, ends bit-identical to an uninterrupted one (CPU).

Real ``python -m monai.bundle run training`` processes of the teacher stage (64² synthetic tiles, 3 epochs
of 2 iterations over data of 3 batches, so that each epoch ends inside a pass over the shuffled, stain-
augmented data, as the pool curve's fixed budget does) are SIGKILLed at chosen moments, read from their log:
right after a training state was saved, in the middle of an epoch, and while validation writes the best
model. Each rerun resumes from the last complete state, inside a pass; the last one finishes. Its final
weights, best model and best-metric record equal those of an uninterrupted run exactly, and no temporary
file is left in the checkpoint folder.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import torch
from bundle_runs import ROOT, bundle_env, cli, config_arg, copy_bundle

SETTINGS = {"roi_size": [64, 64], "synthetic#n_train": 6, "train#trainer#epoch_length": 2,
            "synthetic#n_val": 2, "synthetic#n_test": 2, "synthetic#slide_size": 0, "batch_size": 2,
            "num_workers": 0, "epochs": 3, "log_interval": 1, "teacher_def#features": [8, 16, 32, 64],
            "stain_augmentation": True}  # fmt: skip


def teacher_command(root) -> list[str]:
    config = config_arg(root / "configs", "train_teacher.yaml")
    return [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", config,
            "--bundle_root", str(root), *cli(SETTINGS)]  # fmt: skip


def run_until(root, marker: str | None) -> str:
    """Run the teacher stage; SIGKILL it as soon as a log line contains ``marker`` (None: run to the end)."""
    process = subprocess.Popen(teacher_command(root), cwd=ROOT, env=bundle_env(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    log = []
    for line in process.stdout:
        log.append(line)
        if marker is not None and marker in line:
            process.send_signal(signal.SIGKILL)
            break
    process.stdout.close()
    returncode = process.wait(timeout=300)
    text = "".join(log)
    if marker is None:
        assert returncode == 0, text[-3000:]
    else:
        assert returncode == -signal.SIGKILL, f"never reached {marker!r}:\n{text[-3000:]}"
    return text


def weights(path) -> dict[str, torch.Tensor]:
    """The model's state dict: the ``model`` entry of a training state, or a bare model file."""
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    return loaded["model"] if "trainer" in loaded else loaded


@pytest.mark.slow
def test_a_run_killed_three_times_ends_bit_identical_to_an_uninterrupted_run(tmp_path):
    reference = copy_bundle(tmp_path / "reference")
    run_until(reference, None)

    killed = copy_bundle(tmp_path / "killed")
    run_until(killed, "saved training state at epoch 1")  # killed right after the state of epoch 1
    log = run_until(killed, "Epoch: 3/3, Iter: 1/2")  # resumes at epoch 1, killed in the middle of epoch 3
    assert "resuming from" in log and "at epoch 1" in log and "drew again the 2 of 3 batches" in log
    log = run_until(killed, None)  # resumes at epoch 2, finishes
    assert "at epoch 2" in log and "drew again the 1 of 3 batches" in log

    for name in ("teacher.pt", "train_state_teacher.pt"):
        expected, found = weights(reference / "models" / name), weights(killed / "models" / name)
        assert expected.keys() == found.keys()
        for key, value in expected.items():
            assert torch.equal(value, found[key]), f"{name}: {key} differs after the resume"
    states = [torch.load(r / "models" / "train_state_teacher.pt", weights_only=True)
              for r in (reference, killed)]  # fmt: skip
    assert states[0]["best_model"] == states[1]["best_model"]  # the best-metric record
    names = sorted(p.name for p in (killed / "models").iterdir())
    assert names == sorted(p.name for p in (reference / "models").iterdir())  # no leftover of a killed write
    assert {"teacher.pt", "train_state_teacher.pt"} <= set(names)
    assert not [n for n in names if n.endswith(".tmp")]


@pytest.mark.slow
def test_a_full_disk_during_a_bundle_run_is_one_line_and_keeps_the_previous_files(tmp_path):
    """A full disk in a real bundle run: the file-size limit RLIMIT_FSIZE (no root needed) makes every
    write above it fail with EFBIG, as a full disk fails with ENOSPC (both are an OSError at the write). A
    finished 1-epoch run is resumed for 2 epochs under a limit smaller than its checkpoints."""
    root = copy_bundle(tmp_path / "bundle")
    command = teacher_command(root)
    epochs = command.index("--epochs") + 1
    command[epochs] = "1"
    subprocess.run(command, cwd=ROOT, env=bundle_env(), capture_output=True, text=True, timeout=300,
                   check=True)  # fmt: skip
    models = root / "models"
    before = {p.name: p.read_bytes() for p in models.glob("*.pt")}
    limit = min(len(b) for b in before.values()) // 2

    def limit_file_size():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command[epochs] = "2"
    result = subprocess.run(command, cwd=ROOT, env=bundle_env(), capture_output=True, text=True, timeout=300,
                            preexec_fn=limit_file_size)  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("monai_coco: ") and "File too large; the previous file (if any) is kept" in last
    assert "Traceback" not in result.stderr
    assert {p.name: p.read_bytes() for p in models.glob("*.pt")} == before  # every previous file, whole
    assert not [p.name for p in models.iterdir() if p.name.endswith(".tmp")]
