"""Command line: write a runnable bundle folder from the bundle this package ships.

    python -m monai_coco.bundle init DIR [--overwrite]

Then, from ``DIR``, every stage as in the bundle's ``docs/README.md``, e.g.
``python -m monai.bundle run training --config_file "['configs/base.yaml','configs/train_teacher.yaml']"``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Optional

from monai_coco.bundle.folder import write_bundle

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``init DIR [--overwrite]`` writes the bundle into ``DIR``
    (:func:`~monai_coco.bundle.folder.write_bundle`)."""
    parser = argparse.ArgumentParser(prog="python -m monai_coco.bundle", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser(
        "init",
        help="write the bundle (configs, docs, LICENSE, large_files.yml) into a folder",
        description='Write the bundle into DIR, with bundle_root: "." in configs/base.yaml: run its stages '
        "from DIR (docs/README.md there lists the commands).",
    )
    init.add_argument("dir", metavar="DIR", help="the bundle folder to write (created if needed)")
    init.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the configs, docs and LICENSE of a folder that already holds a bundle (its models/, "
        "data/ and outputs are kept)",
    )
    args = parser.parse_args(argv)
    folder = write_bundle(args.dir, overwrite=args.overwrite)
    print(f"monai_coco: wrote the bundle to {folder}; run its stages from there ({folder}/docs/README.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
