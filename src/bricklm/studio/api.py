"""The OpenAI-compatible API: every run is a model, by its id in the runs folder.

    GET  /v1/models                  the runs that have a checkpoint to serve
    GET  /v1/models/{id}
    POST /v1/completions             {"model": "blog", "prompt": "The ", "max_tokens": 50, "stream": true}
    POST /v1/chat/completions        fine-tuned runs only (`bricklm finetune`); a base run is a 400

A model id is a run's id ("blog", "sweep/run-01"), served from its best checkpoint, or
"RUN@CHECKPOINT" for another one: "blog@last", "blog@step-000000600", "blog@loss-2.50".
`stream: true` answers with server-sent events in OpenAI's chunk format, ending in `data: [DONE]`;
`stream_options.include_usage` adds a last chunk with the token counts. Beyond OpenAI's fields:
`top_k` (as llama.cpp and vLLM take it), `return_token_ids` (vLLM's name: each choice carries
the ids of its text, and the first chunk the prompt's, which is what the studio's "look inside" uses)
and `return_copied` (the choice, or the last chunk's, carries "copied": the spans of its text found
verbatim in the run's training text, copying.py). With --max-copied (copying.py) no text carries a span
of more than that many characters of training text, counted from the prompt on; a text the guard ended
has finish_reason "content_filter", and a run it can't guard (no copying index) is a 403.
Errors are {"error": {"message", "type", "param", "code"}} with a 4xx status (app.py turns
validation errors into 400s).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bricklm.errors import UserError
from bricklm.studio.engine import TokenStream
from bricklm.studio.sampling import Settings, chat_prompt, chat_reply, completion, prompt_ids

MAX_TOKENS = 4096  # per request, for any run
MAX_PROMPT_CHARS = 16_384  # a prompt, or all of a conversation's messages together
MAX_MESSAGES = 256
MAX_STOP = 4  # stop strings per request, as OpenAI allows
DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default max_tokens for completions

log = logging.getLogger("bricklm.studio")


class ApiError(Exception):
    """An error answered as OpenAI does: a status and {"error": {...}}."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"message": self.message, "type": kind, "param": self.param, "code": self.code}

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": self.body()}, status_code=self.status, headers=headers)


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    """Fields both endpoints share, with their limits; unknown fields are ignored, as OpenAI's clients send some."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=512)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)  # the chat API's newer name
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1, le=100_000)  # 0 or -1: off, as in llama.cpp and vLLM
    seed: int | None = Field(None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool | int | None = None
    return_token_ids: bool = False
    return_copied: bool = False

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > MAX_STOP or any(len(s) > 64 for s in stops):
            raise ValueError(f"at most {MAX_STOP} stop strings of at most 64 characters")
        return stops

    @field_validator("logprobs")
    @classmethod
    def _logprobs(cls, v):
        if v:
            raise ValueError("logprobs are not supported by this server")
        return v

    def settings(self, default_tokens: int, most: int) -> Settings:
        """The request's sampling settings; max_tokens above `most` (what this run can make) is a 400."""
        wanted = self.max_completion_tokens or self.max_tokens or min(default_tokens, most)
        if wanted > most:
            raise ApiError(400, f"max_tokens is {wanted}, but this model can make at most {most}", "max_tokens")
        if self.stop and self.return_token_ids:
            raise ApiError(400, "return_token_ids cannot be combined with stop", "stop")
        temperature = 1.0 if self.temperature is None else self.temperature
        top_k = self.top_k if self.top_k and self.top_k > 0 else None
        return Settings(wanted, temperature, top_k, self.top_p, self.seed, list(self.stop or []))


class CompletionRequest(Sampling):
    prompt: str | list[str] = ""
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v):
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("give one prompt (a string, or a list of one string)")
            v = v[0]
        if len(v) > MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt is {len(v)} characters; at most {MAX_PROMPT_CHARS}")
        return v

    @field_validator("echo")
    @classmethod
    def _echo(cls, v):
        if v:
            raise ValueError("echo is not supported by this server")
        return v


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)

    @field_validator("messages")
    @classmethod
    def _messages(cls, v):
        if sum(len(m.text()) for m in v) > MAX_PROMPT_CHARS:
            raise ValueError(f"the messages hold more than {MAX_PROMPT_CHARS} characters together")
        roles = ["system" if m.role == "developer" else m.role for m in v]
        if "system" in roles[1:]:
            raise ValueError("a system message may only come first")
        if roles[-1] != "user":
            raise ValueError("the last message must be the user's")
        return v

    def conversation(self) -> list[dict[str, str]]:
        """The messages in finetune's terms (a "developer" message is the system message)."""
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]


# --- responses -------------------------------------------------------------------------------


def sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class Reply:
    """One request's answer, as a whole or as chunks: the parts that differ between the two endpoints."""

    def __init__(
        self, chat: bool, model: str, n_prompt: int, prompt_token_ids: list[int], token_ids: bool, copied=None
    ):
        self.chat, self.model, self.n_prompt = chat, model, n_prompt
        self.prompt_token_ids, self.token_ids = prompt_token_ids, token_ids
        self.copied = copied  # text -> the copied spans in it (return_copied), blocking; None: not asked
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def head(self, object_: str) -> dict:
        return {"id": self.id, "object": object_, "created": self.created, "model": self.model}

    def choice(self, text: str, ids: list[int], finish: str | None, first: bool = False, whole: bool = False):
        """One choice: a completion's text, a chat reply's message (whole) or delta (a chunk; the first
        chunk names the role, later ones carry only new content)."""
        out: dict = {"index": 0}
        if not self.chat:
            out["text"] = text
        elif whole:
            out["message"] = {"role": "assistant", "content": text}
        else:
            out["delta"] = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
        out |= {"logprobs": None, "finish_reason": finish}
        if self.token_ids:
            out["token_ids"] = ids
        return out

    async def whole(self, stream: TokenStream) -> dict:
        pieces = [p async for p in stream]
        text, ids = "".join(p.text for p in pieces), [i for p in pieces for i in p.ids]
        out = self.head("chat.completion" if self.chat else "text_completion")
        finish = pieces[-1].finish if pieces else "length"  # no pieces: the server is shutting down
        out["choices"] = [self.choice(text, ids, finish, whole=True)]
        if self.copied:
            out["choices"][0]["copied"] = await run_in_threadpool(self.copied, text)
        out["usage"] = usage(self.n_prompt, sum(p.tokens for p in pieces))
        if self.token_ids:
            out["prompt_token_ids"] = self.prompt_token_ids
        return out

    async def chunks(self, stream: TokenStream, include_usage: bool) -> AsyncIterator[str]:
        head = self.head("chat.completion.chunk" if self.chat else "text_completion")
        if include_usage:
            head["usage"] = None  # as OpenAI does: null on every chunk but the last
        made, text = 0, []
        try:
            first = head | {"choices": [self.choice("", [], None, first=True)]}
            if self.token_ids:
                first["prompt_token_ids"] = self.prompt_token_ids
            yield sse(first)
            try:
                async for p in stream:
                    made += p.tokens
                    text.append(p.text)
                    if p.text or p.ids or p.finish:
                        choice = self.choice(p.text, p.ids, p.finish)
                        if p.finish and self.copied:  # the last chunk: the spans of the whole text
                            choice["copied"] = await run_in_threadpool(self.copied, "".join(text))
                        yield sse(head | {"choices": [choice]})
            except Exception as exc:  # noqa: BLE001 - the status is sent: say so in the stream, as OpenAI does
                log.exception("generation failed mid-stream (%s)", self.model)
                yield sse({"error": ApiError(500, f"generation failed: {type(exc).__name__}").body()})
            else:
                if include_usage:
                    yield sse(head | {"choices": [], "usage": usage(self.n_prompt, made)})
            yield "data: [DONE]\n\n"
        finally:
            await stream.aclose()  # the client left mid-stream: stop generating for it


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def answer(studio, request: Request, req: Sampling, reply: Reply, job) -> JSONResponse | StreamingResponse:
    stream = studio.submit(job)
    if req.stream:
        include = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(reply.chunks(stream, include), media_type="text/event-stream", headers=SSE_HEADERS)
    whole = asyncio.ensure_future(reply.whole(stream))
    gone = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait({whole, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # the client left (or this handler was cancelled): stop the job and give its slot back now
        gone.cancel()
        if not whole.done():
            whole.cancel()
            await stream.aclose()
    await asyncio.wait({whole})  # a cancelled task is done only once the cancellation has landed in it
    if whole.cancelled():
        return Response(status_code=499)  # nobody is there to read it (nginx's "client closed request")
    try:
        return JSONResponse(whole.result())
    except Exception as exc:  # noqa: BLE001 - a bug or a damaged model: a clean 500, the traceback in the log
        log.exception("generation failed (%s)", reply.model)
        raise ApiError(500, f"generation failed: {type(exc).__name__}", code="generation_failed") from None


async def disconnected(request: Request) -> None:
    """Returns once the client has closed its connection. The body has been read by then, so the server
    has nothing else to hand the app but the disconnect (uvicorn waits for it without polling)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


# --- routes ----------------------------------------------------------------------------------


def router(studio) -> APIRouter:
    """The /v1 routes over a Studio (app.py): its runs, model cache and engine."""
    r = APIRouter()

    @r.get("/v1/models")
    async def list_models():
        models = await run_in_threadpool(studio.model_list)
        return {"object": "list", "data": models}

    @r.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str):
        models = await run_in_threadpool(studio.model_list)
        found = next((m for m in models if m["id"] == model_id), None)
        if found is None:
            raise ApiError(404, f"the model {model_id!r} does not exist", "model", "model_not_found")
        return found

    @r.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        served = await studio.served(req.model)
        s = req.settings(DEFAULT_COMPLETION_TOKENS, MAX_TOKENS)
        try:  # off the event loop: a prompt of 16k characters is tokenized once, in one call
            ids = await run_in_threadpool(prompt_ids, served, req.prompt)
        except UserError as exc:
            raise ApiError(400, str(exc), "prompt") from None
        before = unicodedata.normalize("NFC", req.prompt)  # as the model reads it: a span may start there
        guard = await run_in_threadpool(studio.guard, served, before)
        reply = Reply(False, req.model, len(ids), ids, req.return_token_ids, studio.copied(served, req))
        return await answer(studio, request, req, reply, lambda: completion(served, ids, s, guard))

    @r.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest, request: Request):
        served = await studio.served(req.model)
        if not served.chat:
            raise ApiError(
                400,
                f"{req.model!r} is a base model, not fine-tuned for chat (make one with "
                "`bricklm finetune`); use /v1/completions for it",
                "model",
                "not_a_chat_model",
            )
        # A reply longer than the context window would no longer see the question it answers.
        s = req.settings(served.block_size, served.block_size)
        chat, ids = await run_in_threadpool(chat_prompt, served, req.conversation(), s)
        # The guard reads the reply as if it went on from the user's message: that can't fetch a line's end.
        guard = await run_in_threadpool(studio.guard, served, req.messages[-1].text())
        reply = Reply(True, req.model, len(ids), [], req.return_token_ids, studio.copied(served, req))
        return await answer(studio, request, req, reply, lambda: chat_reply(served, chat, ids, s, guard))

    return r
