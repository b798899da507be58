"""Runtimes that execute the network on batches of windows: eager torch, TorchScript, ONNX Runtime.

A runtime maps windows ``(B, C, h, w)`` float32 to logits ``(B, num_classes, h, w)``. All three compute the
same function; they differ in speed. Measured on this project's CPU against the eager Mobile U-Net student,
with identical argmax (issue 13): ONNX Runtime x3.2 (batch 1) to x4.2 (batch 4) on the forward pass,
``torch.jit.freeze`` + ``optimize_for_inference`` x2.5. Hence ``"auto"``: on CUDA, eager torch with
autocast (AMP); on CPU, ONNX Runtime when installed (``pip install monai-coco[onnx]``), else TorchScript.
``"auto"`` keeps a compiled runtime only when its logits equal eager torch's on a random batch within
``atol`` (default 1e-4), and otherwise falls back to eager torch with a warning.

The ONNX graph is made by MONAI's ``convert_to_onnx`` (the function behind ``python -m monai.bundle
onnx_export``), with a dynamic batch axis.

Threads: ``num_threads`` sets torch's intra-op threads (eager, TorchScript) or ONNX Runtime's
``intra_op_num_threads``; ``None`` keeps torch's current setting. The allocator setting that removes
page-fault churn (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) must be in the environment when
the process starts, so it belongs to the launching command (see :mod:`monai_coco.inference.cohort` and the
bundle README), not here.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import torch

__all__ = [
    "RUNTIMES",
    "build_runtime",
    "installed_runtimes",
    "TorchRuntime",
    "TorchScriptRuntime",
    "OnnxRuntime",
]

RUNTIMES = ("auto", "torch", "torchscript", "onnxruntime")
logger = logging.getLogger(__name__)


def installed_runtimes() -> tuple[str, ...]:
    """The runtimes usable in this environment (``onnxruntime`` needs the ``onnx`` extra)."""
    have_ort = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
    return ("torch", "torchscript") + (("onnxruntime",) if have_ort else ())


class TorchRuntime:
    """The network as it is (eager), under ``torch.autocast`` on CUDA when ``amp``."""

    name = "torch"

    def __init__(self, network: torch.nn.Module, device: torch.device, amp: bool = False) -> None:
        self.network = network.to(device).eval()
        self.autocast = amp and device.type == "cuda"

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cuda", enabled=self.autocast):
            return self.network(windows)


class TorchScriptRuntime:
    """``torch.jit.trace`` of the network at the window size, then ``torch.jit.freeze`` (constants folded,
    BatchNorm folded into convolutions) and ``torch.jit.optimize_for_inference``."""

    name = "torchscript"

    def __init__(self, network: torch.nn.Module, example: torch.Tensor) -> None:
        network = network.eval()
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(network, example, check_trace=False)
            self.module = torch.jit.optimize_for_inference(torch.jit.freeze(traced))

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(windows)


class OnnxRuntime:
    """The network exported by MONAI's ``convert_to_onnx`` (dynamic batch axis) and run by ONNX Runtime
    on the CPU execution provider."""

    name = "onnxruntime"

    def __init__(
        self,
        network: torch.nn.Module,
        example: torch.Tensor,
        num_threads: Optional[int] = None,
    ) -> None:
        import onnxruntime
        from monai.networks.utils import convert_to_onnx

        with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = convert_to_onnx(
                network.cpu().eval(),
                (example.cpu(),),
                input_names=["image"],
                output_names=["pred"],
                dynamic_axes={"image": {0: "batch"}, "pred": {0: "batch"}},
                filename=str(Path(folder) / "network.onnx"),
                dynamo=False,
            )
        data = model.SerializeToString()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        array = windows.detach().cpu().float().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input: array})[0])


def _agrees(runtime, network: torch.nn.Module, example: torch.Tensor, atol: float) -> bool:
    with torch.inference_mode():
        expected = network(example)
    return bool(torch.allclose(runtime(example).float(), expected.float(), rtol=0.0, atol=atol))


def build_runtime(
    network: torch.nn.Module,
    runtime: str,
    example: torch.Tensor,
    device: torch.device,
    amp: bool = False,
    num_threads: Optional[int] = None,
    atol: float = 1e-4,
):
    """The network wrapped for fast inference on windows like ``example``.

    Args:
        network: ``(B, C, h, w) -> (B, num_classes, h, w)`` logits; put in ``eval()`` mode.
        runtime: one of :data:`RUNTIMES`; ``"auto"`` as described in the module docstring.
        example: windows ``(B, C, h, w)`` like those to come (TorchScript traces and ONNX exports at their
            size; ``"auto"`` compares logits on them).
        device: ``torch.device``; compiled runtimes are CPU-only (``"torchscript"`` runs where it is given).
        amp: autocast for eager torch on CUDA.
        num_threads: intra-op threads; ``None`` keeps torch's current count.
        atol: largest absolute logit difference from eager torch accepted by ``"auto"``.

    Raises:
        ValueError: an unknown runtime, or ``onnxruntime`` asked for but not installed or on a non-CPU device.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"inference runtime must be one of {RUNTIMES}, got {runtime!r}.")
    if runtime == "onnxruntime" and "onnxruntime" not in installed_runtimes():
        raise ValueError(
            "inference runtime 'onnxruntime' needs onnx and onnxruntime: pip install monai-coco[onnx]."
        )
    if runtime == "onnxruntime" and device.type != "cpu":
        raise ValueError(f"inference runtime 'onnxruntime' runs on the CPU here, but device is {device}.")
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    network = network.to(device).eval()
    example = example.to(device)
    if runtime == "auto":
        if device.type != "cpu":
            return TorchRuntime(network, device, amp)
        runtime = "onnxruntime" if "onnxruntime" in installed_runtimes() else "torchscript"
        try:
            built = _build(network, runtime, example, device, amp, num_threads)
        except ValueError as exc:  # a network the exporter cannot take: eager torch runs it
            logger.warning("%s; using torch", exc)
            return TorchRuntime(network, device, amp)
        if _agrees(built, network, example, atol):
            return built
        logger.warning("runtime %s differs from eager torch by > %g on logits; using torch", runtime, atol)
        return TorchRuntime(network, device, amp)
    return _build(network, runtime, example, device, amp, num_threads)


def _build(network, runtime, example, device, amp, num_threads):
    """The runtime; ValueError (one line) when the network cannot be traced or exported for it."""
    if runtime == "torch":
        return TorchRuntime(network, device, amp)
    try:
        if runtime == "torchscript":
            return TorchScriptRuntime(network, example)
        return OnnxRuntime(network, example, num_threads)
    except Exception as exc:  # the exporters raise many types (SymbolicValueError, RuntimeError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"inference runtime {runtime!r} cannot take {type(network).__name__} at windows of "
            f"{tuple(example.shape[-2:])}: {first} (runtime torch runs it eagerly)"
        ) from exc
