"""The package code the bundle's configs call: one-line setting checks, the synthetic data cache and its
datalists, and the tap-channel probe that sizes the paraphrasers."""

from __future__ import annotations

import json

import pytest
import torch
from monai.networks.nets import BasicUNet

from monai_coco.bundle.checks import (
    check_choice,
    check_path,
    check_roi_size,
    check_stain_normalization,
    exit_on_error,
)
from monai_coco.bundle.preprocessing import check_preprocessing, record_preprocessing
from monai_coco.bundle.stages import bundle_datalist, bundle_unlabelled
from monai_coco.data import synthetic_dataset
from monai_coco.fail import fail
from monai_coco.networks import FANet, MobileUNet, tap_channels


def _stop_message(function, *args, **kwargs) -> str:
    with pytest.raises(SystemExit) as stop:
        function(*args, **kwargs)
    return str(stop.value.code)


# ---------------------------------------------------------------- monai_coco.bundle
def test_fail_puts_any_message_on_one_prefixed_line():
    assert _stop_message(fail, "a\n  multi-line\tmessage ") == "monai_coco: a multi-line message"


def test_check_choice_returns_a_valid_value_and_names_the_setting_otherwise():
    assert check_choice("distill", "kd", ["coco", "kd"]) == "kd"
    assert _stop_message(check_choice, "distill", "foo", {"coco": 1, "kd": 2}) == (
        "monai_coco: distill='foo' is not one of 'coco', 'kd'."
    )


def test_check_path(tmp_path):
    assert check_path("dataset_dir", tmp_path) == str(tmp_path)
    assert _stop_message(check_path, "dataset_dir", tmp_path / "no", "a folder") == (
        f"monai_coco: dataset_dir='{tmp_path / 'no'}' does not exist; expected a folder."
    )


def test_check_roi_size_takes_the_strictest_size_divisor():
    fanet, student = FANet(features=(4, 8, 16, 32)), MobileUNet(width_mult=0.25)
    assert check_roi_size((40, 48), [fanet]) == [40, 48]  # FANet: multiples of 8
    assert check_roi_size([64, 96], [fanet, student]) == [64, 96]
    assert "multiples of 32" in _stop_message(check_roi_size, [40, 48], [fanet, student])
    assert "two positive integers" in _stop_message(check_roi_size, [64], [student])
    assert check_roi_size([7, 9], [torch.nn.Identity()]) == [7, 9]  # no size_divisor: any size


def test_exit_on_error_turns_edge_errors_into_one_line_and_lets_others_through():
    def bad(kind):
        raise kind("slide x.tif has no level 7;\nits levels are 0, 1")

    assert exit_on_error(lambda a, b=0: a + b, 1, b=2) == 3
    message = _stop_message(exit_on_error, bad, ValueError)
    assert message == "monai_coco: slide x.tif has no level 7; its levels are 0, 1"
    assert _stop_message(exit_on_error, bad, FileNotFoundError).startswith("monai_coco: slide x.tif")
    with pytest.raises(RuntimeError):
        exit_on_error(bad, RuntimeError)


# ---------------------------------------------------------------- bundle_data
def _files(folder):
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_synthetic_dataset_is_written_once_and_remade_for_other_settings(tmp_path):
    settings = {"n_train": 3, "n_val": 1, "n_test": 2, "size": 32, "slide_size": 0}
    folder = synthetic_dataset(tmp_path / "synthetic", **settings)
    assert folder == str(tmp_path / "synthetic")
    first = _files(tmp_path / "synthetic")
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        assert len(bundle_datalist(folder, split)) == n
    assert json.loads((tmp_path / "synthetic" / "synthetic.json").read_text())["n_train"] == 3
    synthetic_dataset(tmp_path / "synthetic", **settings)
    assert _files(tmp_path / "synthetic") == first  # reused: nothing rewritten
    synthetic_dataset(tmp_path / "synthetic", **{**settings, "n_train": 2})
    assert len(bundle_datalist(folder, "train")) == 2
    assert len(list((tmp_path / "synthetic" / "train").iterdir())) == 4  # no stale tile of the old set


