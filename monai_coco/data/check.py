"""``python -m monai_coco.data.check DIR``: list every problem of a paired tile/mask data set at once;
``python -m monai_coco.data.check --images PATH``: of images without masks (an unannotated pool, or the tiles
and slides given to inference: a file, or a folder searched recursively).

Prints one line per problem (``path: what is wrong; what was expected``), then a summary, and exits with
status 1 if there is any problem, 0 otherwise. ``DIR`` may be any layout that
:func:`monai_coco.data.load_paired_datalist` accepts, or a MONAI JSON datalist. Every image passes the checks
that training, the pool and inference apply before any work (:mod:`monai_coco.data.image_check`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .datalist import check_dataset, exif_oriented
from .image_check import check_images
from .suffixes import IMAGE_SUFFIXES
from .unlabelled import unlabelled_files

__all__ = ["main"]


def _label_map(text: str) -> dict[int, int]:
    """``"0:0,255:1"`` -> ``{0: 0, 255: 1}``."""
    try:
        pairs = (item.split(":") for item in text.split(",") if item.strip())
        return {int(raw): int(cls) for raw, cls in pairs}
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"expected RAW:CLASS[,RAW:CLASS...] (e.g. 0:0,255:1), got {text!r}"
        ) from e


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monai_coco.data.check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("root", help="data folder or MONAI JSON datalist")
    parser.add_argument("--mask-suffix", default=".png", help="ending of mask names after the id")
    parser.add_argument(
        "--image-suffixes", default=",".join(IMAGE_SUFFIXES), help="comma-separated image suffixes"
    )
    parser.add_argument(
        "--label-map", type=_label_map, default=None, help="allowed raw mask values, e.g. 0:0,255:1"
    )
    parser.add_argument("--headers-only", action="store_true", help="read image headers, do not decode them")
    parser.add_argument(
        "--images", action="store_true", help="PATH holds images without masks (a pool, or inference inputs)"
    )
    parser.add_argument("--slide-mpp", type=float, default=None, help="level-0 µm/px of slides without one")
    parser.add_argument("--reader", default="auto", help="slide backend: auto, openslide or tifffile")
    args = parser.parse_args(argv)
    if args.images:
        return _check_images(args)
    found, problems = check_dataset(
        args.root,
        mask_suffix=args.mask_suffix,
        image_suffixes=tuple(s.strip() for s in args.image_suffixes.split(",") if s.strip()),
        label_map=args.label_map,
        decode_images=not args.headers_only,
    )
    for problem in problems:
        print(problem)
    rotated = exif_oriented([pair for pairs in found.values() for pair in pairs])
    if rotated:
        path, orientation = rotated[0]
        print(f"note: {len(rotated)} image(s) store their pixels rotated or mirrored with an EXIF "
              f"orientation (e.g. {path}: {orientation}); they are read upright, as viewers show them: their "
              "masks must be drawn upright too.")  # fmt: skip
    counts = ", ".join(f"{split}: {len(pairs)}" for split, pairs in found.items())
    total = sum(len(pairs) for pairs in found.values())
    if problems:
        print(f"{len(problems)} problem(s) in {args.root} ({total} pairs found; {counts})", file=sys.stderr)
        return 1
    print(f"OK: {total} pairs in {args.root} ({counts})")
    return 0


def _check_images(args: argparse.Namespace) -> int:
    """Every problem of the images at ``args.root`` (a file, or a folder's images, recursively)."""
    root = Path(args.root)
    try:
        files = [root] if root.is_file() else unlabelled_files(root)
    except (ValueError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 1
    options = {"reader": args.reader, "slide_mpp": args.slide_mpp, "needs_scale": True}
    problems = check_images(files, decode=not args.headers_only, **options)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.root} ({len(files)} images)", file=sys.stderr)
        return 1
    print(f"OK: {len(files)} images in {args.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
