"""The rating app over HTTP (in process): isolation, blindness, CSRF, escaping, limits."""

import hmac
import json
import re

import pytest
from fastapi.testclient import TestClient

from tokenloom.human import RatingStore, StudySpec, parse_items
from tokenloom.human.web.app import create_app

from .conftest import HOSTILE

SYSTEMS = ("SYS-secret-alpha", "SYS-secret-beta")


@pytest.fixture
def study(tmp_path):
    """A pairwise study whose system names and prompts are easy to spot (and hostile)."""
    db = tmp_path / "app.db"
    rows = []
    for k, text in enumerate(HOSTILE[:7]):
        for system in SYSTEMS:
            rows.append((f"f:{len(rows)}", {"id": f"seg-{k}", "prompt": f"{text} prompt {k}", "system": system,
                                            "output": f"{text} from {system[-4:]}"}))
    with RatingStore(db) as store:
        created = store.create_study(StudySpec("blind", "pairwise", (), 2, 2), parse_items(rows, "pairwise"))
    return db, created


@pytest.fixture
def client(study):
    with TestClient(create_app(study[0])) as c:
        yield c


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def _join(app_client, token):
    response = app_client.get(f"/r/{token}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/rate"
    return response


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def test_invitation_sets_a_strict_httponly_cookie_and_drops_the_token_from_the_url(client, study):
    cookie = _join(client, study[1].raters[0].token).headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    page = client.get("/rate")
    assert page.status_code == 200 and study[1].raters[0].token not in page.text


def test_a_rater_never_sees_a_system_name_or_an_item_id(client, study):
    token = study[1].raters[0].token
    _join(client, token)
    seen = [client.get("/rate").text, client.get("/api/rater/next", headers=_bearer(token)).text,
            client.get("/api/rater/progress", headers=_bearer(token)).text, client.get("/openapi.json").text,
            client.get("/static/rate.js").text, client.get("/static/app.css").text]
    total = client.get("/api/rater/progress", headers=_bearer(token)).json()["total"]
    for position in range(1, total + 1):
        seen.append(client.get(f"/rate?position={position}").text)
        seen.append(client.get(f"/api/rater/items/{position}", headers=_bearer(token)).text)
        seen.append(client.put(f"/api/rater/items/{position}", headers=_bearer(token),
                               json={"answers": {"overall": "B"}}).text)
    seen.append(client.get("/rate").text)  # the thank-you page
    blob = "\n".join(seen)
    assert "All done" in blob
    for secret in [*SYSTEMS, "secret", "seg-0", "alpha|", "|SYS"]:
        assert secret not in blob


def test_a_rater_sees_only_their_own_answers(client, study):
    one, two = (r.token for r in study[1].raters)
    for position in range(1, 8):
        client.put(f"/api/rater/items/{position}", headers=_bearer(two), json={"answers": {"overall": "tie"}})
    # per_item = raters = 2: both raters hold every item, but rater one's queue shows none of two's answers
    answers = [client.get(f"/api/rater/items/{p}", headers=_bearer(one)).json()["answers"] for p in range(1, 8)]
    assert answers == [{}] * 7
    assert client.get("/api/rater/progress", headers=_bearer(one)).json() == {"done": 0, "total": 7, "next": 1}


def test_a_rater_token_opens_no_admin_page_or_admin_api(client, study):
    token = study[1].raters[0].token
    for path in ("/api/admin/progress", "/api/admin/results", "/api/admin/export?format=csv"):
        assert client.get(path, headers=_bearer(token)).status_code == 401
    assert client.post("/api/admin/close", headers=_bearer(token)).status_code == 401
    assert client.get(f"/admin/{token}", follow_redirects=False).status_code == 404
    _join(client, token)
    client.cookies.set("tl_admin", token)  # a rater token planted in the admin cookie is still refused
    for path in ("/admin", "/admin/report", "/admin/export.csv"):
        assert client.get(path).status_code == 401
    admin = client.get("/api/admin/results", headers=_bearer(study[1].admin_token))
    assert admin.status_code == 200 and admin.json()["study"]["name"] == "blind"


def test_cookie_posts_need_the_csrf_token_of_their_own_session(client, study):
    one, two = (r.token for r in study[1].raters)
    _join(client, two)
    csrf_two = _csrf(client.get("/rate").text)
    _join(client, one)
    csrf_one = _csrf(client.get("/rate").text)
    form = {"position": "1", "c.overall": "A"}
    assert client.post("/rate", data=form, follow_redirects=False).status_code == 403
    assert client.post("/rate", data={**form, "csrf": "0" * 64}, follow_redirects=False).status_code == 403
    assert client.post("/rate", data={**form, "csrf": csrf_two}, follow_redirects=False).status_code == 403
    ok = client.post("/rate", data={**form, "csrf": csrf_one, "elapsed_ms": "4321"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/rate"
    put = {"answers": {"overall": "B"}}
    assert client.put("/api/rater/items/2", json=put).status_code == 403
    assert client.put("/api/rater/items/2", json=put, headers={"X-CSRF-Token": csrf_one}).status_code == 200
    with RatingStore(study[0]) as store:
        rows = store.ratings(store.study("blind"))
    assert [(r["rater"], r["position"], r["shown"], r["elapsed_ms"]) for r in rows][:1] == [("rater-01", 1, "A", 4321)]
    assert len(rows) == 2


def test_tokens_are_compared_in_constant_time(client, study, monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    assert client.get("/api/rater/next", headers=_bearer(study[1].raters[0].token)).status_code == 200
    assert client.get("/api/admin/progress", headers=_bearer(study[1].admin_token)).status_code == 200
    assert len(calls) >= 2


def test_hostile_text_is_escaped_on_every_page(client, study):
    _join(client, study[1].raters[0].token)
    pages = "".join(client.get(f"/rate?position={p}").text for p in range(1, 8))
    assert "<script>alert('x')</script>" not in pages and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in pages
    assert '"><img src=x onerror' not in pages and "{{ 7*7 }}" in pages  # no template injection either
    csrf = _csrf(pages)
    bad = client.post("/rate", data={"csrf": csrf, "position": "1", "c.overall": "<script>x()</script>"})
    assert bad.status_code == 400 and "<script>x()</script>" not in bad.text and "not allowed" in bad.text
    _admin = client.get(f"/admin/{study[1].admin_token}")
    assert _admin.status_code == 200 and "<script>alert" not in _admin.text


def test_hostile_answers_over_the_api_are_refused_as_data(client, study):
    token = study[1].raters[0].token
    for answers in ({"overall": "'; DROP TABLE ratings; --"}, {"<script>": "A"}, {"overall": "A" * 10_000}):
        response = client.put("/api/rater/items/1", headers=_bearer(token), json={"answers": answers})
        assert response.status_code == 400 and response.headers["content-type"].startswith("application/json")
    assert client.get("/api/rater/items/0", headers=_bearer(token)).status_code == 422
    assert client.get("/api/rater/items/99", headers=_bearer(token)).status_code == 400


def test_large_bodies_get_413_and_every_response_has_strict_headers(client, study):
    token = study[1].raters[0].token
    big = client.put("/api/rater/items/1", headers=_bearer(token),
                     content=json.dumps({"answers": {"overall": "A"}, "pad": "x" * 100_000}))
    assert big.status_code == 413
    page = client.get("/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"] == "no-referrer"


def test_assets_are_local_and_the_api_has_a_schema_but_no_cdn_docs(client, study):
    _join(client, study[1].raters[0].token)
    page = client.get("/rate").text
    assert re.findall(r'(?:src|href)="(https?:)?//', page) == []
    schema = client.get("/openapi.json").json()
    assert {"/api/rater/next", "/api/rater/items/{position}", "/api/admin/results"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 404


def test_a_closed_study_refuses_answers_and_says_so(client, study):
    admin, token = study[1].admin_token, study[1].raters[0].token
    client.get(f"/admin/{admin}")
    csrf = _csrf(client.get("/admin").text)
    assert client.post("/admin/close", data={}, follow_redirects=False).status_code == 403
    assert client.post("/admin/close", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    response = client.put("/api/rater/items/1", headers=_bearer(token), json={"answers": {"overall": "A"}})
    assert response.status_code == 409 and "closed" in response.json()["detail"]
    _join(client, token)
    assert "This study is closed" in client.get("/rate").text


def test_the_admin_sees_progress_ranking_and_exports(client, study):
    token, admin = study[1].raters[0].token, study[1].admin_token
    for position in range(1, 8):
        client.put(f"/api/rater/items/{position}", headers=_bearer(token), json={"answers": {"overall": "A"}})
    progress = client.get("/api/admin/progress", headers=_bearer(admin)).json()
    assert [(r["rater"], r["done"], r["total"]) for r in progress] == [("rater-01", 7, 7), ("rater-02", 0, 7)]
    export = client.get("/api/admin/export?format=jsonl", headers=_bearer(admin)).text.splitlines()
    assert len(export) == 7 and json.loads(export[0])["rater"] == "rater-01"
    client.get(f"/admin/{admin}")
    report = client.get("/admin/report").text
    assert 'id="ranking"' in report and "Bradley" in report
    assert client.get("/admin/export.csv").text.startswith("id,rater,item")
