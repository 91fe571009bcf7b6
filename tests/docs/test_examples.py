"""Every ```python block of README.md and docs/*.md runs, as a doctest of its page would.

The blocks of one page run in order in one namespace, in a working folder of the page's own, so a
block may use what an earlier block of the page defined. Running one block alone (`-k`) first runs
the blocks before it. `tokenloom.load` of the default model returns the session's model (one per
precision: the `smollm` and `smollm_native` fixtures); any other load happens once per session.
Pages whose examples load or train a model are marked slow.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import PAGES, ROOT, SHARED_DATA, Block, python_blocks

_MODEL_WORK = re.compile(r"\b(load|train)\(")


@dataclass
class PageRun:
    """What the blocks of one page share: the namespace, its folder and how far it has run."""

    folder: Path
    namespace: dict = field(default_factory=lambda: {"__name__": "__docs__"})
    done: int = 0
    skipped: str | None = None  # why a block of the page could not run; the later ones skip too
    failed: str | None = None   # the block that raised; the later ones fail, naming it


_RUNS: dict[Path, PageRun] = {}
_LOADED: dict[tuple, object] = {}


def _cases():
    for page in PAGES:
        blocks = python_blocks(page)
        marks = [pytest.mark.slow] if any(_MODEL_WORK.search(b.code) for b in blocks) else []
        for index, block in enumerate(blocks):
            yield pytest.param(page, index, id=block.name, marks=marks)


def _share_models(request, monkeypatch) -> None:
    """`tokenloom.load` hands out the session's models instead of loading them again."""
    from tokenloom.generation import generate

    real, fixtures = generate.load, {"auto": "smollm_native", "native": "smollm_native", "float32": "smollm"}

    def load(name_or_path=generate.DEFAULT_MODEL, precision="auto", **options):
        if str(name_or_path) == generate.DEFAULT_MODEL and not options and precision in fixtures:
            monkeypatch.setattr(generate, "load", real)  # the fixture itself calls the real load
            try:
                return request.getfixturevalue(fixtures[precision])
            finally:
                monkeypatch.setattr(generate, "load", load)
        key = (str(name_or_path), precision, repr(sorted(options.items())))
        if key not in _LOADED:
            _LOADED[key] = real(name_or_path, precision=precision, **options)
        return _LOADED[key]

    monkeypatch.setattr(generate, "load", load)


def _link_data(block: Block, folder: Path) -> None:
    for name in block.data:
        source = SHARED_DATA / name
        if not source.exists():
            pytest.skip(f"{block.name} needs {source}, which is not there")
        target = folder / source.name
        if not target.exists():
            target.symlink_to(source)


def _run(block: Block, run: PageRun) -> None:
    _link_data(block, run.folder)
    code = compile(block.code, str(block.page.relative_to(ROOT)) + f" (block at line {block.line})", "exec")
    here = os.getcwd()
    os.chdir(run.folder)
    try:
        exec(code, run.namespace)
    finally:
        os.chdir(here)


@pytest.mark.parametrize("page, index", list(_cases()))
def test_page_example_runs(page, index, request, monkeypatch, tmp_path_factory):
    _share_models(request, monkeypatch)
    blocks = python_blocks(page)
    if blocks[index].skip:
        pytest.skip(f"{blocks[index].name}: {blocks[index].skip}")
    run = _RUNS.setdefault(page, PageRun(tmp_path_factory.mktemp(page.stem)))
    while run.done <= index:
        if run.failed:
            pytest.fail(f"{run.failed}, earlier on the page, raised; this block depends on it")
        if run.skipped:
            pytest.skip(f"an earlier block could not run: {run.skipped}")
        block, run.done = blocks[run.done], run.done + 1
        if block.skip:
            continue
        try:
            _run(block, run)
        except pytest.skip.Exception as why:
            run.skipped = str(why)
            raise
        except BaseException:
            run.failed = block.name
            raise
