"""training_scalars on a trainer-like output and a real optimiser."""

from __future__ import annotations

import torch

from monai_coco.handlers import training_scalars


def test_training_scalars_keep_every_scalar_term_by_name_and_add_the_learning_rate():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.25)
    output = {"image": torch.zeros(2, 3, 4, 4), "loss": torch.tensor(1.5), "ce": 1.0, "coco": 0.5}
    assert training_scalars()(output) == {"loss": 1.5, "ce": 1.0, "coco": 0.5}
    scalars = training_scalars(optimizer)
    optimizer.param_groups[0]["lr"] = 0.125  # read at call time, as a scheduler changes it
    assert scalars(output) == {"loss": 1.5, "ce": 1.0, "coco": 0.5, "lr": 0.125}



def test_training_scalars_read_the_first_item_of_a_decollated_output():
    items = [{"image": torch.zeros(3, 4, 4), "loss": torch.tensor(2.0), "ce": 2.0} for _ in range(2)]
    assert training_scalars()(items) == {"loss": 2.0, "ce": 2.0}
