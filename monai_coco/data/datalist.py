"""Datalists of paired gastric H&E tiles and masks, validated once at the edge.

Accepted layouts under ``root`` (``<id>`` is any file stem, the mask suffix is configurable):

- the authors' flat folder: ``<id>.jpg`` (or .jpeg/.png/.tif/.tiff) with the mask ``<id>.png`` beside it,
  or ``<id>_mask.png``; with PNG tiles the mask must be ``<id>_mask.png``;
- ``images/`` with ``masks/`` (or ``labels/``), masks named ``<id>.png`` or ``<id>_mask.png``;
- ``train/``, ``val/`` (``valid/``, ``validation/``) and ``test/`` subfolders holding either of the above;
- a MONAI JSON datalist (``root`` is the ``.json`` file; sections ``training``, ``validation``, ``test``;
  relative paths are relative to the file's folder), read with ``monai.data.load_decathlon_datalist``.

Where the data has no validation split, ``split="train"`` / ``split="val"`` cut a seeded one
(``val_fraction``, ``seed``) out of the training pairs; both calls with the same arguments partition them.

Every problem is a :class:`DataProblem` naming the offending file and what was expected;
:func:`load_paired_datalist` raises the first one (``FileNotFoundError`` for a missing file or partner,
``ValueError`` otherwise) and :func:`check_dataset` returns them all
(``python -m monai_coco.data.check DIR``).
Headers are read once per file and masks decoded once per file: results are cached by path, modification
time and size, so building the datalists of several splits, or rebuilding them each run, costs one pass.

Masks hold {0, 1} or {0, 255} unless ``label_map`` lists the raw values; to map them to classes while
training use MONAI's ``MapLabelValued(keys="label", orig_labels=[0, 1, 255], target_labels=[0, 1, 1])``
(or the keys and values of ``label_map``).
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from monai.data import load_decathlon_datalist

from .image_check import MAX_TILE_PIXELS, DataProblem, info, is_broken_link, tile_problems
from .suffixes import IMAGE_SUFFIXES

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_TILE_PIXELS",
    "DataProblem",
    "check_dataset",
    "load_paired_datalist",
    "mask_files",
]

_SPLIT_FOLDERS = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
_SPLIT_ALIASES = {alias: split for split, names in _SPLIT_FOLDERS.items() for alias in names}
_JSON_KEYS = {"train": "training", "val": "validation", "test": "test"}
_MASK_FOLDERS = ("masks", "labels")
_DEFAULT_VALUE_SETS = (frozenset({0, 1}), frozenset({0, 255}))

logger = logging.getLogger(__name__)


def _check_pair(
    image: str, label: str, label_map: Mapping[int, int] | None, decode_images: bool
) -> list[DataProblem]:
    img = info(image, "image-full" if decode_images else "image")
    msk = info(label, "mask")
    problems = tile_problems(image, img)
    if msk.error:
        problems.append(DataProblem(label, f"mask {msk.error}; expected a single-channel PNG or TIFF mask"))
        return problems
    if msk.colour not in ("gray", "palette"):
        problems.append(
            DataProblem(
                label,
                f"mask colour model is {msk.colour} ({msk.channels} channels); "
                "expected a single-channel (gray or palette) mask",
            )
        )
    if not img.error and msk.size != img.size:
        problems.append(
            DataProblem(
                label,
                f"mask size {msk.size[0]}x{msk.size[1]} differs from the size "
                f"{img.size[0]}x{img.size[1]} (WxH) of its image {image}; expected equal",
            )
        )
    if msk.values is not None:
        if label_map is None:
            if not any(msk.values <= allowed for allowed in _DEFAULT_VALUE_SETS):
                problems.append(
                    DataProblem(
                        label,
                        f"mask values {_values(msk.values)} are not within {{0, 1}} nor within {{0, 255}}; "
                        f"expected one of them (or give a label_map){_lossy(msk.values)}",
                    )
                )
        elif not msk.values <= set(label_map):
            bad = msk.values - set(label_map)
            problems.append(
                DataProblem(
                    label,
                    f"mask values {_values(bad)} are not in the label map; expected values in "
                    f"{sorted(label_map)}{_lossy(msk.values)}",
                )
            )
    return problems


def _values(values: frozenset[int], shown: int = 6) -> str:
    """``[0, 1, 2, ..., 255] (51 values)``: a set of mask values in a bounded length."""
    ordered = sorted(values)
    if len(ordered) <= shown:
        return str(ordered)
    head = ", ".join(map(str, ordered[: shown - 1]))
    return f"[{head}, ..., {ordered[-1]}] ({len(ordered)} values)"


def _lossy(values: frozenset[int]) -> str:
    """A hint when a mask holds many distinct values: it was most likely saved with lossy compression."""
    if len(values) <= 8:
        return ""
    return "; it looks lossy (JPEG-compressed edges): save masks as PNG or TIFF without lossy compression"


# ---------------------------------------------------------------------------------------------- discovery
def _files(folder: Path) -> list[Path]:
    """The visible files of ``folder``, broken links among them (:func:`_broken_links` names those)."""
    return sorted(
        p for p in folder.iterdir() if (p.is_file() or is_broken_link(p)) and not p.name.startswith(".")
    )


def _broken_links(files: Sequence[Path]) -> list[DataProblem]:
    """One problem per broken link: the file a data set names is a link to a file that is gone (moved or
    deleted), which is neither an image without a mask nor a mask without an image."""
    return [
        DataProblem(str(f), f"a broken link: its target {os.readlink(f)} does not exist", missing=True)
        for f in files
        if is_broken_link(f)
    ]


def _mask_id(name: str, mask_suffix: str) -> tuple[str, bool] | None:
    """``(id, explicit)`` if ``name`` is a mask name ``<id>_mask<suffix>`` (explicit) or ``<id><suffix>``."""
    low, ms = name.lower(), mask_suffix.lower()
    if low.endswith("_mask" + ms):
        return name[: -len("_mask" + ms)], True
    if low.endswith(ms):
        return name[: -len(ms)], False
    return None


def _expected_mask(folder: Path, key: str, mask_suffix: str, image: Path | None = None) -> str:
    names = [key + mask_suffix, key + "_mask" + mask_suffix]
    return " or ".join(str(folder / n) for n in names if image is None or n != image.name)


def _expected_image(folder: Path, key: str, suffixes: Sequence[str]) -> str:
    return f"{folder / key}{{{','.join(suffixes)}}}"


def _flat_masks(files: Sequence[Path], mask_suffix: str, suffixes: Sequence[str]) -> dict[str, Path]:
    """``{id: mask}`` of a flat folder's files (the rule of :func:`_pair_flat`)."""
    explicit = {m[0]: f for f in files if (m := _mask_id(f.name, mask_suffix)) and m[1]}
    plain = {f: m[0] for f in files if (m := _mask_id(f.name, mask_suffix)) and not m[1]}
    stems = defaultdict(set)
    for f in files:
        if f.suffix.lower() in suffixes and f not in explicit.values():
            stems[f.stem].add(f)
    masks = dict(explicit)
    for f, key in plain.items():
        is_image = f.suffix.lower() in suffixes
        if key not in explicit and (not is_image or stems.get(key, set()) - {f}):
            masks[key] = f
    return masks


