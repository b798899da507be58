"""Running the bundle in tests: tiny settings, ``python -m monai.bundle`` in a subprocess, a bundle folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from monai.bundle import ConfigParser

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "bundle" / "configs"

DATA = {"roi_size": [64, 64], "synthetic#n_train": 4, "synthetic#n_val": 2, "synthetic#n_test": 2,
        "synthetic#slide_size": 512}  # fmt: skip
LOADER = {"batch_size": 2, "num_workers": 0, "epochs": 1, "log_interval": 1}
TEACHER = {"teacher_def#features": [8, 16, 32, 64]}
CRITIC = {"critic_def#channels": [8, 16]}
PAPER = {"distill": "coco", "lambda_adv": 0.1}  # the paper's method: CoCo on the factors + the critic
TINY = {**DATA, **LOADER, **TEACHER, **CRITIC}  # all of them, for in-process parsing


def cli(*overrides: dict) -> list[str]:
    """``{"roi_size": [64, 64]}`` -> ``["--roi_size", "[64,64]"]``, as typed on a command line."""
    args = []
    for mapping in overrides:
        for key, value in mapping.items():
            args += [f"--{key}", str(value).replace(" ", "")]
    return args


def bundle_env() -> dict[str, str]:
    """The subprocess environment: one thread (the tests share 2 cores) and no UserWarning noise."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::UserWarning"}


def run_bundle(*args: str, check: bool = True, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m monai.bundle ARGS`` (or ``LAUNCHER -m monai.bundle ARGS``) from the repository root."""
    command = [*(launcher or (sys.executable,)), "-m", "monai.bundle", *args]
    result = subprocess.run(command, cwd=ROOT, env=bundle_env(), capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


@dataclass(frozen=True)
class TrainedBundle:
    root: Path  # bundle_root: configs/, models/, data/synthetic/, eval/, outputs/
    logs: dict[str, str]  # stdout + stderr of each stage

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    def config(self, name: str) -> str:
        return str(self.configs / name)

    def stage(self, *names: str) -> list[str]:
        """``base.yaml`` and the overlays ``names`` of this bundle."""
        return stage_files(self.configs, *names)

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def slide(self) -> Path:
        return self.root / "data" / "synthetic" / "slide" / "gastric_slide.tif"


def stage_files(configs: Path, *names: str) -> list[str]:
    """The config files of a stage: ``base.yaml`` then the overlays ``names``, as paths in ``configs``."""
    return [str(configs / name) for name in ("base.yaml", *names)]


def config_arg(configs: Path, *names: str) -> str:
    """``--config_file`` value of a stage, a list as typed on a command line: ``"['.../base.yaml', ...]"``."""
    return repr(stage_files(configs, *names))


def copy_bundle(root: Path) -> Path:
    """A bundle folder at ``root`` with this repository's configs."""
    shutil.copytree(CONFIGS, root / "configs")
    return root




# the --config_file list of each stage, in merge order (one place to follow the bundle's config layout)
def parse_stage(stage: str, overrides: dict) -> ConfigParser:
    """MONAI's ``ConfigParser`` on ``base.yaml`` and the overlay ``stage`` (e.g. ``"train_teacher.yaml"``)
    from this repository, merged in order as ``--config_file "['a.yaml','b.yaml']"`` merges them, with the
    ``overrides`` (``{"a#b": value}``)."""
    parser = ConfigParser()
    parser.read_config(stage_files(CONFIGS, stage))
    parser.read_meta(str(CONFIGS / "metadata.json"))  # as python -m monai.bundle run reads it
    parser.update(overrides)
    parser.parse()
    return parser


def applicable(config: dict, overrides: dict) -> dict:
    """The ``overrides`` whose nested ids (``a#b``) start at a top-level id that ``config`` has."""
    return {k: v for k, v in overrides.items() if "#" not in k or k.split("#")[0] in config}
