"""The operator's guide keeps up with the code: one troubleshooting entry per finding code, links that land."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tsmigrate.lint.context import RULES
from tsmigrate.preflight.checks import CHECKS

PROJECT = Path(__file__).resolve().parents[1]
DOCS = sorted((PROJECT / "docs").glob("*.md"))
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return found


def test_every_finding_code_has_a_troubleshooting_entry():
    text = (PROJECT / "docs" / "troubleshooting.md").read_text()
    entries = set(re.findall(r"^\| (TS\d{3}|PF\d{3}) \|", text, re.MULTILINE))
    assert entries == set(RULES) | set(CHECKS)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_of_the_guide_land(doc):
    broken = []
    for match in _LINK.finditer(doc.read_text()):
        target = match["target"]
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.name}")
    assert broken == []


def test_the_readme_links_the_guide():
    assert "](docs/operator-guide.md)" in (PROJECT / "README.md").read_text()