def exif_oriented(pairs: Sequence[Mapping[str, str]]) -> list[tuple[str, int]]:
    """``(image, EXIF orientation)`` of the paired images that store their pixels rotated or mirrored (read
    upright by every reader of the project, :mod:`~monai_coco.data.orientation`)."""
    found = [(pair["image"], info(pair["image"], "image").orientation) for pair in pairs]
    return [(path, orientation) for path, orientation in found if orientation != 1]


def mask_files(
    folder: str | Path, mask_suffix: str = ".png", image_suffixes: Sequence[str] = IMAGE_SUFFIXES
) -> set[Path]:
    """The files of ``folder`` that :func:`load_paired_datalist` takes as masks in the flat layout
    (``<id>_mask.png``, or ``<id>.png`` beside an image ``<id>.jpg``): what inference must not segment."""
    suffixes = tuple(s.lower() for s in image_suffixes)
    return set(_flat_masks(_files(Path(folder)), mask_suffix, suffixes).values())


def _pair_flat(
    folder: Path, mask_suffix: str, suffixes: Sequence[str]
) -> tuple[list[dict], list[DataProblem]]:
    """Pairs of a flat folder. ``<id>_mask<suffix>`` is always a mask; ``<id><suffix>`` is a mask unless
    it is an image file with no other image of that id beside it (PNG tiles need ``<id>_mask.png``)."""
    files = _files(folder)
    plain = {f: m[0] for f in files if (m := _mask_id(f.name, mask_suffix)) and not m[1]}
    masks = _flat_masks(files, mask_suffix, suffixes)
    images: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        if f.suffix.lower() in suffixes and f not in masks.values():
            images[f.stem].append(f)
    pairs, problems = [], _broken_links(files)
    for key in sorted(set(images) | set(masks)):
        mask, candidates = masks.get(key), images.get(key, [])
        if mask is None:
            image = candidates[0]
            hint = ""
            if image in plain:
                wanted = _expected_image(folder, plain[image], suffixes)
                hint = f" (if {image.name} is a mask, its image {wanted} is missing)"
            problems.append(
                DataProblem(
                    str(image),
                    "image without mask: expected " + _expected_mask(folder, key, mask_suffix, image) + hint,
                    missing=True,
                )
            )
        elif not candidates:
            problems.append(
                DataProblem(
                    str(mask),
                    f"mask without image: expected an image {_expected_image(folder, key, suffixes)}",
                    missing=True,
                )
            )
        elif len(candidates) > 1:
            names = ", ".join(c.name for c in candidates)
            problems.append(
                DataProblem(str(mask), f"several images share this mask ({names}); expected exactly one")
            )
        else:
            pairs.append({"image": str(candidates[0]), "label": str(mask)})
    return pairs, problems


