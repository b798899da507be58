"""What the bundle's stages report (see conftest.py: every stage run once by ``python -m monai.bundle``):
TensorBoard event files of every training stage, read back with TensorBoard's ``EventAccumulator``; the
``--tracking mlflow`` store, read back with MLflow's client; tile counts, loss lines and no warning flood in
the logs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_runs import DATA, bundle_env, cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow  # reads the bundle stages run through python -m monai.bundle


def _events(folder: Path) -> EventAccumulator:
    """Every event file of ``folder`` (one per MONAI TensorBoard handler), merged."""
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file in {folder}"
    scalars, images = {}, set()
    for path in files:
        events = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0}).Reload()
        scalars.update({tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]})
        images.update(events.Tags()["images"])
    return scalars, images


def test_distillation_writes_each_loss_term_the_learning_rate_metrics_and_panels(trained_bundle):
    scalars, images = _events(trained_bundle.root / "logs" / "model")
    for term in ("loss", "ce", "coco", "adv", "critic", "lr"):
        assert len(scalars[f"train/{term}"]) == 2, term  # 1 epoch of 2 iterations (4 tiles, batch 2)
    total = [sum(scalars[f"train/{term}"][i] for term in ("ce", "coco", "adv")) for i in range(2)]
    assert scalars["train/loss"] == pytest.approx(total, rel=1e-5)
    # poly(0.9) decay over 2 iterations, stepped before the value is logged: 0.003 * (1 - k / 2) ** 0.9
    assert scalars["train/lr"] == pytest.approx([0.003 * 0.5**0.9, 0.0])
    for metric in ("miou", "accuracy", "dice"):
        assert len(scalars[f"val/{metric}"]) == 1 and 0.0 <= scalars[f"val/{metric}"][0] <= 1.0, metric
    assert all(tag.startswith(("train/", "val/")) for tag in scalars), sorted(scalars)  # two groups
    assert images == {"val/image", "val/label", "val/prediction"}  # of the first validation tile


def test_teacher_and_paraphraser_stages_write_their_own_event_files(trained_bundle):
    teacher, teacher_images = _events(trained_bundle.root / "logs" / "teacher")
    assert {"train/loss", "train/lr", "val/miou", "val/dice"} <= set(teacher) and teacher_images
    paraphraser, _ = _events(trained_bundle.root / "logs" / "paraphraser")
    mse = [tag for tag in paraphraser if tag.startswith("train/mse[")]
    assert len(mse) == 2 and {"train/loss", "train/lr"} <= set(paraphraser)  # one loss per teacher tap


def _mlflow_runs(root: Path) -> tuple[object, dict[str, object]]:
    """MLflow's client on the ``--tracking mlflow`` store ``<output_root>/mlruns.db`` and ``{experiment: its
    one run}``."""
    from mlflow.tracking import MlflowClient
    from monai.utils import path_to_sqlite_uri

    client = MlflowClient(path_to_sqlite_uri(str(root / "mlruns.db")))
    runs = {}
    for experiment in client.search_experiments():
        if experiment.name.startswith("monai_coco."):
            (runs[experiment.name],) = client.search_runs([experiment.experiment_id])
    return client, runs


def test_mlflow_keeps_every_stage_in_one_store_with_its_terms_params_and_model(trained_bundle):
    client, runs = _mlflow_runs(trained_bundle.root)
    assert set(runs) == {"monai_coco.teacher", "monai_coco.paraphraser", "monai_coco.student",
                         "monai_coco.evaluation"}  # fmt: skip
    assert all(run.info.status == "FINISHED" for run in runs.values())
    student = runs["monai_coco.student"]
    assert student.info.run_name == "model"
    params = student.data.params
    assert {"distill": "coco", "lambda_coco": "1.0", "lambda_adv": "0.1", "learning_rate": "0.003",
            "epochs": "1", "roi_size": "[64, 64]", "seed": "0", "network": "MobileUNet", "teacher": "FANet",
            "dataset": "<bundle_root>/data/synthetic", "n_labelled": "None", "use_paraphraser": "True",
            "coco_standardize": "False", "teacher_taps": "['encoder.2', 'decoder.0']"}.items() \
        <= params.items()  # fmt: skip
    assert int(params["network_parameters"]) > 0 and int(params["teacher_parameters"]) > 0
    for term in ("loss", "ce", "coco", "adv", "critic"):
        history = client.get_metric_history(student.info.run_id, f"train/{term}")
        assert [m.step for m in history] == [1, 2], term  # every iteration
    for score in ("miou", "accuracy", "dice"):
        assert [m.step for m in client.get_metric_history(student.info.run_id, score)] == [1], score
    artifacts = {a.path for a in client.list_artifacts(student.info.run_id)}
    assert "model.pt" in artifacts and any(a.startswith("config_") for a in artifacts)
    paraphraser = runs["monai_coco.paraphraser"]
    mse = [k for k in paraphraser.data.metrics if k.startswith("train/mse.")]  # MLflow-safe names
    assert len(mse) == 2 and "paraphraser.pt" in {
        a.path for a in client.list_artifacts(paraphraser.info.run_id)
    }
    assert "teacher.pt" in {a.path for a in client.list_artifacts(runs["monai_coco.teacher"].info.run_id)}
    evaluation = runs["monai_coco.evaluation"]
    assert {"eval_split": "test", "model_name": "model.pt", "network": "MobileUNet"}.items() <= (
        evaluation.data.params.items()
    )
    assert 0.0 <= evaluation.data.metrics["miou"] <= 1.0
    assert "metrics.csv" in {a.path for a in client.list_artifacts(evaluation.info.run_id)}


def test_logs_count_the_tiles_of_each_split_and_stay_free_of_warning_floods(trained_bundle):
    logs = trained_bundle.logs
    assert "train split: 4 tile(s), from the folder " in logs["teacher"]
    assert "val split: 2 tile(s), from the folder " in logs["teacher"]
    assert "test split: 2 tile(s), from the folder " in logs["evaluate"]
    for stage, log in logs.items():
        assert "Mean of empty slice" not in log, stage
        assert "RuntimeWarning" not in log, stage
        assert "tqdm is not installed" not in log, stage


def test_text_settings_are_taken_as_typed_whatever_python_fire_makes_of_them(trained_bundle, tmp_path):
    """Field case c14: python-fire, which parses the bundle runner's command line, reads ``site1,site2`` and
    ``gastric,v2`` as tuples and ``2024`` as a number; the run takes each as the text typed: the data folder
    named with a comma (relative to the working folder), the checkpoint named by a year, the experiment."""
    shutil.copytree(trained_bundle.root / "data" / "synthetic", tmp_path / "site1,site2")
    (tmp_path / "ckpt").mkdir()
    shutil.copy(trained_bundle.models / "model.pt", tmp_path / "ckpt" / "2024")
    shutil.copy(
        trained_bundle.models / "model.preprocessing.json", tmp_path / "ckpt" / "2024.preprocessing.json"
    )
    store = tmp_path / "mlruns.db"
    command = [sys.executable, "-m", "monai.bundle", "run", "evaluating", "--config_file",
               repr(trained_bundle.stage("evaluate.yaml")), "--bundle_root", str(trained_bundle.root),
               *cli(DATA, {"num_workers": 0}), "--dataset_dir", "site1,site2", "--model_name", "2024",
               "--ckpt_dir", str(tmp_path / "ckpt"), "--output_dir", str(tmp_path / "eval"),
               "--tracking", "mlflow", "--experiment_name", "gastric,v2",
               "--tracking_uri", f"sqlite:///{store}"]  # fmt: skip
    done = subprocess.run(
        command, cwd=tmp_path, env=bundle_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        f"test split: 2 tile(s), from the folder {tmp_path / 'site1,site2' / 'test'}"
        in done.stdout + done.stderr
    )
    assert (tmp_path / "eval" / "metrics.csv").is_file()
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient(f"sqlite:///{store}").get_experiment_by_name("gastric,v2")
    assert experiment is not None
