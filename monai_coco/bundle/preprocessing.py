"""The preprocessing record of a checkpoint, kept by the bundle: what a training stage fed its network (stain
normalisation, the training scale) is written beside the checkpoint, and every later stage that uses the
checkpoint must prepare its images the same way (:mod:`monai_coco.checkpoints` reads and writes the file).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from monai_coco.checkpoints import load_preprocessing_record, save_preprocessing_record
from monai_coco.fail import fail

__all__ = ["check_preprocessing", "record_preprocessing"]


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