def _pair_folders(
    images_dir: Path, masks_dir: Path, mask_suffix: str, suffixes: Sequence[str]
) -> tuple[list[dict], list[DataProblem]]:
    """Pairs of ``images/`` + ``masks/``: same id, mask named ``<id><suffix>`` or ``<id>_mask<suffix>``."""
    problems = _broken_links(_files(images_dir)) + _broken_links(_files(masks_dir))
    images: dict[str, list[Path]] = defaultdict(list)
    for f in _files(images_dir):
        if f.suffix.lower() in suffixes:
            images[f.stem].append(f)
    masks: dict[str, list[Path]] = defaultdict(list)
    for f in _files(masks_dir):
        as_mask = _mask_id(f.name, mask_suffix)
        if as_mask:
            masks[as_mask[0]].append(f)
    pairs = []
    for key in sorted(set(images) | set(masks)):
        imgs, msks = images.get(key, []), masks.get(key, [])
        if not msks:
            problems.append(
                DataProblem(
                    str(imgs[0]),
                    "image without mask: expected " + _expected_mask(masks_dir, key, mask_suffix),
                    missing=True,
                )
            )
        elif not imgs:
            problems.append(
                DataProblem(
                    str(msks[0]),
                    f"mask without image: expected an image {_expected_image(images_dir, key, suffixes)}",
                    missing=True,
                )
            )
        elif len(imgs) > 1 or len(msks) > 1:
            names = ", ".join(str(p) for p in imgs + msks)
            problems.append(
                DataProblem(str(imgs[0]), f"ambiguous id {key!r} ({names}); expected one image and one mask")
            )
        else:
            pairs.append({"image": str(imgs[0]), "label": str(msks[0])})
    return pairs, problems


