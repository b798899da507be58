"""Bad settings and missing prerequisites stop a bundle run with one line naming the setting or file."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
from pathlib import Path

import monai.bundle
import pytest
import torch
from bundle_runs import (
    CONFIGS,
    DATA,
    PAPER,
    TINY,
    applicable,
    cli,
    config_arg,
    copy_bundle,
    run_bundle,
    stage_files,
)
from monai.bundle import ConfigParser

from monai_coco.bundle.checks import check_split_size, check_tracking_store
from monai_coco.bundle.overrides import check_overrides, run_with_base
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
            "monai_coco: distill='foo' is not one of 'coco', 'kd', 'kd_coco', 'pairwise', 'at', 'fsp', "
            "'cwd', 'none'.",
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
    message = _initialize(tmp_path, **PAPER)
    assert message.startswith(f"monai_coco: {tmp_path}/models/paraphraser.pt not found")
    assert message.endswith(f"{tmp_path}/configs/train_paraphraser.yaml']\" --bundle_root {tmp_path}")
    # the default, KD without the critic (the recipe the protocol picks), compares logits only: no
    # paraphrasers needed, so the run gets past its prerequisites' checks
    parser = ConfigParser()
    parser.read_config(stage_files(CONFIGS, "train.yaml"))
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser.update({"bundle_root": str(tmp_path), **TINY, "synthetic#slide_size": 0})
    parser.get_parsed_content("initialize")
    assert parser.get_parsed_content("paraphrasers") is None
    assert parser.get_parsed_content("adversarial") is None
    assert list(parser.get_parsed_content("train#trainer").terms) == ["kd"]


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
    assert message.startswith(f"monai_coco: {setting}={value!r} is not ")
    assert "one of 'auto'" in message if setting == "reader" else "one of 'train'" in message



def test_an_onnx_model_that_is_missing_or_given_to_another_runtime_is_one_line(tmp_path):
    missing = tmp_path / "model.onnx"
    assert _initialize(tmp_path, "inference.yaml", onnx_model=str(missing)) == (
        f"monai_coco: onnx_model={str(missing)!r} does not exist; expected an ONNX file written by "
        "onnx_export."
    )
    missing.write_bytes(b"")
    assert _initialize(tmp_path, "inference.yaml", onnx_model=str(missing), runtime="torch") == (
        "monai_coco: onnx_model is run by ONNX Runtime: runtime must be auto or onnxruntime, got 'torch'."
    )
    assert _initialize(tmp_path, "inference.yaml", onnx_model=str(tmp_path)) == (
        f"monai_coco: onnx_model={str(tmp_path)!r} is a folder; expected an ONNX file written by onnx_export."
    )
    for value in (5, "", True):
        assert _initialize(tmp_path, "inference.yaml", onnx_model=value).startswith(
            f"monai_coco: onnx_model={value!r} is not valid; expected the path of an ONNX file"
        )
    assert not (tmp_path / "outputs").exists()  # refused before the output folder is made


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"overwrite": "false"}, "overwrite='false' is not valid; expected True or False (the command line "
                                 "reads `false` as text: write False)."),  # fmt: skip
        ({"num_threads": "2"}, "num_threads='2' is not valid; expected None (torch's default) or a whole "
                               "number in [1, 4096]."),  # fmt: skip
        ({"num_threads": 0}, "num_threads=0 is not valid; expected None (torch's default) or a whole "
                             "number in [1, 4096]."),  # fmt: skip
        ({"runtime": "tvm"}, "runtime='tvm' is not valid; expected one of 'auto', 'torch', 'torchscript', "
                             "'onnxruntime'."),  # fmt: skip
        ({"mpp": 0}, "mpp=0 is not valid; expected None (unknown: slides at level 0) or a finite number > 0 "
                     "(µm/px)."),  # fmt: skip
        ({"overlap": 1.0}, "overlap=1.0 is not valid; expected a finite number in [0, 0.99]."),
    ],
)
def test_an_inference_setting_is_checked_before_anything_is_built(tmp_path, override, expected):
    assert _initialize(tmp_path, "inference.yaml", **override) == f"monai_coco: {expected}"


STAGES = ["train_teacher.yaml", "train_paraphraser.yaml", "train.yaml", "evaluate.yaml", "inference.yaml"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"amp": "false"}, "amp='false' is not valid; expected True or False (the command line reads `false` "
                           "as text: write False)."),  # fmt: skip
        ({"epochs": 0}, "epochs=0 is not valid; expected a whole number >= 1 (epochs)."),
        ({"epochs": -1}, "epochs=-1 is not valid; expected a whole number >= 1 (epochs)."),
        ({"batch_size": 0}, "batch_size=0 is not valid; expected a whole number >= 1."),
        ({"learning_rate": "nan"}, "learning_rate='nan' is not valid; expected a finite number > 0."),
    ],
)
@pytest.mark.parametrize("config", ["train_teacher.yaml"])
def test_a_bad_setting_is_one_line_naming_it(tmp_path, config, override, expected):
    """A bad setting is one line naming it and what it accepts, checked before anything is built."""
    assert _initialize(tmp_path, config, **override) == f"monai_coco: {expected}"


def test_cuda_on_a_machine_without_it_is_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check passes here (the message is tested without it)")
    message = _initialize(tmp_path, "train_teacher.yaml", device="cuda")
    assert message.startswith("monai_coco: device='cuda' but this machine has 0 CUDA devices")


def test_a_checkpoint_folder_that_is_a_file_or_read_only_is_one_line(tmp_path):
    """A checkpoint folder that is a file or cannot be written to is one line; every folder a stage writes to
    is checked the same way."""
    (tmp_path / "file").write_text("")
    message = _initialize(tmp_path, "train_teacher.yaml", ckpt_dir=str(tmp_path / "file"))
    assert message == f"monai_coco: ckpt_dir='{tmp_path}/file' is a file; expected a folder to write to."
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders: the read-only case needs another user")
    readonly = tmp_path / "readonly"
    readonly.mkdir(mode=0o555)
    message = _initialize(tmp_path, "train_teacher.yaml", ckpt_dir=str(readonly))
    assert message.startswith(f"monai_coco: ckpt_dir='{readonly}' cannot be written to: Permission denied")


def test_a_dataset_dir_with_a_tilde_is_expanded(tmp_path, monkeypatch):
    """``~/data`` reaches the loader expanded, as the shell would have done."""
    synthetic_dataset(tmp_path / "data", n_train=2, n_val=1, n_test=1, size=64, slide_size=0)
    monkeypatch.setenv("HOME", str(tmp_path))
    parser = ConfigParser()
    parser.read_config(stage_files(CONFIGS, "train_teacher.yaml"))
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser.update({"bundle_root": str(tmp_path), **applicable(parser.get(), TINY), "dataset_dir": "~/data"})
    first = parser.get_parsed_content("train#datalist")[0]["image"]
    assert first.startswith(str(tmp_path / "data" / "train"))


@pytest.mark.parametrize(
    ("config", "argv", "expected"),
    [
        ("train_teacher.yaml", ["--epoch", "3"],
         "--epoch is not a setting of base.yaml, train_teacher.yaml; did you mean --epochs?"),
        ("train_teacher.yaml", ["--teacher_def#feature", "[8]"],
         "--teacher_def#feature is not a setting of base.yaml, train_teacher.yaml; did you mean "
         "--teacher_def#features, --teacher_def#_target_, --teacher_def?"),
        ("train.yaml", ["--synthetic#n_trian", "4"],  # n_train is an argument of synthetic_dataset
         "--synthetic#n_trian is not a setting of base.yaml, train.yaml; did you mean --synthetic#n_train, "
         "--synthetic#n_val, --synthetic#n_test?"),
        ("train_teacher.yaml", ["--eval_split", "val"],
         "--eval_split is a setting of evaluate.yaml, not of base.yaml, train_teacher.yaml; leave it out "
         "here."),
    ],
)  # fmt: skip
def test_an_unknown_override_is_one_line_with_the_close_names(config, argv, expected):
    """Without this check MONAI's runner would add ``epoch`` as a new id and train the default 100 epochs."""
    files = config_arg(CONFIGS, config)
    command = ["run", "training", "--config_file", files, "--bundle_root", "/tmp/x", *argv]
    with pytest.raises(SystemExit) as stop:
        check_overrides(command)
    assert stop.value.code == f"monai_coco: {expected}"
    valid = ["run", "--config_file", files, "--batch_size", "2", "--synthetic#n_val", "1"]
    assert check_overrides(valid) == ["batch_size", "synthetic#n_val"]


