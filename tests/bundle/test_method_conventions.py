"""The method's conventions in the bundle's configs, built in process: the authors' step-down learning-rate
schedule on top of poly(0.9) and the critic's poly decay (method.md §5, §6)."""

from __future__ import annotations

import pytest
from bundle_runs import CONFIGS, CRITIC, PAPER
from monai.bundle import ConfigParser

from monai_coco.handlers import AdversarialDistillationHandler


def _parser(*configs: str, **overrides) -> ConfigParser:
    """The repository's configs, parsed in process; the training loader replaced by ``overrides``."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / name) for name in ("base.yaml", *configs)])
    parser.update(overrides)
    parser.parse()
    return parser


@pytest.mark.parametrize("gamma", [0.1, 1.0])
def test_the_learning_rate_is_poly_with_the_authors_step_downs(gamma):
    # 4 epochs of 10 iterations, a step-down every 2 epochs: lr_t = base · gamma^⌊t/20⌋ · (1 − t/40)^0.9
    parser = _parser(
        "train.yaml", epochs=4, lr_step_epochs=2, lr_step_gamma=gamma, **{"train#dataloader": list(range(10))}
    )
    schedule = parser.get_parsed_content("lr_scheduler")
    optimizer = parser.get_parsed_content("optimizer")
    seen = []
    for _ in range(40):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = [3e-3 * gamma ** (t // 20) * (1 - t / 40) ** 0.9 for t in range(40)]
    assert seen == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_the_default_schedule_is_the_authors():
    config = _parser("train.yaml").get()
    assert (config["lr_step_epochs"], config["lr_step_gamma"], config["lr_power"]) == (50, 0.1, 0.9)


def test_the_critic_learning_rate_decays_by_poly_over_the_run():
    parser = _parser("train.yaml", epochs=3, **CRITIC, **PAPER, **{"train#dataloader": list(range(5))})
    handler = parser.get_parsed_content("adversarial")
    assert isinstance(handler, AdversarialDistillationHandler) and handler.gp_score == "sum"
    seen = []
    for _ in range(15):
        seen.append(handler.optimizer.param_groups[0]["lr"])
        handler.optimizer.step()
        handler.lr_scheduler.step()
    assert seen == pytest.approx([2e-5 * (1 - t / 15) ** 0.9 for t in range(15)], rel=1e-9, abs=1e-18)


@pytest.mark.parametrize(
    ("overrides", "max_bytes"),
    [({}, 2048 << 20), ({"teacher_cache_mb": 0}, 0), ({"stain_augmentation": True}, 0)],
)
def test_train_yaml_caches_the_teachers_outputs_unless_the_inputs_never_repeat(overrides, max_bytes):
    """The teacher cache of the distillation stage: 2 GiB by default; off when asked, and with stain
    augmentation (a random intensity change makes every input new, so nothing would ever be reused)."""
    from bundle_runs import parse_stage

    from monai_coco.settings import check_settings

    parser = parse_stage("train.yaml", overrides)
    assert parser.get_parsed_content("train#trainer#teacher_cache").max_bytes == max_bytes
    expected = r"teacher_cache_mb=-1 is not valid; expected a finite number >= 0 \(MiB\)"
    with pytest.raises(SystemExit, match=expected):
        check_settings({"teacher_cache_mb": -1})
