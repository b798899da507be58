"""``python -m monai_coco.data.synthetic --out DIR --n 64 --size 512 --seed 0 [--slide-size 2048]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .writers import write_synthetic_dataset, write_synthetic_slide


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monai_coco.data.synthetic", description="Write the synthetic gastric H&E data set."
    )
    parser.add_argument("--out", required=True, help="output folder (tiles), with the slide in OUT/slide/")
    parser.add_argument("--n", type=int, default=64, help="number of tiles")
    parser.add_argument("--size", type=int, default=512, help="tile size in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mpp", type=float, default=1.0, help="micrometres per pixel of the tiles")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of tiles and slide")
    parser.add_argument("--slide-size", type=int, default=2048, help="slide width and height; 0: no slide")
    parser.add_argument("--slide-mpp", type=float, default=0.5, help="micrometres per pixel of slide level 0")
    args = parser.parse_args(argv)
    items = write_synthetic_dataset(args.out, args.n, args.size, args.seed, args.mpp, args.quality)
    print(f"wrote {len(items)} tiles of {args.size} x {args.size} px to {Path(args.out).resolve()}")
    if args.slide_size > 0:
        slide, mask = write_synthetic_slide(
            Path(args.out) / "slide" / "gastric_slide.tif",
            args.slide_size,
            args.seed,
            args.slide_mpp,
            quality=args.quality,
        )
        print(f"wrote slide {slide} and mask pyramid {mask}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
