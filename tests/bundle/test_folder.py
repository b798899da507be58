"""``python -m monai_coco.bundle init DIR``: a bundle folder in the model zoo's layout, with
``bundle_root: "."``, written from the bundle the package ships (here: the checkout's ``bundle/``, through the
editable install). The same from a built wheel in a fresh environment, with every stage run from the
folder: ``test_wheel.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from bundle_runs import ROOT, bundle_env

from monai_coco.bundle.folder import SHIPPED, bundle_source, write_bundle

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (the "test" extra)
    import tomli as tomllib

SOURCE = ROOT / "bundle"


def init(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m monai_coco.bundle init ARGS`` in ``cwd``."""
    command = [sys.executable, "-m", "monai_coco.bundle", "init", *args]
    return subprocess.run(command, cwd=cwd, env=bundle_env(), capture_output=True, text=True, timeout=120)


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_checkout_ships_its_own_bundle_folder():
    assert bundle_source() == SOURCE


def test_init_writes_the_bundle_with_bundle_root_dot_and_the_licence(tmp_path):
    folder = write_bundle(tmp_path / "coco")
    written = files_of(folder)
    shipped = {p.relative_to(SOURCE).as_posix() for g in SHIPPED for p in SOURCE.glob(g) if p.is_file()}
    assert set(written) == shipped | {"LICENSE"}
    assert {"configs/metadata.json", "configs/logging.conf", "configs/train.yaml", "docs/README.md",
            "docs/data_license.txt", "large_files.yml"} <= set(written)  # fmt: skip
    assert written["LICENSE"] == (ROOT / "LICENSE").read_bytes()
    base = yaml.safe_load(written["configs/base.yaml"])
    assert base["bundle_root"] == "."
    assert base == {**yaml.safe_load((SOURCE / "configs" / "base.yaml").read_text()), "bundle_root": "."}
    unchanged = {name for name in written if name not in ("LICENSE", "configs/base.yaml")}
    assert [name for name in unchanged if written[name] != (SOURCE / name).read_bytes()] == []
    assert [p.name for p in folder.rglob(".*.tmp")] == []  # atomic writes leave no temporary file


def test_init_refuses_a_folder_that_holds_a_bundle_unless_asked_to_overwrite(tmp_path):
    assert init("coco", cwd=tmp_path).returncode == 0
    base = tmp_path / "coco" / "configs" / "base.yaml"
    base.write_text("edited")
    (tmp_path / "coco" / "models").mkdir()
    (tmp_path / "coco" / "models" / "model.pt").write_bytes(b"weights")

    again = init("coco", cwd=tmp_path)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines() == [
        "monai_coco: coco already holds a bundle (configs/base.yaml); give --overwrite to replace its "
        "configs, docs and LICENSE (models/, data/ and outputs are kept), or choose another folder."
    ]
    assert base.read_text() == "edited"

    assert init("coco", "--overwrite", cwd=tmp_path).returncode == 0
    assert yaml.safe_load(base.read_text())["bundle_root"] == "."  # the shipped base.yaml again
    assert (tmp_path / "coco" / "models" / "model.pt").read_bytes() == b"weights"


def test_init_replaces_no_file_of_a_folder_of_the_users_own_unasked(tmp_path):
    """A folder without a bundle but with files of the bundle's names (a project of the user's own) keeps
    them: one line naming the first, and --overwrite to replace them."""
    project = tmp_path / "proj"
    (project / "docs").mkdir(parents=True)
    (project / "LICENSE").write_text("MIT my licence")
    (project / "docs" / "README.md").write_text("my notes")
    result = init(".", cwd=project)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "monai_coco: docs/README.md exists (and 1 more of the bundle's files); give "
        "--overwrite to replace them, or choose another folder."
    ]
    assert (project / "LICENSE").read_text() == "MIT my licence" and not (project / "configs").exists()
    assert init("", cwd=project).stderr.strip() == (
        "monai_coco: the bundle folder is an empty name; expected one: python -m monai_coco.bundle init DIR."
    )


def test_init_stops_with_one_line_where_it_cannot_write(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = init("a_file", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "monai_coco: a_file is a file; expected a folder to write the bundle to."
    ]
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "configs").write_text("")  # a file where the configs folder goes
    result = init("coco", cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("monai_coco: cannot write coco/configs/")
    assert (tmp_path / "coco" / "configs").is_file()


def test_the_wheel_carries_what_init_writes_and_every_package():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"monai_coco.bundle.files": "bundle"}
    assert tuple(setuptools["package-data"]["monai_coco.bundle.files"]) == SHIPPED
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "monai_coco").rglob("__init__.py")}
    assert sorted(setuptools["packages"]) == sorted(folders | {"monai_coco.bundle.files"})
