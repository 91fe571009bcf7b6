"""Real raters' path in a real browser: Debian's chromium driven by Playwright.

Two raters complete a pairwise and a Likert study with the keyboard only; the
admin's report page shows the ranking. Screenshots go to tests/artifacts/human/
(PNG files are not committed). Skips when /usr/bin/chromium or playwright is absent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tokenloom.human import RatingStore, StudySpec, parse_items

from .conftest import ThreadServer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("TOKENLOOM_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts")) / "human"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None,
                                 reason="Debian chromium not installed at /usr/bin/chromium "
                                        "(apt-get install chromium; `make install` does it as root)")]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (the [test] extra)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def _study(tmp_path, kind: str, criteria=()):
    rows = []
    for k in range(4):
        prompt = f"Explain item {k} in one sentence."
        rows.append((f"f:{len(rows)}", {"id": k, "prompt": prompt, "system": "alpha",
                                        "output": f"GOOD: a clear, correct explanation of item {k}."}))
        rows.append((f"f:{len(rows)}", {"id": k, "prompt": prompt, "system": "beta",
                                        "output": f"bad: item {k} is, um, a thing."}))
    db = tmp_path / f"{kind}.db"
    with RatingStore(db) as store:
        created = store.create_study(StudySpec(kind, kind, criteria, 2, 2), parse_items(rows, kind))
    return db, created


def _rate_with_keys(page, choose, shot: str | None = None) -> int:
    """Answer every item with the keyboard: `choose(page)` -> the keys to press. Returns items answered."""
    answered = 0
    while page.locator("#rating-form").count():
        if shot and answered == 0:
            page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
        for key in choose(page):
            page.keyboard.press(key)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        answered += 1
    return answered


def _pick_good_side(page):
    return ["a" if page.inner_text("#output-A .text").startswith("GOOD") else "b"]


def test_two_raters_finish_a_pairwise_study_by_keyboard_and_the_report_ranks_the_better_system(browser, tmp_path):
    db, created = _study(tmp_path, "pairwise")
    with ThreadServer(db) as server:
        for k, invitation in enumerate(created.raters):
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            page = context.new_page()
            page.goto(f"{server.url}/r/{invitation.token}")
            assert page.inner_text("header").startswith("Item 1 of 4")
            assert _rate_with_keys(page, _pick_good_side, shot=f"pairwise-rater-{k + 1}.png") == 4
            assert "All done" in page.inner_text("h1")
            context.close()
        admin = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
        admin.goto(f"{server.url}/admin/{created.admin_token}")
        admin.goto(f"{server.url}/admin/report")
        rows = admin.locator("#ranking tbody tr")
        assert rows.count() == 2 and "alpha" in rows.nth(0).inner_text()
        admin.screenshot(path=str(ARTIFACTS / "pairwise-report.png"), full_page=True)
    with RatingStore(db) as store:
        ratings = store.ratings(store.study("pairwise"))
    assert len(ratings) == 8 and {r["value"] for r in ratings} == {"first"}  # alpha (slot 0) every time
    assert all(r["elapsed_ms"] is not None for r in ratings)


def test_two_raters_finish_a_likert_study_by_keyboard_and_can_change_an_answer(browser, tmp_path):
    db, created = _study(tmp_path, "likert", ("fluency", "relevance"))
    with ThreadServer(db) as server:
        for k, invitation in enumerate(created.raters):
            page = browser.new_context(viewport={"width": 1000, "height": 900}).new_page()
            page.goto(f"{server.url}/r/{invitation.token}")

            def scores(p):
                good = p.inner_text("#output-response .text").startswith("GOOD")
                return ["5", "4"] if good else ["2", "1"]  # one digit per criterion: focus moves on by itself

            assert _rate_with_keys(page, scores, shot=f"likert-rater-{k + 1}.png") == 8
            assert page.locator("progress").get_attribute("value") == "8"
            if k == 0:  # change the first answer: back to item 1 with the keyboard, new score, save
                page.goto(f"{server.url}/rate?position=2")
                with page.expect_navigation():
                    page.keyboard.press("ArrowLeft")
                assert page.inner_text("header").startswith("Item 1 of 8")
                page.keyboard.press("3")
                with page.expect_navigation():
                    page.keyboard.press("Enter")
            page.context.close()
        admin = browser.new_context().new_page()
        admin.goto(f"{server.url}/admin/{created.admin_token}")
        assert "alpha" in admin.locator("#ranking tbody tr").nth(0).inner_text()
    with RatingStore(db) as store:
        ratings = store.ratings(store.study("likert"))
    assert len(ratings) == 2 * 8 * 2
    assert sorted(r["revision"] for r in ratings)[-1] == 1 and sum(r["revision"] for r in ratings) == 1
