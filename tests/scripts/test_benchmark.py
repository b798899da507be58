"""scripts/benchmark.py: the smoke mode runs every section for real (tiny sizes, the bundle's own stages) and
writes the report; the arms are the bundle's ``--distill`` choices; the paired statistics by hand."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from inspect import signature
from pathlib import Path

import benchmark
import numpy as np
import pytest
import torch
from benchmarks import candidates, deployment
from benchmarks.accuracy import choose_lambda, summarise
from benchmarks.bundle import (
    CONFIGS,
    PRESETS,
    Recipe,
    load_stage,
    protocol_arms,
    run_stage,
    term_signature,
    training_record,
)
from benchmarks.networks import sliding_window_windows
from benchmarks.stats import paired_interval, verdict
from PIL import Image

from monai_coco.data import write_synthetic_dataset
from monai_coco.data.synthetic import histology_dataset
from monai_coco.inference import SlideInferenceConfig, segment_image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    pool = out / "unlabelled"  # unannotated tiles for the unlabelled arms: synthetic images, masks removed
    write_synthetic_dataset(pool, n=2, size=32, seed=99, mpp=8.0)
    for mask in pool.glob("*.png"):
        mask.unlink()
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        argv = ["--smoke", "--out", str(out), "--workdir", str(out / "work"), "--unlabelled-dir", str(pool)]
        results = benchmark.main(argv)
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
        "## 4. Accuracy protocol",
        "### 4.1 Sanity",
        "### 4.2 λ_coco from the gradient ratio",
        "### 4.3 Results",
        "## Whole-slide deployment",
    ):
        assert heading in report
    slides = {slide["name"]: slide for slide in results["deployment"]["slides"]}
    assert list(slides) == ["dense", "sparse"]
    memory = results["deployment"]["memory"]  # the peak-RSS slide: the smoke's 512², level 0, run for real
    assert memory["side"] == 512 and memory["candidate"] == "onnxruntime" and memory["peak_rss_mib"] > 100
    assert 0 < memory["windows_run"] <= memory["windows_in_grid"] and "Peak memory on a large slide" in report
    for slide in slides.values():
        deployment = {r["candidate"]: r for r in slide["rows"]}
        assert set(deployment) == set(candidates.DEPLOYMENT)  # release_0.1.0 from git
        assert set(deployment) == {"monai", "release_0.1.0", "torch", "torchscript", "onnxruntime"}
        runtimes = [deployment[name] for name in ("torch", "torchscript", "onnxruntime")]
        assert all(r["agree"] >= 0.999 and r["windows_run"] <= r["windows_in_grid"] for r in runtimes)
        assert deployment["release_0.1.0"]["agree"] >= 0.999  # the same student weights, the release's code
        # the baseline also runs the windows this package skips (under 5 % tissue): it may label some of
        # their pixels otherwise (99.79 % agree on the smoke's sparse slide), never many
        assert deployment["monai"]["agree"] >= 0.99
        # a trained student: its masks hold both classes, so the agreement above compares real decisions
        assert 0.05 < slide["tumour_fraction"] < 0.95 and slide["dice"] > 0.3
        assert f"{100 * slide['tumour_fraction']:.1f} % of this slide tumour" in report
    # the student is the bundle's: train.yaml alone (--distill none), 10 epochs of 4 iterations
    student = results["deployment"]["student"]
    assert student["steps"] == 40 and student["epochs"] == 10 and student["overrides"]["distill"] == "none"
    assert 0.0 < student["best_val_miou"] <= 1.0 and "by the bundle's `train.yaml` (distill none" in report
    # slide scale: the code before the slide work, this package at a level as it is, and on the same tissue
    # as a 40x pyramid resampled; the same student, so the same decisions within the resampling's rounding
    scale = results["slide_scale"]["rows"]
    assert set(scale) == {"before", "exact_20x", "exact_40x"}  # before: from git, as the 0.1.0 release
    # the smoke's student (40 steps) sits near its decision boundary: 94.5 % here, 99.1 % in the full run
    assert scale["before"]["mask_agreement"] == 1.0 and scale["exact_40x"]["mask_agreement"] >= 0.9
    assert scale["exact_40x"]["level"] == 1 and scale["exact_20x"]["level"] == 2
    assert 0.01 < results["slide_scale"]["tumour_fraction"] < 0.99  # both classes: the agreement compares
    assert "Throughput of the no-resampling path" in (out / "benchmarks_slide_scale.md").read_text()
    # glass around the sparse slide's section: less tissue, fewer windows run, the same grid
    dense, sparse = ({r["candidate"]: r for r in slides[k]["rows"]}["onnxruntime"] for k in slides)
    assert slides["sparse"]["tissue_fraction"] < 0.6 * slides["dense"]["tissue_fraction"]
    assert sparse["windows_run"] < dense["windows_run"]
    assert sparse["windows_in_grid"] == dense["windows_in_grid"]
    assert "`python scripts/benchmark.py --smoke" in report and "| torch | " + torch.__version__ in report
    for plot in ("loss_scaling.png", "accuracy_paired.png"):
        with Image.open(out / "benchmarks" / plot) as image:
            assert image.format == "PNG" and min(image.size) > 100
        assert f"](benchmarks/{plot})" in report
    saved = json.loads((out / "benchmarks" / "results.json").read_text())
    teacher = results["accuracy"]["result"]["teacher"]
    for part in ("best", "last"):  # both checkpoints' scores
        assert saved["accuracy"]["result"]["teacher"][part] == pytest.approx(teacher[part])
    numbers = {k: v for k, v in teacher.items() if isinstance(v, (int, float))}
    assert {k: saved["accuracy"]["result"]["teacher"][k] for k in numbers} == pytest.approx(numbers)
    # every baseline row names the train.yaml overrides that reproduce it
    for arm in results["accuracy"]["result"]["arms"]:
        assert f"| `{arm['command']}` |" in report and arm["command"].startswith(
            f"--distill {arm['distill']}"
        )


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
    # the experiment's networks are benchmark_smoke.yaml's
    assert (
        rows[0]["config"] == "experiment: features (4, 8, 16, 32)"
        and rows[1]["config"] == "experiment: width 0.25"
    )
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


def test_smoke_accuracy_runs_every_arm_on_every_seed(smoke_run):
    result = smoke_run[1]["accuracy"]["result"]
    best = result["baseline"]
    assert best in ("kd", "at") and [r["arm"] for r in result["screening"]] == ["kd", "at"]
    assert {r["seed"] for r in result["screening"]} == {1000}
    arms = ["none", "kd", "kd_pool", "coco", "coco_std", "kd_coco_pool", "full_pool",
            *([best] if best != "kd" else []), "noop", "random_teacher"]  # fmt: skip
    assert [a["name"] for a in result["arms"]] == arms
    assert (
        result["unlabelled_dir"].endswith("unlabelled")
        and "Arms with unlabelled tiles (distilling on the labelled subset plus the pool): run"
        in (smoke_run[0] / "benchmarks.md").read_text()
    )
    assert sorted((r["seed"], r["arm"]) for r in result["runs"]) == sorted(
        [(s, a) for s in (0, 1) for a in arms] + [(s, f"kd_pool_{n}") for s in (0, 1) for n in (1, 2)]
        + [(2, "kd_pool_2"), (2, "none")] + [(s, "kd_coco_pool_2") for s in (0, 1, 2)]
        + [(s, "kd_pool_2_3it") for s in (0, 1)]
    )
    for row in [result["teacher"], *result["runs"]]:
        assert 0.0 <= row["miou"] <= 1.0 and 0.0 <= row["dice"] <= 1.0 and _finite(row["train_s"])
    # the teacher: both checkpoints scored, the chosen one (benchmark.yaml: last) is teacher.pt
    teacher, models = result["teacher"], smoke_run[0] / "work" / "models"
    assert teacher["checkpoint"] == "last" and teacher["miou"] == teacher["last"]["miou"]
    assert (models / "teacher.pt").stat().st_ino == (models / "teacher_last.pt").stat().st_ino
    assert (models / "teacher_best.pt").exists() and 0.0 <= teacher["best"]["miou"] <= 1.0
    report = (smoke_run[0] / "benchmarks.md").read_text()
    assert "at its best validation epoch" in report and "## 5. Pool-size curve" in report
    assert "MDD" in report and "random teacher" in report
    # the random-teacher control: KD + pool's overrides, its own untrained teacher.pt
    control = next(a for a in result["arms"] if a["name"] == "random_teacher")
    assert control["teacher"] == "random"
    assert control["command"] == next(a for a in result["arms"] if a["name"] == "kd_pool")["command"]
    random_pt = models / "random_teacher" / "teacher.pt"
    assert (models / "random_teacher_s1" / "teacher.pt").stat().st_ino == random_pt.stat().st_ino
    trained, untrained = torch.load(models / "teacher.pt"), torch.load(random_pt)
    assert trained.keys() == untrained.keys()
    assert not all(torch.equal(trained[k], untrained[k]) for k in trained)
    # the curve: one row per pool size, its pools the first tiles of the given pool
    curve = smoke_run[1]["accuracy"]["curve"]
    assert [r["pool"] for r in curve] == [1, 2] and all(r["n"] == 2 for r in curve)
    assert len(list((smoke_run[0] / "work" / "pools" / "pool_1").iterdir())) == 1
    # the comparison at the largest pool: the curve's arm first, KD + CoCo paired against it on 3 seeds
    comparison = smoke_run[1]["accuracy"]["comparison"]
    assert [(r["name"], r["n"]) for r in comparison] == [("kd_pool_2", 3), ("kd_coco_pool_2", 3)]
    assert comparison[1]["vs_reference"]["n"] == 3
    assert "## 6. At the curve's largest pool (2 tiles), on 3" in report
    assert result["compare"]["budget"] == result["curve"]["budget"]  # the curve's budget, in its own part
    # the largest pool trained longer (3 epochs of 1 iteration), on the curve's seeds
    budgets = smoke_run[1]["accuracy"]["budgets"]
    assert [(r["name"], r["n"]) for r in budgets] == [("kd_pool_2", 2), ("kd_pool_2_3it", 2)]
    assert budgets[1]["vs_reference"]["n"] == 2
    assert "### 5.1 At the largest pool (2 tiles), trained longer" in report
    longer = torch.load(models / "kd_pool_2_3it_s1" / "train_state_kd_pool_2_3it_s1.pt", weights_only=True)
    assert longer["trainer"]["iteration"] == 3
    # the sanity figure saw test tiles with both classes; r is a correlation
    sanity = result["sanity"]
    assert sanity["tiles"] >= 1 and sanity["pairs"] == 200 * sanity["tiles"]
    assert -1.0 <= sanity["r_taps"] <= 1.0 and -1.0 <= sanity["r_factors"] <= 1.0
    assert len(sanity["paraphraser_error"]) == 2 and _finite(*sanity["paraphraser_error"])
    # λ_coco from the measured gradients, used by the CoCo arms
    for variant, arm in (("plain", "coco"), ("standardized", "coco_std"), ("standardized", "kd_coco_pool"),
                         ("paraphraser", "full_pool")):  # fmt: skip
        chosen = choose_lambda(result["gradients"][variant]["warm"], 1.0)
        assert result["lambdas"][variant] == chosen > 0
        run = next(r for r in result["runs"] if r["arm"] == arm)
        assert run["terms"]["coco"]["weight"] == pytest.approx(chosen)
    assert next(r for r in result["runs"] if r["arm"] == "noop")["terms"]["coco"]["weight"] == 1e-4
    rows = smoke_run[1]["accuracy"]["summary"]
    assert all("vs_student" in r and r["vs_student"]["n"] == 2 for r in rows if r["name"] != "none")


def _train_yaml_terms(distill: str, lambda_coco: float, standardize: bool = False) -> dict:
    """``train.yaml``'s ``distill_terms[distill]``, parsed alone (base.yaml + train.yaml, no preset)."""
    overrides = {"lambda_coco": lambda_coco, "coco_standardize": standardize}
    parser = load_stage([CONFIGS / "base.yaml", CONFIGS / "train.yaml"], overrides).parser
    return term_signature(parser.get_parsed_content(f"distill_terms#{distill}"))


