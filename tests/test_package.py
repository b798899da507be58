"""The package as users and bundle configs meet it: its version, the short ``_target_`` names a config
resolves after ``import monai_coco`` alone (checked in a fresh interpreter, where nothing else has been
imported), and every public name of the release before the floor-plan move still importable from where
it was, or removed by 0.2.0 and listed in the changelog with its new home. (``python -m
monai_coco.data.check DIR`` is run as a command in ``tests/data/test_check.py``.)
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import monai_coco

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (the "test" extra)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# Every public class, by the short name a bundle config writes as ``_target_``.
SHORT_TARGETS = {
    "monai_coco.networks": ("FANet", "FeatureTaps", "LogitCritic", "MobileUNet", "Paraphraser"),
    "monai_coco.losses": (
        "AttentionTransferLoss",
        "ChannelWiseDistillationLoss",
        "CoCoDistillationLoss",
        "FSPLoss",
        "MultiPairCoCoDistillationLoss",
        "PairwiseSimilarityLoss",
        "PixelwiseKDLoss",
    ),
    "monai_coco.engines": (
        "DistillationTerm", "DistillationTrainer", "MultiTermTrainer", "ParaphraserTrainer"
    ),
    "monai_coco.handlers": (
        "AdversarialDistillationHandler",
        "ExitOnError",
        "PathologySegmentationMetric",
        "ResumableCheckpoint",
    ),
    "monai_coco.metrics": ("SegmentationConfusionMatrix",),
    "monai_coco.data": (
        "ColorChannels",
        "ColorChannelsd",
        "LazyTiffFileWSIReader",
        "Slide",
        "SyntheticGastricTissue",
        "TissueMap",
    ),
    "monai_coco.inference": ("InferenceResult", "SlideInferenceConfig"),
}

# The ``__all__`` of every module of the last release before the floor-plan move (commit 841d065), for
# each module that still exists; the subpackages re-export what moved up a floor. Removed on purpose since
# then: ``write_mask_pyramid`` (mask pyramids are pyramidal OME-TIFFs now: ``write_ome_pyramid``, which
# takes the map, not bands and the slide's level sizes), ``SLIDE_BACKENDS`` (now ``SLIDE_READERS``, with
# ``auto``) and ``slide_io.SLIDE_SUFFIXES`` (which files of a folder are slides is ``suffixes``' business).
PUBLIC_BEFORE_THE_MOVE = {
    "monai_coco.data": (
        "IMAGE_SUFFIXES", "ColorChannels", "ColorChannelsd", "DataProblem", "SyntheticGastricTissue",
        "check_dataset", "load_paired_datalist", "synthetic_tile", "write_synthetic_dataset",
        "write_synthetic_slide", "LazyTiffFileWSIReader", "Slide", "read_image",
        "TissueMap", "detect_tissue", "synthetic_dataset",
    ),
    "monai_coco.data.check": ("main",),
    "monai_coco.data.slide_io": (
        "LazyTiffFileWSIReader", "Slide", "read_image", "is_slide", "read_tiff_region", "TILE_SUFFIXES",
        "TIFF_SUFFIXES",
    ),
    "monai_coco.data.synthetic": (
        "EOSIN_OD", "HEMATOXYLIN_OD", "SyntheticGastricTissue", "synthetic_tile", "write_synthetic_dataset",
        "write_synthetic_slide",
    ),
    "monai_coco.data.synthetic.world": (
        "EOSIN_OD", "HEMATOXYLIN_OD", "SyntheticGastricTissue", "derive_seed"
    ),
    "monai_coco.data.synthetic.writers": (
        "synthetic_tile", "write_synthetic_dataset", "write_synthetic_slide"
    ),
    "monai_coco.data.tissue": ("detect_tissue", "TissueMap"),
    "monai_coco.data.transforms": ("LUMA_WEIGHTS", "ColorChannels", "ColorChannelsd"),
    "monai_coco.engines": (
        "TEACHER_PRED", "TERMS", "DistillationTerm", "DistillationTrainer", "MultiTermTrainer",
        "ParaphraserTrainer", "load_checkpoint", "load_module_state", "save_checkpoint",
    ),
    "monai_coco.engines.distillation": (
        "DistillationTerm", "DistillationTrainer", "TEACHER_PRED", "feature_taps"
    ),
    "monai_coco.engines.multi_term": ("MultiTermTrainer", "TERMS"),
    "monai_coco.engines.paraphraser": ("ParaphraserTrainer",),
    "monai_coco.handlers": ("AdversarialDistillationHandler", "ResumableCheckpoint"),
    "monai_coco.handlers.adversarial": ("AdversarialDistillationHandler",),
    "monai_coco.handlers.resume": ("ResumableCheckpoint",),
    "monai_coco.losses": (
        "AttentionTransferLoss", "ChannelWiseDistillationLoss", "CoCoDistillationLoss", "FSPLoss",
        "MultiPairCoCoDistillationLoss", "PairwiseSimilarityLoss", "PixelwiseKDLoss", "adversarial",
    ),
    "monai_coco.losses.adversarial": ("critic_loss", "generator_loss", "gradient_penalty"),
    "monai_coco.losses.baselines": (
        "AttentionTransferLoss", "ChannelWiseDistillationLoss", "FSPLoss", "PairwiseSimilarityLoss",
        "PixelwiseKDLoss",
    ),
    "monai_coco.losses.coco": (
        "CoCoDistillationLoss", "MultiPairCoCoDistillationLoss", "PerImageLoss", "align_feature_pairs",
        "correlation_gap", "max_pool_by_fraction", "reduce_per_image",
        "validate_pool_scale",
    ),
    "monai_coco.metrics": (
        "SegmentationConfusionMatrix", "segmentation_scores", "METRIC_NAMES"
    ),
    "monai_coco.networks": (
        "FANet", "FeatureTaps", "LogitCritic", "MobileUNet", "Paraphraser", "tap_channels"
    ),
    "monai_coco.networks.critic": ("LogitCritic", "SelfAttention2d"),
    "monai_coco.networks.fanet": ("FANet", "SelectiveKernelConv", "SKResidualBlock", "StripPooling"),
    "monai_coco.networks.mobile_unet": ("InvertedResidual", "MobileUNet"),
    "monai_coco.networks.paraphraser": ("Paraphraser",),
    "monai_coco.networks.summary": ("FLOP_CONVENTIONS", "count_flops", "count_parameters", "main"),
    "monai_coco.networks.taps": ("FeatureTaps",),
}  # fmt: skip

# Modules of that release renamed by the move (so that names say what a module holds), and where their
# public names live now; the old module paths themselves are gone.
RENAMED_MODULES = {
    "monai_coco.data.gastric": (
        "monai_coco.data.datalist", ("IMAGE_SUFFIXES", "DataProblem", "check_dataset", "load_paired_datalist")
    ),
    "monai_coco.data.slides": (
        "monai_coco.inference",
        ("SlideInferenceConfig", "InferenceResult", "scale_to_unit", "segment_image", "infer_file",
         "infer_path", "BLEND_MODES"),
    ),
    "monai_coco.data.infer": ("monai_coco.inference.__main__", ("main",)),
    "monai_coco.data.bundle_data": (
        "monai_coco.data.synthetic", ("SYNTHETIC_SPLITS", "synthetic_dataset")
    ),
    "monai_coco.engines.checkpoints": (
        "monai_coco.checkpoints", ("save_checkpoint", "load_checkpoint", "load_module_state")
    ),
    "monai_coco.networks.probe": ("monai_coco.networks.taps", ("tap_channels",)),
}  # fmt: skip

# Names 0.2.0 removed from their old place (bundle/docs/changelog.md lists each): (old module, name, new)
REMOVED_IN_0_2_0 = [
    (old, name, new)
    for old, new, names in (
        ("monai_coco.config_checks", "monai_coco.bundle.checks",
         ("check_choice", "check_path", "check_roi_size", "exit_on_error")),
        ("monai_coco.config_checks", "monai_coco.fail", ("fail",)),
        ("monai_coco.config_checks", "monai_coco.bundle.stages", ("load_prerequisite", "bundle_datalist")),
        ("monai_coco.data", "monai_coco.inference",
         ("InferenceResult", "SlideInferenceConfig", "infer_file", "infer_path", "segment_image")),
        ("monai_coco.losses.coco", "monai_coco.losses.per_image", ("check_same_grid",)),
        ("monai_coco.metrics", "monai_coco.handlers", ("PathologySegmentationMetric",)),
        ("monai_coco.checkpoints", "monai_coco.atomic_files",
         ("atomic_path", "atomic_write", "remove_partial_writes")),
        ("monai_coco.checkpoints", "monai_coco.folder_lock", ("FolderLock",)),
    )
    for name in names
]  # fmt: skip

_RESOLVE = """
import json, sys, warnings
import monai_coco
from monai.bundle import ConfigParser
targets = json.loads(sys.argv[1])
config = {name: {"_target_": name, "_mode_": "callable"} for names in targets.values() for name in names}
parser = ConfigParser(config)
found = {}
with warnings.catch_warnings():
    warnings.simplefilter("error")  # MONAI warns, and picks one, when a short name is defined twice
    for name in config:
        try:
            component = parser.get_parsed_content(name)
            found[name] = component.__module__ + "." + component.__qualname__
        except Exception as e:
            found[name] = "error: " + str(e).splitlines()[0]
