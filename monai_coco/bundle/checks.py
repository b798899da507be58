"""Checks that bundle configs call on settings of their own kind (a path, a device, a folder to write to, the
window size against the networks): each returns the checked value, so that a config expression can use it in
place, or stops the run with one line naming the setting (:func:`~monai_coco.fail.fail`). Settings of a plain
type and range are declared and checked in :mod:`monai_coco.settings`.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from monai_coco.fail import fail
from monai_coco.inference.runtimes import device_problem

__all__ = [
    "check_choice",
    "check_device",
    "check_last_batch",
    "check_onnx_model",
    "check_output_dir",
    "check_path",
    "check_roi_size",
    "check_split_size",
    "check_stain_normalization",
    "check_tracking_store",
    "exit_on_error",
    "working_bundle_root",
]


def working_bundle_root() -> str:
    """The bundle of the working folder: ``"bundle"`` from the repository's root (``bundle/configs/base.yaml``
    there), ``"."`` from inside the bundle folder (``configs/base.yaml`` there); else stop naming
    ``bundle_root``, so that a run started elsewhere never makes a second bundle (``bundle/bundle/``)."""
    for root in ("bundle", "."):
        if (Path(root) / "configs" / "base.yaml").is_file():
            return root
    fail(f"bundle_root: {Path.cwd()} holds no bundle (bundle/configs/base.yaml or configs/base.yaml); run "
         "from the repository or the bundle folder, or give --bundle_root.")  # fmt: skip


def check_choice(setting: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else stop naming ``setting`` and the choices."""
    choices = list(choices)
    if value not in choices:
        fail(f"{setting}={value!r} is not one of {', '.join(map(repr, choices))}.")
    return value


def check_path(setting: str, path: str | os.PathLike, expected: str = "a folder or a file") -> str:
    """``path`` with ``~`` expanded, as a string, if it exists; else stop naming ``setting`` and what was
    expected."""
    if not Path(path).expanduser().exists():
        fail(f"{setting}={str(path)!r} does not exist; expected {expected}.")
    return str(Path(path).expanduser())


def check_device(setting: str, device: Any) -> torch.device:
    """``device`` as a ``torch.device`` if this machine has it, else stop naming ``setting``
    (:func:`~monai_coco.inference.runtimes.device_problem`)."""
    problem = device_problem(device)
    if problem is not None:
        fail(f"{setting}={device!r} {problem}")
    return torch.device(device)


def check_onnx_model(onnx_model: Any, runtime: str) -> str | None:
    """Inference's ``onnx_model``: None, or an existing file for runtime ``auto`` or ``onnxruntime``, as a
    string with ``~`` expanded; else stop naming the setting and what was expected."""
    if onnx_model is None:
        return None
    if not isinstance(onnx_model, (str, os.PathLike)) or not str(onnx_model).strip():
        fail(f"onnx_model={onnx_model!r} is not valid; expected the path of an ONNX file written by "
             "onnx_export (or None).")  # fmt: skip
    path = Path(onnx_model).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        fail(f"onnx_model={str(onnx_model)!r} {what}; expected an ONNX file written by onnx_export.")
    if runtime not in ("auto", "onnxruntime"):
        fail(f"onnx_model is run by ONNX Runtime: runtime must be auto or onnxruntime, got {runtime!r}.")
    return str(path)


