"""Bad settings and missing prerequisites stop a bundle run with one line naming the setting or file."""

from __future__ import annotations

import pytest
from bundle_runs import CONFIGS, DATA, TINY, applicable, cli, config_arg, copy_bundle, run_bundle, stage_files
from monai.bundle import ConfigParser

from monai_coco.checkpoints import save_checkpoint
from monai_coco.data import synthetic_dataset
from monai_coco.networks import FANet


@pytest.mark.parametrize(
    ("config", "run_id", "override", "expected"),
    [
        (
            "train.yaml",
            "training",
            ["--distill", "foo"],
            "monai_coco: distill='foo' is not one of 'coco', 'kd', 'pairwise', 'at', 'fsp', 'cwd', 'none'.",
        ),
        (
            "evaluate.yaml",
            "evaluating",
            ["--dataset_dir", "/nonexistent/tiles"],
            "monai_coco: dataset_dir='/nonexistent/tiles' does not exist; expected a folder of tiles with "
            "same-stem masks (or a JSON datalist), or leave it unset for the built-in synthetic data.",
        ),
    ],
)
def test_the_user_sees_one_line_on_stderr(tmp_path, config, run_id, override, expected):
    root = copy_bundle(tmp_path)
    result = run_bundle(
        "run", run_id, "--config_file", config_arg(root / "configs", config), "--bundle_root", str(root),
        *cli(DATA), *override, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == expected  # UserWarnings are off in the tests' environment
    assert "Traceback" not in result.stdout


def _initialize(bundle_root, config: str = "train.yaml", **overrides) -> str:
    """Run the config's ``initialize`` in-process; return the message it stops with."""
    parser = ConfigParser()
    parser.read_config(stage_files(CONFIGS, config))
    parser.read_meta(str(CONFIGS / "metadata.json"))  # as python -m monai.bundle run reads it
    parser.update({"bundle_root": str(bundle_root), **applicable(parser.get(), TINY), **overrides})
    with pytest.raises(SystemExit) as stop:
        parser.get_parsed_content("initialize")
    message = str(stop.value.code)
    assert "\n" not in message
    return message


def test_distilling_without_a_teacher_names_the_file_and_the_command_that_makes_it(tmp_path):
    configs = repr([f"{tmp_path}/configs/base.yaml", f"{tmp_path}/configs/train_teacher.yaml"])
    assert _initialize(tmp_path) == (
        f"monai_coco: {tmp_path}/models/teacher.pt not found; make it first with: python -m monai.bundle run "
        f'training --config_file "{configs}" --bundle_root {tmp_path}'
    )


def test_distilling_without_paraphrasers_names_the_paraphraser_stage(tmp_path):
    teacher = FANet(features=TINY["teacher_def#features"])
    save_checkpoint(tmp_path / "models" / "teacher.pt", {"model": teacher})
    message = _initialize(tmp_path)
    assert message.startswith(f"monai_coco: {tmp_path}/models/paraphraser.pt not found")
    assert message.endswith(f"{tmp_path}/configs/train_paraphraser.yaml']\" --bundle_root {tmp_path}")
    # KD compares logits only: no paraphrasers needed, so the run gets past its prerequisites' checks
    parser = ConfigParser()
    parser.read_config(stage_files(CONFIGS, "train.yaml"))
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser.update({"bundle_root": str(tmp_path), **TINY, "distill": "kd", "synthetic#slide_size": 0})
    parser.get_parsed_content("initialize")
    assert parser.get_parsed_content("paraphrasers") is None


def test_a_teacher_of_another_width_names_the_setting(tmp_path):
    save_checkpoint(tmp_path / "models" / "teacher.pt", {"model": FANet(features=(4, 8, 16, 32))})
    message = _initialize(tmp_path)
    assert message.startswith(f"monai_coco: cannot load checkpoint {tmp_path}/models/teacher.pt into 'model'")
    assert "other teacher_def settings" in message


def test_a_missing_student_checkpoint_stops_evaluation_and_inference(tmp_path):
    data = synthetic_dataset(tmp_path / "data", n_train=2, n_val=1, n_test=1, size=64, slide_size=0)
    for config in ("evaluate.yaml", "inference.yaml"):
        message = _initialize(tmp_path, config, dataset_dir=data)
        assert message.startswith(f"monai_coco: {tmp_path}/models/model.pt not found; make it first with:")


def test_a_roi_size_the_student_cannot_take_is_named(tmp_path):
    message = _initialize(tmp_path, roi_size=[48, 48])
    assert message == "monai_coco: roi_size=[48, 48] must be two positive integers [H, W], multiples of 32."


@pytest.mark.parametrize(("setting", "value"), [("reader", "cucim"), ("eval_split", "holdout")])
def test_an_unknown_choice_is_named(tmp_path, setting, value):
    config = "inference.yaml" if setting == "reader" else "evaluate.yaml"
    message = _initialize(tmp_path, config, **{setting: value})
    assert message.startswith(f"monai_coco: {setting}={value!r} is not one of ")

