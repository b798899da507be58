"""scripts/demo_report.py: the panel caption's score of one tile, by hand."""

from __future__ import annotations

import numpy as np
import pytest
from demo_report import tile_score


def test_a_tile_with_cancer_gets_its_dice():
    truth = np.zeros((4, 4), dtype=np.int64)
    truth[:2] = 1  # 8 cancer pixels
    pred = np.zeros_like(truth)
    pred[1:3] = 1  # 8 predicted, 4 of them right: Dice = 2*4 / (8+8)
    assert tile_score(pred, truth) == "Dice 0.50"
    assert tile_score(truth, truth) == "Dice 1.00"


@pytest.mark.parametrize(("stray", "caption"), [(0, "0.0"), (1, "1.6"), (64, "100.0")])
def test_a_tile_without_cancer_gets_no_dice_but_its_false_cancer_share(stray, caption):
    truth = np.zeros((8, 8), dtype=np.int64)
    pred = np.zeros_like(truth)
    pred.flat[:stray] = 1  # 1 of 64 pixels: 1.5625 %
    assert tile_score(pred, truth) == f"Dice n/a (no cancer)\nfalse cancer {caption}% px"