def check_output_dir(setting: str, path: str | os.PathLike) -> str:
    """``path`` (``~`` expanded) as a string once it is a folder this process can write to (it is created if
    needed); else stop naming ``setting`` and the reason (a file in the way, read-only, no permission)."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        fail(f"{setting}={str(path)!r} is a file; expected a folder to write to.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        fail(f"{setting}={str(path)!r} cannot be written to: {exc.strerror or exc}; expected a writable "
             "folder.")  # fmt: skip
    return str(folder)


_DATABASE_SCHEMES = ("postgresql", "mysql", "mssql", "databricks")  # MLflow's other stores, as they are


def check_tracking_store(setting: str, uri: str | None) -> str | None:
    """``uri`` once ``--tracking mlflow`` can use the store it names, else stop naming ``setting`` (MLflow's
    own errors are a traceback when MONAI builds its handler, or minutes of retries for a server that is
    not there):

    * ``sqlite:///PATH`` (the bundle's ``<output_root>/mlruns.db``; PATH as MLflow takes it, relative to the
      working folder): PATH's folder is one to write to and PATH, if it exists, is an SQLite database (its
      first 16 bytes are SQLite's header, or it is empty);
    * ``http(s)://HOST:PORT``, an MLflow server: it answers (its ``/health``, within 5 s);
    * a database URI (``postgresql://``, ``mysql://``, ``mssql://``, ``databricks``): as it is;
    * anything else (a bare path, ``file://``: MLflow 3 has no file store; an in-memory ``sqlite://``, whose
      runs end with the process; empty) is refused. ``None`` is MLflow's own default.
    """
    if uri is None:
        return uri
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in _DATABASE_SCHEMES:
        return uri
    if scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
        except urllib.error.HTTPError:  # a server answered
            return uri
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            fail(f"{setting}={uri!r}: no MLflow server answers there ({reason}); start it, or give a local "
                 "store, sqlite:///PATH.")  # fmt: skip
        return uri
    if not uri.startswith("sqlite:///") or uri == "sqlite:///":
        fail(f"{setting}={uri!r} is no store MLflow keeps runs in; expected sqlite:///PATH (a file, e.g. "
             "the bundle's <output_root>/mlruns.db), an MLflow server's http(s)://HOST:PORT or a database "
             "URI.")  # fmt: skip
    path = Path(uri[len("sqlite:///") :])
    check_output_dir(setting, path.parent)
    head = b""
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(16)
    if path.is_dir() or head not in (b"", b"SQLite format 3\x00"):
        fail(f"{setting}={uri!r}: {path} is not an SQLite database; expected MLflow's store there, or no "
             f"file (move it away, or set {setting} to another store).")  # fmt: skip
    return uri


def check_split_size(split: str, datalist: Sequence[Any], world_size: int) -> Sequence[Any]:
    """``datalist`` if each of ``world_size`` processes gets at least one item of it (MONAI's
    ``DistributedSampler(even_divisible=False)`` needs that), else stop naming the split and its size."""
    if len(datalist) < world_size:
        fail(
            f"the {split} split has {len(datalist)} tiles, fewer than the {world_size} processes that "
            f"share it; give it at least {world_size} tiles, or start fewer processes (--nproc_per_node)."
        )
    return datalist


def check_roi_size(roi_size: Sequence[int], networks: Sequence[torch.nn.Module]) -> list[int]:
    """``roi_size`` as a list if it is two positive integers divisible by every network's ``size_divisor``."""
    roi = list(roi_size) if isinstance(roi_size, Sequence) and not isinstance(roi_size, str) else [roi_size]
    divisor = 1
    for network in networks:
        divisor = max(divisor, int(getattr(network, "size_divisor", 1)))
    if len(roi) != 2 or not all(isinstance(r, int) and r > 0 and r % divisor == 0 for r in roi):
        fail(f"roi_size={roi_size!r} must be two positive integers [H, W], multiples of {divisor}.")
    return roi


def check_last_batch(roi_size: Sequence[int], network: torch.nn.Module, samples: int, batch_size: int) -> int:
    """``samples`` unless a training batch of one tile would meet 1×1 maps in ``network``: its deepest
    maps are ``roi_size / size_divisor`` (MobileUNet: 32, FANet: 8), and batch norm cannot train on one value
    per channel (PyTorch: "Expected more than 1 value per channel"); then stop naming ``roi_size`` and
    ``batch_size``. A lone last batch happens when ``samples % batch_size == 1`` (or ``batch_size`` is 1)."""
    divisor = int(getattr(network, "size_divisor", 1))
    lone = batch_size == 1 or samples % batch_size == 1
    if min(roi_size) // divisor == 1 and lone:
        name = type(network).__name__
        fail(f"roi_size={list(roi_size)} makes {name}'s deepest maps 1x1 and a training batch holds one tile "
             f"({samples} tiles, batch_size={batch_size}): batch norm cannot train on it; use roi_size >= "
             f"{2 * divisor} or a batch_size that leaves no batch of one.")  # fmt: skip
    return samples


def check_stain_normalization(stain_normalization: bool, in_channels: int) -> bool:
    """``stain_normalization`` if it is a boolean usable with ``in_channels``: H&E stain normalisation needs
    RGB tiles (``in_channels=3``); else stop naming both settings."""
    if not isinstance(stain_normalization, bool):
        fail(f"stain_normalization={stain_normalization!r} must be true or false.")
    if stain_normalization and in_channels != 3:
        fail(f"stain_normalization=true needs RGB input (in_channels=3), got in_channels={in_channels}.")
    return stain_normalization


def exit_on_error(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``; a ``ValueError`` or ``FileNotFoundError`` (the package's errors at the
    edge, which name the offending file or setting) stops the run with its message on one line. For a class
    (e.g. ``SlideInferenceConfig``), a field named ``Class.field`` in the message is named ``field``, as the
    config's setting."""
    try:
        return function(*args, **kwargs)
    except (ValueError, FileNotFoundError) as exc:
        message = str(exc)
        if isinstance(function, type):
            message = message.replace(f"{function.__name__}.", "")
        fail(message)
