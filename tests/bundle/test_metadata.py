"""The bundle's metadata.json against the MONAI bundle specification (schema kept offline in tests/)."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest

import monai_coco

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).with_name("meta_schema.json")).read_text())
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
