"""The LM service: one model behind the OpenAI-compatible API on Ray Serve, with dynamic
batching (@serve.batch) of generation requests that share sampling settings."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve

from ringbit.llm import openai_api as oa


def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with OpenAI's error shape; `param` is the dotted path of the first bad field."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    return JSONResponse(status_code=422, content=oa.error_body(message, param))


def make_api(title: str) -> FastAPI:
    api = FastAPI(title=title)
    api.add_exception_handler(RequestValidationError, validation_error_handler)
    return api


def serve_prefix_root(api: FastAPI) -> None:
    """A request to the application's route prefix itself (POST /v1/evaluate) is its "/" route:
    serve it, not a 307 redirect to …/ that many HTTP clients do not follow for a POST."""

    @api.middleware("http")
    async def _exact_route_prefix(request, call_next):
        scope = request.scope
        if scope["path"].rstrip("/") == scope.get("root_path", "").rstrip("/") and not scope["path"].endswith("/"):
            scope["path"] += "/"
            scope["raw_path"] = scope["path"].encode()
        return await call_next(request)


@dataclass(frozen=True)
class GenItem:
    prompt: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]

    @property
    def settings(self) -> tuple:
        return (self.temperature, self.top_p, self.seed, self.stop)


def stream_pieces(text: str) -> list[str]:
    """Word-sized pieces for server-sent events."""
    return re.findall(r"\s*\S+|\s+$", text) or [""]


lm_api = make_api("ringbit LM (OpenAI-compatible)")


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64,
                  health_check_period_s=10, health_check_timeout_s=30)
@serve.ingress(lm_api)
class LMServer:
    """`model`: a ringbit folder, run id, runs:/ or models:/name@alias, or a Hugging Face folder.
    A model that cannot be loaded fails the replica's start, so `serve status` (and `ringbit serve
    status`) shows DEPLOY_FAILED with the reason instead of a replica restarting in a loop."""

    def __init__(self, model: str, name: str | None = None, tracking_uri: str | None = None,
                 max_batch_size: int = 8, batch_wait_timeout_s: float = 0.01,
                 fallback_model: str | None = None) -> None:
        from ringbit.llm.backends import load_language_model
        from ringbit.serving import served_model

        # fallback_model: served while `model` (a fine-tune's models:/NAME@ALIAS) is not registered
        # yet, so a fresh platform serves every application; the card says what it stands in for.
        self.requested = model
        model, self.fallback_reason = served_model(model, fallback_model, tracking_uri)
        try:
            self.lm = load_language_model(model, None if self.fallback_reason else name, tracking_uri)
        except Exception as exc:
            raise RuntimeError(f"model {model!r} could not be loaded: {type(exc).__name__}: {exc}") from exc
        self.generate_batch.set_max_batch_size(max_batch_size)
        self.generate_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def check_health(self) -> None:
        if getattr(self, "lm", None) is None:
            raise RuntimeError("no model loaded")

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def generate_batch(self, items: list[GenItem]) -> list[Any]:
        """Requests that arrive together are generated together, grouped by sampling settings."""
        loop = asyncio.get_running_loop()
        results: list[Any] = [None] * len(items)
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(item.settings, []).append(i)
        for (temperature, top_p, seed, stop), idx in groups.items():
            new = max(items[i].max_tokens for i in idx)
            outs = await loop.run_in_executor(None, lambda: self.lm.generate(
                [items[i].prompt for i in idx], new, temperature, top_p, seed, list(stop)))
            for i, out in zip(idx, outs):
                results[i] = self._trim(out, items[i].max_tokens, list(stop))
        return results

    def _trim(self, out, max_tokens: int, stop: list[str]):
        """A batch generates up to its longest request; cut each to what it asked for (the
        request's stop strings still apply to the shorter text)."""
        if len(out.tokens) <= max_tokens:
            return out
        from ringbit.llm.backends import Generation, apply_stop_strings

        text, hit_stop = apply_stop_strings(self.lm.decode(out.tokens[:max_tokens]), stop)
        return Generation(out.tokens[:max_tokens], text, "stop" if hit_stop else "length")

    def _encode(self, text: str, param: str, max_tokens: int) -> list[int] | JSONResponse:
        ids = self.lm.encode(text)
        if len(ids) + max_tokens > self.lm.max_context:
            return JSONResponse(status_code=422, content=oa.error_body(
                f"{param}: {len(ids)} prompt tokens + max_tokens {max_tokens} exceed the model's "
                f"context of {self.lm.max_context} tokens; shorten the {param} or lower max_tokens",
                param, "context_length_exceeded"))
        return ids or [0]

    async def _run(self, prompt: list[int], req: oa._Request):
        return await self.generate_batch(GenItem(prompt, req.max_tokens, req.temperature, req.top_p,
                                                 req.seed, tuple(req.stop_list)))

    @lm_api.get("/v1/models")
    def models(self) -> dict[str, Any]:
        card = {"id": self.lm.name, "object": "model", "created": 0, "owned_by": "ringbit",
                "max_context": self.lm.max_context, "chat_template": self.lm.has_chat_template,
                "prompt_format": self.lm.prompt_format}
        if self.fallback_reason:
            card["fallback_for"] = self.requested
        return {"object": "list", "data": [card]}

    @lm_api.get("/healthz")
    def healthz(self) -> dict[str, str]:
        return {"status": "ok", "model": self.lm.name}

    @lm_api.post("/v1/completions")
    async def completions(self, req: oa.CompletionRequest):
        encoded = []
        for i, text in enumerate(req.prompts):
            ids = self._encode(text, "prompt" if isinstance(req.prompt, str) else f"prompt.{i}", req.max_tokens)
            if isinstance(ids, JSONResponse):
                return ids
            encoded.append(ids)
        outs = await asyncio.gather(*(self._run(ids, req) for ids in encoded))
        if req.stream:
            if len(outs) != 1:
                return JSONResponse(status_code=422, content=oa.error_body(
                    "stream: streaming takes a single prompt", "stream"))
            return StreamingResponse(oa.completion_stream(self.lm.name, stream_pieces(outs[0].text),
                                                          outs[0].finish_reason),
                                     media_type="text/event-stream")
        return oa.completion_response(self.lm.name, [(o.text, o.finish_reason) for o in outs],
                                      sum(map(len, encoded)), sum(len(o.tokens) for o in outs))

    @lm_api.post("/v1/chat/completions")
    async def chat_completions(self, req: oa.ChatCompletionRequest):
        prompt = self.lm.chat_prompt([m.model_dump() for m in req.messages])
        ids = self._encode(prompt, "messages", req.max_tokens)
        if isinstance(ids, JSONResponse):
            return ids
        out = await self._run(ids, req)
        text, reason = out.text, out.finish_reason
        if not self.lm.has_chat_template and "\nUser:" in text:
            # A plain-transcript model may go on to write the user's next turn: that ends its answer.
            # A chat-template model ends its turn with its eos token, so its text is kept whole.
            text, reason = text.split("\nUser:")[0], "stop"
        if req.stream:
            return StreamingResponse(oa.chat_stream(self.lm.name, stream_pieces(text), reason),
                                     media_type="text/event-stream")
        return oa.chat_response(self.lm.name, text, reason, len(ids), len(out.tokens))


def build_lm_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder (`import_path: serving.lm:app`, `args:` in the serve config)."""
    options: dict[str, Any] = {}
    for key in ("num_replicas", "autoscaling_config", "ray_actor_options", "max_ongoing_requests"):
        if key in args:
            options[key] = args[key]
    deployment = LMServer.options(**options) if options else LMServer
    return deployment.bind(args["model"], args.get("name"), args.get("tracking_uri"),
                           int(args.get("max_batch_size", 8)), float(args.get("batch_wait_timeout_s", 0.01)),
                           args.get("fallback_model"))
