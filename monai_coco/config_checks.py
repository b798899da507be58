"""The bundle glue: one-line errors for bad bundle settings, missing prerequisites and unusable data.

MONAI's bundle runner wraps every exception raised while it resolves a config in several screens of
traceback. The checks here raise ``SystemExit("monai_coco: ...")`` instead: ``SystemExit`` is not an
``Exception``, so it passes MONAI's wrappers, and Python prints only its message on stderr and exits
with status 1. Each message names the setting (or file) and what was expected, and for a missing
prerequisite the command that makes it. Each check returns its (checked) value, so that a config
expression can use it in place.
"""

from __future__ import annotations

import ast
import copy
import difflib
import errno
import inspect
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser
from monai.bundle.config_item import ComponentLocator
from monai.bundle.reference_resolver import ReferenceResolver
from monai.utils.module import locate

from monai_coco.checkpoints import load_checkpoint, load_preprocessing_record, save_preprocessing_record
from monai_coco.data.datalist import load_paired_datalist
from monai_coco.data.unlabelled import list_unlabelled, slide_patches
from monai_coco.inference.runtimes import device_problem

__all__ = [
    "ExitOnError",
    "bundle_datalist",
    "bundle_unlabelled",
    "check_choice",
    "check_optional_count",
    "check_device",
    "check_output_dir",
    "check_overrides",
    "check_path",
    "check_preprocessing",
    "check_roi_size",
    "check_settings",
    "check_split_size",
    "check_stain_normalization",
    "exit_on_error",
    "fail",
    "load_prerequisite",
    "record_preprocessing",
]

