"""The pages: a rater's item page and thank-you page, the admin page, the report.

    GET  /r/{token}        invitation link: sets the rater cookie, redirects to /rate
    GET  /rate[?position]  the item to rate (by default the first unanswered one)
    POST /rate             save the answers (form post, CSRF-checked), go to the next item
    GET  /admin/{token}    admin link: sets the admin cookie, redirects to /admin
    GET  /admin            progress, flagged raters, results; close the study
    GET  /admin/report     the report page
    GET  /admin/export.csv, /admin/export.jsonl
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse

from tokenloom.errors import InvalidArgument
from tokenloom.human.render import environment, html_report, ratings_csv, ratings_jsonl
from tokenloom.human.report import build_report
from tokenloom.human.store import StudyClosed
from tokenloom.human.web.auth import ADMIN_COOKIE, RATER_COOKIE, admin_caller, rater_caller, set_cookie

page_router = APIRouter(include_in_schema=False)
ENV = environment()

ANCHORS = {"1": "very poor", "2": "poor", "3": "acceptable", "4": "good", "5": "excellent"}
QUESTIONS = {
    "fluency": "Fluency: is the response well-formed, grammatical, natural language?",
    "coherence": "Coherence: does the response hang together and follow logically?",
    "relevance": "Relevance: does the response address the prompt?",
    "helpfulness": "Helpfulness: would this response help the person who asked?",
    "tone": "Tone: is the tone appropriate (polite, neither curt nor overbearing)?",
    "overall": "Overall quality of the response",
    "success": "Did the response accomplish the task (a useful answer)?",
}
CHOICES = {
    "likert": [(v, f"{v} {ANCHORS[v]}", v) for v in "12345"],
    "pairwise": [("A", "A is better", "a"), ("B", "B is better", "b"), ("tie", "Tie: equally good", "t"),
                 ("both_bad", "Both bad", "x")],
    "task": [("yes", "Yes", "y"), ("partly", "Partly", "p"), ("no", "No", "n")],
}
KEY_HELP = {"likert": "1–5 rate the highlighted criterion", "pairwise": "A, B, T (tie), X (both bad)",
            "task": "Y (yes), P (partly), N (no)"}


def question(kind: str, criterion: str) -> str:
    if kind == "pairwise":
        topic = "overall" if criterion == "overall" else criterion
        return f"Which response is better ({topic})?"
    return QUESTIONS.get(criterion, criterion.replace("_", " ").capitalize())


ENV.globals.update(question=question, choices=lambda kind: CHOICES[kind], key_help=lambda kind: KEY_HELP[kind])


def _page(name: str, status: int = 200, **context) -> HTMLResponse:
    return HTMLResponse(ENV.get_template(name).render(**context), status_code=status)


def _message(title: str, message: str, status: int) -> HTMLResponse:
    return _page("message.html", status, title=title, message=message)


@page_router.get("/")
def home():
    return _message("Rating", "Open the invitation link you were given to start rating.", 200)


@page_router.get("/r/{token}")
def join(request: Request, token: str):
    if request.app.state.store.rater_by_token(token) is None:
        return _message("Unknown invitation", "This invitation link is not valid.", 404)
    response = RedirectResponse("/rate", status_code=303)
    set_cookie(response, request, RATER_COOKIE, token)
    return response


def _rate_page(request: Request, caller, position: int | None, error: str | None = None, status: int = 200):
    store = request.app.state.store
    rater = caller.subject
    if position is None:
        position = store.next_position(rater)
        if position is None:
            done, total = store.progress(rater)
            open_ = store.task(rater, 1, mark_shown=False).open if total else False
            return _page("done.html", total=total, open=open_)
    task = store.task(rater, position)
    labels = ("A", "B") if len(task.outputs) == 2 else ("response",)
    return _page("rate.html", status, task=task, labels=labels, csrf=caller.csrf, error=error)


@page_router.get("/rate")
def rate(request: Request, position: int | None = None):
    caller = rater_caller(request, request.app.state.store)
    if caller is None:
        return _message("Not signed in", "Open the invitation link you were given to start rating.", 401)
    try:
        return _rate_page(request, caller, position)
    except InvalidArgument as error:
        return _message("Not found", str(error), 404)


async def _signed_form(request: Request, resolve):
    """(form fields, caller) of a form post; the CSRF token is checked (403) once the caller is known."""
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    caller = await run_in_threadpool(resolve, request, request.app.state.store)
    if caller is not None:
        caller.require_csrf(form.get("csrf"))
    return form, caller


@page_router.post("/rate")
async def rate_submit(request: Request):
    form, caller = await _signed_form(request, rater_caller)
    store = request.app.state.store
    if caller is None:
        return _message("Not signed in", "Open the invitation link you were given to start rating.", 401)
    try:
        position = int(form.get("position", ""))
        elapsed = form.get("elapsed_ms") or None
        elapsed = int(elapsed) if elapsed is not None else None
    except ValueError:
        return _message("Bad request", "position and elapsed_ms must be whole numbers", 400)
    answers = {k[2:]: v for k, v in form.items() if k.startswith("c.")}
    try:
        await run_in_threadpool(store.submit, caller.subject, position, answers, elapsed)
    except InvalidArgument as error:
        status = 409 if isinstance(error, StudyClosed) else 400
        try:
            return await run_in_threadpool(_rate_page, request, caller, position, str(error), status)
        except InvalidArgument:
            return _message("Bad request", str(error), 400)
    return RedirectResponse("/rate", status_code=303)


def _admin_or_page(request: Request):
    caller = admin_caller(request, request.app.state.store)
    if caller is None:
        return None, _message("Not signed in", "Open the admin link to see this page.", 401)
    return caller, None


@page_router.get("/admin")
def admin(request: Request):
    caller, refusal = _admin_or_page(request)
    if refusal:
        return refusal
    report = build_report(request.app.state.store, caller.subject, n_bootstrap=200)
    return _page("admin.html", report=report, csrf=caller.csrf, css=None)


@page_router.get("/admin/report", name="admin_report")
def admin_report(request: Request):
    caller, refusal = _admin_or_page(request)
    if refusal:
        return refusal
    return HTMLResponse(html_report(build_report(request.app.state.store, caller.subject), standalone=False))


@page_router.get("/admin/export.{fmt}")
def admin_export(request: Request, fmt: str):
    caller, refusal = _admin_or_page(request)
    if refusal:
        return refusal
    if fmt not in ("csv", "jsonl"):
        return _message("Not found", "exports are export.csv and export.jsonl", 404)
    rows = request.app.state.store.ratings(caller.subject)
    body, media = (ratings_csv(rows), "text/csv") if fmt == "csv" else (ratings_jsonl(rows), "application/x-ndjson")
    return PlainTextResponse(body, media_type=f"{media}; charset=utf-8",
                             headers={"content-disposition": f'attachment; filename="ratings.{fmt}"'})


@page_router.post("/admin/close")
async def admin_close(request: Request):
    _form, caller = await _signed_form(request, admin_caller)
    if caller is None:
        return _message("Not signed in", "Open the admin link to see this page.", 401)
    await run_in_threadpool(request.app.state.store.close_study, caller.subject)
    return RedirectResponse("/admin", status_code=303)


# declared last: the fixed /admin/... paths above take precedence over a token
@page_router.get("/admin/{token}")
def admin_join(request: Request, token: str):
    if request.app.state.store.study_by_admin_token(token) is None:
        return _message("Unknown admin link", "This admin link is not valid.", 404)
    response = RedirectResponse("/admin", status_code=303)
    set_cookie(response, request, ADMIN_COOKIE, token)
    return response
