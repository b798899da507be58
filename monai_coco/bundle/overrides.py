"""The command-line guard: a ``--id value`` of ``python -m monai.bundle run`` that no config of the stage uses
stops the run with one line (MONAI's runner would add it to the config without a word and go on with the
default). It re-reads the stage's config files from the command line, as the runner does. And text settings
are taken as typed (:func:`_take_text_as_typed`), whatever python-fire, which parses the runner's command
line, makes of them.
"""

from __future__ import annotations

import ast
import copy
import difflib
import inspect
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser
from monai.bundle.config_item import ComponentLocator
from monai.bundle.reference_resolver import ReferenceResolver
from monai.utils.module import locate

from monai_coco.fail import fail
from monai_coco.settings import SETTINGS

__all__ = ["check_overrides", "run_with_base", "stage_command"]

logger = logging.getLogger("monai_coco.bundle")

# the arguments of `python -m monai.bundle run` that are not config ids
_RUN_ARGUMENTS = {"config_file", "meta_file", "logging_file", "init_id", "run_id", "final_id", "tracking",
                  "workflow_type", "properties_path", "args_file"}  # fmt: skip


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


def _bundle_argv() -> list[str] | None:
    """The arguments of this process's ``python -m monai.bundle`` command line, else ``None``."""
    return sys.argv[1:] if Path(sys.argv[0]).parts[-3:] == ("monai", "bundle", "__main__.py") else None