def masks_folder(folder: str | Path) -> Path | None:
    """The masks folder of ``folder`` in the ``images/`` + ``masks/`` (or ``labels/``) layout, else None."""
    folder = Path(folder)
    if not (folder / "images").is_dir():
        return None
    return next((folder / m for m in _MASK_FOLDERS if (folder / m).is_dir()), None)


def _scan(folder: Path, mask_suffix: str, suffixes: Sequence[str]) -> tuple[list[dict], list[DataProblem]]:
    """Pairs of one folder in the flat or the images/ + masks/ layout; an empty folder is a problem."""
    images_dir = folder / "images"
    if images_dir.is_dir():
        masks_dir = masks_folder(folder)
        if masks_dir is None:
            return [], [
                DataProblem(
                    str(images_dir),
                    "images/ folder without masks: expected a masks/ or labels/ folder beside it",
                    missing=True,
                )
            ]
        pairs, problems = _pair_folders(images_dir, masks_dir, mask_suffix, suffixes)
    else:
        pairs, problems = _pair_flat(folder, mask_suffix, suffixes)
    if not pairs and not problems:
        problems.append(
            DataProblem(
                str(folder),
                f"empty folder: no image files ({', '.join(suffixes)}); expected "
                f"<id>.jpg + <id>{mask_suffix} pairs, images/ + masks/, or train/ val/ test/",
            )
        )
    return pairs, problems


def _split_folders(root: Path) -> dict[str, Path]:
    found = {}
    for child in sorted(root.iterdir()):
        split = _SPLIT_ALIASES.get(child.name.lower())
        if child.is_dir() and split is not None:
            found.setdefault(split, child)
    return found


@dataclass
class _Scan:
    """Pairs per split found in the data (``"all"`` when it has none) and problems per split ("" = root)."""

    pairs: dict[str, list[dict]]
    problems: dict[str, list[DataProblem]]

    def all_problems(self) -> list[DataProblem]:
        return [p for ps in self.problems.values() for p in ps]


def _scan_root(root: Path, mask_suffix: str, suffixes: Sequence[str]) -> _Scan:
    if root.suffix.lower() == ".json" and root.is_file():
        return _scan_json(root)
    if not root.is_dir():
        return _Scan(
            {},
            {
                "": [
                    DataProblem(
                        str(root),
                        "not found: expected a folder of images and masks or a JSON datalist",
                        missing=True,
                    )
                ]
            },
        )
    splits = _split_folders(root)
    if not splits:
        pairs, problems = _scan(root, mask_suffix, suffixes)
        return _Scan({"all": pairs}, {"all": problems})
    scan = _Scan({}, {"": []})
    loose = [f for f in _files(root) if f.suffix.lower() in suffixes]
    if loose:
        scan.problems[""].append(
            DataProblem(
                str(loose[0]),
                f"{len(loose)} image file(s) beside the split folders "
                f"{', '.join(p.name for p in splits.values())}; expected every image "
                "inside one of them",
            )
        )
    for split, folder in splits.items():
        scan.pairs[split], scan.problems[split] = _scan(folder, mask_suffix, suffixes)
    return scan


def _scan_json(path: Path) -> _Scan:
    try:
        sections = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return _Scan(
            {}, {"": [DataProblem(str(path), f"cannot be read as JSON ({e}); expected a MONAI datalist")]}
        )
    scan = _Scan({}, {"": []})
    for split, key in _JSON_KEYS.items():
        if not isinstance(sections, dict) or key not in sections:
            continue
        items = load_decathlon_datalist(path, is_segmentation=True, data_list_key=key, base_dir=path.parent)
        scan.pairs[split], scan.problems[split] = [], []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "image" not in item or "label" not in item:
                scan.problems[split].append(
                    DataProblem(
                        str(path),
                        f'entry {i} of {key!r} is {item!r}; expected {{"image": path, "label": path}}',
                    )
                )
                continue
            for role in ("image", "label"):
                if not Path(item[role]).is_file():
                    scan.problems[split].append(
                        DataProblem(
                            str(item[role]),
                            f"{role} listed in {path} ({key!r} entry {i}) not found",
                            missing=True,
                        )
                    )
            scan.pairs[split].append(
                {"image": str(Path(item["image"]).resolve()), "label": str(Path(item["label"]).resolve())}
            )
    if not any(scan.pairs.values()) and not any(scan.problems.values()):
        scan.problems[""].append(
            DataProblem(
                str(path),
                "no pairs: expected a non-empty 'training', 'validation' or "
                '\'test\' list of {"image": path, "label": path}',
            )
        )
    return scan


