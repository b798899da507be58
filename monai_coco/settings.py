"""Every user-facing setting, declared once: its type, range, unit, default and meaning.

Each front door reads a setting from here (``bundle/docs/design.md``, "Conventions"):

* the bundle's configs check theirs with :func:`check_settings` (one line naming a bad value);
* the command line ``python -m monai_coco.inference`` builds its options with :meth:`Setting.add_argument`
  (type, default, help);
* :class:`~monai_coco.inference.SlideInferenceConfig` takes its defaults from :data:`SETTINGS` and checks
  its fields with :meth:`Setting.validate` (``ValueError`` for the Python API).

Adding a setting: declare it in :data:`SETTINGS`, use it in one config (and add it to that stage's
``check_settings``), and test it. ``tests/test_settings.py`` checks that every declared setting a stage's
configs define is checked by that stage and that each config's literal default is the declared one.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monai_coco.data.slide_io import SLIDE_READERS
from monai_coco.data.slide_mpp import MAX_INCH_MPP, MIN_MPP
from monai_coco.fail import fail

__all__ = ["SETTINGS", "Setting", "check_settings"]

_BOOLEAN = "True or False (the command line reads `false` as text: write False)"


@dataclass(frozen=True)
class Setting:
    """One setting: what it holds and which values are valid.

    Args:
        name: the config id (and ``SlideInferenceConfig`` field); the command line's flag is
            ``--name-with-dashes`` unless ``flag`` says otherwise.
        kind: ``bool``, ``int``, ``float`` or ``str``; an ``int`` is no ``bool``, a ``float`` setting also
            takes an ``int`` and must be finite.
        default: the value when none is given (the bundle's configs state the same literal).
        doc: what it means, for ``--help`` and the docs.
        unit: e.g. ``"µm/px"``, ``"epochs"``; shown after the range.
        minimum, maximum: the valid range (inclusive unless ``above``: then ``> minimum``).
        above: the minimum is exclusive.
        none_means: when not empty, ``None`` is valid and means this.
        choices: the valid values of a ``str`` (or ``int``) setting.
        flag: the command line's flag, when not ``--name-with-dashes``.
    """

    name: str
    kind: type
    default: Any
    doc: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False
    none_means: str = ""
    choices: tuple[Any, ...] | None = None
    flag: str | None = None

    @property
    def expected(self) -> str:
        """What a valid value is, in words (the second half of every message about this setting)."""
        if self.kind is bool:
            text = _BOOLEAN
        elif self.kind is str and self.choices is None:
            text = "text" + (f" ({self.unit})" if self.unit else "")
        elif self.choices is not None:
            text = "one of " + ", ".join(map(repr, self.choices))
        else:
            text = "a whole number" if self.kind is int else "a finite number"
            low = "" if self.minimum is None else f"{'(' if self.above else '['}{self.minimum:g}"
            if self.maximum is not None:
                text += f" in {low or '(-inf'}, {self.maximum:g}]"
            elif self.minimum is not None:
                text += f" {'>' if self.above else '>='} {self.minimum:g}"
            if self.unit:
                text += f" ({self.unit})"
        return f"None ({self.none_means}) or {text}" if self.none_means else text

    def is_valid(self, value: Any) -> bool:
        """Whether ``value`` is of this setting's kind and range."""
        if value is None:
            return bool(self.none_means)
        if self.kind is bool:
            return isinstance(value, bool)
        if isinstance(value, bool):
            return False
        if self.choices is not None:
            return value in self.choices
        if self.kind is int and not isinstance(value, int):
            return False
        if self.kind is float and not (isinstance(value, (int, float)) and math.isfinite(value)):
            return False
        if self.kind is str:
            return isinstance(value, str)
        if self.minimum is not None and (value <= self.minimum if self.above else value < self.minimum):
            return False
        return self.maximum is None or value <= self.maximum

    def validate(self, value: Any, owner: str = "") -> Any:
        """``value`` if valid.

        Args:
            value: the value to check.
            owner: prefix of the name in the message, e.g. ``"SlideInferenceConfig."``.

        Raises:
            ValueError: ``<owner><name>=<value> is not valid; expected <what>.``
        """
        if not self.is_valid(value):
            typed = self._typed(value)
            raise ValueError(f"{owner}{self.name}={value!r} is not valid; expected {self.expected}{typed}.")
        return value

    def _typed(self, value: Any) -> str:
        """For a text setting that the command line read as another type (python-fire reads ``2024`` as a
        number and ``a,b`` as a tuple), how to type it as text."""
        if self.kind is not str or self.choices is not None or not isinstance(value, (int, float, tuple)):
            return ""
        typed = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        kind = type(value).__name__
        return f" (the command line read {typed} as {kind}: quote it, --{self.name} \"'{typed}'\")"

    @property
    def option(self) -> str:
        """The command line's flag of this setting."""
        return self.flag or "--" + self.name.replace("_", "-")

    def add_argument(self, parser: argparse.ArgumentParser, default: Any = None, **kwargs: Any) -> None:
        """Add this setting to ``parser`` as :attr:`option`, of its type, with its default (``default`` when
        given) and doc (``help`` in ``kwargs`` replaces it); a ``bool`` setting becomes ``--flag`` /
        ``--no-flag``. The parsed value is validated (an argparse error naming the flag)."""

        def parse(text: str) -> Any:
            if self.none_means and text.lower() in ("none", "null"):
                return None
            try:
                value = self.kind(text)
            except ValueError:
                value = text
            if not self.is_valid(value):
                raise argparse.ArgumentTypeError(f"{text!r} is not valid; expected {self.expected}")
            return value

        value = self.default if default is None else default
        unit = f" ({self.unit})" if self.unit else ""
        shown = self.none_means if value is None and self.none_means else value
        kwargs.setdefault("help", f"{self.doc}{unit}; default: {shown}")
        if self.kind is bool:
            kwargs.setdefault("action", argparse.BooleanOptionalAction)
            parser.add_argument(self.option, dest=self.name, default=value, **kwargs)
            return
        if self.choices is not None:
            kwargs.setdefault("choices", self.choices)
        else:
            kwargs.setdefault("metavar", self.name.upper())
        parser.add_argument(self.option, dest=self.name, type=parse, default=value, **kwargs)


def _count(name: str, doc: str, default: Any, minimum: int = 1, unit: str = "", **kwargs: Any) -> Setting:
    return Setting(name, int, default, doc, unit=unit, minimum=minimum, **kwargs)


def _number(name: str, doc: str, default: Any, minimum: float = 0.0, **kwargs: Any) -> Setting:
    return Setting(name, float, default, doc, minimum=minimum, **kwargs)


def _switch(name: str, doc: str, default: bool = False, **kwargs: Any) -> Setting:
    return Setting(name, bool, default, doc, **kwargs)


_DECLARED: Sequence[Setting] = (
    # where things are (text: a value the command line reads as a number or a tuple is refused, with how to
    # quote it)
    Setting("dataset_dir", str, None, "a data folder or a JSON datalist", none_means="the built-in data"),
    Setting("unlabelled_dir", str, None, "unannotated tiles and slides (train.yaml)", none_means="none"),
    Setting("model_name", str, "model.pt", "the checkpoint a stage writes into, or reads from, ckpt_dir"),
    Setting("experiment_name", str, "monai_coco.student", "the MLflow experiment of --tracking mlflow"),
    Setting("run_name", str, None, "the MLflow run of --tracking mlflow", none_means="model_name's stem"),
    Setting("tracking_uri", str, None, "the store (URI) of --tracking mlflow", none_means="./mlruns.db"),
    Setting("output_root", str, None, "where models/, eval/, outputs/, logs/ go", none_means="bundle_root"),
    Setting("ckpt_dir", str, None, "the checkpoint folder", none_means="<output_root>/models"),
    Setting("output_dir", str, None, "evaluation's or inference's output folder", none_means="the stage's"),
    # training (bundle/docs/method.md §6 gives the paper's values)
    _count("seed", "seed of every random generator (MONAI's set_determinism)", 0, minimum=0),
    Setting(
        "in_channels", int, 3, "network input channels: 3 (RGB) or 1 (the paper's grayscale)", choices=(1, 3)
    ),
    _count("num_classes", "network output channels (softmax over classes)", 2, minimum=2),
    _count("batch_size", "tiles per training iteration", 2),
    _count("num_workers", "data loader worker processes", 4, minimum=0),
    _count("epochs", "training epochs of the teacher and of the student", 100, unit="epochs"),
    _count("paraphraser_epochs", "training epochs of the paraphraser stage", 30, unit="epochs"),
    _count("val_interval", "epochs between validations", 1, unit="epochs"),
    _count("log_interval", "iterations between loss lines", 10, unit="iterations"),
    _number("learning_rate", "Adam's initial learning rate (teacher and student)", 0.003, above=True),
    _number("weight_decay", "Adam's weight decay", 0.0002),
    _number("lr_power", "power of the poly learning-rate decay per iteration", 0.9),
    _count("lr_step_epochs", "epochs between the learning rate's step-downs", 50, unit="epochs"),
    _number("lr_step_gamma", "factor of each step-down (1: poly alone)", 0.1, maximum=1.0, above=True),
    _number("paraphraser_learning_rate", "SGD learning rate of the paraphrasers", 0.0003, above=True),
    _number(
        "paraphraser_task_weight",
        "weight of the paraphrasers' task term: their factors also segment as the teacher (0: the paper's)",
        0.0,
    ),
    _number("momentum", "SGD momentum of the paraphrasers", 0.9, maximum=1.0),
    _switch("stain_augmentation", "random per-channel RGB scale and shift of training tiles"),
    _number("lambda_coco", "weight of the distillation term (CoCo or a baseline)", 1.0),
    _number("lambda_adv", "weight of the adversarial term (0: off, the default; the paper's: 0.1)", 0.0),
    _switch(
        "coco_standardize",
        "CoCo on every channel standardised over its image's pixels (a variant; off: the paper's CoCo)",
    ),
    _number("teacher_cache_mb", "memory for the teacher's cached outputs (0: off)", 2048, unit="MiB"),
    _count("n_labelled", "train on the first N annotated tiles only", None, none_means="all of them"),
    _number("unlabelled_min_tissue", "least tissue fraction of an unannotated slide patch", 0.5, maximum=1.0),
    # shared by the stages
    _switch("amp", "mixed precision (CUDA only)", True),
    _switch("stain_normalization", "Macenko H&E normalisation of every tile or region first"),
    _switch("grayscale", "feed the network the luma channel (in_channels=1, the paper's input)"),
    _number(
        "mpp",
        "the network's training scale (tiles are taken to be at it; slides are resampled to it)",
        None,
        above=True,
        unit="µm/px",
        none_means="unknown: slides at level 0",
    ),
    Setting(
        "reader",
        str,
        "auto",
        "slide backend; auto: chosen from the file (OpenSlide for what it reads, tifffile for OME-TIFF and "
        "stripped TIFF)",
        choices=SLIDE_READERS,
    ),
    _number(
        "slide_mpp",
        "level-0 scale of slides whose files record none (a slide of unknown scale is refused); given, it "
        "replaces what the files record",
        None,
        minimum=MIN_MPP,
        maximum=MAX_INCH_MPP,
        unit="µm/px of the slides' level 0",
        none_means="each file's own",
    ),
    # inference
    _count(
        "level",
        "slide level read as it is (0: full resolution)",
        None,
        minimum=0,
        none_means="the slide at mpp exactly, the nearest finer level resampled",
    ),
    _number("overlap", "fraction of the window shared by neighbouring windows", 0.25, maximum=0.99),
    _count("sw_batch_size", "windows per network call", None, none_means="1 on CPU, 4 on CUDA"),
    Setting(
        "blend_mode", str, "constant", "weighting of overlapping windows", choices=("constant", "gaussian")
    ),
    _count(
        "chunk_size", "side of the regions read and processed at once (bounds memory)", 768, unit="pixels"
    ),
    _number(
        "min_tissue_fraction",
        "slides: windows with less tissue are background without running the network (0: run every window)",
        0.05,
        maximum=1.0,
        flag="--min-tissue",
    ),
    _number(
        "tissue_threshold", "saturation threshold of the tissue mask", None, maximum=1.0, none_means="Otsu"
    ),
    _count("thumbnail_size", "longer side of the tissue-mask and overlay thumbnail", 1024, minimum=16),
    _number("overlay_alpha", "opacity of the classes drawn on the overlay", 0.45, maximum=1.0),
    _number(
        "min_region_pixels",
        "GeoJSON regions and holes smaller than this are dropped",
        64.0,
        unit="mask pixels",
    ),
    Setting(
        "runtime",
        str,
        "auto",
        "network runtime; auto: the fastest exact one installed on CPU (onnxruntime, else torchscript), "
        "torch on CUDA",
        choices=("auto", "torch", "torchscript", "onnxruntime"),
    ),
    _count(
        "num_threads",
        "intra-op threads of the runtime",
        None,
        maximum=4096,
        none_means="torch's default",
        flag="--threads",
    ),
    _switch("overwrite", "redo images whose outputs are complete (their summary written last)"),
)
SETTINGS: Mapping[str, Setting] = {setting.name: setting for setting in _DECLARED}


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` if each is valid (:data:`SETTINGS`), else stop the run with one line naming the first bad
    one, its value and what is expected (:func:`~monai_coco.fail.fail`).

    Args:
        settings: ``{name: value}``, e.g. ``{"amp": @amp, "epochs": @epochs}`` in a bundle config.

    Raises:
        KeyError: for a name that is not declared (a config's mistake, not a user's).
    """
    for name, value in settings.items():
        try:
            SETTINGS[name].validate(value)
        except ValueError as exc:
            fail(str(exc))
    return dict(settings)