print(json.dumps(found))
"""


def test_version_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert monai_coco.__version__ == meta["project"]["version"] == "0.2.0"


def test_short_target_names_resolve_after_import_monai_coco_alone():
    """A fresh interpreter imports ``monai_coco`` and nothing else of it, then MONAI's ``ConfigParser``
    resolves every short ``_target_`` to the package's class (once: no clash with MONAI's own names)."""
    run = subprocess.run(
        [sys.executable, "-c", _RESOLVE, json.dumps(SHORT_TARGETS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    for package, names in SHORT_TARGETS.items():
        for name in names:
            obj = getattr(importlib.import_module(package), name)
            assert found[name] == f"{obj.__module__}.{obj.__qualname__}", (name, found[name])


@pytest.mark.parametrize("module", sorted(PUBLIC_BEFORE_THE_MOVE))
def test_public_names_from_before_the_move_import_from_their_old_place(module):
    imported = importlib.import_module(module)
    missing = [name for name in PUBLIC_BEFORE_THE_MOVE[module] if not hasattr(imported, name)]
    assert not missing, f"{module}: {missing}"


@pytest.mark.parametrize("old", sorted(RENAMED_MODULES))
def test_renamed_modules_names_live_in_their_new_module(old):
    new, names = RENAMED_MODULES[old]
    module = importlib.import_module(new)
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{old} -> {new}: {missing}"


@pytest.mark.parametrize(("old", "name", "new"), REMOVED_IN_0_2_0)
def test_names_removed_in_0_2_0_live_in_their_new_module_and_the_changelog_says_where(old, name, new):
    assert hasattr(importlib.import_module(new), name), (new, name)
    changelog = (ROOT / "bundle" / "docs" / "changelog.md").read_text()
    assert f"`{old}.{name}`" in changelog and f"`{new}`" in changelog, (old, name, new)
    try:
        gone = not hasattr(importlib.import_module(old), name)
    except ModuleNotFoundError:
        gone = True
    assert gone, f"{old}.{name} is still there"