def test_synthetic_splits_are_different_worlds(tmp_path):
    folder = synthetic_dataset(tmp_path, n_train=1, n_val=1, n_test=1, size=32, slide_size=0)
    images = {(tmp_path / split / "gastric_0000.jpg").read_bytes() for split in ("train", "val", "test")}
    assert len(images) == 3
    assert folder == str(tmp_path)


def test_synthetic_dataset_writes_the_slide_and_its_mask(tmp_path):
    synthetic_dataset(tmp_path, n_train=1, n_val=1, n_test=1, size=32, slide_size=256)
    assert (tmp_path / "slide" / "gastric_slide.tif").is_file()
    assert (tmp_path / "slide" / "gastric_slide_mask.tif").is_file()


def test_bundle_datalist_names_dataset_dir_and_the_problem(tmp_path):
    assert _stop_message(bundle_datalist, tmp_path / "missing", "train").startswith(
        f"monai_coco: dataset_dir='{tmp_path / 'missing'}' does not exist"
    )
    synthetic_dataset(tmp_path / "flat", n_train=3, n_val=1, n_test=1, size=32, slide_size=0)
    (tmp_path / "flat" / "train" / "gastric_0001.png").unlink()
    message = _stop_message(bundle_datalist, tmp_path / "flat" / "train", "train", setting="data")
    assert message.startswith(f"monai_coco: data='{tmp_path / 'flat' / 'train'}': ")
    assert "gastric_0001.jpg: image without mask" in message
    message = _stop_message(bundle_datalist, tmp_path / "flat" / "val", "test")
    assert "no 'test' split" in message


# ---------------------------------------------------------------- tap_channels
@pytest.mark.parametrize(
    ("network", "channels"),
    [
        (MobileUNet(width_mult=1.0), [24, 24]),
        (MobileUNet(width_mult=0.5), [16, 16]),
        (FANet(features=(8, 16, 32, 64)), [32, 32]),
    ],
)
def test_tap_channels_of_the_default_taps(network, channels):
    assert tap_channels(network, in_channels=3) == channels


def test_tap_channels_of_named_layers_leaves_the_network_as_it_was():
    torch.manual_seed(0)
    network = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(4, 4, 8, 8, 8, 4)).train()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    assert tap_channels(network, 1, ["down_2", "upcat_1"], size=32) == [8, 4]
    assert network.training
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())  # BN statistics untouched
    assert not any(m._forward_hooks for m in network.modules())  # hooks removed
    with pytest.raises(ValueError, match="no default_taps"):
        tap_channels(network, 1)


def test_bundle_unlabelled_lists_tiles_and_stops_with_one_line_on_bad_folders(tmp_path):
    from PIL import Image

    assert bundle_unlabelled(None, 2.0, [32, 32]) == {"tiles": [], "patches": []}
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    assert bundle_unlabelled(tmp_path, 2.0, [32, 32]) == {
        "tiles": [{"image": str(tmp_path / "a.jpg")}],
        "patches": [],
    }
    message = _stop_message(bundle_unlabelled, tmp_path / "nowhere", 2.0, [32, 32])
    assert message.startswith("monai_coco: unlabelled_dir=") and "is not a folder" in message
    assert "\n" not in message
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    assert "a.jpg has a mask beside it" in _stop_message(bundle_unlabelled, tmp_path, 2.0, [32, 32])


