"""``python -m monai_coco.data.synthetic --out DIR --n 64 --size 512 --seed 0 [--slide-size 2048]``, or,
for the fine-structure data set split by slide,
``python -m monai_coco.data.synthetic --histology --out DIR --n 96 --n-val 16 --n-test 32 --n-unlabelled 64``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .writers import (
    checked_mpp,
    checked_section_fraction,
    write_histology_dataset,
    write_synthetic_dataset,
    write_synthetic_slide,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monai_coco.data.synthetic", description="Write the synthetic gastric H&E data set."
    )
    parser.add_argument("--out", required=True, help="output folder (tiles), with the slide in OUT/slide/")
    parser.add_argument(
        "--n", type=int, default=None, help="number of tiles (training tiles: 96 if --histology)"
    )
    parser.add_argument(
        "--size", type=int, default=None, help="tile size in pixels (512; 128 if --histology)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mpp", type=float, default=None, help="micrometres per pixel (1.0; 1.5 if --histology)"
    )
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of tiles and slide")
    parser.add_argument("--slide-size", type=int, default=2048, help="slide width and height; 0: no slide")
    parser.add_argument("--slide-mpp", type=float, default=0.5, help="micrometres per pixel of slide level 0")
    parser.add_argument(
        "--slide-section",
        type=float,
        default=1.0,
        help="the tissue section's share of the slide's sides, in (0, 1]; glass around it (1: fills it)",
    )
    group = parser.add_argument_group("fine-structure data set (monai_coco.data.synthetic.histology)")
    group.add_argument(
        "--histology", action="store_true", help="write it: OUT/train, val, test[, unlabelled]"
    )
    group.add_argument("--n-val", type=int, default=16, help="validation tiles")
    group.add_argument("--n-test", type=int, default=32, help="test tiles")
    group.add_argument("--n-unlabelled", type=int, default=0, help="image-only tiles from further slides")
    group.add_argument("--tiles-per-slide", type=int, default=8)
    args = parser.parse_args(argv)
    try:
        if args.slide_size > 0:  # the slide's own settings, before any tile is written
            checked_section_fraction(args.slide_section, "--slide-section")
            checked_mpp(args.slide_mpp, "--slide-mpp")
        if args.mpp is not None:
            checked_mpp(args.mpp, "--mpp")
        return _write(args)
    except ValueError as exc:  # the writers name the bad setting (size, quality, mpp, ...)
        parser.error(str(exc))


def _write(args: argparse.Namespace) -> int:
    if args.histology:
        splits = write_histology_dataset(
            args.out,
            n_train=96 if args.n is None else args.n,
            n_val=args.n_val,
            n_test=args.n_test,
            n_unlabelled=args.n_unlabelled,
            tiles_per_slide=args.tiles_per_slide,
            size=128 if args.size is None else args.size,
            mpp=1.5 if args.mpp is None else args.mpp,
            seed=args.seed,
        )
        for split, items in splits.items():
            print(f"wrote {len(items)} {split} tiles to {Path(args.out).resolve() / split}")
        return 0
    size = 512 if args.size is None else args.size
    items = write_synthetic_dataset(
        args.out,
        64 if args.n is None else args.n,
        size,
        args.seed,
        1.0 if args.mpp is None else args.mpp,
        args.quality,
    )
    print(f"wrote {len(items)} tiles of {size} x {size} px to {Path(args.out).resolve()}")
    if args.slide_size > 0:
        slide, mask = write_synthetic_slide(
            Path(args.out) / "slide" / "gastric_slide.tif",
            args.slide_size,
            args.seed,
            args.slide_mpp,
            quality=args.quality,
            section_fraction=args.slide_section,
        )
        print(f"wrote slide {slide} and mask pyramid {mask}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
