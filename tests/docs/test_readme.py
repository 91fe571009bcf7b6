"""README.md stays short and its links to the docs resolve."""

from __future__ import annotations

import re

from .conftest import README, ROOT

README_LIMIT = 15_000  # bytes; the rest lives in docs/
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_is_under_the_size_limit():
    size = README.stat().st_size
    assert size < README_LIMIT, f"README.md is {size:,} bytes; keep it under {README_LIMIT:,} (move text to docs/)"


def test_readme_starts_with_the_two_setup_commands():
    head = README.read_text(encoding="utf-8")[:600]
    assert "make demo" in head and "make test" in head


def test_readme_links_to_the_docs_resolve():
    links = [link for link in _LINK.findall(README.read_text(encoding="utf-8")) if not re.match(r"[a-z]+://", link)]
    assert any(link.startswith("docs/") for link in links), "README should link to the docs pages"
    broken = [link for link in links if not (ROOT / link.split("#")[0]).exists()]
    assert not broken, f"README links to files that do not exist: {broken}"