@pytest.mark.parametrize(
    ("config", "run_id", "argv", "expected"),
    [
        ("evaluate.yaml", "evaluating", ["--critic_def#channels", "[4]"],
         "--critic_def#channels is used by train.yaml, not by the run 'evaluating' of base.yaml, "
         "evaluate.yaml; leave it out here."),
        ("train_teacher.yaml", "training", ["--distill", "kd"],
         "--distill is used by train.yaml, not by the run 'training' of base.yaml, train_teacher.yaml; "
         "leave it out here."),
    ],
)  # fmt: skip
def test_an_override_that_only_another_stage_uses_is_named_as_such(config, run_id, argv, expected):
    """Every stage holds base.yaml's ids, so without this check an id of another stage's run (the critic of
    the distillation stage given to the evaluation) would be accepted and ignored without a word."""
    files = config_arg(CONFIGS, config)
    with pytest.raises(SystemExit) as stop:
        check_overrides(["run", run_id, "--config_file", files, *argv])
    assert stop.value.code == f"monai_coco: {expected}"
    # used through a reference that the command line itself adds: the teacher evaluated as the network
    used = ["--network_def", "@teacher_def", "--teacher_def#features", "[4]", "--critic_def#channels", "[4]"]
    with pytest.raises(SystemExit, match="--critic_def#channels is used by train.yaml"):
        check_overrides(["run", "evaluating", "--config_file", config_arg(CONFIGS, "evaluate.yaml"), *used])
    assert check_overrides(["run", "evaluating", "--config_file", config_arg(CONFIGS, "evaluate.yaml"),
                            *used[:4]]) == ["network_def", "teacher_def#features"]  # fmt: skip


