"""Every relative link in the README and docs/ resolves: the file exists and, for a
`#fragment`, the target page has a heading with that anchor (GitHub's slug rules)."""
import re
from pathlib import Path

import pytest
from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _without_code(text: str) -> str:
    """The page without fenced blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug)
    return found


def links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_without_code(page.read_text()))
            if not re.match(r"[a-z]+:", t)]  # http:, https:, mailto: are not checked (offline)


def test_the_pages_are_there():
    assert {p.name for p in PAGES} >= {"README.md", "model-card.md", "training.md", "export.md", "runtime.md",
                                       "performance.md", "farm.md", "parsing.md", "reference-notes.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# A title (`x`)\n[ok](#a-title-x) [code `[no](x)`] ![img](missing.png)\n```\n[no](y)\n```\n")
    assert links(page) == ["#a-title-x", "missing.png"]
    assert "a-title-x" in anchors(page)


def test_ci_runs_the_readme_setup_and_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = re.search(r"^\.venv/bin/python -m pytest.*$", readme, flags=re.M)[0]
    assert test_command in ci.splitlines()
    setup = re.search(r"^python3 -m venv \.venv && .*$", readme, flags=re.M)[0]
    for install in re.findall(r"pip install (-e '[^']+'|torch==[\d.]+)", setup):
        assert install in ci, install