def test_each_arm_ran_the_terms_of_its_distill_choice(smoke_run):
    result = smoke_run[1]["accuracy"]["result"]
    curve = result["curve"]
    curve_arms = curve["arms"] + result["compare"]["arms"] + curve["budgets"]["arms"]
    arms = {a["name"]: a for a in result["arms"] + curve_arms}
    for run in result["runs"] + result["screening"]:
        arm = arms.get(run["arm"]) or {
            "distill": run["arm"],
            "command": f"--distill {run['arm']} --lambda_adv 0",
        }
        weight = next(
            (t["weight"] for t in run["terms"].values() if t["loss"] == "CoCoDistillationLoss"), 1.0
        )
        standardize = "--coco_standardize True" in arm["command"]
        assert run["terms"] == _train_yaml_terms(arm["distill"], weight, standardize), run["arm"]
        assert run["adversarial"] == (arm["distill"] != "none" and "--lambda_adv 0.1" in arm["command"])
    # the baselines' published weights: KD 10, AT 1000 on each tap, CWD 3
    assert _train_yaml_terms("kd", 1.0)["kd"]["weight"] == 10.0
    at = _train_yaml_terms("at", 1.0)
    assert {name: (t["weight"], t["inputs"]) for name, t in at.items()} == {
        "at0": (1000.0, [0]),
        "at1": (1000.0, [1]),
    }
    assert _train_yaml_terms("cwd", 1.0)["cwd"]["weight"] == 3.0
    assert _train_yaml_terms("none", 1.0) == {}


