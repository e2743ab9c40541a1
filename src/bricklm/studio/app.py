"""The studio's ASGI app: one page over a runs folder, its JSON and live-event routes, and the OpenAI API.

    app = create_app("runs")                          # uvicorn.run(app) or server.serve(...)
    app = create_app("runs/blog", single_run=True)    # `bricklm serve`: one run's API and chat page

    GET  /                  the page (static/index.html; plain JS and CSS, no build step)
    GET  /api/info          the folder, the limits
    GET  /api/runs          every run, newest first: config, parameters, best val loss, status, checkpoints
    GET  /api/live?run=ID   server-sent events: a run's curves, samples and progress as training writes them
    GET  /api/source?model=ID&position=P&length=N   the training text around a copied span (copying.py)
    POST /api/inside        attention per head and the logit lens for one generated token
    GET  /health            ok, the runs, the loaded models, generations going, tokens made
    /v1/...                 the OpenAI-compatible API (api.py)

Guard, the outermost layer, answers a Host header that isn't this server's (a web page elsewhere
reaching 127.0.0.1 through DNS rebinding) with 400, a page on another site (Origin) with 403, a
request without the API key (when the server has one) with 401 and a body over MAX_BODY with 413,
and adds headers that keep the page from being framed or sniffed. Any error, a bug's included, is
answered in OpenAI's shape {"error": {...}}.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

import bricklm.studio.api as api
from bricklm import __version__
from bricklm.storage.runs import CONFIG
from bricklm.studio.api import MAX_TOKENS, SSE_HEADERS, ApiError
from bricklm.studio.copying import MAX_SPAN, Copying, TokenGuard
from bricklm.studio.engine import Busy, Engine
from bricklm.studio.guard import Guard
from bricklm.studio.inside import look_inside
from bricklm.studio.live import MAX_RUNS, MAX_STREAMS, LiveFeed, TooMany
from bricklm.studio.logs import LiveRuns, describe, mtime, run_config
from bricklm.studio.models import LoadFailed, ModelCache, NotFound, Served
from bricklm.studio.runsdir import Run, RunsDir

STATIC = files("bricklm.studio") / "static"


class Studio:
    """What the routes share: the runs folder, the runs followed live, the model cache and the generation engine."""

    def __init__(
        self,
        runs: RunsDir,
        cache_size: int = 4,
        workers: int = 4,
        max_jobs: int = 68,
        max_live: int = MAX_STREAMS,
        max_copied: int | None = None,
    ):
        self.runs = runs
        self.copying = Copying(runs, max_copied)
        self.live_runs = LiveRuns(runs)
        self.models = ModelCache(runs, cache_size)
        self.engine = Engine(workers, max_jobs)
        self.closing = False
        # Set by whoever runs the server (server.serve: uvicorn's should_exit) so that live streams end
        # as soon as Ctrl-C is pressed, instead of holding the shutdown until its grace period runs out.
        self.exiting: Callable[[], bool] = lambda: False
        self.live = LiveFeed(runs, self.live_runs, max_live, stopping=lambda: self.closing or self.exiting())

    def rows(self) -> list[dict]:
        """The runs table, newest first (blocking: reads files)."""
        rows = [describe(self.runs, run, self.live_runs.get(run)) for run in self.runs.runs()]
        return sorted(rows, key=lambda r: r["updated"], reverse=True)

    def model_list(self) -> list[dict]:
        """/v1/models: every run with a checkpoint to serve (blocking)."""
        out = []
        for run in self.runs.runs():
            if self.runs.best_checkpoint(run) is None:
                continue
            config = run_config(self.runs, run)
            path = self.runs.file(run, CONFIG)
            out.append(
                {
                    "id": run.id,
                    "object": "model",
                    "created": int(mtime(path)) if path else 0,
                    "owned_by": "bricklm",
                    "context_length": config.get("model", {}).get("block_size"),
                    "chat": "finetune" in config,
                }
            )
        return out

    def run_of(self, model_id: str) -> tuple[Run, str]:
        """(the run, which checkpoint) a model id names ("run" or "run@checkpoint"); ApiError 404 if none."""
        run, which = self.runs.get(model_id), "best"
        if run is None and "@" in model_id:
            name, which = model_id.rsplit("@", 1)
            run = self.runs.get(name)
        if run is None:
            raise ApiError(404, f"the model {model_id!r} does not exist", "model", "model_not_found")
        return run, which

    async def served(self, model_id: str) -> Served:
        """The loaded model a request names ("run" or "run@checkpoint"); ApiError 404 if there is none."""
        run, which = self.run_of(model_id)
        try:
            return await run_in_threadpool(self.models.get, run, which)
        except NotFound as exc:
            raise ApiError(404, str(exc), "model", "model_not_found") from None
        except LoadFailed as exc:
            raise ApiError(500, str(exc), "model", "model_not_loadable") from None

    def guard(self, served: Served, before: str) -> TokenGuard | None:
        """The privacy guard for one generation from `served` after the text `before` (blocking); None when
        the server has none; ApiError 403 when the run can't be guarded."""
        run, _ = self.run_of(served.run_id)
        specials = getattr(served.tokenizer, "special_ids", {}).values()
        return self.copying.guard(run, served.tokenizer, before, specials)

    def copied(self, served: Served, req) -> Callable[[str], dict] | None:
        """For a request with return_copied: text -> the copied spans in it (blocking)."""
        if not req.return_copied:
            return None
        run, _ = self.run_of(served.run_id)
        return lambda text: self.copying.spans(run, text)

    def submit(self, job):
        try:
            return self.engine.submit(job)
        except Busy as exc:
            raise ApiError(503, f"server busy: {exc}", code="server_busy") from None


