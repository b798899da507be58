"""A runnable bundle folder, written from the bundle this package ships: ``python -m monai_coco.bundle init``.

The repository's ``bundle/`` is the one source: a wheel carries its configs, docs and ``large_files.yml`` as
the package data ``monai_coco/bundle/files`` (``pyproject.toml``), an editable install reads them from the
checkout. :func:`write_bundle` copies them, with the distribution's ``LICENSE``, into a folder laid out as a
MONAI model-zoo bundle (``configs/``, ``docs/``, ``LICENSE``, ``large_files.yml``), whose ``base.yaml`` says
``bundle_root: "."``: its stages run from inside the folder with ``configs/...`` paths, as the zoo's do.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path

from monai_coco.atomic_files import atomic_write
from monai_coco.fail import fail

__all__ = ["SHIPPED", "bundle_source", "write_bundle"]

# The bundle's files a wheel carries and a bundle folder gets, as globs under the bundle: the same as
# pyproject.toml's [tool.setuptools.package-data] (a test holds the two equal).
SHIPPED = ("configs/*", "docs/**/*", "large_files.yml")

_ROOT_SETTING = re.compile(r"(?m)^bundle_root:.*$")
_BUNDLE_ROOT = 'bundle_root: "."  # this folder (python -m monai_coco.bundle init wrote it): run stages here'


def bundle_source() -> Path:
    """The bundle this package ships: ``monai_coco/bundle/files`` in an installed wheel, the checkout's
    ``bundle/`` in an editable install; else stop naming both places."""
    package = Path(__file__).resolve().parent
    candidates = (package / "files", package.parents[1] / "bundle")
    for folder in candidates:
        if (folder / "configs" / "base.yaml").is_file():
            return folder
    fail(f"this monai_coco installation ships no bundle: neither {candidates[0]} nor {candidates[1]} holds "
         "configs/base.yaml; reinstall it from a wheel or a checkout.")  # fmt: skip


def _license() -> str:
    """The text of the distribution's ``LICENSE`` (``monai_coco-<version>.dist-info/licenses/LICENSE``) of
    any installed ``monai-coco`` metadata that holds it (a checkout's ``monai_coco.egg-info`` on the path
    has none), else a checkout's own ``LICENSE`` beside its ``bundle/``."""
    for dist in importlib.metadata.distributions(name="monai-coco"):
        text = dist.read_text("licenses/LICENSE")
        if text is not None:
            return text
    checkout = bundle_source().parent / "LICENSE"
    if bundle_source().name == "bundle" and checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    fail("the monai-coco distribution has no licenses/LICENSE in its metadata; reinstall it (pip install "
         "a wheel, or pip install -e . in a checkout).")  # fmt: skip


def _with_bundle_root(base_yaml: bytes, source: Path) -> bytes:
    """``base.yaml``'s text with its ``bundle_root`` line set to ``"."``."""
    text, count = _ROOT_SETTING.subn(_BUNDLE_ROOT, base_yaml.decode("utf-8"))
    if count != 1:
        fail(f"{source}: expected one top-level line 'bundle_root: ...', found {count}.")
    return text.encode("utf-8")


def write_bundle(folder: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the bundle this package ships into ``folder`` (created if needed) and return it.

    ``folder`` gets ``configs/`` (``base.yaml`` with ``bundle_root: "."``, every overlay, ``metadata.json``,
    ``logging.conf``), ``docs/``, ``large_files.yml`` and ``LICENSE``, each written atomically;
    ``configs/base.yaml`` is written last, so that a folder holds a bundle only once it is complete. Other
    files of ``folder`` (``models/``, ``data/``, ``eval/``, ...) are left as they are.

    Args:
        folder: the bundle folder to write.
        overwrite: replace the shipped files of a folder that already holds a bundle (its
            ``configs/base.yaml``); False: such a folder stops the run with one line naming it.
    """
    if not str(folder).strip():
        fail("the bundle folder is an empty name; expected one: python -m monai_coco.bundle init DIR.")
    target = Path(folder).expanduser()
    if target.exists() and not target.is_dir():
        fail(f"{folder} is a file; expected a folder to write the bundle to.")
    source = bundle_source()
    if target.resolve() == source.resolve():
        fail(f"{folder} is the bundle this package ships from; expected another folder.")
    if (target / "configs" / "base.yaml").exists() and not overwrite:
        fail(f"{folder} already holds a bundle (configs/base.yaml); give --overwrite to replace its configs, "
             "docs and LICENSE (models/, data/ and outputs are kept), or choose another folder.")  # fmt: skip
    files = {path.relative_to(source).as_posix(): path.read_bytes()
             for pattern in SHIPPED for path in sorted(source.glob(pattern)) if path.is_file()}  # fmt: skip
    files["LICENSE"] = _license().encode("utf-8")
    taken = [name for name in files if (target / name).exists()]
    if taken and not overwrite:  # a folder of the user's own files: nothing of theirs is replaced unasked
        fail(f"{target / taken[0]} exists (and {len(taken) - 1} more of the bundle's files); give "
             "--overwrite to replace them, or choose another folder.")  # fmt: skip
    base = files.pop("configs/base.yaml")
    files["configs/base.yaml"] = _with_bundle_root(base, source / "configs" / "base.yaml")  # the last one
    try:
        for name, data in files.items():
            with atomic_write(target / name) as f:
                f.write(data)
    except OSError as exc:
        fail(exc.strerror or str(exc))
    return target