def test_one_seed_gives_every_arm_the_same_student_and_batches(smoke_run):
    recipe = Recipe("smoke", smoke_run[0] / "work")  # the smoke run's teacher.pt and paraphraser.pt

    def start(seed: int, **arm) -> tuple[dict, torch.Tensor]:
        workflow = recipe.stage("train.yaml", {"seed": seed, "n_labelled": 2, **arm})
        workflow.initialize()
        trainer = workflow.parser.get_parsed_content("train#trainer")
        images = torch.cat([batch["image"] for batch in trainer.data_loader])
        return {k: v.clone() for k, v in trainer.network.state_dict().items()}, images

    alone, alone_images = start(0, distill="none")
    full, full_images = start(0, distill="coco")  # + paraphrasers + the adversarial critic
    assert alone.keys() == full.keys() and all(torch.equal(alone[k], full[k]) for k in alone)
    assert torch.equal(alone_images, full_images)
    other, other_images = start(1, distill="none")
    assert not all(torch.equal(alone[k], other[k]) for k in alone)


def test_paired_interval_and_verdict_by_hand():
    # differences 0.10, 0.12, 0.08: mean 0.10, sd 0.02; t_0.975,2 = 4.302653 -> half width 0.049683
    d = paired_interval([0.70, 0.72, 0.68], [0.60, 0.60, 0.60])
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.10) and d["sd"] == pytest.approx(0.02)
    assert d["half_width"] == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert (d["low"], d["high"]) == pytest.approx((0.10 - 0.049683, 0.10 + 0.049683), abs=1e-6)
    # 2·SE (unpaired, the old rule) would call a 0.03 mean difference with sd 0.02 over 3 seeds a gain; t: not
    small = paired_interval([0.63, 0.65, 0.61], [0.60, 0.60, 0.60])
    assert small["low"] < 0 < small["high"] and verdict(small) == "no resolved difference"
    assert verdict(d) == "gain" and verdict(d, vs_noop=small) == "above 0, not above the no-op"
    assert verdict(d, vs_noop=d) == "gain"
    assert verdict(paired_interval([0.5, 0.52, 0.48], [0.6, 0.6, 0.6])) == "loss"
    assert verdict(paired_interval([0.7], [0.6])) == "1 seed: not judged"
    with pytest.raises(ValueError, match="equal"):
        paired_interval([0.1, 0.2], [0.1])


