"""The bundle's metadata.json against the MONAI bundle specification; large_files.yml.

The schema the metadata names, MONAI's published ``meta_schema_20240725.json``, is a release asset that
cannot be fetched here (no network but the package registries, and no package ships it): what
``bundle/docs/meta_schema.json`` keeps is this project's transcription, so that MONAI's own
``verify_metadata`` runs offline against it. It holds every constraint of the published file (its required
fields, ``schema`` included, and each property's type, as MONAI's copy at
project-monai.github.io/schema/meta_schema_20240725.json states them; metadata.json was validated against
that copy once, 2026-12-07: valid) and the specification's stricter ones (``docs/source/mb_specification.rst``
of MONAI: a tensor's ``modality``, ``is_patch_data``, ``channel_def``; a dotted version)."""

import copy
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from monai.bundle import ConfigParser

import monai_coco

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "bundle" / "docs" / "meta_schema.json"
SCHEMA = json.loads(SCHEMA_FILE.read_text())
METADATA = json.loads((ROOT / "bundle" / "configs" / "metadata.json").read_text())


def test_metadata_validates_against_the_bundle_schema():
    jsonschema.validate(METADATA, SCHEMA)


def test_metadata_names_this_package_at_its_version():
    assert METADATA["required_packages_version"]["monai-coco"] == monai_coco.__version__
    assert METADATA["version"] in METADATA["changelog"]


# the published 20240725 schema's required fields (project-monai.github.io/schema/meta_schema_20240725.json)
PUBLISHED_REQUIRED = ("schema", "version", "monai_version", "pytorch_version", "numpy_version",
                      "required_packages_version", "task", "description", "authors", "copyright",
                      "network_data_format")  # fmt: skip


@pytest.mark.parametrize("field", PUBLISHED_REQUIRED)
def test_schema_rejects_metadata_missing_a_field_the_published_schema_requires(field):
    broken = copy.deepcopy(METADATA)
    del broken[field]
    with pytest.raises(jsonschema.ValidationError, match=field):
        jsonschema.validate(broken, SCHEMA)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("authors", ["a", "b"]),
        ("eval_metrics", 0.5),
        ("supported_apps", ["monai-label"]),
        ("references", "x"),
    ],
)
def test_schema_rejects_a_field_of_another_type_than_the_published_schema_s(field, value):
    broken = {**copy.deepcopy(METADATA), field: value}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_network_io_matches_the_student_defaults():
    fmt = METADATA["network_data_format"]
    assert fmt["inputs"]["image"]["num_channels"] == 3
    assert fmt["outputs"]["pred"]["num_channels"] == 2
    assert fmt["outputs"]["pred"]["format"] == "segmentation"  # logits per class, as the model zoo writes


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!;\[ ]", r, maxsplit=1)[0].strip() for r in requirements}


def test_the_package_lists_are_pyprojects():
    """required_packages_version: every base dependency but torch, numpy and MONAI (their own fields);
    optional_packages: the extras a user adds for slides, ONNX Runtime and MLflow (not MONAI's old key
    ``optional_packages_version``, which MONAI 1.6 reads as ``required_packages_version``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = _names(project["dependencies"]) - {"torch", "numpy", "monai"}
    assert set(METADATA["required_packages_version"]) == base | {"monai-coco"}
    extras = project["optional-dependencies"]
    assert "optional_packages_version" not in METADATA
    parser = ConfigParser()
    parser.read_meta(ROOT / "bundle" / "configs" / "metadata.json")  # as MONAI's runner reads it
    assert parser["_meta_"]["required_packages_version"] == METADATA["required_packages_version"]
    assert set(METADATA["optional_packages"]) == _names(
        extras["openslide"] + extras["onnx"] + extras["tracking"]
    )


def test_monai_verify_metadata_passes_offline_against_the_kept_schema():
    """``python -m monai.bundle verify_metadata`` skips its download when --filepath exists; the md5 of the
    kept schema makes MONAI check its integrity."""
    md5 = hashlib.md5(SCHEMA_FILE.read_bytes()).hexdigest()
    command = [sys.executable, "-m", "monai.bundle", "verify_metadata",
               "--meta_file", str(ROOT / "bundle" / "configs" / "metadata.json"),
               "--filepath", str(SCHEMA_FILE), "--hash_val", md5]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-2000:]
    assert "skipped downloading" in log and "metadata is verified with no error" in log
    assert METADATA["schema"].endswith("meta_schema_20240725.json")


def test_metadata_states_the_training_scale_and_the_preprocessing():
    pre = METADATA["preprocessing"]
    assert METADATA["training_mpp"] == 2.0  # the synthetic data's mpp (synthetic_dataset, mpp=2.0)
    assert pre["roi_size"] == [256, 256]
    assert any("/ 255" in step for step in pre["steps"])
    assert any("stain_normalization" in step for step in pre["steps"])


def test_large_files_lists_no_download_and_the_data_licence_note_exists():
    large = yaml.safe_load((ROOT / "bundle" / "large_files.yml").read_text())
    assert large == {"large_files": []}  # no weights are published: every checkpoint is trained locally
    note = (ROOT / "bundle" / "docs" / "data_license.txt").read_text()
    assert "synthetic" in note and "Apache" in note


def test_the_documented_verify_metadata_command_names_the_kept_schemas_md5():
    readme = (ROOT / "bundle" / "docs" / "README.md").read_text()
    assert f"--hash_val {hashlib.md5(SCHEMA_FILE.read_bytes()).hexdigest()}" in readme
