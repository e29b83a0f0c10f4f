"""The InstructScore evaluator on Ray Serve: `POST /v1/evaluate` builds each item's prompt,
asks an OpenAI-compatible LM endpoint (the platform's LM service with the InstructScore weights,
or any other) for a greedy report through the shared client, parses it and scores it.

At deploy time the evaluator asks its endpoint for the model's context and refuses to start when
its largest allowed request (the longest template with every field at max_input_chars, plus
max_new_tokens) cannot fit: the app is DEPLOY_FAILED with the reason and what to change."""

import asyncio
import math
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve

from ringbit.evaluator.prompts import NEEDS_SOURCE, TASKS, TEMPLATES, build_prompt
from ringbit.evaluator.report import read_report
from ringbit.llm.client import LLMClient, LLMError
from ringbit.llm.context import (CHAT_OVERHEAD_TOKENS, ContextTooSmallError, EndpointContext, app_name,
                                 context_problem, endpoint_context, resolve_api)
from ringbit.llm.openai_api import error_body
from ringbit.llm.service import make_api, serve_prefix_root

# Characters per token for sizing prompts before any tokenizer is known: English BPE text is ~4-5
# (SmolLM2: 4.2-5.2 on the templates and docs), small platform tokenizers ~2-4, Cyrillic ~1.5.
CHARS_PER_TOKEN = 3.0
MIN_USEFUL_CHARS = 50  # a shorter max_input_chars is not worth suggesting


def _worst_prompts() -> list[tuple[int, int]]:
    """(template characters, number of input fields) of every task's prompt."""
    return [(len(t.format(ref="", out="", src="")), 3 if task in NEEDS_SOURCE else 2)
            for task, t in TEMPLATES.items()]


