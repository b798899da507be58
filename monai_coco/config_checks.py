"""The bundle glue: one-line errors for bad bundle settings, missing prerequisites and unusable data.

MONAI's bundle runner wraps every exception raised while it resolves a config in several screens of
traceback. The checks here raise ``SystemExit("monai_coco: ...")`` instead: ``SystemExit`` is not an
``Exception``, so it passes MONAI's wrappers, and Python prints only its message on stderr and exits
with status 1. Each message names the setting (or file) and what was expected, and for a missing
prerequisite the command that makes it. Each check returns its (checked) value, so that a config
expression can use it in place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from monai_coco.checkpoints import load_checkpoint, load_preprocessing_record, save_preprocessing_record
from monai_coco.data.datalist import load_paired_datalist
from monai_coco.data.unlabelled import list_unlabelled, slide_patches

__all__ = [
    "bundle_datalist",
    "bundle_unlabelled",
    "check_choice",
    "check_optional_count",
    "check_path",
    "check_preprocessing",
    "check_roi_size",
    "check_stain_normalization",
    "exit_on_error",
    "fail",
    "load_prerequisite",
    "record_preprocessing",
]


def fail(message: str) -> NoReturn:
    """Stop the run with the one-line message ``monai_coco: <message>`` on stderr (exit status 1)."""
    raise SystemExit(f"monai_coco: {' '.join(str(message).split())}")


def check_choice(setting: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else stop naming ``setting`` and the choices."""
    choices = list(choices)
    if value not in choices:
        fail(f"{setting}={value!r} is not one of {', '.join(map(repr, choices))}.")
    return value


def check_optional_count(setting: str, value: Any) -> int | None:
    """``value`` if it is None or an integer ``>= 1`` (e.g. ``n_labelled``), else stop naming ``setting``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        fail(f"{setting}={value!r} must be null (all) or an integer >= 1.")
    return value


def check_path(setting: str, path: str | os.PathLike, expected: str = "a folder or a file") -> str:
    """``path`` as a string if it exists, else stop naming ``setting`` and what was expected."""
    if not Path(path).exists():
        fail(f"{setting}={str(path)!r} does not exist; expected {expected}.")
    return str(path)


def check_roi_size(roi_size: Sequence[int], networks: Sequence[torch.nn.Module]) -> list[int]:
    """``roi_size`` as a list if it is two positive integers divisible by every network's ``size_divisor``."""
    roi = list(roi_size) if isinstance(roi_size, Sequence) and not isinstance(roi_size, str) else [roi_size]
    divisor = 1
    for network in networks:
        divisor = max(divisor, int(getattr(network, "size_divisor", 1)))
    if len(roi) != 2 or not all(isinstance(r, int) and r > 0 and r % divisor == 0 for r in roi):
        fail(f"roi_size={roi_size!r} must be two positive integers [H, W], multiples of {divisor}.")
    return roi


def check_stain_normalization(stain_normalization: bool, in_channels: int) -> bool:
    """``stain_normalization`` if it is a boolean usable with ``in_channels``: H&E stain normalisation needs
    RGB tiles (``in_channels=3``); else stop naming both settings."""
    if not isinstance(stain_normalization, bool):
        fail(f"stain_normalization={stain_normalization!r} must be true or false.")
    if stain_normalization and in_channels != 3:
        fail(f"stain_normalization=true needs RGB input (in_channels=3), got in_channels={in_channels}.")
    return stain_normalization


def load_prerequisite(
    network: torch.nn.Module, path: str | os.PathLike, made_by: str, setting: str = "network"
) -> torch.nn.Module:
    """Load the checkpoint ``path`` (a bare state dict or ``{"model": ...}``) into ``network``; return it.

    Args:
        network: the module to load into.
        path: the checkpoint an earlier stage wrote, e.g. ``models/teacher.pt``.
        made_by: the command that makes the checkpoint, given in the message when it is missing.
        setting: the config id of the network's definition, named when the checkpoint does not fit it.
    """
    if not Path(path).is_file():
        fail(f"{path} not found; make it first with: {made_by}")
    try:
        load_checkpoint(path, {"model": network})
    except ValueError as exc:
        fail(f"{exc} (was {path} made with other {setting} settings? rerun: {made_by})")
    return network



