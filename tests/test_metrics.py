import csv
import math

import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from monai.handlers import MetricsSaver, from_engine
from monai.networks import one_hot
from monai.transforms import AsDiscreted

from monai_coco.handlers import PathologySegmentationMetric
from monai_coco.metrics import SegmentationConfusionMatrix, segmentation_scores

# Three 2x3 images in two batches. Pairs (true, pred) counted by hand:
#   A: TN 2, FP 1, FN 1, TP 2     B: TP 5, FN 1     C: TN 4, FP 2
#   whole set: TP 7, FN 2, FP 3, TN 6 (18 pixels)
LABELS = torch.tensor([[[0, 0, 1], [1, 1, 0]], [[1, 1, 1], [1, 1, 1]], [[0, 0, 0], [0, 0, 0]]])
PREDS = torch.tensor([[[0, 1, 1], [0, 1, 0]], [[1, 1, 1], [1, 1, 0]], [[0, 0, 0], [0, 1, 1]]])
BATCHES = [(0, 2), (2, 3)]
EXPECTED = {
    "accuracy": 13 / 18,
    "iou": 7 / 12,
    "miou": (7 / 12 + 6 / 11) / 2,
    "dice": 14 / 19,
    "f1": 14 / 19,
    "precision": 7 / 10,
    "recall": 7 / 9,
    "specificity": 6 / 9,
}


def _label_map(t):
    return t[:, None].float()  # (B, 1, H, W)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scores_equal_hand_computed_confusion_matrix_over_batches(name):
    metric = SegmentationConfusionMatrix(num_classes=2, metric_name=name)
    for lo, hi in BATCHES:
        metric(y_pred=_label_map(PREDS[lo:hi]), y=_label_map(LABELS[lo:hi]))
    assert metric.confusion_matrix().tolist() == [[6, 3], [2, 7]]
    assert metric.aggregate().item() == pytest.approx(EXPECTED[name], abs=1e-12)


def test_accumulates_pixels_not_a_mean_of_image_scores():
    metric = SegmentationConfusionMatrix(metric_name="iou")
    for lo, hi in BATCHES:
        metric(y_pred=_label_map(PREDS[lo:hi]), y=_label_map(LABELS[lo:hi]))
    per_image = metric.per_image()
    assert per_image.tolist() == pytest.approx([2 / 4, 5 / 6, 0.0])
    assert per_image.mean().item() != pytest.approx(metric.aggregate().item())
    metric.reset()
    metric(y_pred=_label_map(PREDS[2:]), y=_label_map(LABELS[2:]))
    assert metric.aggregate().item() == 0.0  # reset forgets the first images


def test_one_hot_scores_and_channel_first_lists_match_label_maps():
    ref = SegmentationConfusionMatrix(metric_name="dice")
    ref(y_pred=_label_map(PREDS), y=_label_map(LABELS))
    logits = one_hot(_label_map(PREDS), num_classes=2) * 3.0 - 1.0  # argmax of scores == prediction
    as_lists = SegmentationConfusionMatrix(metric_name="dice")
    as_lists(y_pred=list(logits), y=list(one_hot(_label_map(LABELS), num_classes=2)))
    assert as_lists.confusion_matrix().tolist() == ref.confusion_matrix().tolist()
    assert as_lists.aggregate().item() == pytest.approx(14 / 19)


def test_multiclass_per_class_vectors_and_means():
    # 3 classes, 8 pixels; confusion matrix rows=true, cols=pred:
    #   true 0: pred 0,0,1  -> [2, 1, 0]
    #   true 1: pred 1,1    -> [0, 2, 0]
    #   true 2: pred 2,0,2  -> [1, 0, 2]
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2]).view(1, 1, 2, 4)
    p = torch.tensor([0, 0, 1, 1, 1, 2, 0, 2]).view(1, 1, 2, 4)
    iou = [2 / 4, 2 / 3, 2 / 3]
    precision = [2 / 3, 2 / 3, 1.0]
    specificity = [4 / 5, 5 / 6, 5 / 5]
    metric = SegmentationConfusionMatrix(num_classes=3, metric_name="iou", average="none")
    metric(y_pred=p.float(), y=y.float())
    assert metric.confusion_matrix().tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert metric.aggregate().tolist() == pytest.approx(iou)
    scores = segmentation_scores(metric.confusion_matrix())
    assert scores["precision"].tolist() == pytest.approx(precision)
    assert scores["specificity"].tolist() == pytest.approx(specificity)
    assert scores["accuracy"].item() == pytest.approx(6 / 8)
    miou = SegmentationConfusionMatrix(num_classes=3, metric_name="miou")
    miou(y_pred=p.float(), y=y.float())
    assert miou.aggregate().item() == pytest.approx(sum(iou) / 3)
    class2 = SegmentationConfusionMatrix(num_classes=3, metric_name="precision", foreground=2)
    class2(y_pred=p.float(), y=y.float())
    assert class2.aggregate().item() == pytest.approx(1.0)