def test_summary_gap_closed_and_paired_rows_by_hand():
    def run(arm: str, seed: int, miou: float) -> dict:
        return {
            "arm": arm,
            "seed": seed,
            "miou": miou,
            "dice": miou,
            "train_s": 1.0,
            "best_epoch": 3,
            "epochs": 4,
        }

    arms = [
        {"name": n, "label": n, "command": f"--distill {n}", "distill": n} for n in ("none", "coco", "noop")
    ]
    runs = [run("none", 0, 0.60), run("none", 1, 0.62), run("coco", 0, 0.70), run("coco", 1, 0.72)]
    runs += [run("noop", 0, 0.605), run("noop", 1, 0.615)]
    rows = {r["name"]: r for r in summarise({"teacher": {"miou": 0.81}, "arms": arms, "runs": runs})}
    # student 0.61, teacher 0.81, CoCo 0.71: half the gap; paired differences 0.10, 0.10: sd 0 -> [0.10, 0.10]
    assert rows["coco"]["gap_closed"] == pytest.approx(0.5)
    assert rows["coco"]["vs_student"]["low"] == pytest.approx(0.10)
    assert rows["coco"]["vs_noop"]["mean"] == pytest.approx(0.10)
    assert rows["coco"]["verdict"] == "gain"
    # no-op: differences +0.005, -0.005 -> mean 0, sd 0.00707, t_0.975,1 = 12.7062 -> ±0.0635
    assert rows["noop"]["vs_student"]["half_width"] == pytest.approx(
        12.706205 * math.sqrt(5e-5) / math.sqrt(2)
    )
    assert rows["noop"]["verdict"] == "no resolved difference" and "vs_noop" not in rows["noop"]
    assert "vs_student" not in rows["none"]


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
        assert sum(calls) == sliding_window_windows(80, 32, overlap) + 1  # + make_segmenter's check window
    assert sliding_window_windows(2048, 256, 0.25) == 11 * 11  # stride 192: (2048 - 256) / 192 -> 10 more


