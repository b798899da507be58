"""Runtimes that execute the network on batches of windows: eager torch, TorchScript, ONNX Runtime.

A runtime maps windows ``(B, C, h, w)`` float32 to logits ``(B, num_classes, h, w)``. All three compute the
same function; they differ in speed: on CPU, ONNX Runtime is the fastest, then TorchScript
(``torch.jit.freeze`` + ``optimize_for_inference``), with masks equal to eager torch's
(``bundle/docs/benchmarks_deployment.md``). Hence ``"auto"``: on CUDA, eager torch with
autocast (AMP); on CPU, ONNX Runtime when installed (``pip install monai-coco[onnx]``), else TorchScript.
``"auto"`` keeps a compiled runtime only when its logits equal eager torch's on a random batch within
``atol`` (default 1e-4), and otherwise falls back to eager torch with a warning.

The ONNX graph is made by MONAI's ``convert_to_onnx`` (the function behind ``python -m monai.bundle
onnx_export``), with a dynamic batch axis, or read from a file that command wrote (``onnx_model``): then
the exporter never runs in the inference process, whose peak memory it would otherwise raise, and the
file is checked against the network's logits before use.

Threads: ``num_threads`` sets torch's intra-op threads (eager, TorchScript) or ONNX Runtime's
``intra_op_num_threads``; ``None`` keeps torch's current setting. The allocator setting that removes
page-fault churn (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) must be in the environment when
the process starts, so it belongs to the launching command (see :mod:`monai_coco.inference.cohort` and the
bundle README), not here.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from monai_coco.settings import SETTINGS

__all__ = [
    "RUNTIMES",
    "build_runtime",
    "installed_runtimes",
    "TorchRuntime",
    "TorchScriptRuntime",
    "OnnxRuntime",
    "export_onnx",
]

RUNTIMES = SETTINGS["runtime"].choices  # monai_coco.settings
logger = logging.getLogger(__name__)


def device_problem(device: object) -> Optional[str]:
    """``None`` when ``device`` names the CPU or a CUDA device this machine has; else why not, as the end of
    a sentence that begins with the setting and its value."""
    try:
        found = torch.device(device)
    except (RuntimeError, TypeError):
        return "is not a device; expected cpu, cuda or cuda:<index>."
    if found.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (found.index or 0) >= count:
            return (
                f"but this machine has {count} CUDA devices (torch {torch.__version__}); leave device unset "
                "to use what is there, or set cpu."
            )
    elif found.type != "cpu":
        return "is not supported; expected cpu, cuda or cuda:<index>."
    return None


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
    """An ONNX model run by ONNX Runtime on the CPU execution provider: the serialized graph
    (:func:`export_onnx`) or the path of a file (e.g. written by ``python -m monai.bundle onnx_export``). A
    graph with a fixed batch size ``b`` (that command's default) gets the windows ``b`` at a time, the last
    group padded with zeros."""

    name = "onnxruntime"

    def __init__(self, model: Union[bytes, str, os.PathLike], num_threads: Optional[int] = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # idle ONNX Runtime threads sleep rather than spin: the window calls alternate with this process's
        # own work (reading, blending), which spinning threads would keep off the cores (a slide job runs
        # faster without spinning at 2 threads; there are no worker threads at 1 thread)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = model if isinstance(model, bytes) else str(model)
        self.session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        graph_input = self.session.get_inputs()[0]
        self.input = graph_input.name
        self.batch = graph_input.shape[0] if isinstance(graph_input.shape[0], int) else None

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        array = windows.detach().cpu().float().contiguous().numpy()
        if self.batch is None or len(array) == self.batch:
            return torch.from_numpy(self.session.run(None, {self.input: array})[0])
        outputs = []
        for i in range(0, len(array), self.batch):
            group = array[i : i + self.batch]
            padded = np.zeros((self.batch, *array.shape[1:]), array.dtype)
            padded[: len(group)] = group
            outputs.append(self.session.run(None, {self.input: padded})[0][: len(group)])
        return torch.from_numpy(np.concatenate(outputs))


def export_onnx(network: torch.nn.Module, example: torch.Tensor) -> bytes:
    """``network`` as a serialized ONNX graph, by MONAI's ``convert_to_onnx`` at ``example``'s window size,
    with a dynamic batch axis (input ``image``, output ``pred``)."""
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
    return model.SerializeToString()


def _difference(runtime, network: torch.nn.Module, example: torch.Tensor) -> float:
    """Largest absolute difference of the runtime's logits from eager torch's on ``example``."""
    with torch.inference_mode():
        expected = network(example)
        got = runtime(example)
    if got.shape != expected.shape:
        return math.inf
    return float((got.float() - expected.float()).abs().max())


def build_runtime(
    network: torch.nn.Module,
    runtime: str,
    example: torch.Tensor,
    device: torch.device,
    amp: bool = False,
    num_threads: Optional[int] = None,
    atol: float = 1e-4,
    onnx_model: Optional[Union[str, os.PathLike]] = None,
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
        atol: largest absolute logit difference from eager torch accepted by ``"auto"`` (and of
            ``onnx_model``).
        onnx_model: an ONNX file of ``network`` (``python -m monai.bundle onnx_export``) for
            ``"onnxruntime"`` (and ``"auto"`` on CPU) to load instead of exporting the network here.

    Raises:
        ValueError: an unknown runtime, ``onnxruntime`` asked for but not installed or on a non-CPU device,
            or an ``onnx_model`` that ONNX Runtime cannot load or whose logits differ from ``network``'s by
            more than ``atol`` (a file exported from other weights).
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
    if onnx_model is not None and device.type == "cpu" and runtime in ("auto", "onnxruntime"):
        return _load_onnx(network, onnx_model, example, num_threads, atol)
    if runtime == "auto":
        if device.type != "cpu":
            return TorchRuntime(network, device, amp)
        runtime = "onnxruntime" if "onnxruntime" in installed_runtimes() else "torchscript"
        try:
            built = _build(network, runtime, example, device, amp, num_threads)
        except ValueError as exc:  # a network the exporter cannot take: eager torch runs it
            logger.warning("%s; using torch", exc)
            return TorchRuntime(network, device, amp)
        if _difference(built, network, example) <= atol:
            return built
        logger.warning("runtime %s differs from eager torch by > %g on logits; using torch", runtime, atol)
        return TorchRuntime(network, device, amp)
    return _build(network, runtime, example, device, amp, num_threads)


def _load_onnx(network, path, example, num_threads, atol) -> OnnxRuntime:
    """``OnnxRuntime`` of the file ``path``, checked against ``network`` on ``example`` (one line if not)."""
    if "onnxruntime" not in installed_runtimes():
        raise ValueError(f"onnx_model {path} needs onnx and onnxruntime: pip install monai-coco[onnx].")
    try:
        loaded = OnnxRuntime(path, num_threads)
    except Exception as exc:  # onnxruntime's Fail / InvalidGraph / InvalidProtobuf, ...
        raise ValueError(
            f"onnx_model {path} is not an ONNX model ONNX Runtime can load ({_first_line(exc)}); expected "
            "the file onnx_export wrote."
        ) from exc
    windows = tuple(example.shape[1:])
    expected = tuple(loaded.session.get_inputs()[0].shape[1:])
    if len(expected) != len(windows) or any(isinstance(e, int) and e != w for e, w in zip(expected, windows)):
        raise ValueError(
            f"onnx_model {path} takes windows of {expected}, not the configured {windows} (roi_size and "
            f'input channels): export it with --input_shape "{[1, *windows]}" or set roi_size to match.'
        )
    try:
        difference = _difference(loaded, network, example)
    except Exception as exc:  # onnxruntime's InvalidArgument, ...
        raise ValueError(f"onnx_model {path} cannot run windows of {windows}: {_first_line(exc)}") from exc
    if difference > atol:
        raise ValueError(
            f"onnx_model {path} is not this checkpoint's network: its logits differ by up to "
            f"{difference:.3g} (> {atol:g}); export it again from the checkpoint."
        )
    return loaded


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _build(network, runtime, example, device, amp, num_threads):
    """The runtime; ValueError (one line) when the network cannot be traced or exported for it."""
    if runtime == "torch":
        return TorchRuntime(network, device, amp)
    try:
        if runtime == "torchscript":
            return TorchScriptRuntime(network, example)
        return OnnxRuntime(export_onnx(network, example), num_threads)
    except Exception as exc:  # the exporters raise many types (SymbolicValueError, RuntimeError, ...)
        raise ValueError(
            f"inference runtime {runtime!r} cannot take {type(network).__name__} at windows of "
            f"{tuple(example.shape[-2:])}: {_first_line(exc)} (runtime torch runs it eagerly)"
        ) from exc
