import importlib

import monai_coco


def test_version_matches_pyproject():
    from pathlib import Path

    import tomllib

    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert monai_coco.__version__ == meta["project"]["version"] == "0.1.0"


def test_every_subpackage_is_loaded_by_the_top_level_import():
    for name in ("networks", "losses", "engines", "handlers", "data", "metrics"):
        assert importlib.import_module(f"monai_coco.{name}") is getattr(monai_coco, name)