def test_benchmark_code_needs_no_sys_path_edits_and_no_tests():
    """The package is found as Python finds a script's folder (and pytest's declared pythonpath), never by
    code: no path edits in scripts/ or in these tests, no conftest putting scripts/ on the path."""
    scripts = Path(benchmark.__file__).parent
    edits = ("sys" + ".path", "sys" + "path", "PYTHON" + "PATH")
    for script in [*scripts.rglob("*.py"), *scripts.glob("*.sh"), *Path(__file__).parent.glob("*.py")]:
        text = script.read_text()
        assert not any(edit in text for edit in edits), script.name
        assert script.parent.name == "scripts" and script.name.startswith("test_") or "from tests" not in text
    assert not (Path(__file__).parent / "conftest.py").exists()
    # the presets are the benchmark's, not the bundle's; no benchmark module left at the top of scripts/
    assert sorted(p.name for p in PRESETS.glob("*.yaml")) == [
        "benchmark.yaml", "benchmark_cpu.yaml", "benchmark_gpu.yaml", "benchmark_smoke.yaml"]  # fmt: skip
    assert not list(CONFIGS.glob("benchmark*")) and not list(scripts.glob("benchmark_*.py"))


def test_every_stage_is_a_monai_config_workflow(tmp_path):
    """One loader: the stage's files, run id and workflow type as `python -m monai.bundle run` takes them."""
    from monai.bundle import ConfigWorkflow

    recipe = Recipe("smoke", tmp_path)
    stages = (("train.yaml", "training", "train"), ("evaluate.yaml", "evaluating", "infer"))  # eval: infer
    for stage, run_id, kind in stages:
        workflow = recipe.stage(stage, {"seed": 3})
        assert isinstance(workflow, ConfigWorkflow) and workflow.run_id == run_id
        assert workflow.workflow_type == kind and workflow.parser.get("seed") == 3
        assert workflow.parser.get("benchmark#seeds") == [0, 1]  # benchmark_smoke.yaml, copied to the workdir
    assert recipe.sources[0] == "scripts/benchmarks/configs/benchmark.yaml"
    assert recipe.sources[1] == "bundle/configs/cpu.yaml"  # shared with the demo: the bundle's


