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


@pytest.mark.slow
def test_onnx_and_torchscript_exports_equal_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    student = MobileUNet(3, 2, width_mult=0.25).eval()
    for module in student.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
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
