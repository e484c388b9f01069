"""The web app: a page for students, a page for the teacher, and the JSON API both use.

    GET  /                          the labeling page (type a name, then keys a, b, t, s, u)
    GET  /teacher?token=TOKEN       the teacher's page
    GET  /api/pair?annotator=NAME   the next pair for NAME: {"pair_id", "prompt", "completion_a", "completion_b",
                                    "labeled"}; {"pair_id": null, ...} when NAME has seen every pair
    POST /api/label                 {"pair_id", "annotator", "choice", "label_id" (optional)}: answers once committed
    POST /api/undo                  {"annotator", "label_id" (optional; default: NAME's last label)}
    GET  /api/export                every label as JSONL preference records (teacher token)
    GET  /api/report                the teacher page's figures as JSON (teacher token)
    POST /api/train                 start `classroom train` in the background (teacher token); GET: its state
    GET  /api/health                {"ok": true, "pairs": N}

Errors are JSON {"error": "..."} with a 4xx status that says what was wrong, and store nothing.
The teacher token comes as `Authorization: Bearer TOKEN` or `?token=TOKEN`.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from rlhf_lib.classroom import pages
from rlhf_lib.classroom.report import class_report
from rlhf_lib.classroom.store import MAX_LABEL_ID, Store, StoreError

MAX_BODY = 4096  # bytes; a label is about 100
LABEL_ID = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_LABEL_ID}}}")


def make_app(store: Store, token: str, trainer=None) -> Starlette:
    """The app over `store`; `token` opens the teacher's side; `trainer` (optional) has .start() and .state()."""

    def teacher(request: Request) -> None:
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else request.query_params.get("token")
        if not given:
            raise StoreError(401, "this needs the teacher token: send 'Authorization: Bearer TOKEN' "
                                  "or add ?token=TOKEN to the address")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise StoreError(403, "wrong teacher token")

    async def student_page(request):
        return HTMLResponse(pages.STUDENT)

    async def teacher_page(request):
        try:
            teacher(request)
        except StoreError as err:
            return HTMLResponse(pages.refused(str(err)), status_code=err.status)
        report = await run_in_threadpool(lambda: class_report(store.labels()))
        state = trainer.state() if trainer is not None else None
        return HTMLResponse(pages.teacher(report, store.n_pairs(), request.query_params.get("token", ""), state))

    async def get_pair(request):
        if "annotator" not in request.query_params:
            raise StoreError(422, "missing query parameter 'annotator' (your name): /api/pair?annotator=NAME")
        name = request.query_params["annotator"]
        pair = await run_in_threadpool(store.next_pair, name)
        labeled = await run_in_threadpool(store.n_labels, name.strip())
        if pair is None:
            return JSONResponse(dict(pair_id=None, labeled=labeled, message="you have seen every pair: thank you"))
        return JSONResponse(dict(pair_id=pair.id, prompt=pair.prompt, completion_a=pair.completion_a,
                                 completion_b=pair.completion_b, labeled=labeled))

    async def post_label(request):
        body = await read_json(request, required=("pair_id", "annotator", "choice"), optional=("label_id",))
        pair_id = body["pair_id"]
        if not isinstance(pair_id, int) or isinstance(pair_id, bool):
            raise StoreError(422, f"field 'pair_id' must be an integer, got {json.dumps(pair_id)}")
        if not isinstance(body["choice"], str):
            raise StoreError(422, f"field 'choice' must be text, got {json.dumps(body['choice'])}")
        label_id = check_label_id(body.get("label_id")) or uuid.uuid4().hex
        result = await run_in_threadpool(store.add_label, pair_id, body["annotator"], body["choice"], label_id)
        result["labeled"] = await run_in_threadpool(store.n_labels, body["annotator"].strip())
        return JSONResponse(result, status_code=200 if result["duplicate"] else 201)

    async def post_undo(request):
        body = await read_json(request, required=("annotator",), optional=("label_id",))
        result = await run_in_threadpool(store.undo, body["annotator"], check_label_id(body.get("label_id")))
        return JSONResponse(result)

    async def export(request):
        teacher(request)
        lines = await run_in_threadpool(store.export_lines)
        return Response("".join(line + "\n" for line in lines), media_type="application/x-ndjson",
                        headers={"content-disposition": 'attachment; filename="class_labels.jsonl"'})

    async def report(request):
        teacher(request)
        figures = await run_in_threadpool(lambda: class_report(store.labels()))
        return JSONResponse(nan_to_none(figures))

    async def train(request):
        teacher(request)
        if trainer is None:
            raise StoreError(404, "this server was started without training")
        if request.method == "POST":
            trainer.start()
        return JSONResponse(trainer.state())

    async def health(request):
        return JSONResponse(dict(ok=True, pairs=await run_in_threadpool(store.n_pairs)))

    async def refused(request, err: StoreError):
        return JSONResponse(dict(error=str(err)), status_code=err.status)

    async def http_error(request, err: HTTPException):  # no such page, or the wrong method
        return JSONResponse(dict(error=f"{request.method} {request.url.path}: {err.detail}"),
                            status_code=err.status_code, headers=err.headers)

    routes = [Route("/", student_page), Route("/teacher", teacher_page), Route("/api/pair", get_pair),
              Route("/api/label", post_label, methods=["POST"]), Route("/api/undo", post_undo, methods=["POST"]),
              Route("/api/export", export), Route("/api/report", report),
              Route("/api/train", train, methods=["GET", "POST"]), Route("/api/health", health)]
    return Starlette(routes=routes, exception_handlers={StoreError: refused, HTTPException: http_error})


async def read_json(request: Request, required: tuple, optional: tuple = ()) -> dict:
    """The body as a JSON object with the `required` fields (and maybe the `optional` ones), read up to
    MAX_BODY bytes; anything else is refused with a message naming what is wrong."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise StoreError(413, f"the request body is {length} bytes; at most {MAX_BODY}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise StoreError(413, f"the request body is over {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(400, f"the request body is not valid JSON ({getattr(err, 'msg', err)}); send an object "
                              f"with {', '.join(required)}") from None
    if not isinstance(data, dict):
        raise StoreError(400, f"the request body must be a JSON object with {', '.join(required)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise StoreError(422, f"missing field(s) {', '.join(map(repr, missing))}")
    unknown = [k for k in data if k not in required and k not in optional]
    if unknown:
        raise StoreError(422, f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are "
                              f"{', '.join(required + optional)}")
    if "annotator" in data and not isinstance(data["annotator"], str):
        raise StoreError(422, f"field 'annotator' must be text, got {json.dumps(data['annotator'])}")
    return data


def check_label_id(label_id) -> str | None:
    if label_id is None:
        return None
    if not isinstance(label_id, str) or not LABEL_ID.fullmatch(label_id):
        raise StoreError(422, f"field 'label_id' must be 1 to {MAX_LABEL_ID} letters, digits or _.:-, "
                              f"got {json.dumps(label_id)}")
    return label_id


def nan_to_none(x):
    """JSON has no NaN: undefined figures (kappa when everyone chose alike) become null."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [nan_to_none(v) for v in x]
    return x