# errors that name the offending file or setting themselves: raised at the edge by the package (ValueError,
# FileNotFoundError), by a write that failed (OSError naming the file), by a non-finite stop
_ONE_LINE_ERRORS = (ValueError, OSError, FloatingPointError)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_int(minimum: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(minimum: float, maximum: float = math.inf, above: bool = False) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        return (value > minimum if above else value >= minimum) and value <= maximum

    return check


# each user-facing setting of the bundle's configs: how it is checked and what is expected
_BOOLEAN = "True or False (the command line reads `false` as text: write False)"
_SETTINGS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "amp": (_is_bool, _BOOLEAN),
    "stain_augmentation": (_is_bool, _BOOLEAN),
    "overwrite": (_is_bool, _BOOLEAN),
    "mpp": (_is_number(0.0, above=True), "a finite number > 0 (µm/px)"),
    "slide_mpp": (
        lambda v: v is None or _is_number(0.01, 50.0)(v),
        "null (each file's own) or a number in [0.01, 50] (µm/px of the slides' level 0)",
    ),
    "num_threads": (lambda v: v is None or _is_int(1)(v), "None (torch's default) or a whole number >= 1"),
    "epochs": (_is_int(1), "a whole number of epochs >= 1"),
    "paraphraser_epochs": (_is_int(1), "a whole number of epochs >= 1"),
    "sw_batch_size": (lambda v: v is None or _is_int(1)(v), "None (1 on CPU, 4 on CUDA) or a whole number"),
    "batch_size": (_is_int(1), "a whole number >= 1"),
    "num_workers": (_is_int(0), "a whole number >= 0"),
    "val_interval": (_is_int(1), "a whole number of epochs >= 1"),
    "log_interval": (_is_int(1), "a whole number of iterations >= 1"),
    "seed": (_is_int(0), "a whole number >= 0"),
    "in_channels": (lambda v: v in (1, 3) and not isinstance(v, bool), "1 (grayscale) or 3 (RGB)"),
    "num_classes": (_is_int(2), "a whole number >= 2"),
    "level": (lambda v: v is None or _is_int(0)(v), "a slide level >= 0, or null (the slide at mpp exactly)"),
    "learning_rate": (_is_number(0.0, above=True), "a finite number > 0"),
    "paraphraser_learning_rate": (_is_number(0.0, above=True), "a finite number > 0"),
    "weight_decay": (_is_number(0.0), "a finite number >= 0"),
    "lr_power": (_is_number(0.0), "a finite number >= 0"),
    "lr_step_epochs": (_is_int(1), "a whole number of epochs >= 1"),
    "lr_step_gamma": (_is_number(0.0, 1.0, above=True), "a factor in (0, 1]"),
    "momentum": (_is_number(0.0, 1.0), "a number in [0, 1]"),
    "lambda_coco": (_is_number(0.0), "a finite weight >= 0"),
    "lambda_adv": (_is_number(0.0), "a finite weight >= 0"),
    "teacher_cache_mb": (_is_number(0.0), "a finite number of MiB >= 0 (0: off)"),
    "overlap": (_is_number(0.0, 0.99), "a fraction in [0, 0.99]"),
    "min_tissue_fraction": (_is_number(0.0, 1.0), "a fraction in [0, 1]"),
}
# the arguments of `python -m monai.bundle run` that are not config ids
_RUN_ARGUMENTS = {"config_file", "meta_file", "logging_file", "init_id", "run_id", "final_id", "tracking",
                  "workflow_type", "properties_path", "args_file"}  # fmt: skip


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
    """``path`` with ``~`` expanded, as a string, if it exists; else stop naming ``setting`` and what was
    expected."""
    if not Path(path).expanduser().exists():
        fail(f"{setting}={str(path)!r} does not exist; expected {expected}.")
    return str(Path(path).expanduser())


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` if each is of its kind (a boolean, a whole number >= 1, a finite weight >= 0, ...),
    else stop naming the first bad one, its value and what is expected.

    Args:
        settings: ``{name: value}`` of the bundle's user-facing settings, e.g. ``{"amp": @amp, "epochs":
            @epochs}``; each name must be one of this module's known settings.

    Raises:
        KeyError: for a name this module does not know (a config's mistake, not a user's).
    """
    for name, value in settings.items():
        valid, expected = _SETTINGS[name]
        if not valid(value):
            fail(f"{name}={value!r} is not valid; expected {expected}.")
    return dict(settings)


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


def check_split_size(split: str, datalist: Sequence[Any], world_size: int) -> Sequence[Any]:
    """``datalist`` if each of ``world_size`` processes gets at least one item of it (MONAI's
    ``DistributedSampler(even_divisible=False)`` needs that), else stop naming the split and its size."""
    if len(datalist) < world_size:
        fail(f"the {split} split has {len(datalist)} tiles, fewer than the {world_size} processes that "
             f"share it; give it at least {world_size} tiles, or start fewer processes (--nproc_per_node).")
    return datalist


def _config_ids(config: Any, prefix: str = "") -> set[str]:
    """Every id of a parsed config: ``a``, ``a#b``, ``a#0#c``, ..."""
    ids = set()
    if isinstance(config, Mapping):
        items = list(config.items())
    else:
        items = list(enumerate(config)) if isinstance(config, list) else []
    for key, value in items:
        full = f"{prefix}{key}"
        ids.add(full)
        ids |= _config_ids(value, f"{full}#")
    return ids


def _override_ids(argv: Sequence[str]) -> tuple[list[str], dict[str, str], str]:
    """(config files, {override id: its text}, run id) of a ``python -m monai.bundle run ...`` command."""
    files, overrides = [], {}
    run_id = argv[1] if len(argv) > 1 and argv[0] == "run" and not argv[1].startswith("--") else "run"
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        key, _, inline = arg[2:].partition("=")
        key = key.replace("-", "_") if key in ("config-file",) else key
        value = inline or (argv[i + 1] if i + 1 < len(argv) else "")
        if key == "config_file":
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                parsed = value
            files += [str(f) for f in ([parsed] if isinstance(parsed, str) else parsed)]
        elif key == "run_id":
            run_id = value
        elif key not in _RUN_ARGUMENTS:
            overrides[key] = value
    return files, overrides, run_id


# the bundle's stages (configs/README.md): the file of each and the id that `run` executes
_STAGES = {"train_teacher.yaml": "training", "train_paraphraser.yaml": "training", "train.yaml": "training",
           "evaluate.yaml": "evaluating", "inference.yaml": "inference"}  # fmt: skip


def _stage_ids(config: Mapping[str, Any], run_id: str) -> set[str] | None:
    """The ids a stage uses: ``initialize``, ``run_id`` and ``finalize`` and, transitively, every id they
    reference (``@id``, ``$...@id...``, ``%id``; MONAI's `ReferenceResolver`); a used id uses its sub-ids.
    ``None`` when ``run_id`` is no id of ``config`` or its references cannot be read."""
    if run_id not in config:
        return None
    try:
        parser = ConfigParser(dict(config))
        parser.resolve_macro_and_relative_ids()
        todo, used = [i for i in ("initialize", run_id, "finalize") if i in config], set()
        while todo:
            id_ = todo.pop()
            if id_ not in used:
                used.add(id_)
                refs = ReferenceResolver.find_refs_in_config(parser[id_], id_)
                todo += [ref.replace(ReferenceResolver.sep, "#") for ref in refs if ref in parser]
    except Exception:
        return None
    return used


def _is_used(override: str, used: set[str]) -> bool:
    """Whether overriding ``override`` changes what a stage using ``used`` runs: the id, one of its parents
    or one of its sub-ids is used."""
    return any(override == u or override.startswith(u + "#") or u.startswith(override + "#") for u in used)


def _used_by_other_stages(files: Sequence[str], overrides: Mapping[str, str], override: str) -> list[str]:
    """The stage files of the folder of ``files`` (other than the last, the stage being run) whose run, in
    place of that stage, uses ``override``."""
    stage_dir = Path(files[-1]).parent
    names = []
    for name, run_id in _STAGES.items():
        if name != Path(files[-1]).name and (stage_dir / name).is_file():
            config = ConfigParser.load_config_files([*files[:-1], str(stage_dir / name)])
            used = _stage_ids(_with_overrides(config, overrides), run_id)
            if used is not None and _is_used(override, used):
                names.append(name)
    return names


def _with_overrides(config: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``config`` with each override's text set where its parent exists (its references then
    count)."""
    config = copy.deepcopy(dict(config))
    for override, text in overrides.items():
        *parent, name = override.split("#")
        node: Any = config
        for key in parent:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, dict):
            node[name] = text
    return config


def _component_class(target: str) -> Any:
    """The class or function a ``_target_`` names (a short MONAI-plugin name or a dotted path), else None."""
    modules = ComponentLocator().get_component_module_name(target)
    if isinstance(modules, list):
        modules = modules[0] if modules else None
    path = f"{modules}.{target}" if modules else target
    try:
        return locate(path)
    except Exception:
        return None


def _component_arguments(config: Any, override: str) -> list[str] | None:
    """For ``a#b#name``: the ids ``a#b#<argument>`` of every argument the component at ``a#b`` (a mapping
    with a ``_target_``) takes, with ``a#b#name`` among them when it takes any keyword; ``None`` when
    ``a#b`` is no component or its arguments cannot be read here (MONAI will then say what is wrong)."""
    *parent, name = override.split("#")
    for key in parent:
        try:
            config = config[int(key)] if isinstance(config, list) else config[key]
        except (KeyError, IndexError, ValueError, TypeError):
            return None
    if not isinstance(config, Mapping) or not isinstance(config.get("_target_"), str):
        return None
    component = _component_class(config["_target_"])
    try:
        parameters = inspect.signature(component).parameters if component is not None else None
    except (TypeError, ValueError):
        parameters = None
    if parameters is None:
        return None
    prefix = "#".join(parent)
    names = [p for p, kind in parameters.items() if kind.kind not in (kind.VAR_POSITIONAL, kind.VAR_KEYWORD)]
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        names.append(name)
    return [f"{prefix}#{n}" for n in names]


def check_overrides(argv: Sequence[str] | None = None) -> list[str]:
    """Stop, naming it, on a ``--id value`` of the bundle command line that is no id of its configs.

    MONAI's runner adds an unknown top-level id (``--epoch 3``) to the config without a word, so the run
    would go on with the default. The message lists the closest ids of the stage's configs (difflib), or
    names the other config of the same folder that has the id (a setting of another stage).

    Args:
        argv: the command line; defaults to ``sys.argv`` when this process runs ``python -m monai.bundle``
            (for any other process, e.g. a config parsed in Python, nothing is checked).

    Returns:
        the override ids checked.
    """
    if argv is None:
        if Path(sys.argv[0]).parts[-3:] != ("monai", "bundle", "__main__.py"):
            return []
        argv = sys.argv[1:]
    files, overrides, run_id = _override_ids(argv)
    if not files:
        return []
    config = ConfigParser.load_config_files(files)
    known = _config_ids(config)
    stage = ", ".join(Path(f).name for f in files)
    used = _stage_ids(_with_overrides(config, overrides), run_id)
    for override in overrides:
        arguments = _component_arguments(config, override) if "#" in override else []
        if override in known or arguments is None or override in arguments:
            if used is None or _is_used(override, used):
                continue
            others = _used_by_other_stages(files, overrides, override)
            if others:
                fail(f"--{override} is used by {' and '.join(others)}, not by the run {run_id!r} of {stage}; "
                     "leave it out here.")
            continue
        others = sorted(
            other.name
            for other in Path(files[0]).parent.glob("*.yaml")
            if str(other) not in files and override in _config_ids(ConfigParser.load_config_file(other) or {})
        )
        if others:
            fail(f"--{override} is a setting of {' and '.join(others)}, not of {stage}; leave it out here.")
        names = sorted(k for k in known | set(arguments) if not any(p.isdigit() for p in k.split("#")))
        close = difflib.get_close_matches(override, names, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join('--' + c for c in close)}?" if close else "see its settings."
        fail(f"--{override} is not a setting of {stage}; {hint}")
    return list(overrides)


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
    dataset_dir = Path(dataset_dir).expanduser()
    if not dataset_dir.exists():
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
    reader: str = "auto",
    min_tissue: float = 0.5,
    slide_mpp: float | None = None,
    setting: str = "unlabelled_dir",
) -> dict[str, list[dict]]:
    """The unannotated images of ``unlabelled_dir``: ``{"tiles": [{"image": path}, ...], "patches": [...]}``,
    the patches cut from its slides at ``mpp`` µm/px and ``roi_size`` pixels inside their tissue
    (:func:`~monai_coco.data.unlabelled.slide_patches`, entries for
    :class:`~monai_coco.data.unlabelled.ReadSlidePatchd`); both empty
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
            for entry in slide_patches(slide, mpp, roi_size, reader, min_tissue, slide_mpp=slide_mpp)
        ]
    except (ValueError, FileNotFoundError) as exc:
        fail(f"{setting}={str(unlabelled_dir)!r}: {exc}")
    if not images.tiles and not patches:
        fail(f"{setting}={str(unlabelled_dir)!r}: its slides {images.slides} hold no patch with tissue.")
    return {"tiles": images.tile_datalist(), "patches": patches}
class ExitOnError:
    """Stop a MONAI engine's run with the one-line message of an error that names its file or setting.

    An error raised inside ``engine.run()`` (a training state that does not fit, a full disk, a loss that
    became NaN) reaches the user as the message under several screens of Ignite's and MONAI's traceback,
    and ``StatsHandler`` logs that traceback once more. Attached first (before any ``StatsHandler``) to
    the trainer and to the evaluator, this handler turns ``ValueError``, ``OSError`` and
    ``FloatingPointError`` into :func:`fail` on ``EXCEPTION_RAISED`` before the other handlers see it;
    other exceptions (a bug) are re-raised unchanged, with their traceback.
    """

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EXCEPTION_RAISED, self)

    def __call__(self, engine: Engine, error: BaseException) -> None:
        if isinstance(error, _ONE_LINE_ERRORS) and not _is_a_bug(error):
            fail(str(error))
        raise error


def _is_a_bug(error: BaseException) -> bool:
    """An ``OSError`` that is no file problem (e.g. a broken pipe between processes) keeps its traceback."""
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
        return error.errno not in (errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EDQUOT,
                                   errno.EISDIR, errno.ENOTDIR, errno.EEXIST)  # fmt: skip
    return False

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
