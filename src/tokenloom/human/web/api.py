"""The JSON API: a rater's queue and answers, an admin's progress and results.

    GET  /api/rater/next                  the first unanswered item (where to continue)
    GET  /api/rater/items/{position}      one item of the queue, with the answers given so far
    PUT  /api/rater/items/{position}      give or change answers: {"answers": {criterion: value}}
    GET  /api/rater/progress              {"done", "total", "next"}
    GET  /api/admin/progress              per rater: done, total, gold accuracy, agreement, flags
    GET  /api/admin/results               the full report (JSON)
    GET  /api/admin/export?format=csv     every rating (csv | jsonl)
    POST /api/admin/close                 stop taking answers

A rater's responses hold their own queue only: prompt, outputs labelled A/B (or
one response), their answers; never a system name, an item id or another
rater's answer.
"""

from __future__ import annotations

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from tokenloom.human.metric_corr import check_metrics
from tokenloom.human.render import ratings_csv, ratings_jsonl
from tokenloom.human.report import build_report
from tokenloom.human.store import MAX_ELAPSED_MS
from tokenloom.human.web.auth import Caller, admin_caller, rater_caller

api_router = APIRouter(prefix="/api")
POSITION = Path(ge=1, le=1_000_000, description="1-based place in the rater's queue")


class RatingIn(BaseModel):
    answers: dict[str, str] = Field(description="criterion -> answer (likert '1'-'5'; pairwise 'A', 'B', "
                                                "'tie', 'both_bad'; task 'yes', 'partly', 'no')",
                                    max_length=32)
    elapsed_ms: int | None = Field(None, ge=0, le=MAX_ELAPSED_MS, description="time on task, if measured")


class Output(BaseModel):
    label: str
    text: str


class TaskOut(BaseModel):
    position: int
    total: int
    done: int
    kind: str
    criteria: list[str]
    allowed: list[str]
    prompt: str
    system_prompt: str
    outputs: list[Output]
    answers: dict[str, str]
    open: bool


class NextOut(BaseModel):
    position: int | None
    done: int
    total: int
    task: TaskOut | None


class Ack(BaseModel):
    position: int
    ids: dict[str, int] = Field(description="criterion -> rating id (stable across changes)")
    changed: list[str]
    done: int
    total: int


class Progress(BaseModel):
    done: int
    total: int
    next: int | None


def _rater(request: Request) -> Caller:
    caller = rater_caller(request, request.app.state.store)
    if caller is None:
        raise HTTPException(401, "a valid rater token is required (Authorization: Bearer TOKEN)")
    return caller


def _admin(request: Request) -> Caller:
    caller = admin_caller(request, request.app.state.store)
    if caller is None:
        raise HTTPException(401, "a valid admin token is required (Authorization: Bearer TOKEN)")
    return caller


@api_router.get("/rater/next", response_model=NextOut)
def next_item(request: Request):
    rater, store = _rater(request).subject, request.app.state.store
    position = store.next_position(rater)
    done, total = store.progress(rater)
    task = store.task(rater, position).to_dict() if position else None
    return {"position": position, "done": done, "total": total, "task": task}


@api_router.get("/rater/items/{position}", response_model=TaskOut)
def get_item(request: Request, position: int = POSITION):
    caller = _rater(request)
    return request.app.state.store.task(caller.subject, position).to_dict()


@api_router.put("/rater/items/{position}", response_model=Ack)
def put_rating(request: Request, body: RatingIn, position: int = POSITION,
               x_csrf_token: str | None = Header(None)):
    caller = _rater(request)
    caller.require_csrf(x_csrf_token)
    store = request.app.state.store
    ack = store.submit(caller.subject, position, body.answers, body.elapsed_ms)
    done, total = store.progress(caller.subject)
    return {**ack, "done": done, "total": total}


@api_router.get("/rater/progress", response_model=Progress)
def rater_progress(request: Request):
    rater, store = _rater(request).subject, request.app.state.store
    done, total = store.progress(rater)
    return {"done": done, "total": total, "next": store.next_position(rater)}


@api_router.get("/admin/progress")
def admin_progress(request: Request):
    study = _admin(request).subject
    return build_report(request.app.state.store, study, n_bootstrap=1)["raters"]


@api_router.get("/admin/results")
def admin_results(request: Request, metrics: str = Query("", description="comma-separated: bleu,chrf,rougeL"),
                  bootstrap: int = Query(1000, ge=1, le=10_000)):
    study = _admin(request).subject
    names = check_metrics(metrics.split(",")) if metrics else ()
    return build_report(request.app.state.store, study, metrics=names, n_bootstrap=bootstrap)


@api_router.get("/admin/export", response_class=PlainTextResponse)
def admin_export(request: Request, format: str = Query("csv", pattern="^(csv|jsonl)$")):
    study = _admin(request).subject
    rows = request.app.state.store.ratings(study)
    if format == "csv":
        return PlainTextResponse(ratings_csv(rows), media_type="text/csv; charset=utf-8")
    return PlainTextResponse(ratings_jsonl(rows), media_type="application/x-ndjson; charset=utf-8")


@api_router.post("/admin/close")
def admin_close(request: Request, x_csrf_token: str | None = Header(None)):
    caller = _admin(request)
    caller.require_csrf(x_csrf_token)
    request.app.state.store.close_study(caller.subject)
    return {"study": caller.subject.name, "status": "closed"}
