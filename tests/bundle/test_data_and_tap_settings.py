"""Settings a user's data or networks need: label_map (masks with other raw values than {0, 1} or
{0, 255}) through the bundle's data pipeline, and tap names, each stopping with one line when wrong."""

from __future__ import annotations

import numpy as np
import pytest
from bundle_runs import parse_stage
from PIL import Image


@pytest.fixture
def three_valued_masks(tmp_path):
    """Tiles whose masks hold 0 (rows 20..39), 128 (rows 0..19) and 255 (rows 40..63)."""
    for i in range(3):
        Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / f"t{i}.jpg")
        mask = np.zeros((64, 64), np.uint8)
        mask[:20], mask[40:] = 128, 255
        Image.fromarray(mask).save(tmp_path / f"t{i}.png")
    return tmp_path


def test_label_map_admits_the_masks_and_maps_their_values_to_classes(three_valued_masks):
    parser = parse_stage("train_teacher.yaml", {"dataset_dir": str(three_valued_masks), "roi_size": [64, 64],
                                                "label_map": {0: 0, 128: 0, 255: 1}})  # fmt: skip
    datalist = parser.get_parsed_content("train#datalist")
    label = parser.get_parsed_content("validate#preprocessing")(datalist[0])["label"][0].numpy()
    expected = np.zeros((64, 64))
    expected[40:] = 1  # 128 is background here, 255 cancer
    np.testing.assert_array_equal(label, expected)


def test_without_label_map_the_message_names_the_setting_that_admits_them(three_valued_masks):
    parser = parse_stage("train_teacher.yaml", {"dataset_dir": str(three_valued_masks), "roi_size": [64, 64]})
    with pytest.raises(SystemExit) as stop:
        parser.get_parsed_content("train#datalist")
    assert "label_map" in str(stop.value.code) and "{0, 255}" in str(stop.value.code)


def test_a_tap_name_that_is_no_layer_stops_with_one_line():
    taps = {"roi_size": [64, 64], "student_taps": ["features.3", "decoderr.2"]}
    parser = parse_stage("train_paraphraser.yaml", taps)
    with pytest.raises(SystemExit) as stop:
        parser.get_parsed_content("student_layers")
    message = str(stop.value.code)
    assert message.startswith("monai_coco: MobileUNet has no submodule 'decoderr.2'")
    assert "decoder.2" in message and "\n" not in message
