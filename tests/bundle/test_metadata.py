"""The bundle's metadata.json against the MONAI bundle specification, with the schema kept in the bundle
(bundle/docs/meta_schema.json) so that MONAI's own verify_metadata runs offline; large_files.yml."""

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

import monai_coco

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "bundle" / "docs" / "meta_schema.json"
SCHEMA = json.loads(SCHEMA_FILE.read_text())
METADATA = json.loads((ROOT / "bundle" / "configs" / "metadata.json").read_text())


def test_metadata_validates_against_the_bundle_schema():
    jsonschema.validate(METADATA, SCHEMA)


def test_metadata_names_this_package_at_its_version():
    assert METADATA["required_packages_version"]["monai-coco"] == monai_coco.__version__
    assert METADATA["version"] in METADATA["changelog"]


@pytest.mark.parametrize("field", ["version", "monai_version", "task", "network_data_format"])
def test_schema_rejects_metadata_missing_a_mandatory_field(field):
    broken = copy.deepcopy(METADATA)
    del broken[field]
    with pytest.raises(jsonschema.ValidationError, match=field):
        jsonschema.validate(broken, SCHEMA)


def test_network_io_matches_the_student_defaults():
    fmt = METADATA["network_data_format"]
    assert fmt["inputs"]["image"]["num_channels"] == 3
    assert fmt["outputs"]["pred"]["num_channels"] == 2


def test_monai_verify_metadata_passes_offline_against_the_kept_schema():
    """``python -m monai.bundle verify_metadata`` skips its download when --filepath exists; the md5 of the
    kept schema (the one metadata.json names, meta_schema_20240725.json) makes MONAI check its integrity."""
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