def _with_config_files(argv: Sequence[str], files: Sequence[str]) -> list[str]:
    """``argv`` with its ``--config_file`` (``--config_file X`` or ``--config_file=X``) set to the list
    ``files``, everything else as typed."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        key = arg[2:].partition("=")[0].replace("-", "_") if arg.startswith("--") else ""
        if key == "config_file":
            out += ["--config_file", repr(list(files))]
            skip = "=" not in arg and i + 1 < len(argv)
        else:
            out.append(arg)
    return out


_RERUN = "MONAI_COCO_RUN_WITH_BASE"  # set in the run started over the base: it never starts another


def run_with_base(stage: str) -> None:
    """Run the stage overlay ``stage`` (``"inference.yaml"``) over the bundle's ``base.yaml`` when it was
    given alone, as the model zoo runs its ``inference.json``: ``python -m monai.bundle run inference
    --config_file configs/inference.yaml`` (or ``"['configs/inference.yaml','my_data.yaml']"``) is run again
    as the same command with ``base.yaml`` of the stage's folder first in its ``--config_file`` list (every
    value stated once, in the base; the listed files still override it in their order), and this process
    exits with that run's exit status. Nothing happens when the running config (:func:`_running_config`)
    holds the base's ``initialize``.

    Raises:
        SystemExit: with the run's exit status; or with one line naming the list to give when the config is
            not run by ``python -m monai.bundle`` with a ``--config_file`` (MONAI's Python API, an
            ``args_file``), the stage's folder has no base, or the base is listed already or was added by
            this function before (then it is no base of this bundle: it has no ``initialize``).
    """
    running = _running_config()
    if running is not None and "initialize" in running[0].config:
        return
    argv = _bundle_argv()
    files = _override_ids(argv)[0] if argv is not None else []
    own = next((Path(f) for f in files if Path(f).name == stage), Path("configs") / stage)
    base = own.parent / "base.yaml"
    listed = [str(base), *files] if files else [str(base), str(own)]
    if any(Path(f).resolve() == base.resolve() for f in files):
        listed = list(files)
    elif files and base.is_file() and not os.environ.get(_RERUN):
        logger.info("%s is an overlay of base.yaml: running with --config_file %r", stage, listed)
        for handler in logging.getLogger().handlers:
            handler.flush()
        command = [sys.executable, "-m", "monai.bundle", *_with_config_files(argv, listed)]
        raise SystemExit(subprocess.call(command, env={**os.environ, _RERUN: "1"}))
    fail(f"{stage} is an overlay of base.yaml: give the config files {listed!r}.")


# the settings a stage's checkpoint must agree on with the stage that loads it, or that say where files are:
# a command that makes a missing prerequisite repeats them as the running command gives them
_CARRIED = ("dataset_dir", "ckpt_dir", "output_root", "roi_size", "mpp", "in_channels", "num_classes",
            "stain_normalization", "label_map", "teacher_def", "teacher_taps")  # fmt: skip


def stage_command(stage: str, bundle_root: str) -> str:
    """The command that runs the training stage ``stage`` (e.g. ``"train_teacher.yaml"``) as this command
    runs its own, for a message about a missing prerequisite: the running ``python -m monai.bundle``
    command's ``--config_file`` list with its last file (its stage) replaced by ``stage`` of the same folder
    (every settings overlay kept), its overrides of :data:`_CARRIED` settings (locations, the data, the
    networks' shapes; as typed), and ``--bundle_root`` unless it is the repository's ``bundle``; values
    quoted for a POSIX shell. Outside such a command: ``base.yaml`` and ``stage`` of
    ``<bundle_root>/configs``."""
    argv = _bundle_argv()
    files, overrides, _ = _override_ids(argv) if argv is not None else ([], {}, "")
    files = [*files[:-1], str(Path(files[-1]).parent / stage)] if files else [
        f"{bundle_root}/configs/base.yaml", f"{bundle_root}/configs/{stage}"]  # fmt: skip
    words = ["python", "-m", "monai.bundle", "run", "training", "--config_file", repr(files)]
    words += [w for k, v in overrides.items() if k.split("#")[0] in _CARRIED for w in (f"--{k}", v)]
    words += [] if bundle_root == "bundle" else ["--bundle_root", str(bundle_root)]
    return " ".join(_shell_word(word) for word in words)


def _shell_word(word: str) -> str:
    """``word`` as a POSIX shell reads it back: as it is when safe, else in double quotes (readable for a
    config list's single quotes) when nothing in it is special there, else ``shlex.quote``'s form."""
    if shlex.quote(word) == word:
        return word
    return f'"{word}"' if not set(word) & set('"$`\\!') else shlex.quote(word)


def _running_config() -> tuple[ConfigParser, ReferenceResolver] | None:
    """The ``ConfigParser`` and ``ReferenceResolver`` evaluating the calling config expression, found on the
    call stack (MONAI gives an expression no handle on them); ``None`` without them."""
    owners: dict[type, Any] = {}
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        for kind in (ConfigParser, ReferenceResolver):
            if isinstance(owner, kind):
                owners.setdefault(kind, owner)
        frame = frame.f_back
    return (owners[ConfigParser], owners[ReferenceResolver]) if len(owners) == 2 else None


def _take_text_as_typed(typed: Mapping[str, str]) -> dict[str, str]:
    """Put each text setting (:data:`~monai_coco.settings.SETTINGS`, kind ``str``) of the command line's
    overrides ``typed`` (``{id: text as typed}``) into the running MONAI config as that text where the config
    holds something else: python-fire, which parses the arguments of ``python -m monai.bundle``, reads
    ``--model_name 2024`` as the number 2024 and ``--dataset_dir a,b`` as a tuple.

    The running config is the ``ConfigParser`` and ``ReferenceResolver`` evaluating the calling expression,
    found on the call stack (MONAI gives an expression no handle on them); every later ``@id`` reads the text.
    Without them (a config parsed in Python) nothing changes, and
    :func:`~monai_coco.settings.check_settings` refuses a non-text value in one line with how to quote it.
    Returns the settings replaced."""
    text = {name for name, s in SETTINGS.items() if s.kind is str and s.choices is None}
    running = _running_config()
    if running is None:
        return {}
    parser, resolver = running
    fixed = {name: value for name, value in typed.items() if name in text and name in parser.config
             and parser.config[name] is not None and not isinstance(parser.config[name], str)}  # fmt: skip
    for name, value in fixed.items():
        parser.config[name] = value  # the config's content, as read from the files and the command line
        if name in resolver.items:
            resolver.items[name].update_config(value)
        if name in resolver.resolved_content:
            resolver.resolved_content[name] = value
    return fixed


def check_overrides(argv: Sequence[str] | None = None) -> list[str]:
    """Stop, naming it, on a ``--id value`` of the bundle command line that is no id of its configs.

    MONAI's runner adds an unknown top-level id (``--epoch 3``) to the config without a word, so the run
    would go on with the default. The message lists the closest ids of the stage's configs (difflib), or
    names the other config of the same folder that has the id (a setting of another stage). An id that only
    other stages use stops the run too, naming them, unless it is a declared setting
    (:data:`monai_coco.settings.SETTINGS`, e.g. ``--num_workers`` given to every stage by one script): that
    one is ignored with a warning line.

    Run from the config of ``python -m monai.bundle`` (``argv`` not given), it first takes the text settings
    of the command line as typed (:func:`_take_text_as_typed`).

    Args:
        argv: the command line; defaults to ``sys.argv`` when this process runs ``python -m monai.bundle``
            (for any other process, e.g. a config parsed in Python, nothing is checked).

    Returns:
        the override ids checked.
    """
    running = argv is None
    argv = _bundle_argv() if argv is None else argv
    if argv is None:
        return []
    files, overrides, run_id = _override_ids(argv)
    if running:
        _take_text_as_typed(overrides)
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
            if others and override in SETTINGS:  # a shared setting, e.g. one command line for every stage
                logger.warning("--%s is not used by the run %r of %s (it is used by %s); ignored.",
                               override, run_id, stage, " and ".join(others))  # fmt: skip
            elif others:
                fail(
                    f"--{override} is used by {' and '.join(others)}, not by the run {run_id!r} of {stage}; "
                    "leave it out here."
                )
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
