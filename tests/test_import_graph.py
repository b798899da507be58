"""The floor plan of ``bundle/docs/design.md``, read from the source with ``ast`` (nothing is imported): no
upward import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "monai_coco"

# floor of each top-level part of the package; a module may import only from its own floor or below
FLOORS = {
    "data": 0,
    "fail": 0,
    "atomic_files": 0,
    "folder_lock": 0,
    "networks": 0,
    "losses": 0,
    "metrics": 0,
    "checkpoints": 0,
    "settings": 0,
    "engines": 1,
    "handlers": 2,
    "inference": 2,
    "bundle": 3,
}


def _part(module: str) -> str:
    """``monai_coco.data.slide_io`` -> ``data``; ``monai_coco`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, text: str | None = None) -> list[str]:
    """Absolute names of the ``monai_coco`` modules that ``path`` (or ``text`` in its place) imports,
    relative imports resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from monai_coco import data`` imports the submodule ``monai_coco.data`` (the package's
            # ``__init__``, which imports every part, only for the package itself)
            if module == "monai_coco" and name != "monai_coco":
                found += [f"monai_coco.{alias.name}" for alias in node.names]
            else:
                found.append(module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            # a lazy import, e.g. a compatibility layer's ``importlib.import_module("monai_coco.x")``
            function = (
                node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            )
            if function in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append(node.args[0].value)
    return [m for m in found if m == "monai_coco" or m.startswith("monai_coco.")]


def _edges() -> list[tuple[str, str]]:
    return [
        (_module_name(path), target)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py" or path.parent != PACKAGE
        for target in _imports(path)
    ]


def test_every_part_of_the_package_has_a_floor():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    parts -= {"__init__", "__pycache__"}
    assert parts == set(FLOORS)


def test_no_module_imports_from_a_higher_floor():
    upward = [
        f"{source} -> {target}"
        for source, target in _edges()
        if FLOORS[_part(target)] > FLOORS[_part(source)]
    ]
    assert upward == []


def test_data_imports_nothing_but_data():
    foreign = [
        f"{source} -> {target}"
        for source, target in _edges()
        if _part(source) == "data" and _part(target) != "data"
    ]
    assert foreign == []


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("monai_coco.data.datalist", "monai_coco.inference"),
        ("monai_coco.losses.coco", "monai_coco.engines"),
    ],
)
def test_the_check_sees_a_planted_upward_import(source, target):
    """Not vacuous: the same source with one more (relative or lazy) import gains exactly that upward edge."""
    path = PACKAGE.joinpath(*source.split(".")[1:]).with_suffix(".py")
    relative = path.read_text() + f"\nfrom ..{target.rpartition('.')[2]} import x\n"
    lazy = path.read_text() + f"\nimport importlib\nx = importlib.import_module({target!r})\n"
    for planted in (relative, lazy):
        assert set(_imports(path, planted)) - set(_imports(path)) == {target}
    assert FLOORS[_part(target)] > FLOORS[_part(source)]
