"""MONAI's bundle exporters on base.yaml's student: ONNX and TorchScript give the checkpoint's logits."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from monai_coco.networks import MobileUNet

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "bundle" / "configs"


def _export(command: str, filepath: Path, checkpoint: Path) -> None:
    args = [sys.executable, "-m", "monai.bundle", command, "network_def", "--filepath", str(filepath)]
    args += ["--ckpt_file", str(checkpoint), "--use_trace", "True"]
    args += ["--meta_file", str(CONFIGS / "metadata.json")]
    args += ["--config_file", repr([str(CONFIGS / "base.yaml"), str(CONFIGS / "inference.yaml")])]
    args += ["--input_shape", "[1, 3, 64, 64]", "--network_def#width_mult", "0.25"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]


def _student(seed: int = 0) -> MobileUNet:
    torch.manual_seed(seed)
    student = MobileUNet(3, 2, width_mult=0.25).eval()
    for module in student.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():  # centre the class-1 logit so that both classes occur
        logits = student(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
        student.head.bias[1] -= (logits[:, 1] - logits[:, 0]).median()
    return student


@pytest.mark.slow
def test_onnx_and_torchscript_exports_equal_the_checkpoint(tmp_path):
    student = _student()
    torch.save(student.state_dict(), tmp_path / "model.pt")  # as the bundle's CheckpointSaver writes it
    _export("onnx_export", tmp_path / "model.onnx", tmp_path / "model.pt")
    _export("ckpt_export", tmp_path / "model.ts", tmp_path / "model.pt")

    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = student(x).numpy()
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        script_logits = torch.jit.load(str(tmp_path / "model.ts"))(x).numpy()
    assert np.abs(expected).max() > 0.1
    assert np.abs(onnx_logits - expected).max() < 1e-4
    assert np.abs(script_logits - expected).max() < 1e-4


def _infer(image: Path, out: Path, checkpoint: Path, *extra: str) -> subprocess.CompletedProcess:
    network = '{"_target_": "MobileUNet", "in_channels": 3, "out_channels": 2, "width_mult": 0.25}'
    args = [sys.executable, "-m", "monai_coco.inference", str(image), str(out)]
    args += ["--checkpoint", str(checkpoint), "--network", network]
    args += ["--roi", "64", "64", "--sw-batch-size", "3", "--threads", "1", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.mark.slow
def test_inference_runs_the_exported_onnx_file_and_refuses_one_from_other_weights(tmp_path):
    """``--onnx-model``: ONNX Runtime loads ``onnx_export``'s file (batch fixed at 1: windows go one at a
    time, the 3-window calls split) and the mask equals eager torch's; a file exported from other weights
    is refused in one line before anything is written."""
    from PIL import Image

    torch.save(_student().state_dict(), tmp_path / "model.pt")
    torch.save(_student(seed=1).state_dict(), tmp_path / "other.pt")
    _export("onnx_export", tmp_path / "model.onnx", tmp_path / "model.pt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (150, 170, 3), dtype=np.uint8)).save(tmp_path / "tile.png")
    runs = {"eager": ["--runtime", "torch"], "onnx": ["--onnx-model", str(tmp_path / "model.onnx")]}
    for name, extra in runs.items():
        done = _infer(tmp_path / "tile.png", tmp_path / name, tmp_path / "model.pt", *extra)
        assert done.returncode == 0, done.stderr[-3000:]
    eager, onnx = (np.asarray(Image.open(tmp_path / n / "tile_mask.png")) for n in ("eager", "onnx"))
    assert 0 < eager.mean() < 1 and np.array_equal(onnx, eager)

    done = _infer(tmp_path / "tile.png", tmp_path / "stale", tmp_path / "other.pt", "--onnx-model",
                  str(tmp_path / "model.onnx"))  # fmt: skip
    assert done.returncode == 2 and not (tmp_path / "stale").exists()
    assert done.stderr.strip().count("\n") == 0 and "is not this checkpoint's network" in done.stderr
    done = _infer(tmp_path / "tile.png", tmp_path / "zero", tmp_path / "model.pt", "--sw-batch-size", "0")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: argument --sw-batch-size: '0' is not valid; expected None (1 on CPU, 4 on CUDA) or a whole "
        "number >= 1"
    )
