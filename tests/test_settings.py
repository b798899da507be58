"""Every setting declared once (``monai_coco.settings``): its checks by hand, and every front door reading
it: the bundle's stages, the command line, ``SlideInferenceConfig``."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import pytest
from monai.bundle import ConfigParser
from monai.bundle.reference_resolver import ReferenceResolver

from monai_coco.bundle.overrides import _stage_ids
from monai_coco.inference import SlideInferenceConfig
from monai_coco.inference.__main__ import main as inference_main
from monai_coco.settings import SETTINGS, Setting, check_settings

CONFIGS = Path(__file__).resolve().parents[1] / "bundle" / "configs"
STAGES = {"train_teacher.yaml": "training", "train_paraphraser.yaml": "training", "train.yaml": "training",
          "evaluate.yaml": "evaluating", "inference.yaml": "inference"}  # fmt: skip
TRAINING_ONLY = {"epochs", "learning_rate", "lambda_coco", "lambda_adv", "paraphraser_epochs", "n_labelled"}


@pytest.mark.parametrize(
    ("setting", "valid", "invalid", "expected"),
    [
        (Setting("a", bool, False, ""), [True, False], [0, 1, "false", None],
         "True or False (the command line reads `false` as text: write False)"),
        (Setting("n", int, 1, "", unit="epochs", minimum=1), [1, 7], [0, 2.0, True, "3", None],
         "a whole number >= 1 (epochs)"),
        (Setting("x", float, 0.5, "", minimum=0, maximum=0.99), [0, 0.99, 0.5], [-0.01, 1.0, math.nan, "0.5"],
         "a finite number in [0, 0.99]"),
        (Setting("r", float, 1, "", minimum=0, above=True), [1e-9, 3], [0, -1, math.inf, False],
         "a finite number > 0"),
        (Setting("g", float, 0.1, "", minimum=0, maximum=1, above=True), [1, 0.1], [0, 1.5],
         "a finite number in (0, 1]"),
        (Setting("c", str, "u", "", choices=("u", "v")), ["u", "v"], ["w", None, 1], "one of 'u', 'v'"),
        (Setting("o", int, None, "", minimum=1, none_means="all"), [None, 1], [0, "none"],
         "None (all) or a whole number >= 1"),
    ],
)  # fmt: skip
def test_a_setting_takes_its_kind_and_range_and_says_what_it_expects(setting, valid, invalid, expected):
    assert setting.expected == expected
    assert all(setting.is_valid(v) for v in valid)
    assert not any(setting.is_valid(v) for v in invalid)
    with pytest.raises(ValueError, match=r"^Owner\." + setting.name + r"="):
        setting.validate(invalid[0], owner="Owner.")


def test_check_settings_is_one_line_naming_the_first_bad_setting_and_refuses_an_undeclared_name():
    assert check_settings({"epochs": 3, "overlap": 0.5}) == {"epochs": 3, "overlap": 0.5}
    with pytest.raises(SystemExit) as stop:
        check_settings({"epochs": 3, "overlap": 1.0, "seed": -1})
    assert str(stop.value) == "monai_coco: overlap=1.0 is not valid; expected a finite number in [0, 0.99]."
    with pytest.raises(KeyError):
        check_settings({"not_declared": 1})


def test_slide_inference_config_takes_its_defaults_and_ranges_from_the_declarations():
    fields = {f.name: f.default for f in dataclasses.fields(SlideInferenceConfig)}
    declared = {name: fields[name] for name in fields if name in SETTINGS}
    assert len(declared) >= 15 and all(SETTINGS[n].default == v for n, v in declared.items())
    for name in declared:  # the dataclass refuses what the declaration refuses, naming the field
        bad = "not a value" if SETTINGS[name].kind is not str else 12
        with pytest.raises(ValueError, match=rf"^SlideInferenceConfig\.{name}=.* is not valid; expected "):
            SlideInferenceConfig(**{name: bad})


def test_the_command_line_parses_and_checks_with_the_declarations(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    for name in ("overlap", "num_threads", "amp", "runtime"):
        SETTINGS[name].add_argument(parser)
    args = parser.parse_args(["--threads", "none", "--no-amp", "--runtime", "torch"])
    assert (args.overlap, args.num_threads, args.amp, args.runtime) == (0.25, None, False, "torch")
    with pytest.raises(SystemExit) as stop:
        inference_main([str(tmp_path), str(tmp_path / "out"), "--checkpoint", "x.pt", "--overlap", "1.5"])
    assert stop.value.code == 2
    expected = "error: argument --overlap: '1.5' is not valid; expected a finite number in [0, 0.99]\n"
    assert capsys.readouterr().err == expected  # one line, no usage block


def _load(stage: str) -> dict:
    return ConfigParser.load_config_files([str(CONFIGS / "base.yaml"), str(CONFIGS / stage)])


def _referenced(config: dict, start: str) -> set[str]:
    """``start`` and every id it references, transitively (what resolving ``start`` resolves)."""
    parser = ConfigParser(config)
    parser.resolve_macro_and_relative_ids()
    todo, seen = [start], set()
    while todo:
        id_ = todo.pop()
        if id_ not in seen and id_ in parser:
            seen.add(id_)
            refs = ReferenceResolver.find_refs_in_config(parser[id_], id_)
            todo += [ref.replace(ReferenceResolver.sep, "#") for ref in refs]
    return seen


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_checks_every_declared_setting_it_uses_first_and_only_those(stage):
    config = _load(stage)
    used = _stage_ids(config, STAGES[stage])
    checked = _referenced(config, "settings")
    unchecked = sorted(name for name in SETTINGS if name in used and name not in checked)
    assert unchecked == [], f"{stage} uses but does not check {unchecked}"
    if stage in ("evaluate.yaml", "inference.yaml"):
        assert not TRAINING_ONLY & checked, f"{stage} checks training settings"
        assert "teacher_def" not in used, f"{stage} builds the teacher"


def test_the_configs_state_each_declared_default():
    """The configs state a setting's default literally (for readers); it must be the declared one. A stage
    file's value of a setting that base.yaml states too is that stage's own (teacher.pt), not the default."""
    stated = {}
    base = ConfigParser.load_config_file(CONFIGS / "base.yaml")
    for path in [CONFIGS / "base.yaml", *(CONFIGS / stage for stage in STAGES)]:
        for name, value in (ConfigParser.load_config_file(path) or {}).items():
            literal = not (isinstance(value, str) and value[:1] in "$@%")
            if name in SETTINGS and literal and (path.name == "base.yaml" or name not in base):
                stated[name] = value
    assert {"epochs", "overlap", "reader", "seed", "min_tissue_fraction"} <= set(stated)
    assert {n: v for n, v in stated.items() if v != SETTINGS[n].default} == {}


@pytest.mark.parametrize(
    ("value", "typed"),
    [(("site1", "site2"), "site1,site2"), (2024, "2024"), (1.5, "1.5")],
)
def test_text_the_command_line_read_as_another_type_is_refused_with_how_to_quote_it(value, typed):
    """python-fire reads ``a,b`` as a tuple and ``2024`` as a number; a text setting says how to type it."""
    with pytest.raises(ValueError) as error:
        SETTINGS["model_name"].validate(value)
    assert str(error.value) == (
        f"model_name={value!r} is not valid; expected text (the command line read {typed} as "
        f"{type(value).__name__}: quote it, --model_name \"'{typed}'\")."
    )
    assert SETTINGS["model_name"].validate("2024") == "2024"