# ---------------------------------------------------------------------------------------------- public API
def _label_map(label_map: Mapping[int, int] | None) -> dict[int, int] | None:
    if label_map is None:
        return None
    try:
        return {int(k): int(v) for k, v in dict(label_map).items()}
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"label_map must map raw mask values to class indices, e.g. {{0: 0, 255: 1}}; got {label_map!r}"
        ) from e


def _validate(
    pairs: Sequence[dict], label_map: dict[int, int] | None, decode_images: bool
) -> list[DataProblem]:
    """Problems of the files of ``pairs`` (pairs with a missing file are already reported by the scan)."""
    problems = []
    for pair in pairs:
        if Path(pair["image"]).is_file() and Path(pair["label"]).is_file():
            problems += _check_pair(pair["image"], pair["label"], label_map, decode_images)
    return problems


def check_dataset(
    root: str | Path,
    mask_suffix: str = ".png",
    image_suffixes: Sequence[str] = IMAGE_SUFFIXES,
    label_map: Mapping[int, int] | None = None,
    decode_images: bool = True,
) -> tuple[dict[str, list[dict[str, str]]], list[DataProblem]]:
    """Find every pair under ``root`` (every split) and every problem of the data set at once.

    Args:
        root: a data folder (any layout of the module docstring) or a MONAI JSON datalist.
        mask_suffix: ending of mask file names after the id.
        image_suffixes: accepted image suffixes (case-insensitive).
        label_map: raw mask value -> class index; ``None`` accepts masks within {0, 1} or within {0, 255}.
        decode_images: decode whole images (finds truncated files) rather than read their headers only.

    Returns:
        ``(pairs per split, problems)``: split keys are ``"train"``, ``"val"``, ``"test"`` as found in the
        data, or ``"all"`` when it has no split; the pairs hold absolute paths.
    """
    suffixes = tuple(s.lower() for s in image_suffixes)
    scan = _scan_root(Path(root).expanduser().resolve(), mask_suffix, suffixes)
    problems = scan.all_problems()
    labels = _label_map(label_map)
    for pairs in scan.pairs.values():
        problems += _validate(pairs, labels, decode_images)
    return scan.pairs, problems