def prompt_tokens_needed(max_input_chars: int, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """Tokens of the longest prompt the evaluator accepts: the longest template with every field
    (reference, candidate, source) at max_input_chars, at `chars_per_token`."""
    chars = max(template + fields * max_input_chars for template, fields in _worst_prompts())
    return math.ceil(chars / chars_per_token)


def max_input_chars_that_fit(context: int, max_new_tokens: int,
                             chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """The largest max_input_chars whose prompts fit `context` with max_new_tokens (0: none)."""
    room = (context - max_new_tokens) * chars_per_token
    return max(0, min(math.floor((room - template) / fields) for template, fields in _worst_prompts()))


class EvaluateItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str = Field(min_length=1, description="The correct output.")
    candidate: str = Field(min_length=1, description="The output to evaluate.")
    source: str | None = Field(None, description="The input; required by data2text, commonsense, keyword-to-text.")
    task: str = Field("zh-en", description=f"One of: {', '.join(TASKS)}.")


class EvaluateRequest(BaseModel):
    """One item (its fields at the top level) or many (`items`)."""

    items: list[EvaluateItem] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _single_item(cls, data: Any) -> Any:
        if isinstance(data, dict) and "items" not in data:
            return {"items": [data]}
        return data


def unprocessable(message: str, param: str) -> JSONResponse:
    return JSONResponse(status_code=422, content=error_body(f"{param}: {message}", param))


evaluator_api = make_api("ringbit InstructScore evaluator")
# POST /v1/evaluate (the route prefix itself) is the "/" route
serve_prefix_root(evaluator_api)


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
@serve.ingress(evaluator_api)
class EvaluatorServer:
    """A model whose context is too short for max_input_chars and max_new_tokens fails the
    replica's start (ContextTooSmallError: DEPLOY_FAILED, reason in `ringbit serve status`).

    `api`: "completions" sends each prompt as-is (InstructScore fine-tunes, trained on the bare
    prompts); "chat" sends it as one user message through the model's chat template; "auto" (the
    default) picks chat when the endpoint's model has a chat template (SmolLM2-Instruct, which
    answers a bare prompt with its end token at once), else completions."""

    def __init__(self, llm_url: str, model: str | None = None, max_items: int = 16,
                 max_input_chars: int = 2000, max_new_tokens: int = 512, timeout_s: float = 300,
                 chars_per_token: float = CHARS_PER_TOKEN, api: str = "auto") -> None:
        if api not in ("auto", "completions", "chat"):
            raise ValueError(f"api: {api!r} is not one of auto, completions, chat")
        self.client = LLMClient(llm_url, model=model, timeout_s=timeout_s, retries=2)
        self.max_items, self.max_chars, self.max_new = max_items, max_input_chars, max_new_tokens
        self.chars_per_token, self.api_setting = chars_per_token, api
        self.api = resolve_api(api, None)
        # An endpoint that does not answer yet (apps of a RayService start together) is checked
        # again before the first request.
        self._context_checked = False
        found = endpoint_context(self._probe())
        if found is not None:
            if problem := self._settle(found):
                raise ContextTooSmallError(problem)

    @property
    def overhead(self) -> int:
        return CHAT_OVERHEAD_TOKENS if self.api == "chat" else 0

    @property
    def need(self) -> int:
        return prompt_tokens_needed(self.max_chars, self.chars_per_token) + self.overhead + self.max_new

    def _settle(self, found: EndpointContext) -> str | None:
        """Pick the api and check the context against what the endpoint said: None when it fits."""
        self.api = resolve_api(self.api_setting, found) or "completions"
        problem = context_problem(found, self.need, "evaluator", self.client.base_url, self._why(),
                                  self._fix_hint)
        self._context_checked = problem is None
        return problem

    def _probe(self) -> LLMClient:
        return LLMClient(self.client.base_url, api_key=self.client.api_key, model=self.client.model,
                         timeout_s=10, retries=1, backoff_s=0.5)

    def _why(self) -> str:
        chat = f" + {self.overhead} for the chat template" if self.overhead else ""
        return (f"prompts of up to {self.need - self.max_new} tokens for max_input_chars {self.max_chars} "
                f"at ~{self.chars_per_token:g} characters per token{chat}, plus max_new_tokens {self.max_new}")

    def _fix_hint(self, context: int) -> str:
        app = app_name("evaluator")
        # the LM app it asks may be any (the default config's is evaluator-lm), so name none
        hint = ("serve a model with a longer context at that endpoint (e.g. "
                "models:/smollm2-135m-instruct@base or a fine-tune of it: 8192 tokens)")
        room = context - self.overhead
        fits = max_input_chars_that_fit(room, self.max_new, self.chars_per_token)
        if fits >= MIN_USEFUL_CHARS:
            return (f"{hint} or lower the evaluator's args: max_input_chars {fits} fits with max_new_tokens "
                    f"{self.max_new} (--set {app}.max_input_chars={fits})")
        new = max(1, room // 4)
        fits = max_input_chars_that_fit(room, new, self.chars_per_token)
        if fits >= MIN_USEFUL_CHARS:
            return (f"{hint} or lower the evaluator's args, e.g. --set {app}.max_new_tokens={new} "
                    f"--set {app}.max_input_chars={fits}")
        return (f"{hint}; no evaluator args make it fit: the prompt templates alone are "
                f"~{prompt_tokens_needed(0, self.chars_per_token)} tokens")

    def _context_error(self) -> JSONResponse | None:
        """Before the first request, when the endpoint did not answer at deploy time."""
        found = endpoint_context(self._probe())
        if found is None:
            return None  # still not answering: the request itself will say so
        if problem := self._settle(found):
            return JSONResponse(status_code=503, content=error_body(problem, None, "llm_context_too_small"))
        return None

    def _check(self, items: list[EvaluateItem]) -> JSONResponse | None:
        if len(items) > self.max_items:
            return unprocessable(f"at most {self.max_items} items per request, got {len(items)}", "items")
        for i, item in enumerate(items):
            where = f"items.{i}" if len(items) > 1 else ""

            def name(field: str) -> str:
                return f"{where}.{field}" if where else field

            if item.task not in TASKS:
                return unprocessable(f"unknown task {item.task!r}; choose one of {', '.join(TASKS)}", name("task"))
            if item.task in NEEDS_SOURCE and not (item.source or "").strip():
                return unprocessable(f"task {item.task!r} needs a source", name("source"))
            for field in ("reference", "candidate", "source"):
                value = getattr(item, field) or ""
                if len(value) > self.max_chars:
                    return unprocessable(f"{len(value)} characters exceed the limit of {self.max_chars}",
                                         name(field))
        return None

    def _score_one(self, item: EvaluateItem) -> dict[str, Any]:
        prompt = build_prompt(item.task, item.reference, item.candidate, item.source)
        if self.api == "chat":
            raw = self.client.chat_text([{"role": "user", "content": prompt}], max_tokens=self.max_new,
                                        temperature=0.0)  # greedy
        else:
            raw = self.client.complete_text(prompt, max_tokens=self.max_new, temperature=0.0)
        return {**read_report(raw), "raw": raw}

    @evaluator_api.post("/")
    async def evaluate(self, body: EvaluateRequest):
        bad = self._check(body.items)
        if bad is not None:
            return bad
        loop = asyncio.get_running_loop()
        if not self._context_checked and (small := await loop.run_in_executor(None, self._context_error)):
            return small
        jobs = [loop.run_in_executor(None, self._score_one, item) for item in body.items]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for i, result in enumerate(results):
            if isinstance(result, LLMError) and result.status == 422:
                param = f"items.{i}" if len(results) > 1 else "candidate"
                return unprocessable(f"the evaluator model rejected the input: {result.body}", param)
            if isinstance(result, Exception):
                return JSONResponse(status_code=502, content=error_body(
                    f"the evaluator model endpoint failed: {result}", None, "upstream_error"))
        return results[0] if len(results) == 1 else {"results": results}

    @evaluator_api.get("/tasks")
    def tasks(self) -> dict[str, Any]:
        return {"tasks": list(TASKS), "needs_source": sorted(NEEDS_SOURCE)}

    @evaluator_api.get("/")
    def index(self) -> dict[str, Any]:
        """Which LM writes the reports and how it is asked (api "auto" settled), and the limits."""
        return {"llm": {"url": self.client.base_url, "model": self.client.model, "api": self.api},
                "tasks": list(TASKS), "max_items": self.max_items, "max_input_chars": self.max_chars,
                "max_new_tokens": self.max_new}


def build_evaluator_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder (`import_path: serving.evaluator:app`)."""
    from ringbit.serving import llm_url_from_args

    llm_url = llm_url_from_args(args, "evaluator")
    keys = ("model", "max_items", "max_input_chars", "max_new_tokens", "timeout_s", "chars_per_token", "api")
    return EvaluatorServer.bind(llm_url, **{k: args[k] for k in keys if k in args})