# ---------------------------------------------------------------- preprocessing records
def test_a_recorded_preprocessing_is_enforced_on_later_stages(tmp_path):
    checkpoint = tmp_path / "models" / "model.pt"
    assert record_preprocessing(checkpoint, {"stain_normalization": True}) == {"stain_normalization": True}
    record = tmp_path / "models" / "model.preprocessing.json"
    assert json.loads(record.read_text()) == {"stain_normalization": True}
    assert check_preprocessing(checkpoint, {"stain_normalization": True}) == {"stain_normalization": True}
    with pytest.raises(SystemExit) as stop:
        check_preprocessing(checkpoint, {"stain_normalization": False})
    assert str(stop.value.code) == (
        f"monai_coco: {checkpoint} was trained with stain_normalization=True but this run has "
        "stain_normalization=False; rerun with --stain_normalization True (the network must see images "
        "prepared as in training)."
    )
    other = tmp_path / "models" / "old.pt"  # no record: made before records were kept
    assert check_preprocessing(other, {"stain_normalization": False}) == {"stain_normalization": False}
    record_preprocessing(tmp_path / "rank1" / "model.pt", {"stain_normalization": True}, main_process=False)
    assert not (tmp_path / "rank1").exists()
    record.write_text("[1, 2]")
    with pytest.raises(SystemExit, match="JSON object"):
        check_preprocessing(checkpoint, {"stain_normalization": True})


def test_check_stain_normalization_needs_rgb_and_a_boolean():
    assert check_stain_normalization(True, 3) is True and check_stain_normalization(False, 1) is False
    assert _stop_message(check_stain_normalization, True, 1) == (
        "monai_coco: stain_normalization=true needs RGB input (in_channels=3), got in_channels=1."
    )
    assert "must be true or false" in _stop_message(check_stain_normalization, "yes", 3)


@pytest.mark.parametrize(
    ("roi", "samples", "batch_size", "refused"),
    [([32, 32], 3, 2, True), ([32, 32], 4, 2, False), ([64, 64], 3, 2, False), ([32, 64], 5, 1, True),
     ([32, 32], 9, 4, True), ([32, 32], 10, 4, False)],
)  # fmt: skip
def test_a_batch_of_one_tile_on_1x1_maps_is_refused_naming_the_settings(roi, samples, batch_size, refused):
    """MobileUNet's deepest maps are roi / 32: at 32 they are 1x1, where batch norm cannot train on one
    tile (a last batch of one: samples % batch_size == 1)."""
    from monai_coco.bundle.checks import check_last_batch

    student = MobileUNet(width_mult=0.25)
    if not refused:
        assert check_last_batch(roi, student, samples, batch_size) == samples
        return
    message = _stop_message(check_last_batch, roi, student, samples, batch_size)
    assert message == (
        f"monai_coco: roi_size={roi} makes MobileUNet's deepest maps 1x1 and a training batch holds one tile "
        f"({samples} tiles, batch_size={batch_size}): batch norm cannot train on it; use roi_size >= 64 or a "
        "batch_size that leaves no batch of one."
    )


def test_the_working_folder_s_bundle_is_the_default_bundle_root(tmp_path, monkeypatch):
    """From the repository ``bundle``; from inside the bundle folder ``.``; elsewhere one line (never a
    second bundle made at ``bundle/bundle``)."""
    from monai_coco.bundle.checks import working_bundle_root

    monkeypatch.chdir(tmp_path)
    assert _stop_message(working_bundle_root) == (
        f"monai_coco: bundle_root: {tmp_path} holds no bundle (bundle/configs/base.yaml or "
        "configs/base.yaml); run from the repository or the bundle folder, or give --bundle_root."
    )
    (tmp_path / "bundle" / "configs").mkdir(parents=True)
    (tmp_path / "bundle" / "configs" / "base.yaml").write_text("")
    assert working_bundle_root() == "bundle"
    monkeypatch.chdir(tmp_path / "bundle")
    assert working_bundle_root() == "."


def test_a_training_state_records_data_inside_the_bundle_relative_to_it(tmp_path):
    """So that a bundle folder moved with its built-in data resumes (the record is compared on resume)."""
    from monai_coco.bundle.stages import dataset_record

    (tmp_path / "old" / "data" / "synthetic").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    before = dataset_record(tmp_path / "old" / "data" / "synthetic", tmp_path / "old")
    (tmp_path / "old").rename(tmp_path / "new")
    after = dataset_record(tmp_path / "new" / "data" / "synthetic", tmp_path / "new")
    assert before == after == "<bundle_root>/data/synthetic"
    assert dataset_record(tmp_path / "elsewhere", tmp_path / "new") == str(tmp_path / "elsewhere")