def _seeded_split(pairs: list[dict], split: str, val_fraction: float, seed: int, root: Path) -> list[dict]:
    n = len(pairs)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        if n < 2:
            raise ValueError(
                f"{root}: {n} pair(s) cannot be split into train and val; expected at least 2 "
                "(or val_fraction=0)"
            )
        n_val = min(max(n_val, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    chosen = set((order[:n_val] if split == "val" else order[n_val:]).tolist())
    return [p for i, p in enumerate(pairs) if i in chosen]


def load_paired_datalist(
    root: str | Path,
    split: str | None = None,
    mask_suffix: str = ".png",
    image_suffixes: Sequence[str] = IMAGE_SUFFIXES,
    label_map: Mapping[int, int] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    validate: bool = True,
) -> list[dict[str, str]]:
    """Datalist ``[{"image": path, "label": path}, ...]`` (absolute paths, sorted) of paired tiles and masks.

    Args:
        root: a data folder in any layout of the module docstring, or a MONAI JSON datalist file.
        split: ``None`` for every pair; ``"train"``, ``"val"`` or ``"test"`` (aliases ``training``, ``valid``,
            ``validation``, ``testing``) for one split. ``"val"`` without a validation split in the data takes
            a seeded ``val_fraction`` of the training pairs (or of all pairs) and ``"train"`` the rest.
        mask_suffix: ending of mask file names after the id (default ``.png``; ``<id>_mask.png`` also works).
        image_suffixes: accepted image suffixes (case-insensitive).
        label_map: raw mask value -> class index, e.g. ``{0: 0, 128: 1, 255: 2}``; masks may hold only its
            keys. ``None``: masks must lie within {0, 1} or within {0, 255}.
        val_fraction: fraction of pairs for ``"val"`` when the data has no validation split, in [0, 1).
        seed: seed of that split.
        validate: check every returned pair (decodable, gray/RGB/RGBA image, single-channel mask of the
            image's size with allowed values); headers and masks are read once per file and cached.

    Raises:
        FileNotFoundError: ``root``, a requested split, a listed file or the partner of a file is missing.
        ValueError: any other problem (empty folder, bad file, bad setting); the message names the file and
            what was expected, and says how many more problems ``python -m monai_coco.data.check`` would list.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    if split is not None and split.lower() not in _SPLIT_ALIASES:
        raise ValueError(f"split must be None or one of {sorted(_SPLIT_ALIASES)}, got {split!r}.")
    labels = _label_map(label_map)
    path = Path(root).expanduser().resolve()
    scan = _scan_root(path, mask_suffix, tuple(s.lower() for s in image_suffixes))
    wanted = _SPLIT_ALIASES[split.lower()] if split is not None else None
    problems = list(scan.problems.get("", []))
    seeded = wanted in ("train", "val") and "val" not in scan.pairs and {"train", "all"} & set(scan.pairs)
    if wanted is None:
        pairs = [p for ps in scan.pairs.values() for p in ps]
        problems = scan.all_problems()
        how = f"every pair of {path}"
    elif seeded:
        source = "train" if "train" in scan.pairs else "all"
        problems += scan.problems.get(source, [])
        pairs = sorted(scan.pairs[source], key=lambda p: p["image"])
        n_source = len(pairs)
        if not problems:  # a file problem explains a short pair list better than the split would
            pairs = _seeded_split(pairs, wanted, val_fraction, seed, path)
        where = _source_name(path, source)
        how = f"a seeded split of the {n_source} pairs of {where} (val_fraction={val_fraction}, seed={seed})"
    elif wanted in scan.pairs:
        pairs = scan.pairs[wanted]
        problems += scan.problems.get(wanted, [])
        how = _source_name(path, wanted)
    elif problems:
        raise problems[0].error()
    else:
        json_list = path.suffix.lower() == ".json"
        expected = f"a {_JSON_KEYS[wanted]!r} list" if json_list else f"a {_SPLIT_FOLDERS[wanted][0]}/ folder"
        raise FileNotFoundError(
            f"{path}: no {wanted!r} split: expected {expected}; found {sorted(scan.pairs)}."
        )
    if validate:
        problems += _validate(pairs, labels, decode_images=False)
    if problems:
        error = problems[0].error()
        if len(problems) > 1:
            error = type(error)(
                f"{error} (and {len(problems) - 1} more problem(s); "
                f"`python -m monai_coco.data.check {path}` lists them all)"
            )
        raise error
    logger.info("%s split: %d tile(s), from %s", wanted or "every", len(pairs), how)
    return sorted(pairs, key=lambda p: p["image"])


def _source_name(path: Path, split: str) -> str:
    """Where the pairs of ``split`` (or ``"all"``) come from, for the log line of the split."""
    if path.suffix.lower() == ".json":
        return f"the {_JSON_KEYS[split]!r} list of {path}"
    folder = _split_folders(path).get(split)
    return f"the folder {folder}" if folder is not None else f"the folder {path}"
