"""Installs where MONAI does: the package under the lowest numpy its dependencies allow, without ``fcntl``
(Windows), and a training stage that imports nothing outside the base install."""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bundle.bundle_runs import CONFIGS, ROOT, TINY, bundle_env, cli, config_arg
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _run(code: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, **kwargs
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _normalized(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _lowest_numpy() -> Version:
    """The lowest numpy that MONAI and this environment's numeric libraries (scipy, scikit-image, shapely)
    accept: the largest of their ``numpy>=`` bounds."""
    bounds = []
    for dist in ("monai", "scipy", "scikit-image", "shapely"):
        for line in metadata.requires(dist) or []:
            requirement = Requirement(line)
            if requirement.name == "numpy" and requirement.marker is None:
                bounds += [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return max(bounds)


@pytest.mark.slow
def test_the_package_imports_and_reads_numpy_2_checkpoints_under_the_lowest_numpy(tmp_path):
    """numpy 1 (installed into a folder ahead of this environment's numpy 2) imports every module and
    reads a checkpoint written under numpy 2 holding numpy scalars, which numpy 1 names ``numpy._core``."""
    lowest = _lowest_numpy()
    assert lowest < Version("2"), f"the dependencies here need numpy {lowest}: no numpy 1 to test"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", f"numpy=={lowest}", "--target",
         str(tmp_path / "numpy1")],
        check=True, timeout=600,
    )  # fmt: skip
    checkpoint = tmp_path / "state.pt"
    torch.save({"model": {"w": torch.ones(2)}, "best_metric": __import__("numpy").float64(0.25)}, checkpoint)
    code = f"""
import numpy, monai_coco
import monai_coco.bundle.checks, monai_coco.data, monai_coco.inference, monai_coco.losses, monai_coco.networks
from monai_coco.checkpoints import read_checkpoint
state = read_checkpoint({str(checkpoint)!r})
print(numpy.__version__, state["best_metric"], type(state["best_metric"]).__name__)
"""
    env = {**bundle_env(), "PYTHONPATH": str(tmp_path / "numpy1")}
    out = _run(code, env=env, cwd=tmp_path).stdout.split()
    assert out == [str(lowest), "0.25", "float64"]


def test_without_fcntl_the_package_imports_and_a_folder_lock_still_refuses_a_second_process(tmp_path):
    """Windows has no ``fcntl``: with it unimportable, ``import monai_coco`` works and a held folder is
    refused to a second process, in one line naming the folder and the holder."""
    block = "import sys; sys.modules['fcntl'] = None\n"
    second = (
        block
        + f"""
from monai_coco.folder_lock import FolderLock
try:
    FolderLock({str(tmp_path)!r}).acquire()
    print("acquired")
except ValueError as error:
    print(error)
"""
    )
    code = (
        block
        + f"""
import subprocess, sys, monai_coco
from monai_coco.folder_lock import FolderLock
with FolderLock({str(tmp_path)!r}, "the first run"):
    print(subprocess.run([sys.executable, "-c", {second!r}], capture_output=True, text=True).stdout.strip())
print(subprocess.run([sys.executable, "-c", {second!r}], capture_output=True, text=True).stdout.strip())
"""
    )
    held, released = _run(code, env=bundle_env()).stdout.splitlines()
    assert re.fullmatch(
        rf"{tmp_path} is in use by the first run \(process \d+\); wait for it to finish, .*\.", held
    )
    assert released == "acquired"


def _base_distributions() -> set[str]:
    """The distributions ``pip install monai-coco`` brings: the base dependencies and theirs, transitively."""
    found, todo = set(), [Requirement(line) for line in PYPROJECT["project"]["dependencies"]]
    while todo:
        requirement = todo.pop()
        name = _normalized(requirement.name)
        if name in found or (
            requirement.marker is not None and not requirement.marker.evaluate({"extra": ""})
        ):
            continue
        found.add(name)
        todo += [Requirement(line) for line in metadata.requires(requirement.name) or []]
    return found


def _base_site(folder: Path) -> Path:
    """A site-packages of links to this environment's base distributions alone (their files' top-level
    entries and metadata): what ``pip install monai-coco`` installs, without the extras."""
    base = _base_distributions()
    folder.mkdir()
    for dist in metadata.distributions():
        if _normalized(dist.metadata["Name"]) not in base:
            continue
        for top in {
            f.parts[0] for f in dist.files or [] if f.parts[0] != ".." and not f.name.endswith(".pth")
        }:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
    return folder


@pytest.mark.slow
def test_a_training_stage_runs_on_the_base_install_alone(tmp_path):
    """A teacher training stage runs, and writes its TensorBoard events, in a Python that sees only the
    base distributions (no site-packages: ``python -S`` with a folder of links to them), as if the extras,
    MLflow, ONNX, OpenSlide, pytest, ..., were not installed."""
    site = _base_site(tmp_path / "site")
    assert not {"mlflow", "onnxruntime", "openslide", "pytest"} & {p.name for p in site.iterdir()}
    bundle = tmp_path / "bundle"
    args = ["run", "training", "--config_file", config_arg(CONFIGS, "train_teacher.yaml"),
            "--bundle_root", str(bundle), *cli(TINY)]  # fmt: skip
    code = f"""
import runpy, sys
sys.path[:0] = [{str(ROOT)!r}, {str(site)!r}]
sys.argv = ["monai.bundle", *{args!r}]
runpy.run_module("monai.bundle", run_name="__main__")
"""
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=600,
                            env=bundle_env(), cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (bundle / "models" / "teacher.pt").is_file()
    assert list((bundle / "logs").rglob("events.out.tfevents.*"))  # TensorBoard, from the base install
