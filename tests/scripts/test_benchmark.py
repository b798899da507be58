"""scripts/benchmark.py: the smoke mode runs every section for real (tiny sizes) and writes the report."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import benchmark  # noqa: E402
from benchmark_accuracy import AccuracySettings, summarise  # noqa: E402
from benchmark_networks import sliding_window_windows  # noqa: E402
from benchmark_report import verdict  # noqa: E402

from monai_coco.data import SlideInferenceConfig, segment_image  # noqa: E402


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        results = benchmark.main(["--smoke", "--out", str(out), "--workdir", str(out / "work")])
    torch.set_num_threads(threads)
    return out, results


def _finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def test_smoke_writes_report_plots_and_raw_numbers(smoke_run):
    out, results = smoke_run
    report = (out / "benchmarks.md").read_text()
    for heading in (
        "## Machine and run",
        "## 1. CoCo loss",
        "## 2. Networks",
        "## 3. Training cost",
        "## 4. Accuracy",
        "### λ_coco sweep",
        "## Whole-slide deployment",
    ):
        assert heading in report
    deployment = {r["candidate"]: r for r in results["deployment"]["rows"]}
    assert set(deployment) == {"monai", "torch", "torchscript", "onnxruntime"}
    assert all(r["agree"] >= 0.999 and r["windows_run"] <= r["windows_in_grid"] for r in deployment.values())
    assert "`python scripts/benchmark.py --smoke" in report and "| torch | " + torch.__version__ in report
    for plot in ("loss_scaling.png", "accuracy_miou.png"):
        with Image.open(out / "benchmarks" / plot) as image:
            assert image.format == "PNG" and min(image.size) > 100
        assert f"](benchmarks/{plot})" in report
    saved = json.loads((out / "benchmarks" / "results.json").read_text())
    assert saved["accuracy"]["result"]["teacher"] == pytest.approx(results["accuracy"]["result"]["teacher"])


def test_smoke_loss_section_naive_and_exact_agree(smoke_run):
    rows = smoke_run[1]["loss"]["rows"]
    assert {(r["method"], r["size"]) for r in rows} == {("naive", 8), ("exact", 8)}
    assert all(_finite(r["time_s"], r["peak_mib"], r["value"]) and r["time_s"] > 0 for r in rows)
    naive, exact = (next(r["value"] for r in rows if r["method"] == m) for m in ("naive", "exact"))
    assert exact == pytest.approx(naive, rel=1e-4)


def test_smoke_network_numbers(smoke_run):
    networks = smoke_run[1]["networks"]
    assert _finite(networks["matmul_gflops"]) and networks["matmul_gflops"] > 0
    rows = networks["networks"]
    assert [r["name"] for r in rows] == ["FANet (teacher)", "Mobile U-Net (student)"]
    for r in rows:
        assert r["params"] > 0 and r["gflops"] > 0 and _finite(r["paper_gflops"])
        assert _finite(*r["tile"].values()) and r["tile"]["tiles_per_s"] > 0
        # 64×64 image, 32×32 windows, no overlap: 2 × 2 windows
        assert r["sliding_window"]["windows"] == 4 and _finite(*r["sliding_window"].values())


def test_smoke_training_parts_add_up_to_the_iteration(smoke_run):
    cost = smoke_run[1]["training"]["cost"]
    for name in ("student", "distillation"):
        parts = dict(cost[name])
        whole = parts.pop("iteration")
        assert _finite(whole, *parts.values()) and whole > 0
        assert sum(parts.values()) == pytest.approx(whole, rel=1e-6)
    assert {"teacher forward", "paraphraser encoders", "CoCo loss forward"} <= set(cost["distillation"])
    assert "teacher forward" not in cost["student"]
    assert cost["distillation"]["critic step"] > cost["student"]["critic step"]


def test_smoke_accuracy_covers_every_method_and_the_sweep(smoke_run):
    accuracy = smoke_run[1]["accuracy"]
    runs = accuracy["result"]["runs"]
    expected = {
        (m, 1.0) for m in ("student", "kd", "pairwise", "at", "fsp", "cwd", "coco", "coco_pm", "coco_pm_ad")
    } | {("coco_pm", 100.0)}
    assert {(r["method"], r["lambda_coco"]) for r in runs} == expected
    teacher = accuracy["result"]["teacher"]
    for row in [teacher, *runs]:
        assert 0.0 <= row["acc"] <= 1.0 and 0.0 <= row["miou"] <= 1.0 and _finite(row["train_s"])
    assert len(accuracy["result"]["paraphraser_error"]) == 2
    assert _finite(*accuracy["result"]["paraphraser_error"])


def test_window_count_matches_monai_sliding_window(tmp_path):
    calls = []
    network = torch.nn.Conv2d(3, 2, 1)
    network.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    image = np.zeros((3, 80, 80), dtype=np.uint8)
    for overlap in (0.0, 0.25, 0.5):
        calls.clear()
        config = SlideInferenceConfig(
            roi_size=32, overlap=overlap, sw_batch_size=1, amp=False, chunk_size=80, device="cpu"
        )
        config.runtime = "torch"  # eager, so that the forward hook counts the windows
        segment_image(network, image, config)
        assert sum(calls) == sliding_window_windows(80, 32, overlap)
    assert sliding_window_windows(2048, 256, 0.25) == 11 * 11  # stride 192: (2048 - 256) / 192 -> 10 more


def test_summary_gap_closed_and_verdict_by_hand():
    settings = AccuracySettings(seeds=(0, 1))
    runs = [
        {"method": "student", "lambda_coco": 1.0, "seed": 0, "acc": 0.80, "miou": 0.60, "train_s": 1.0},
        {"method": "student", "lambda_coco": 1.0, "seed": 1, "acc": 0.82, "miou": 0.62, "train_s": 1.0},
        {"method": "coco", "lambda_coco": 1.0, "seed": 0, "acc": 0.85, "miou": 0.70, "train_s": 2.0},
        {"method": "coco", "lambda_coco": 1.0, "seed": 1, "acc": 0.87, "miou": 0.72, "train_s": 2.0},
        {"method": "coco", "lambda_coco": 100.0, "seed": 0, "acc": 0.80, "miou": 0.605, "train_s": 2.0},
        {"method": "coco", "lambda_coco": 100.0, "seed": 1, "acc": 0.80, "miou": 0.625, "train_s": 2.0},
    ]
    result = {"teacher": {"acc": 0.91, "miou": 0.81}, "runs": runs}
    rows = {(r["method"], r["lambda_coco"]): r for r in summarise(result, settings)}
    student, coco, swept = rows[("student", 1.0)], rows[("coco", 1.0)], rows[("coco", 100.0)]
    # student 0.61, teacher 0.81, CoCo 0.71: half the gap; ACC: (0.86 - 0.81) / (0.91 - 0.81)
    assert coco["miou_gap_closed"] == pytest.approx(0.5)
    assert coco["acc_gap_closed"] == pytest.approx(0.5)
    assert coco["miou_std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert coco["is_main"] and not swept["is_main"]
    # difference 0.10 vs 2 standard errors of 0.02: helps; 0.005 vs 0.02: no clear effect
    assert verdict(coco, student) == "helps"
    assert verdict(swept, student) == "no clear effect"
    assert verdict({**coco, "miou": 0.5}, student) == "hurts"
    assert verdict({**coco, "n": 1}, student) == "1 seed: not judged"
