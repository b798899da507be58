"""The accuracy protocol's power and controls, by hand: the minimum detectable difference, the teacher's two
checkpoints, the arm list, the random-teacher control's folder, the pool-size curve's summary."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from benchmarks.accuracy import (
    link_prerequisites,
    select_teacher,
    summarise,
    summarise_comparison,
    summarise_curve,
)
from benchmarks.bundle import Recipe, budget_arms, budget_overrides, curve_arms, pool_subset, protocol_arms
from benchmarks.report import _comparison_section, _curve_section, _teacher_scores
from benchmarks.stats import minimum_detectable_difference

LAMBDAS = {"plain": 0.5, "standardized": 0.75, "paraphraser": 0.25}


def test_minimum_detectable_difference_by_hand():
    # t_0.975,9 = 2.262157 and t_0.8,9 = 0.883404 (tables): (2.262157 + 0.883404) * 0.05 / sqrt(10) = 0.049736
    assert minimum_detectable_difference(0.05, 10) == pytest.approx(0.049736, abs=1e-6)
    # n = 5: t_0.975,4 = 2.776445, t_0.8,4 = 0.940965; sd 0.078 -> 3.717410 * 0.078 / sqrt(5) = 0.129673
    assert minimum_detectable_difference(0.078, 5) == pytest.approx(0.129673, abs=1e-6)
    # 90 % power, n = 10: t_0.9,9 = 1.383029 -> (2.262157 + 1.383029) * 0.02 / sqrt(10) = 0.023054
    assert minimum_detectable_difference(0.02, 10, power=0.9) == pytest.approx(0.023054, abs=1e-6)
    assert math.isnan(minimum_detectable_difference(0.05, 1))
    with pytest.raises(ValueError, match="power"):
        minimum_detectable_difference(0.05, 10, power=1.0)


def test_summary_reports_the_mdd_and_the_random_teacher_control():
    def run(arm, seed, miou):
        return {
            "arm": arm,
            "seed": seed,
            "miou": miou,
            "dice": miou,
            "train_s": 1.0,
            "best_epoch": 1,
            "epochs": 2,
        }

    arms = [{"name": "none", "label": "none", "command": "--distill none", "distill": "none"},
            {"name": "kd_pool", "label": "kd", "command": "--distill kd", "distill": "kd",
             "teacher": "trained"},
            {"name": "random_teacher", "label": "rt", "command": "--distill kd", "distill": "kd",
             "teacher": "random"}]  # fmt: skip
    runs = [run("none", s, m) for s, m in enumerate((0.50, 0.52, 0.48))]
    runs += [run("kd_pool", s, m) for s, m in enumerate((0.60, 0.64, 0.59))]  # differences 0.10, 0.12, 0.11
    runs += [run("random_teacher", s, m) for s, m in enumerate((0.51, 0.52, 0.50))]
    rows = {r["name"]: r for r in summarise({"teacher": {"miou": 0.8}, "arms": arms, "runs": runs})}
    # kd_pool - none: 0.10, 0.12, 0.11: sd 0.01; MDD = (4.302653 + 1.060660) * 0.01 / sqrt(3) = 0.030966
    assert rows["kd_pool"]["vs_student"]["mdd"] == pytest.approx(0.030966, abs=1e-5)
    # trained - random: 0.09, 0.12, 0.09 -> mean 0.10
    assert rows["random_teacher"]["control_of"] == "kd_pool"
    assert rows["random_teacher"]["vs_trained"]["mean"] == pytest.approx(0.10)
    assert "vs_trained" not in rows["kd_pool"]


def test_teacher_checkpoint_selection_links_the_chosen_one_and_reports_both(tmp_path):
    recipe = Recipe("smoke", tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    for name in ("best", "last"):
        (models / f"teacher_{name}.pt").write_text(name)
        (models / f"teacher_{name}.preprocessing.json").write_text("{}")
    trained = {"train_s": 1.0, "best_val_miou": 0.836, "best_epoch": 8, "epochs": 30,
               "best": {"miou": 0.544, "dice": 0.5}, "last": {"miou": 0.743, "dice": 0.7}}  # fmt: skip
    row = select_teacher(recipe, trained, "last")
    assert (row["miou"], row["epoch"], row["checkpoint"]) == (0.743, 30, "last")
    assert (models / "teacher.pt").read_text() == "last" and (models / "teacher.preprocessing.json").exists()
    row = select_teacher(recipe, trained, "best")
    assert (row["miou"], row["epoch"]) == (0.544, 8) and (models / "teacher.pt").read_text() == "best"
    text = _teacher_scores(row)
    assert "0.5440 at its best validation epoch (8, validation mIoU 0.8360), 0.7430 at its last (30)" in text
    with pytest.raises(ValueError, match="teacher_checkpoint"):
        select_teacher(recipe, trained, "middle")


def test_arm_list_and_the_random_teacher_control():
    arms = {a.name: a for a in protocol_arms("cwd", LAMBDAS, 1e-4, "/pool", {"epochs": 25})}
    assert list(arms) == ["none", "kd", "kd_pool", "coco", "coco_std", "kd_coco_pool", "full_pool", "cwd",
                          "noop", "random_teacher"]  # fmt: skip
    assert arms["coco"].overrides == {"distill": "coco", "use_paraphraser": False, "coco_standardize": False,
                                      "lambda_coco": 0.5, "lambda_adv": 0}  # fmt: skip
    assert (
        arms["coco_std"].overrides["coco_standardize"] is True
        and arms["coco_std"].overrides["lambda_coco"] == 0.75
    )
    assert (
        arms["kd_coco_pool"].distill == "kd_coco"
        and arms["kd_coco_pool"].overrides["unlabelled_dir"] == "/pool"
    )
    assert arms["kd_coco_pool"].overrides["epochs"] == 25 and "epochs" not in arms["kd"].overrides
    assert arms["full_pool"].overrides["lambda_adv"] == 0.1  # the full method: the paper's critic
    control = arms["random_teacher"]
    assert control.teacher == "random" and control.overrides == arms["kd_pool"].overrides
    assert all(a.teacher == "trained" for n, a in arms.items() if n != "random_teacher")
    # without a pool the control is KD's; an unknown control is refused
    assert protocol_arms("kd", LAMBDAS, 1e-4)[-1].overrides == {"distill": "kd", "lambda_adv": 0}
    with pytest.raises(ValueError, match="control"):
        protocol_arms("kd", LAMBDAS, 1e-4, "/pool", control="nope")


def test_the_control_runs_from_its_own_folder(tmp_path):
    recipe = Recipe("smoke", tmp_path)
    source = tmp_path / "models" / "random_teacher"
    source.mkdir(parents=True)
    for name in ("teacher.pt", "teacher.preprocessing.json", "paraphraser.pt"):
        (source / name).write_text(name)
    folder = link_prerequisites(recipe, "random_teacher_s3", source)
    assert folder == tmp_path / "models" / "random_teacher_s3"
    for name in ("teacher.pt", "teacher.preprocessing.json", "paraphraser.pt"):
        assert (folder / name).stat().st_ino == (source / name).stat().st_ino


def test_pool_subset_budget_and_curve_arms(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in (3, 1, 2, 0):
        (pool / f"slide{i:03d}_00.jpg").write_text(str(i))
    folder = Path(pool_subset(pool, 2, tmp_path / "p2"))
    assert sorted(p.name for p in folder.iterdir()) == ["slide000_00.jpg", "slide001_00.jpg"]
    with pytest.raises(ValueError, match="holds 4"):
        pool_subset(pool, 5, tmp_path / "p5")
    budget = budget_overrides(25, 10)
    assert budget == {"epochs": 25, "train#trainer#epoch_length": 10, "iterations": 250}
    kd_pool = {a.name: a for a in protocol_arms("kd", LAMBDAS, 1e-4, "/pool")}["kd_pool"]
    arms = curve_arms(kd_pool, {256: "/p256", 64: "/p64"}, budget)
    assert [a.name for a in arms] == ["kd_pool_64", "kd_pool_256"]
    assert arms[1].overrides == {"distill": "kd", "lambda_adv": 0, "unlabelled_dir": "/p256", **budget}
    longer = budget_arms(kd_pool, 1024, "/p1024", [50, 100], 10)
    assert [a.name for a in longer] == ["kd_pool_1024_500it", "kd_pool_1024_1000it"]
    assert longer[1].label == "+ KD, + pool (1024 tiles), 1000 iterations"
    assert longer[0].overrides == {"distill": "kd", "lambda_adv": 0, "unlabelled_dir": "/p1024", "epochs": 50,
                                   "train#trainer#epoch_length": 10, "iterations": 500}  # fmt: skip


def run(arm: str, seed: int, miou: float) -> dict:
    """A finished arm's row, as the protocol's results hold it."""
    return {"arm": arm, "seed": seed, "miou": miou, "train_s": 2.0}


def test_curve_summary_by_hand():
    runs = [run("none", s, m) for s, m in enumerate((0.40, 0.42, 0.44))]  # mean 0.42; teacher 0.62: gap 0.20
    runs += [run("kd_pool_64", s, m) for s, m in enumerate((0.44, 0.47, 0.50))]  # +0.04, +0.05, +0.06
    runs += [run("kd_pool_256", s, m) for s, m in enumerate((0.50, 0.52, 0.54))]  # +0.10 each: sd 0
    result = {
        "teacher": {"miou": 0.62, "checkpoint": "last"},
        "runs": runs,
        "curve": {"arm": "kd_pool", "seeds": [0, 1, 2], "pools": {"256": "/p256", "64": "/p64"},
                  "arms": [{"name": "kd_pool_64"}, {"name": "kd_pool_256"}]},
    }  # fmt: skip
    rows = summarise_curve(result)
    assert [r["pool"] for r in rows] == [64, 256]
    # pool 64: mean +0.05, sd 0.01, half width 4.302653 * 0.01 / sqrt(3) = 0.024841: 25 % ± 12.4 % closed
    assert rows[0]["gap_closed"] == pytest.approx(0.25)
    assert rows[0]["gap_closed_low"] == pytest.approx((0.05 - 0.024841) / 0.20, abs=1e-5)
    assert rows[0]["gap_closed_high"] == pytest.approx((0.05 + 0.024841) / 0.20, abs=1e-5)
    assert rows[1]["gap_closed"] == pytest.approx(0.5) and rows[1]["vs_student"]["mdd"] == pytest.approx(0.0)
    text = _curve_section(
        {**result, "settings": {"confidence": 0.95}, "unlabelled_pool": "/pool",
         "curve": {**result["curve"], "budget": budget_overrides(25, 10)}}, rows)  # fmt: skip
    assert "| 64 | 0.4700 ± 0.0300 |" in text and "25 % [13 %, 37 %]" in text
    assert summarise_curve({"teacher": {"miou": 0.6}, "runs": []}) == []


def test_comparison_at_the_largest_pool_by_hand():
    runs = [run("none", s, m) for s, m in enumerate((0.40, 0.42, 0.44, 0.42))]  # mean 0.42, teacher 0.62
    runs += [run("kd_pool_1024", s, m) for s, m in enumerate((0.55, 0.57, 0.59, 0.57))]  # +0.15 each
    runs += [run("kd_coco_pool_1024", s, m) for s, m in enumerate((0.54, 0.57, 0.57, 0.55))]
    arms = [{"name": "kd_pool_1024", "label": "+ KD, + pool (1024 tiles)"},
            {"name": "kd_coco_pool_1024", "label": "+ KD + CoCo, + pool (1024 tiles)"}]  # fmt: skip
    result = {
        "teacher": {"miou": 0.62},
        "runs": runs,
        "settings": {"confidence": 0.95, "mdd_goal": 0.03},
        "compare": {"pool": 1024, "seeds": [0, 1, 2, 3, 4], "budget": budget_overrides(25, 10), "arms": arms},
    }  # seed 4 never ran
    rows = summarise_comparison(result)
    assert [r["n"] for r in rows] == [4, 4] and "vs_reference" not in rows[0]
    assert rows[0]["gap_closed"] == pytest.approx(0.75) and rows[0]["vs_student"]["mdd"] == pytest.approx(0)
    # differences -0.01, 0, -0.02, -0.02: mean -0.0125, sd 0.009574; t(0.975, 3) = 3.182446
    d = rows[1]["vs_reference"]
    assert d["mean"] == pytest.approx(-0.0125) and d["sd"] == pytest.approx(0.0095743, abs=1e-6)
    assert d["high"] == pytest.approx(-0.0125 + 3.182446 * 0.0095743 / 2, abs=1e-6)
    # MDD: (t(0.975, 3) + t(0.8, 3)) * sd / sqrt(4), t(0.8, 3) = 0.978472
    assert d["mdd"] == pytest.approx((3.182446 + 0.978472) * 0.0095743 / 2, abs=1e-6)
    text = _comparison_section(result, rows)
    assert text.startswith("## 6. At the curve's largest pool (1024 tiles), on 4 seeds")
    assert "budget (250 iterations)" in text and "| + KD, + pool (1024 tiles) | 0.5700 ± 0.0163 |" in text
    assert "rules out a gain above +0.0027 mIoU" in text and "(within the goal of 0.03)" in text
    assert summarise_comparison({"curve": {"arm": "kd_pool"}, "runs": []}) == []
    assert summarise_comparison({"compare": {"skipped": "no unlabelled pool"}, "runs": []}) == []


def test_longer_budgets_at_the_largest_pool_by_hand():
    runs = [run("none", s, m) for s, m in enumerate((0.40, 0.42, 0.44))]  # mean 0.42, teacher 0.62: gap 0.20
    runs += [run("kd_pool_1024", s, m) for s, m in enumerate((0.55, 0.57, 0.59))]  # 75 % closed
    runs += [run("kd_pool_1024_500it", s, m) for s, m in enumerate((0.59, 0.60, 0.63))]  # +0.04, +0.03, +0.04
    arms = [{"name": "kd_pool_1024", "label": "+ KD, + pool (1024 tiles)"},
            {"name": "kd_pool_1024_500it", "label": "+ KD, + pool (1024 tiles), 500 iterations"}]  # fmt: skip
    result = {
        "teacher": {"miou": 0.62},
        "runs": runs,
        "settings": {"confidence": 0.95, "mdd_goal": 0.03},
        "curve": {"budget": budget_overrides(25, 10),
                  "budgets": {"pool": 1024, "seeds": [0, 1, 2], "arms": arms}},
        "compare": {"pool": 1024, "seeds": [0, 1], "arms": arms[:1]},
    }  # fmt: skip
    rows = summarise_comparison(result, part="budgets")
    assert [r["n"] for r in rows] == [3, 3]
    # 500 iterations: +0.19, +0.18, +0.19 over the student alone, 93.3 % of the gap of 0.20; +0.03667 over
    # 250 iterations (+0.04, +0.03, +0.04), sd 0.005774, t(0.975, 2) = 4.302653
    assert rows[1]["gap_closed"] == pytest.approx(0.28 / 3 / 0.10)
    d = rows[1]["vs_reference"]
    assert d["mean"] == pytest.approx(0.036667, abs=1e-6)
    assert d["low"] == pytest.approx(0.036667 - 4.302653 * 0.0057735 / 3**0.5, abs=1e-5)
    text = _comparison_section(result, rows, "budgets")
    assert text.startswith("### 5.1 At the largest pool (1024 tiles), trained longer")
    assert "budget (250 iterations)" in text and "seeds [0, 1, 2]" in text
    assert "a resolved gain, of at least +0.0223 mIoU." in text
    assert summarise_comparison(result)[0]["n"] == 2  # the comparison's own seeds, unchanged