class InsideRequest(BaseModel):
    model: str = Field(min_length=1, max_length=512)
    ids: list[int] = Field(min_length=2, max_length=2 * MAX_TOKENS)
    prompt_len: int = Field(ge=0)
    position: int = Field(ge=1)


def create_app(
    runs_dir: str | Path,
    single_run: bool = False,
    allowed_hosts: list[str] | None = None,
    cache_size: int = 4,
    workers: int = 4,
    max_jobs: int = 68,
    api_key: str | None = None,
    max_live: int = MAX_STREAMS,
    max_copied: int | None = None,
) -> Guard:
    """The studio over `runs_dir` (one run with single_run). allowed_hosts: the Host names to answer
    (None: any). api_key: required of every request (guard.py) if given. max_live: live streams open at
    once. max_copied: the privacy guard (copying.py), checked here. UserError if the folder is missing, or
    max_copied is below a run's chance length (or, serving one run, that run has no copying index)."""
    studio = Studio(RunsDir(runs_dir, single_run), cache_size, workers, max_jobs, max_live, max_copied)
    studio.copying.check_start()

    @asynccontextmanager
    async def lifespan(app):
        yield
        studio.closing = True
        studio.live.stop()  # live streams end
        studio.engine.shutdown()

    app = FastAPI(
        title="bricklm studio", version=__version__, docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.studio = studio
    app.include_router(api.router(studio))
    install_errors(app)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/health")
    async def health():
        runs = await run_in_threadpool(studio.runs.runs)
        return {"status": "ok", "runs": len(runs), "models": studio.models.loaded(), **studio.engine.stats()}

    @app.get("/api/info")
    async def info():
        return {
            "folder": studio.runs.root.name,
            "single_run": single_run,
            "version": __version__,
            "limits": {"max_tokens": MAX_TOKENS, "max_prompt_chars": api.MAX_PROMPT_CHARS},
            "max_copied": studio.copying.max_copied,
        }

    @app.get("/api/runs")
    async def runs():
        return await run_in_threadpool(studio.rows)

    @app.get("/api/live")
    async def live(run: Annotated[list[str], Query(min_length=1, max_length=MAX_RUNS)]):
        found = [studio.runs.get(r) for r in dict.fromkeys(run)]
        if None in found:
            missing = next(r for r, f in zip(dict.fromkeys(run), found, strict=True) if f is None)
            raise ApiError(404, f"no run {missing!r} in this folder", "run")
        try:
            stream = studio.live.open(found)
        except TooMany as exc:
            raise ApiError(503, f"server busy: {exc}", code="server_busy") from None
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

    @app.get("/api/source")
    async def source(
        model: Annotated[str, Query(min_length=1, max_length=512)],
        position: Annotated[int, Query(ge=0, lt=2**62)],
        length: Annotated[int, Query(ge=1, le=MAX_SPAN)] = 64,
    ):
        run, _ = studio.run_of(model)
        return await run_in_threadpool(studio.copying.excerpt, run, position, length)

    @app.post("/api/inside")
    async def inside(req: InsideRequest):
        served = await studio.served(req.model)
        if req.prompt_len > len(req.ids) or req.position >= len(req.ids):
            raise ApiError(400, "position must be < len(ids) and prompt_len <= len(ids)", "position")
        if not all(0 <= i < served.tokenizer.vocab_size for i in req.ids):
            raise ApiError(400, f"token ids must be in 0..{served.tokenizer.vocab_size - 1}", "ids")
        return await run_in_threadpool(look_inside, served, req.ids, req.prompt_len, req.position)

    return Guard(app, allowed_hosts, api_key)


def install_errors(app: FastAPI) -> None:
    """Every error as OpenAI's {"error": {...}}: a bad request is a 400 that says which field and why."""

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if err.get("type") == "json_invalid":
            return ApiError(
                400, f"malformed JSON in the request body: {err.get('ctx', {}).get('error', '')}", code="invalid_json"
            ).response()
        where = ".".join(str(p) for p in err["loc"] if p != "body")
        return ApiError(400, f"{where}: {err['msg']}" if where else err["msg"], where or None).response()

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        return ApiError(exc.status_code, str(exc.detail)).response()

    @app.exception_handler(Exception)
    async def _bug(request, exc: Exception):  # a bug: a clean body; the server still logs the traceback
        return ApiError(500, "internal server error", code="internal_error").response()