def exit_on_error(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``; a ``ValueError`` or ``FileNotFoundError`` (the package's errors at the
    edge, which name the offending file or setting) stops the run with its message on one line."""
    try:
        return function(*args, **kwargs)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))


def bundle_datalist(
    dataset_dir: str | os.PathLike, split: str, setting: str = "dataset_dir", **kwargs: Any
) -> list[dict[str, str]]:
    """:func:`~monai_coco.data.load_paired_datalist` of ``split``, stopping the run with one line
    naming ``setting`` (and the problem file) when the data cannot be used.

    Args:
        dataset_dir: a data folder in any layout ``load_paired_datalist`` takes, or a JSON datalist.
        split: ``"train"``, ``"val"`` or ``"test"``.
        setting: the config id named in the message.
        kwargs: passed to ``load_paired_datalist`` (``val_fraction``, ``seed``, ``label_map``, ...).
    """
    if not Path(dataset_dir).exists():
        fail(
            f"{setting}={str(dataset_dir)!r} does not exist; expected a folder of tiles with same-stem masks "
            "(or a JSON datalist), or leave it unset for the built-in synthetic data."
        )
    try:
        return load_paired_datalist(dataset_dir, split=split, **kwargs)
    except (ValueError, FileNotFoundError) as exc:
        fail(f"{setting}={str(dataset_dir)!r}: {exc}")



def bundle_unlabelled(
    unlabelled_dir: str | os.PathLike | None,
    mpp: float,
    roi_size: Sequence[int],
    backend: str = "tifffile",
    min_tissue: float = 0.5,
    setting: str = "unlabelled_dir",
) -> dict[str, list[dict]]:
    """The unannotated images of ``unlabelled_dir``: ``{"tiles": [{"image": path}, ...], "patches": [...]}``,
    the patches cut from its slides at ``mpp`` µm/px and ``roi_size`` pixels inside their tissue
    (:func:`~monai_coco.data.unlabelled.slide_patches`, entries for MONAI's ``PatchWSIDataset``); both empty
    when ``unlabelled_dir`` is None. Stops the run with one line naming ``setting`` (and the problem file)
    when the folder cannot be used or yields no image.
    """
    if unlabelled_dir is None:
        return {"tiles": [], "patches": []}
    try:
        images = list_unlabelled(unlabelled_dir)
        patches = [
            entry
            for slide in images.slides
            for entry in slide_patches(slide, mpp, roi_size, backend=backend, min_tissue=min_tissue)
        ]
    except (ValueError, FileNotFoundError) as exc:
        fail(f"{setting}={str(unlabelled_dir)!r}: {exc}")
    if not images.tiles and not patches:
        fail(f"{setting}={str(unlabelled_dir)!r}: its slides {images.slides} hold no patch with tissue.")
    return {"tiles": images.tile_datalist(), "patches": patches}

def record_preprocessing(
    checkpoint: str | os.PathLike, preprocessing: Mapping[str, Any], main_process: bool = True
) -> dict[str, Any]:
    """Write ``preprocessing`` (e.g. ``{"stain_normalization": true}``) beside the ``checkpoint`` a training
    stage makes (``<stem>.preprocessing.json``, see :mod:`monai_coco.checkpoints`); only on the main process.
    Returns the settings."""
    settings = dict(preprocessing)
    if main_process:
        save_preprocessing_record(checkpoint, settings)
    return settings


def check_preprocessing(checkpoint: str | os.PathLike, preprocessing: Mapping[str, Any]) -> dict[str, Any]:
    """``preprocessing`` if it equals what ``checkpoint``'s record says its network was trained with; else
    stop naming the setting, both values and the override that fixes it. A checkpoint without a record
    (made before records were kept) passes."""
    try:
        record = load_preprocessing_record(checkpoint)
    except ValueError as exc:
        fail(str(exc))
    settings = dict(preprocessing)
    for name, value in settings.items():
        if record is not None and name in record and record[name] != value:
            fail(
                f"{checkpoint} was trained with {name}={record[name]!r} but this run has {name}={value!r}; "
                f"rerun with --{name} {record[name]!r} (the network must see images prepared as in training)."
            )
    return settings
