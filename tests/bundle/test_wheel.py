"""The bundle travels with the package: a wheel built from this tree, installed into a fresh virtual
environment outside the repository, writes a bundle folder (``python -m monai_coco.bundle init``) from which
the teacher, paraphraser, student, evaluation and inference stages run with ``configs/...`` paths and no
``--bundle_root``.

The fresh environment sees this one's installed packages (torch, MONAI, ...) through a ``.pth`` line, which
only appends that folder to ``sys.path``: this environment's editable install of ``monai_coco`` is not
activated there, so ``monai_coco`` is the wheel's (asserted).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from bundle_runs import CRITIC, DATA, LOADER, PAPER, ROOT, TEACHER, bundle_env, cli
from PIL import Image
from test_folder import files_of

from monai_coco.bundle.folder import write_bundle

BUILT_FROM = ("pyproject.toml", "README.md", "LICENSE", "monai_coco", "bundle/configs", "bundle/docs",
              "bundle/large_files.yml")  # fmt: skip


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """``command`` in ``cwd``, without this repository on ``PYTHONPATH``; fails the test with its stderr."""
    env = {k: v for k, v in bundle_env().items() if k != "PYTHONPATH"}
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stderr[-4000:]}"
    return result


def build_wheel(tmp: Path) -> Path:
    """A wheel of this working tree (its package, bundle and metadata files copied first, so that no stale
    ``build/`` of the checkout gets in), built offline with this environment's setuptools."""
    source = tmp / "source"
    for name in BUILT_FROM:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, source / name)
    pip = (sys.executable, "-m", "pip")
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp / "dist", source, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("monai_coco-*.whl")
    return wheel


def fresh_environment(tmp: Path, wheel: Path) -> Path:
    """A virtual environment with ``wheel`` installed (no dependencies) that sees this one's packages; its
    python."""
    run(sys.executable, "-m", "venv", "--without-pip", tmp / "venv", cwd=tmp)
    python = tmp / "venv" / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).stdout
    Path(site.strip(), "this_repository_s_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=tmp)
    return python


@pytest.mark.slow
def test_a_wheel_in_a_fresh_environment_runs_every_stage_from_an_init_folder(tmp_path):
    assert ROOT not in tmp_path.parents
    python = fresh_environment(tmp_path, build_wheel(tmp_path))
    package = run(python, "-c", "import monai_coco; print(monai_coco.__file__)", cwd=tmp_path).stdout.strip()
    assert (tmp_path / "venv") in Path(package).parents

    run(python, "-m", "monai_coco.bundle", "init", "coco", cwd=tmp_path)
    bundle = tmp_path / "coco"
    written = files_of(bundle)  # the wheel ships every file that init writes from a checkout, as it is there
    assert set(written) == set(files_of(write_bundle(tmp_path / "from_the_checkout")))
    copied = {name: data for name, data in written.items() if name not in ("LICENSE", "configs/base.yaml")}
    assert copied == {name: (tmp_path / "source" / "bundle" / name).read_bytes() for name in copied}

    def stage(run_id: str, overlay: str, *overrides: str) -> None:
        configs = repr(["configs/base.yaml", f"configs/{overlay}"])
        run(python, "-m", "monai.bundle", "run", run_id, "--config_file", configs, *overrides, cwd=bundle)

    stage("training", "train_teacher.yaml", *cli(DATA, LOADER, TEACHER))
    stage("training", "train_paraphraser.yaml", *cli(DATA, LOADER, TEACHER))
    stage("training", "train.yaml", *cli(DATA, LOADER, TEACHER, CRITIC, PAPER))  # the paper's, on the factors
    stage("evaluating", "evaluate.yaml", *cli(DATA, {"num_workers": 0}))
    inputs = bundle / "inputs"
    inputs.mkdir()
    shutil.copy(bundle / "data" / "synthetic" / "test" / "gastric_0000.jpg", inputs)
    shutil.copy(bundle / "data" / "synthetic" / "slide" / "gastric_slide.tif", inputs)
    stage("inference", "inference.yaml", *cli(DATA), "--dataset_dir", "inputs", "--level", "1")
    # the model zoo's way: inference.yaml alone (top-level overrides), the same mask
    run(python, "-m", "monai.bundle", "run", "inference", "--config_file", "configs/inference.yaml",
        "--roi_size", "[64,64]", "--dataset_dir", "inputs/gastric_0000.jpg", "--output_dir", "alone",
        cwd=bundle)  # fmt: skip
    masks = [np.asarray(Image.open(bundle / out / "gastric_0000_mask.png")) for out in ("alone", "outputs")]
    np.testing.assert_array_equal(*masks)

    made = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {"models/teacher.pt", "models/paraphraser.pt", "models/model.pt", "eval/metrics.csv",
            "outputs/gastric_0000_summary.json", "outputs/gastric_slide_summary.json"} <= made  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == ["coco", "dist", "from_the_checkout", "source", "venv"]