def test_undefined_scores_are_nan_and_skipped_by_the_class_mean():
    y = torch.zeros(1, 1, 2, 2)  # no class 1 anywhere, none predicted
    recall = SegmentationConfusionMatrix(metric_name="recall")
    recall(y_pred=y, y=y)
    assert math.isnan(recall.aggregate().item())
    miou = SegmentationConfusionMatrix(metric_name="miou")
    miou(y_pred=y, y=y)
    assert miou.aggregate().item() == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"metric_name": "hausdorff"}, "metric_name"),
        ({"metric_name": "miou", "average": "foreground"}, "miou"),
        ({"average": "median"}, "average"),
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 2, "foreground": 2}, "foreground"),
    ],
)
def test_bad_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SegmentationConfusionMatrix(**kwargs)


def test_bad_inputs_are_rejected():
    metric = SegmentationConfusionMatrix(num_classes=2)
    with pytest.raises(ValueError, match="outside"):
        metric(y_pred=torch.full((1, 1, 2, 2), 2.0), y=torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="channels"):
        metric(y_pred=torch.zeros(1, 3, 2, 2), y=torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="spatial"):
        metric(y_pred=torch.zeros(1, 1, 2, 2), y=torch.zeros(1, 1, 2, 3))
    with pytest.raises(ValueError, match="no data"):
        metric.aggregate()


class _PredictionAsLogits(torch.nn.Module):
    """A fixed 'network' whose input image is the prediction: logits (B, 2, H, W) = 4 * one_hot(image)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([1.0 - x, x], dim=1) * 4.0


def test_supervised_evaluator_key_metric_additional_metrics_and_metrics_saver(tmp_path):
    data = [
        {
            "image": PREDS[i][None].float(),
            "label": LABELS[i][None].float(),
            "image_meta_dict": {"filename_or_obj": f"case{i}.jpg"},
        }
        for i in range(3)
    ]
    loader = DataLoader(Dataset(data), batch_size=2, shuffle=False)
    post = AsDiscreted(keys=["pred", "label"], argmax=(True, False), to_onehot=2)
    to_pair = from_engine(["pred", "label"])
    names = ["accuracy", "dice", "precision", "recall", "specificity", "iou"]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=_PredictionAsLogits(),
        postprocessing=post,
        key_val_metric={"val_miou": PathologySegmentationMetric("miou", output_transform=to_pair)},
        additional_metrics={
            f"val_{n}": PathologySegmentationMetric(n, output_transform=to_pair) for n in names
        },
        val_handlers=[
            MetricsSaver(
                save_dir=str(tmp_path),
                metrics="*",
                metric_details=["val_iou"],
                batch_transform=from_engine("image_meta_dict"),
            )
        ],
    )
    evaluator.run()
    metrics = evaluator.state.metrics
    assert metrics["val_miou"] == pytest.approx(EXPECTED["miou"])
    for n in names:
        assert metrics[f"val_{n}"] == pytest.approx(EXPECTED[n])
    assert evaluator.state.best_metric == pytest.approx(EXPECTED["miou"])

    saved = dict(csv.reader(open(tmp_path / "metrics.csv")))
    assert set(saved) == {"val_miou", *(f"val_{n}" for n in names)}
    assert float(saved["val_dice"]) == pytest.approx(14 / 19)
    rows = list(csv.reader(open(tmp_path / "val_iou_raw.csv")))
    assert rows[0] == ["filename", "class0", "mean"]
    assert [r[0] for r in rows[1:]] == ["case0.jpg", "case1.jpg", "case2.jpg"]
    assert [float(r[1]) for r in rows[1:]] == pytest.approx([0.5, 5 / 6, 0.0], abs=1e-4)