def test_a_declared_setting_that_only_other_stages_use_is_ignored_with_a_warning(caplog):
    """One script passing the same settings to every stage: inference reads no data loader, so its
    ``--num_workers`` is ignored, with one warning line naming the stages that use it."""
    files = config_arg(CONFIGS, "inference.yaml")
    with caplog.at_level(logging.WARNING, logger="monai_coco.bundle"):
        checked = check_overrides(["run", "inference", "--config_file", files, "--num_workers", "0"])
    assert checked == ["num_workers"]
    expected = "--num_workers is not used by the run 'inference' of base.yaml, inference.yaml (it is used by "
    assert expected in caplog.text
    assert caplog.text.rstrip().endswith("evaluate.yaml); ignored.")


def test_a_damaged_training_state_is_one_line(tmp_path):
    """A damaged training state in the bundle is one line, checked among the prerequisites before the run."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "train_state_teacher.pt").write_bytes(b"PK\x03\x04 not a whole file")
    message = _initialize(tmp_path, "train_teacher.yaml")
    expected = f"monai_coco: {tmp_path}/models/train_state_teacher.pt is not a readable PyTorch checkpoint"
    assert message.startswith(expected) and message.endswith("; move it away to start afresh.")


@pytest.mark.slow
def test_the_command_line_gives_one_line_for_a_string_boolean_and_a_typo(tmp_path):
    """The real ``python -m monai.bundle run``: ``--amp false`` arrives as text; ``--epoch`` is a typo."""
    root = copy_bundle(tmp_path)
    for override, expected in (
        (["--amp", "false"], "monai_coco: amp='false' is not valid; expected True or False (the command line "
                             "reads `false` as text: write False)."),  # fmt: skip
        (["--epoch", "3"], "monai_coco: --epoch is not a setting of base.yaml, train_teacher.yaml; did you "
                           "mean --epochs?"),  # fmt: skip
    ):
        files = config_arg(root / "configs", "train_teacher.yaml")
        result = run_bundle("run", "training", "--config_file", files, "--bundle_root", str(root), *override,
                            check=False)  # fmt: skip
        assert result.returncode == 1
        assert result.stderr.strip() == expected


def test_a_validation_split_smaller_than_the_processes_is_one_line():
    """MONAI's DistributedSampler(even_divisible=False) needs an item per process;
    multi_gpu_train.yaml checks the split against torch.distributed's world size before building it."""
    assert check_split_size("val", ["a", "b"], 2) == ["a", "b"]
    with pytest.raises(SystemExit) as stop:
        check_split_size("val", ["a"], 2)
    assert stop.value.code == (
        "monai_coco: the val split has 1 tiles, fewer than the 2 processes that share it; give it at least 2 "
        "tiles, or start fewer processes (--nproc_per_node)."
    )


def _tracked_teacher_refused(bundle_root):
    """The teacher stage of a bundle folder at ``bundle_root`` with ``--tracking mlflow``, refused (exit 1)
    without a traceback."""
    files = config_arg(copy_bundle(bundle_root) / "configs", "train_teacher.yaml")
    done = run_bundle("run", "training", "--config_file", files, "--bundle_root", str(bundle_root),
                      "--tracking", "mlflow", check=False)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


def test_a_tracking_folder_that_cannot_be_written_is_one_line_before_mlflow_starts(tmp_path):
    """``--tracking mlflow`` writes its store and the run's config into ``output_dir``
    (``<output_root>/eval``) as MONAI's runner sets the workflow up, before any stage code: a file in its
    way is one line there."""
    (tmp_path / "eval").write_text("not a folder")
    done = _tracked_teacher_refused(tmp_path)
    assert done.stderr.strip().splitlines()[-1] == (
        f"monai_coco: output_dir='{tmp_path / 'eval'}' is a file; expected a folder to write to."
    )


