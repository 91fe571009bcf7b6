"""The docs site builds with `mkdocs build --strict`, holds its key pages, and needs no network."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

KEY_PAGES = [
    "index.html", "getting-started.html", "models.html", "decoding.html", "internals.html", "evaluation.html",
    "metrics.html", "human.html", "training.html", "serving.html", "retrieval.html", "performance.html", "quality.html",
    "reference/tokenloom.html", "reference/generation.html", "reference/eval.html", "reference/metrics.html",
    "reference/rag.html", "reference/human.html", "reference/training.html",
]
# what a browser fetches by itself: scripts, stylesheets, fonts, icons, @import and url() in CSS
_FETCHED = [
    re.compile(r"<script[^>]*\bsrc=[\"']?(https?:)?//", re.I),
    re.compile(r"<link[^>]*\bhref=[\"']?(https?:)?//[^>]*>", re.I),
    re.compile(r"@import\s+(url\()?[\"']?(https?:)?//", re.I),
    re.compile(r"url\([\"']?(https?:)?//", re.I),
]


def _mkdocs() -> Path:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists():
        pytest.skip(f"mkdocs is not installed beside {sys.executable} (pip install -e '.[docs]')")
    return mkdocs


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([str(_mkdocs()), "build", "--strict", "-d", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_site_builds_with_every_key_page(site):
    missing = [page for page in KEY_PAGES if not (site / page).is_file()]
    assert not missing, f"the built site lacks {missing}"
    assert "SamplingParams" in (site / "reference" / "generation.html").read_text(encoding="utf-8")
    assert "perplexity" in (site / "reference" / "eval.html").read_text(encoding="utf-8")


def test_site_fetches_nothing_from_other_hosts(site):
    offenders = []
    for path in sorted([*site.rglob("*.html"), *site.rglob("*.css")]):
        text = path.read_text(encoding="utf-8", errors="replace")
        for pattern in _FETCHED:
            for match in pattern.finditer(text):
                tag = match.group(0)
                if pattern is _FETCHED[1] and not re.search(r"rel=[\"']?(stylesheet|preload|icon|preconnect|"
                                                            r"dns-prefetch|modulepreload)", tag, re.I):
                    continue  # a plain link to another site is fine; only what the browser loads counts
                offenders.append(f"{path.relative_to(site)}: {tag[:120]}")
    assert not offenders, "the site would fetch from the network:\n" + "\n".join(offenders[:20])
