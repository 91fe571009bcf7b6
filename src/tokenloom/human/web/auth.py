"""Who is asking: a rater or a study's admin, from a bearer token or a cookie.

An invitation link (/r/TOKEN, /admin/TOKEN) sets an HttpOnly, SameSite=Strict
cookie holding the token, then redirects to a URL without it, so the token does
not stay in the address bar or the history. The API also takes
`Authorization: Bearer TOKEN`.

CSRF: a state-changing request authenticated by cookie must carry the page's
CSRF token (form field `csrf` or header `X-CSRF-Token`). A bearer token is never
sent by a browser on its own, so bearer requests need none.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request

from tokenloom.human.store import RatingStore, Rater, Study
from tokenloom.human.tokens import csrf_ok, csrf_token

RATER_COOKIE = "tl_rater"
ADMIN_COOKIE = "tl_admin"
MAX_TOKEN_CHARS = 128


@dataclass(frozen=True)
class Caller:
    """An authenticated caller; `subject` is a Rater or a Study (admin)."""

    subject: Rater | Study
    token_hash: str
    secret: str
    by_cookie: bool

    @property
    def csrf(self) -> str:
        return csrf_token(self.secret, self.token_hash)

    def require_csrf(self, presented: str | None) -> None:
        if self.by_cookie and not csrf_ok(self.secret, self.token_hash, presented):
            raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")


def _presented(request: Request, cookie: str) -> tuple[str | None, bool]:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()[:MAX_TOKEN_CHARS], False
    value = request.cookies.get(cookie)
    return (value[:MAX_TOKEN_CHARS], True) if value else (None, False)


def rater_caller(request: Request, store: RatingStore) -> Caller | None:
    token, by_cookie = _presented(request, RATER_COOKIE)
    rater = store.rater_by_token(token) if token else None
    return None if rater is None else Caller(rater, rater.token_hash, rater.study.secret, by_cookie)


def admin_caller(request: Request, store: RatingStore) -> Caller | None:
    token, by_cookie = _presented(request, ADMIN_COOKIE)
    study = store.study_by_admin_token(token) if token else None
    return None if study is None else Caller(study, study.admin_hash, study.secret, by_cookie)


def set_cookie(response, request: Request, name: str, token: str, path: str = "/") -> None:
    response.set_cookie(name, token, httponly=True, samesite="strict", path=path,
                        secure=request.url.scheme == "https")
