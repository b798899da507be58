"""Command line: segment tiles, slides or folders of them with a checkpointed network.

    python -m monai_coco.inference INPUT OUTPUT_DIR --network MobileUNet --checkpoint models/model.pt
    torchrun --standalone --nproc_per_node 4 -m monai_coco.inference SLIDES/ OUTPUT_DIR --checkpoint ...

A single image is segmented in this process. A folder or CSV list of slides is a cohort
(:mod:`monai_coco.inference.cohort`): split across the ``torchrun`` workers, complete slides skipped (unless
``--overwrite``), and summarised in ``OUTPUT_DIR/cohort_summary.csv``.

Writes, per image, the mask and tumour probability (``.png`` for tiles, pyramidal ``.ome.tif`` for slides),
an overlay, QuPath GeoJSON and a summary, see :mod:`monai_coco.inference.whole_slide`. The checkpoint's
preprocessing record (``<stem>.preprocessing.json``: training scale and stain normalisation) is applied as
the bundle applies it. The network is a class name (built with
``in_channels`` and ``out_channels``) or a MONAI config JSON such as
``{"_target_": "MobileUNet", "width_mult": 0.5}``; its weights come from a checkpoint entry
(``--checkpoint-key``, default ``model``), loaded with :func:`monai_coco.checkpoints.load_checkpoint`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, Optional

import torch
from monai.bundle import ConfigParser

from monai_coco.checkpoints import load_checkpoint, load_preprocessing_record
from monai_coco.inference.cohort import run_cohort
from monai_coco.inference.engine import infer_path
from monai_coco.inference.whole_slide import SlideInferenceConfig
from monai_coco.settings import SETTINGS

__all__ = ["main"]


_FLAGS = {"roi_size": "--roi"}  # flags of the options that are no declared setting (monai_coco.settings)


def _build_network(spec: str, in_channels: int, num_classes: int) -> torch.nn.Module:
    """A network from a class name (``MobileUNet``) or a MONAI config JSON (``{"_target_": ...}``)."""
    if spec.lstrip().startswith("{"):
        try:
            config = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--network is not valid JSON: {exc}") from exc
    else:
        config = {"_target_": spec, "in_channels": in_channels, "out_channels": num_classes}
    try:
        return ConfigParser({"network": config}).get_parsed_content("network")
    except Exception as exc:
        raise ValueError(f"cannot build the network from --network {spec!r}: {exc}") from exc


class _OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (``error: ...``), without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: segment a tile, a slide or a folder of them with a checkpointed network."""
    parser = _OneLineParser(
        prog="python -m monai_coco.inference",
        description="Segment tiles (JPEG/PNG/TIFF) and whole slides (any format OpenSlide or tifffile "
        "reads) with a trained network at its training scale; writes masks, probability maps, overlays, "
        "QuPath GeoJSON and summaries.",
    )
    parser.add_argument("input", help="an image or slide file, a folder of them, or a CSV list of them")
    parser.add_argument("output", help="output folder")
    parser.add_argument("--checkpoint", required=True, help="network weights (e.g. models/model.pt)")
    parser.add_argument("--checkpoint-key", default="model", help="entry of the checkpoint (default: model)")
    parser.add_argument(
        "--network",
        default="MobileUNet",
        help='class name (built with in_channels, out_channels) or MONAI config JSON {"_target_": ...}',
    )
    for name in ("reader", "slide_mpp"):
        SETTINGS[name].add_argument(parser)
    parser.add_argument(
        "--level",
        type=int,
        default=None,
        help="slide level read as it is; -1 or not given: the slide at --mpp exactly (given or recorded with "
        "the checkpoint, as the bundle's level: null; the nearest finer level, resampled), or level 0 (full "
        "resolution) when no training scale is known",
    )
    parser.add_argument("--roi", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    for name in ("overlap", "sw_batch_size", "blend_mode", "num_classes", "chunk_size", "min_tissue_fraction",
                 "tissue_threshold", "thumbnail_size", "grayscale"):  # fmt: skip
        SETTINGS[name].add_argument(parser)
    parser.add_argument("--device", default=None)
    for name in ("amp", "runtime", "num_threads"):
        SETTINGS[name].add_argument(parser)
    parser.add_argument(
        "--onnx-model",
        default=None,
        help="an ONNX export of the checkpoint (python -m monai.bundle onnx_export) for ONNX Runtime to load "
        "instead of exporting in this process; checked against the checkpoint's logits",
    )
    parser.add_argument("--suffix", action="append", help="image suffix to take from a folder (repeatable)")
    SETTINGS["overwrite"].add_argument(parser)
    SETTINGS["mpp"].add_argument(parser, help=f"{SETTINGS['mpp'].doc} (default: its record)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output = Path(args.output).expanduser()
    blocking = next((f for f in (output, *output.parents) if f.exists() and not f.is_dir()), None)
    if blocking is not None:
        parser.exit(2, f"error: output {args.output} needs a folder where the file {blocking} is\n")
    fallback = None
    try:
        record = load_preprocessing_record(args.checkpoint) or {}
        if args.mpp is None and record.get("mpp") is not None:
            args.mpp = float(record["mpp"])
            logging.getLogger(__name__).info(
                "training scale %s um/px, recorded with %s", args.mpp, args.checkpoint
            )
        stain_normalization = bool(record.get("stain_normalization", False))
        if stain_normalization:
            logging.getLogger(__name__).info("stain normalisation on, recorded with %s", args.checkpoint)
        if args.level is not None and args.level < 0 and args.mpp is None:
            raise ValueError(
                f"--level {args.level} reads slides at the training scale, but no --mpp is given or recorded "
                f"with {args.checkpoint}; give --mpp (the network's um/px) or a level >= 0"
            )
        level = args.level if args.level is None or args.level >= 0 else None  # -1: at --mpp exactly
        if args.level is None and args.mpp is None:  # not given and no scale known: full resolution
            level = 0
            # said once the images are done, so that an error stays the only line of a failed run
            fallback = (
                f"level 0 (full resolution): no training scale is recorded with {args.checkpoint} and --mpp "
                "is not given; give --mpp (the network's um/px) or --level to read another"
            )
        config = SlideInferenceConfig(
            reader=args.reader,
            level=level,
            mpp=args.mpp,
            slide_mpp=args.slide_mpp,
            stain_normalization=stain_normalization,
            checkpoint=args.checkpoint,
            roi_size=tuple(args.roi),
            overlap=args.overlap,
            sw_batch_size=args.sw_batch_size,
            blend_mode=args.blend_mode,
            num_classes=args.num_classes,
            chunk_size=args.chunk_size,
            min_tissue_fraction=args.min_tissue_fraction,
            tissue_threshold=args.tissue_threshold,
            thumbnail_size=args.thumbnail_size,
            grayscale=args.grayscale,
            device=args.device,
            amp=args.amp,
            runtime=args.runtime,
            num_threads=args.num_threads,
            onnx_model=args.onnx_model,
        )
        network = _build_network(args.network, 1 if args.grayscale else 3, args.num_classes)
        load_checkpoint(args.checkpoint, {args.checkpoint_key: network})
        if Path(args.input).is_dir() or Path(args.input).suffix.lower() == ".csv":
            table = run_cohort(network, args.input, args.output, config, args.suffix, args.overwrite)
            if table is not None:
                print(f"cohort summary: {table}")
            _say(fallback)
            return 0
        results = infer_path(network, args.input, args.output, config, args.suffix, args.overwrite)
    except (ValueError, FileNotFoundError) as exc:
        message = str(exc)
        for field in vars(SlideInferenceConfig()):  # the config's names, as this command line spells them
            declared = SETTINGS.get(field)
            flag = declared.option if declared else _FLAGS.get(field, "--" + field.replace("_", "-"))
            message = message.replace(f"SlideInferenceConfig.{field}=", f"{flag} ")
        parser.exit(2, f"error: {message}\n")
    for r in results:
        print(f"{r.image}: {r.mask} {r.probability} {r.overlay} {r.geojson} {r.summary} (windows run "
              f"{r.windows_run}, skipped {r.windows_skipped})")
    _say(fallback)
    return 0


def _say(warning: Optional[str]) -> None:
    if warning is not None:
        logging.getLogger(__name__).warning(warning)


if __name__ == "__main__":
    sys.exit(main())