def test_unlabelled_arms_only_with_a_pool_and_the_setting():
    lambdas = {"plain": 0.5, "standardized": 0.75, "paraphraser": 0.25}
    names = [a.name for a in protocol_arms("cwd", lambdas, 1e-4)]
    assert names == ["none", "kd", "coco", "coco_std", "cwd", "noop", "random_teacher"]
    pool = "/data/unlabelled"
    with_pool = {a.name: a for a in protocol_arms("kd", lambdas, 1e-4, unlabelled_dir=pool)}
    assert list(with_pool) == ["none", "kd", "kd_pool", "coco", "coco_std", "kd_coco_pool", "full_pool",
                               "noop", "random_teacher"]  # fmt: skip
    full = f"--distill coco --lambda_coco 0.25 --lambda_adv 0.1 --unlabelled_dir {pool}"
    assert with_pool["full_pool"].command() == full
    recipe = Recipe("smoke", Path("/nonexistent"))
    assert recipe.has_setting("train.yaml", "distill") and not recipe.has_setting("train.yaml", "no_such_id")


def test_a_report_row_is_what_the_bundle_command_line_runs(smoke_run):
    """The KD row of seed 1, rerun as ``python -m monai.bundle run`` with the report's overrides, gives the
    same test scores: the benchmark runs the bundle's stages, not a copy of them."""
    out, results = smoke_run
    result = results["accuracy"]["result"]
    arm = next(a for a in result["arms"] if a["name"] == "kd")
    expected = next(r for r in result["runs"] if r["arm"] == "kd" and r["seed"] == 1)
    work = out / "work"
    configs = ["bundle/configs/base.yaml", *result["files"]]
    student = [token for k, v in result["settings"]["student"].items() for token in (f"--{k}", str(v))]
    common = ["--bundle_root", str(work), "--model_name", "cli_kd_s1.pt"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for action, stage, extra in (
        ("training", "train.yaml", [*arm["command"].split(), *student, "--seed", "1"]),
        ("evaluating", "evaluate.yaml", ["--output_dir", str(work / "eval" / "cli_kd_s1")]),
    ):
        config = repr([*configs, f"bundle/configs/{stage}"])
        command = [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            action,
            "--config_file",
            config,
            *common,
            *extra,
        ]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    with open(work / "eval" / "cli_kd_s1" / "metrics.csv") as f:
        metrics = {name: float(value) for name, value in csv.reader(f)}
    assert metrics["miou"] == pytest.approx(expected["miou"], abs=1e-6)
    assert metrics["dice"] == pytest.approx(expected["dice"], abs=1e-6)


@pytest.mark.parametrize("mode", ["cpu", "gpu"])
def test_full_modes_have_paired_seeds_a_larger_teacher_and_a_small_labelled_subset(mode, tmp_path):
    recipe = Recipe(mode, tmp_path)
    settings = recipe.settings
    assert len(settings["seeds"]) >= 5 and settings["screen_seed"] not in settings["seeds"]
    parser = recipe.parser("train.yaml")
    teacher, student = (sum(p.numel() for p in parser.get_parsed_content(k).parameters()) for k in
                        ("teacher_def", "network_def"))  # fmt: skip
    assert teacher >= 5 * student
    assert parser.get("synthetic#_target_") == "monai_coco.data.synthetic.histology_dataset"  # fine structure
    n_train = parser.get("synthetic").get(
        "n_train", signature(histology_dataset).parameters["n_train"].default
    )
    assert settings["student"]["n_labelled"] < n_train and "n_labelled" not in settings["teacher"]
    if mode == "gpu":  # the paper's pair at the paper's tile size
        assert parser.get("roi_size") == [256, 256]
        assert (round(teacher / 1e6, 1), round(student / 1e6, 1)) == (38.3, 4.7)


def test_the_report_states_the_paper_students_speed_per_tile_against_the_paper_teacher():
    """The deployment goal (student per tile >= 100x the paper-sized teacher): the ratio by hand, per
    runtime."""
    from benchmarks.report import _networks_section

    def row(name, config, tiles_per_s):
        tile = {"s_per_batch": 1 / tiles_per_s, "tiles_per_s": tiles_per_s, "mpix_per_s": 0.1}
        counts = {"params": 1e6, "gflops": 1.0, "paper_gflops": 0.5}
        return {"name": name, "config": config, **counts, "tile": tile}

    net = {"networks": [row("FANet (teacher)", "paper: features (64, 128, 256, 512)", 0.25),
                        row("Mobile U-Net (student)", "paper: width 1.0", 15.0),
                        row("Mobile U-Net (student)", "paper: width 1.0, ONNX Runtime", 40.0),
                        row("Mobile U-Net (student)", "experiment: width 0.25", 99.0)],
           "matmul_gflops": 90.0, "matmul_n": 4096, "tile_size": 256, "tile_batch": 1, "large_side": 2048,
           "overlap": 0.0, "sw_batch_size": 4, "in_channels": 3}  # fmt: skip
    text = _networks_section(net)
    assert ("the paper-sized student is ×60 (width 1.0), ×160 (width 1.0, ONNX Runtime) as fast as the "
            "paper-sized teacher") in text  # fmt: skip


def test_the_unlabelled_pool_defaults_to_the_data_sets_own(tmp_path):
    """The cpu and gpu modes' built-in data has an unlabelled/ pool, the smoke mode's none; a --dataset-dir
    with unlabelled/ gives its own."""
    assert Recipe("smoke", tmp_path / "smoke").unlabelled_dir() is None  # makes the 4-tile plain data set
    data = tmp_path / "data"
    write_synthetic_dataset(data, n=2, size=32, seed=1, mpp=8.0)
    (data / "unlabelled").mkdir()
    assert Recipe("smoke", tmp_path / "work", str(data)).unlabelled_dir() == str(data / "unlabelled")
    assert Recipe("cpu", tmp_path / "cpu").parser("train.yaml").get("synthetic#n_unlabelled") > 0


@pytest.mark.parametrize("argv", [["--jobs", "0"], ["--jobs", "-3"], ["--threads", "0"]])
def test_jobs_and_threads_below_one_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        benchmark.main(["--smoke", *argv])
    assert stop.value.code == 2 and f"{argv[0]} must be a whole number >= 1" in capsys.readouterr().err


def test_one_candidate_without_the_trained_student_is_refused(tmp_path, capsys):
    for flag in ("--side", "--rounds", "--threads", "--train-steps"):
        with pytest.raises(SystemExit):
            deployment.main([flag, "0"])
        assert f"{flag} must be a whole number >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # smaller than a window: used to fail after minutes, in the int8 probe
        deployment.main(["--side", "128"])
    assert "--side must be at least the window, 256, got 128" in capsys.readouterr().err
    for present in ([], ["student.pt"], ["student.onnx"]):  # then the slide "s" is missing
        for name in present:
            (tmp_path / name).write_bytes(b"")
        with pytest.raises(SystemExit) as stop:
            deployment.main(["--candidate", "torch", "--slide", "s", "--workdir", str(tmp_path)])
        assert stop.value.code == 2
        assert "--workdir holding student.pt and student.onnx" in capsys.readouterr().err.splitlines()[-1]
    with pytest.raises(SystemExit):  # the candidates' script: each benchmark's own candidates only
        candidates.main(["deployment", "before", "--slide", "s", "--workdir", str(tmp_path)])
    assert "before is no candidate of the deployment benchmark" in capsys.readouterr().err


def test_a_bad_results_file_or_out_is_one_line(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    (tmp_path / "text.json").write_text("not json")
    for argv, expected in (
        (["--from-json", str(tmp_path / "missing.json")], "missing.json: not a results.json of this script"),
        (["--from-json", str(tmp_path / "text.json")], "text.json: not a results.json of this script"),
        (["--out", str(tmp_path / "a_file")], "is a file; expected a folder"),
    ):
        with pytest.raises(SystemExit) as stop:
            benchmark.main(["--smoke", *argv])
        assert stop.value.code == 2 and expected in capsys.readouterr().err.splitlines()[-1]


def test_a_stage_rerun_on_its_finished_folder_reports_the_same_best_epoch(tmp_path):
    """A training stage run again on its finished work folder resumes past its last epoch and validates
    nothing; its record keeps the best validation mIoU and epoch of the run (the checkpoint saver's, which
    the training state restores), not the fresh validator's -1."""
    shutil.copytree(CONFIGS, tmp_path / "configs")
    files = [tmp_path / "configs" / "base.yaml", tmp_path / "configs" / "train.yaml"]
    overrides = {"bundle_root": str(tmp_path), "roi_size": [64, 64], "synthetic#n_train": 4,
                 "synthetic#n_val": 2, "synthetic#n_test": 2, "synthetic#slide_size": 0, "batch_size": 2,
                 "num_workers": 0, "epochs": 2, "distill": "none", "network_def#width_mult": 0.25}
    first = training_record(run_stage(load_stage(files, overrides)))
    again = training_record(run_stage(load_stage(files, overrides)))
    assert first["best_epoch"] in (1, 2) and 0 <= first["best_val_miou"] <= 1
    assert (again["best_epoch"], again["best_val_miou"]) == (first["best_epoch"], first["best_val_miou"])


def test_the_compare_section_alone_runs_the_same_pairs_without_the_curve(smoke_run, tmp_path):
    out, results = smoke_run
    argv = ["--smoke", "--sections", "compare", "--out", str(tmp_path), "--workdir", str(out / "work"),
            "--unlabelled-dir", str(out / "unlabelled")]  # fmt: skip
    alone = benchmark.main(argv)["accuracy"]  # the smoke run's work folder: its finished runs resume
    assert "curve" not in alone["result"] and alone["curve"] == [] and alone["budgets"] == []
    assert alone["result"]["compare"] == results["accuracy"]["result"]["compare"]
    pairs = [(r["name"], r["runs"]) for r in alone["comparison"]]
    assert pairs == [(r["name"], r["runs"]) for r in results["accuracy"]["comparison"]]
    report = (tmp_path / "benchmarks.md").read_text()
    assert "## 6. At the curve's largest pool (2 tiles), on 3 seeds" in report and "## 5." not in report


def test_a_comparison_without_arms_or_seeds_is_one_line(tmp_path):
    """``--sections compare`` runs ``benchmark#compare`` only: without arms and seeds it would run nothing;
    an unknown arm or the curve's own, or a seed given twice (one pair counted twice), is refused too."""

    def check(comparison):
        benchmark.check_comparison({"compare": comparison, "curve": {"arm": "kd_pool"}})

    check({"arms": ["kd_coco_pool"], "seeds": [0]})
    for comparison in ({}, None, ["kd_coco_pool"], {"arms": ["kd_coco_pool"]}, {"arms": [], "seeds": [0, 1]}):
        with pytest.raises(ValueError, match=r"^benchmark#compare is .*; expected its arms and seeds"):
            check(comparison)
    for arms in (["no_such_arm"], "kd_coco_pool", ["kd_pool"]):  # kd_pool: the curve's arm, its reference
        with pytest.raises(ValueError, match=r"^benchmark#compare#arms is .* \(kd_pool\), each .*: none, kd"):
            check({"arms": arms, "seeds": [0]})
    for seeds in (["x"], [0, 0, 1], [0.5], [True], "0"):
        with pytest.raises(ValueError, match=r"^benchmark#compare#seeds is .*; expected a list of distinct"):
            check({"arms": ["kd"], "seeds": seeds})
    for mode in ("smoke", "cpu", "gpu"):  # every preset's, as written
        benchmark.check_comparison(Recipe(mode, tmp_path / mode).settings)
