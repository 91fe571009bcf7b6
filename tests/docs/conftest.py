"""The docs as tests: where the pages are, and their fenced code blocks with the markers before them.

A marker is an HTML comment on the line before a ```python fence (blank lines between are allowed):

    <!-- docs-test: skip (why it cannot run in the suite) -->
    <!-- docs-test: data wikitext2/wiki.test.raw -->

`skip` reports the block as skipped with the reason; `data` links each named file of the shared
data folder (space-separated paths below it) into the page's working folder under its own name,
and skips the block, saying which file is missing, when the shared data is not there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
README = ROOT / "README.md"
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOC_PAGES]

_MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<kind>[a-z-]+)\s*(?P<arg>.*?)\s*-->$")
_KINDS = ("skip", "data")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: its language, first code line (1-based), code and marker."""

    page: Path
    line: int
    language: str
    code: str
    skip: str | None = None
    data: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _marker(previous: list[str], page: Path, line: int) -> tuple[str | None, tuple[str, ...]]:
    """The (skip reason, data files) of the marker on the last non-blank line before a fence."""
    lines = [text.strip() for text in previous if text.strip()]
    if not lines or not lines[-1].startswith("<!-- docs-test"):
        return None, ()
    match = _MARKER.match(lines[-1])
    if not match or match["kind"] not in _KINDS:
        raise ValueError(f"{page.name}:{line}: a docs-test marker is '<!-- docs-test: skip (reason) -->' "
                         f"or '<!-- docs-test: data PATH... -->', got {lines[-1]!r}")
    if match["kind"] == "skip":
        reason = match["arg"].strip("()").strip()
        if not reason:
            raise ValueError(f"{page.name}:{line}: a skipped block needs its reason in parentheses")
        return reason, ()
    return None, tuple(match["arg"].split())


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced block at the start of a line, in page order; an unclosed fence is an error."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, start, language = [], None, ""
    for number, text in enumerate(lines, 1):
        if start is None and text.startswith("```"):
            start, language = number, text[3:].strip().lower()
        elif start is not None and text.strip() == "```":
            skip, data = _marker(lines[max(0, start - 4):start - 1], page, start)
            code = "\n".join(lines[start:number - 1]) + "\n"
            blocks.append(Block(page, start + 1, language, code, skip, data))
            start = None
    if start is not None:
        raise ValueError(f"{page.name}:{start}: a code fence is never closed")
    return blocks


def python_blocks(page: Path) -> list[Block]:
    return [block for block in fenced_blocks(page) if block.language in ("python", "py")]