def test_a_tracking_store_that_is_no_sqlite_database_is_one_line_before_mlflow_starts(tmp_path):
    """``--tracking mlflow`` with ``<output_root>/mlruns.db`` another file (or a folder): one line naming
    ``tracking_uri``, not SQLAlchemy's traceback when MLflow's handler is built; an MLflow store, an empty
    file and a database's URI pass; a file store, a bare path, an in-memory store and a server that is not
    there are one line too."""
    (tmp_path / "mlruns.db").write_text("notes, not a database")
    done = _tracked_teacher_refused(tmp_path)
    store = tmp_path / "mlruns.db"
    assert done.stderr.strip().splitlines()[-1] == (
        f"monai_coco: tracking_uri='sqlite:///{store}': {store} is not an SQLite database; expected MLflow's "
        "store there, or no file (move it away, or set tracking_uri to another store)."
    )
    sqlite3.connect(tmp_path / "real.db").execute("create table t (x)").connection.commit()
    (tmp_path / "empty.db").touch()
    for uri in (f"sqlite:///{tmp_path / 'real.db'}", f"sqlite:///{tmp_path / 'empty.db'}", "postgresql://h/db"):
        assert check_tracking_store("tracking_uri", uri) == uri
    (tmp_path / "folder.db").mkdir()
    with pytest.raises(SystemExit, match="folder.db is not an SQLite database"):
        check_tracking_store("tracking_uri", f"sqlite:///{tmp_path / 'folder.db'}")
    for uri in ("file:///tmp/x", "a_folder", "", "sqlite://"):  # MLflow 3 keeps no runs there (or none after)
        with pytest.raises(SystemExit, match=r"is no store MLflow keeps runs in; expected sqlite:///PATH"):
            check_tracking_store("tracking_uri", uri)
    with pytest.raises(SystemExit, match=r"'http://127.0.0.1:1': no MLflow server answers there"):
        check_tracking_store("tracking_uri", "http://127.0.0.1:1")  # refused at once, not minutes of retries


def test_the_command_that_makes_a_missing_teacher_keeps_the_running_command_s_overlays(tmp_path):
    """Run with a settings overlay (``cpu.yaml``) between ``base.yaml`` and the stage, and a checkpoint
    folder of its own, the hint for the missing teacher is the same list with the stage replaced, the same
    data, shapes and folders (as typed, quoted for the shell), so the teacher it makes is where, and what,
    this run loads; the student's own settings (``--epochs``) are left out."""
    root = tmp_path / "my bundle"
    configs = copy_bundle(root) / "configs"
    files = [str(configs / name) for name in ("base.yaml", "cpu.yaml", "train.yaml")]
    done = run_bundle("run", "training", "--config_file", repr(files), "--bundle_root", str(root),
                      "--ckpt_dir", str(tmp_path / "ckpt"), "--epochs", "3", *cli(DATA),
                      check=False)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    teacher = repr([*files[:2], str(configs / "train_teacher.yaml")])
    assert done.stderr.strip().splitlines()[-1] == (
        f"monai_coco: {tmp_path}/ckpt/teacher.pt not found; make it first with: python -m monai.bundle run "
        f'training --config_file "{teacher}" --ckpt_dir {tmp_path}/ckpt --roi_size "[64,64]" '
        f'--bundle_root "{root}"'
    )


def test_an_overlay_given_alone_without_its_base_is_one_line(tmp_path, monkeypatch):
    """``run_with_base`` runs ``inference.yaml`` given alone over its folder's ``base.yaml``
    (test_stages.py); without one there, or with a base that is no base of this bundle (no ``initialize``:
    run over it, the overlay would ask again), one line naming the list to give, and nothing is run."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "inference.yaml").write_text("inference: []\n")
    runner = str(Path(monai.bundle.__file__).parent / "__main__.py")
    for listed in ([configs / "inference.yaml"], [configs / "base.yaml", configs / "inference.yaml"]):
        if len(listed) == 2:
            (configs / "base.yaml").write_text("bundle_root: .\n")  # no initialize
        argv = [runner, "run", "inference", "--config_file", repr([str(f) for f in listed])]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as stop:
            run_with_base("inference.yaml")
        assert str(stop.value.code) == (
            "monai_coco: inference.yaml is an overlay of base.yaml: give the config files "
            f"{[str(configs / 'base.yaml'), str(configs / 'inference.yaml')]!r}."
        )
    # a run started over the base never starts another; nor does one without --config_file (an args_file)
    for argv, rerun in (([runner, "run", "inference", "--config_file", str(configs / "inference.yaml")], "1"),
                        ([runner, "run", "inference"], "")):  # fmt: skip
        monkeypatch.setattr(sys, "argv", argv)
        monkeypatch.setenv("MONAI_COCO_RUN_WITH_BASE", rerun)
        with pytest.raises(SystemExit, match="is an overlay of base.yaml: give the config files"):
            run_with_base("inference.yaml")
