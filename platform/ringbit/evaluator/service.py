"""The InstructScore evaluator on Ray Serve: `POST /v1/evaluate` builds each item's prompt,
asks an OpenAI-compatible LM endpoint (the platform's LM service with the InstructScore weights,
or any other) for a greedy report through the shared client, parses it and scores it."""

import asyncio
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve

from ringbit.evaluator.prompts import NEEDS_SOURCE, TASKS, build_prompt
from ringbit.evaluator.report import parse_report, score
from ringbit.llm.client import LLMClient, LLMError
from ringbit.llm.openai_api import error_body
from ringbit.llm.service import make_api, serve_prefix_root


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
    def __init__(self, llm_url: str, model: str | None = None, max_items: int = 16,
                 max_input_chars: int = 2000, max_new_tokens: int = 512, timeout_s: float = 300) -> None:
        self.client = LLMClient(llm_url, model=model, timeout_s=timeout_s, retries=2)
        self.max_items, self.max_chars, self.max_new = max_items, max_input_chars, max_new_tokens

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
        raw = self.client.complete_text(prompt, max_tokens=self.max_new, temperature=0.0)  # greedy
        errors = parse_report(raw)
        return {"score": score(errors), "errors": [e.to_dict() for e in errors], "raw": raw}

    @evaluator_api.post("/")
    async def evaluate(self, body: EvaluateRequest):
        bad = self._check(body.items)
        if bad is not None:
            return bad
        loop = asyncio.get_running_loop()
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


def build_evaluator_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder (`import_path: serving.evaluator:app`)."""
    from ringbit.serving import llm_url_from_args

    llm_url = llm_url_from_args(args, "evaluator")
    keys = ("model", "max_items", "max_input_chars", "max_new_tokens", "timeout_s")
    return EvaluatorServer.bind(llm_url, **{k: args[k] for k in keys if k in args})
