"""training_scalars, grouped_metrics, TensorBoardTileImages (read back with TensorBoard's EventAccumulator)
and mlflow_tracked (a real MLFlowHandler on a SQLite store, read back with MLflow's client)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler, StatsHandler
from monai.utils import path_to_sqlite_uri
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from monai_coco.handlers import TensorBoardTileImages, grouped_metrics, mlflow_tracked, training_scalars


def test_training_scalars_keep_every_scalar_term_by_name_and_add_the_learning_rate():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.25)
    output = {"image": torch.zeros(2, 3, 4, 4), "loss": torch.tensor(1.5), "ce": 1.0, "coco": 0.5}
    assert training_scalars()(output) == {"loss": 1.5, "ce": 1.0, "coco": 0.5}
    scalars = training_scalars(optimizer)
    optimizer.param_groups[0]["lr"] = 0.125  # read at call time, as a scheduler changes it
    assert scalars(output) == {"loss": 1.5, "ce": 1.0, "coco": 0.5, "lr": 0.125}
    assert training_scalars(optimizer, prefix="train/")(output) == {
        "train/loss": 1.5, "train/ce": 1.0, "train/coco": 0.5, "train/lr": 0.125}  # fmt: skip


def test_training_scalars_read_the_first_item_of_a_decollated_output():
    items = [{"image": torch.zeros(3, 4, 4), "loss": torch.tensor(2.0), "ce": 2.0} for _ in range(2)]
    assert training_scalars()(items) == {"loss": 2.0, "ce": 2.0}


def _read(folder: Path) -> EventAccumulator:
    (path,) = folder.glob("events.out.tfevents.*")
    return EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0}).Reload()


def _validator(outputs: list) -> Engine:
    """An engine over two epochs whose output is ``outputs[epoch - 1]`` and whose metrics are fixed."""
    engine = Engine(lambda e, batch: outputs[e.state.epoch - 1])

    @engine.on(Events.EPOCH_COMPLETED)
    def _metrics(e: Engine) -> None:
        e.state.metrics = {"miou": 0.25 * e.state.epoch, "per_class": torch.ones(2)}

    return engine


def test_grouped_metrics_write_each_scalar_score_under_the_prefix_at_the_epoch(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    engine = _validator([None, None])
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: grouped_metrics("val/")(e, writer))
    engine.run([0], max_epochs=2)
    writer.close()
    events = _read(tmp_path)
    assert events.Tags()["scalars"] == ["val/miou"]  # the (2,) tensor is not a scalar
    assert [(e.step, e.value) for e in events.Scalars("val/miou")] == [(1, 0.25), (2, 0.5)]


def test_tile_images_are_named_image_label_prediction_and_scaled_to_grey_levels(tmp_path):
    image = torch.full((3, 8, 6), 0.5)
    label = torch.zeros(1, 8, 6)
    label[0, :4] = 2  # class 2 of 3: white
    prediction = torch.ones(1, 8, 6)  # class 1 of 3: mid-grey
    item = {"image": image, "label": label, "pred": prediction}
    handler = TensorBoardTileImages(log_dir=str(tmp_path), num_classes=3)
    engine = _validator([[item, item], [item, item]])
    handler.attach(engine)
    engine.run([0], max_epochs=2)
    handler.close()
    events = _read(tmp_path)
    assert sorted(events.Tags()["images"]) == ["val/image", "val/label", "val/prediction"]
    assert [e.step for e in events.Images("val/label")] == [1, 2]
    decoded = {}
    for tag in ("val/image", "val/label", "val/prediction"):
        decoded[tag] = np.asarray(Image.open(io.BytesIO(events.Images(tag)[0].encoded_image_string)))
    assert decoded["val/image"].shape == (8, 6, 3) and abs(int(decoded["val/image"][0, 0, 0]) - 128) <= 1
    assert decoded["val/label"][0, 0].max() == 255 and decoded["val/label"][7, 0].max() == 0
    assert abs(int(decoded["val/prediction"][0, 0].max()) - 128) <= 1


def test_without_tracking_the_handlers_are_kept_in_their_order():
    handlers = [StatsHandler(), StatsHandler()]
    assert mlflow_tracked(handlers, params={"distill": "coco"}, artifacts=["model.pt"]) == handlers


def test_mlflow_handler_gets_the_params_every_term_and_the_checkpoint_and_logs_last(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = path_to_sqlite_uri(str(tmp_path / "mlruns.db"))
    checkpoint = tmp_path / "model.pt"
    tracking = MLFlowHandler(tracking_uri=uri, experiment_name="e", run_name="r", close_on_complete=False)
    writes = StatsHandler(iteration_log=False, epoch_log=False)
    order = []

    def save(engine: Engine) -> None:  # a checkpoint written at COMPLETED, before MLflow uploads it
        order.append("saved")
        checkpoint.write_bytes(b"weights")

    handlers = mlflow_tracked(
        [tracking, writes],
        params={"distill": "coco", "lambdas": {"lambda_coco": 1.0, "lambda_adv": 0.1}, "roi_size": [64, 64]},
        artifacts=[str(checkpoint), str(tmp_path / "absent.pt")],
        output_transform=training_scalars(prefix="train/"),
        close_on_complete=True,
    )
    assert handlers == [writes, tracking]
    outputs = [
        {"loss": 1.0 + i, "ce": 0.5, "mse[decoder.0]": 0.25, "image": torch.zeros(1)} for i in range(2)
    ]
    engine = Engine(lambda e, batch: outputs[e.state.iteration - 1])
    engine.add_event_handler(Events.COMPLETED, save)
    for handler in handlers:
        handler.attach(engine)
    engine.run([0, 1], max_epochs=1)

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert run.info.status == "FINISHED"  # close_on_complete
    assert {"distill": "coco", "lambda_coco": "1.0", "lambda_adv": "0.1", "roi_size": "[64, 64]"}.items() <= (
        run.data.params.items()
    )
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in losses] == [(1, 1.0), (2, 2.0)]
    assert run.data.metrics["train/ce"] == 0.5 and run.data.metrics["train/mse.decoder.0"] == 0.25
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["model.pt"]


@pytest.mark.parametrize("name", ["mse[encoder.2]"])
def test_mlflow_refuses_the_raw_term_name_that_mlflow_tracked_rewrites(tmp_path, name):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(path_to_sqlite_uri(str(tmp_path / "mlruns.db")))
    run = client.create_run(client.create_experiment("e", artifact_location=tmp_path.as_uri()))
    with pytest.raises(MlflowException):
        client.log_metric(run.info.run_id, name, 1.0)


def test_a_resumed_run_goes_on_in_its_mlflow_run_or_in_a_new_one_when_its_params_changed(tmp_path, caplog):
    """An interrupted stage (its run left RUNNING) resumed with the same params goes on in the same run;
    resumed with more epochs (MLflow refuses to change a param) it marks that run KILLED and goes on in a new
    run of the same name, where the stage's second handler (the validator's) joins it."""
    from mlflow.tracking import MlflowClient

    uri = path_to_sqlite_uri(str(tmp_path / "mlruns.db"))

    def stage(epochs: int, handlers: int = 1) -> None:
        engine = Engine(lambda e, batch: [1.0])
        for _ in range(handlers):
            handler = MLFlowHandler(uri, experiment_name="e", run_name="r", close_on_complete=False)
            for tracked in mlflow_tracked([handler], params={"epochs": epochs, "distill": "coco"}):
                tracked.attach(engine)
        engine.run([0], max_epochs=1)

    client = MlflowClient(uri)

    def runs() -> list[tuple[str, str]]:
        experiment = client.get_experiment_by_name("e").experiment_id
        found = client.search_runs([experiment], order_by=["start_time"])
        return [(run.info.status, run.data.params["epochs"]) for run in found]

    stage(2)
    stage(2)
    assert runs() == [("RUNNING", "2")]
    with caplog.at_level("WARNING", logger="monai_coco.handlers.tracking"):
        stage(3, handlers=2)
    assert runs() == [("KILLED", "2"), ("RUNNING", "3")]
    assert "interrupted with other settings (epochs 2 -> 3)" in caplog.text
