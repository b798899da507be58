"""The repository explains itself: what the code cites ships, section by section."""

from __future__ import annotations

import re
from pathlib import Path

from test_import_graph import FLOORS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "bundle" / "docs"
SOURCES = [*ROOT.joinpath("monai_coco").rglob("*.py"), *ROOT.joinpath("bundle", "configs").glob("*.yaml")]


def test_every_cited_section_of_the_method_exists():
    sections = set(re.findall(r"(?m)^## (\d+)\. ", (DOCS / "method.md").read_text()))
    cited = {(p.name, n) for p in SOURCES for n in re.findall(r"method\.md ?§ ?(\d+)", p.read_text())}
    assert len(cited) >= 20 and sections >= {str(n) for n in range(1, 9)}
    assert sorted((name, n) for name, n in cited if n not in sections) == []


def test_nothing_cites_documents_the_repository_does_not_ship():
    missing = [p.name for p in SOURCES if re.search(r"METHOD\.md|DESIGN\.md", p.read_text())]
    assert missing == []


def test_the_design_page_places_every_part_of_the_package_on_a_floor():
    design = (DOCS / "design.md").read_text()
    unplaced = [part for part in FLOORS if f"monai_coco/{part}" not in design]
    assert unplaced == []
