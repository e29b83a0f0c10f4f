"""The agents on Ray Serve, one application under /v1/agents:

    POST /v1/agents/computer/episodes      {task, seed, trials, max_steps}      MiniWoB++ episode
    POST /v1/agents/react/runs             {question, max_iterations}           ReAct (FireAct)
    POST /v1/agents/memwalker/queries      {document, question, …}              MemWalker
    GET  …/{id}                            status + the trajectory so far
    GET  /v1/agents/runs                   recent runs

Runs are long, so a POST answers 202 with an id at once and the run goes on in the replica; each
finished run is recorded in MLflow (outcome, steps, LLM calls, tokens, trajectory). Runs live in
the replica's memory: the deployment has one replica (episodes scale out over browser actors).

ReAct thinks with its own LM when `react_llm_url` is set (serving/config.yaml: the FireAct
fine-tune, app `react-lm`); the other agents, and ReAct without one, with `llm_url`.

At deploy time the app asks its LM endpoint(s) for the model's context and refuses to start when the
agents' largest request cannot fit: a prompt of up to `prompt_tokens` (instructions, trajectory,
screen or summaries) plus a generation of 2 x `max_tokens` (ReAct's retry of a step whose action
was cut off). The app is then DEPLOY_FAILED with the reason (`ringbit serve status`)."""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve

from ringbit.agents.config import MAX_SEED, AgentLLMConfig
from ringbit.llm.openai_api import error_body
from ringbit.llm.service import make_api, serve_prefix_root


class ComputerEpisodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, description="MiniWoB++ task, e.g. click-button.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Episode seed (the same page every trial).")
    trials: int = Field(3, ge=1, le=10, description="Trials, with structured reflection between them.")
    max_steps: int = Field(12, ge=1, le=100, description="Actions per trial.")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or blank")
    return value


class ReactRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000, description="The question to answer.")
    max_iterations: int = Field(11, ge=1, le=50, description="Thought/Action/Observation rounds.")

    @field_validator("question")
    @classmethod
    def _question(cls, value: str) -> str:
        return _not_blank(value)


# One query's work is bounded: a leaf must fit one LLM call (the largest context served is 8192
# tokens), and the tree of a document has at most MAX_LEAVES leaves (each one LLM call, plus about
# a third as many again for the summaries above them).
MAX_SEGMENT_WORDS = 6000
MAX_LEAVES = 2000
MAX_RUNS_LISTED = 500


class MemWalkerQueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: str = Field(min_length=1, description="The long text to read.")
    question: str = Field(min_length=1, max_length=4000, description="What to find in it.")
    segment_words: int = Field(300, ge=20, le=MAX_SEGMENT_WORDS,
                               description="Words per leaf segment (each is summarised in one LLM call).")
    fanout: int = Field(4, ge=2, le=16, description="Children per summary node.")
    max_steps: int = Field(12, ge=1, le=200, description="Navigation steps before giving up.")

    @field_validator("document", "question")
    @classmethod
    def _text(cls, value: str) -> str:
        return _not_blank(value)


def unprocessable(message: str, param: str) -> JSONResponse:
    return JSONResponse(status_code=422, content=error_body(f"{param}: {message}", param))


@dataclass
class Run:
    """One agent run and everything it produced so far."""

    agent: str
    params: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: str = "running"
    created: float = field(default_factory=time.time)
    finished: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None
    mlflow_run_id: str | None = None
    trace_ids: list[str] = field(default_factory=list)  # MLflow traces of the run, linked to its MLflow run

    def view(self, with_events: bool = True) -> dict[str, Any]:
        out = {"id": self.id, "agent": self.agent, "status": self.status, "params": self.params,
               "created": self.created, "finished": self.finished, "error": self.error,
               "mlflow_run_id": self.mlflow_run_id, "n_events": len(self.events)}
        if with_events:
            out["trajectory"] = list(self.events)
            out["result"] = self.result
        return out


INFRA_ERRORS = ("llm ", "browser ")  # how the agents word endpoint and browser failures
PROMPT_TOKENS = 512  # the agents' prompt budget (ringbit.agents.evaluation.MIN_AGENT_CONTEXT)
MAX_TOKENS = 256  # tokens per agent step (run_react, navigate, build_tree and the planner's default)
MIN_PROMPT_TOKENS = 256  # a smaller prompt budget is not worth suggesting


def context_needed(prompt_tokens: int = PROMPT_TOKENS, max_tokens: int = MAX_TOKENS) -> int:
    """The context the agents' largest request needs: a prompt of up to prompt_tokens and a
    generation of 2 x max_tokens (ReAct re-asks with twice the budget when an action was cut)."""
    return prompt_tokens + 2 * max_tokens


agents_api = make_api("ringbit agents")
serve_prefix_root(agents_api)
ROUTES = {"computer": "computer/episodes", "react": "react/runs", "memwalker": "memwalker/queries"}


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256, num_replicas=1)
@serve.ingress(agents_api)
class AgentsServer:
    def __init__(self, llm_url: str, model: str | None = None, api: str = "auto",
                 api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 120, browsers: int = 1,
                 cpus_per_browser: float = 0.5, episode_max_s: float | None = 300.0, search: str = "bm25:builtin:python-docs",
                 max_concurrent_runs: int = 8, max_runs_kept: int = 1000, max_document_chars: int = 2_000_000,
                 mlflow_experiment: str = "ringbit-agents", tracking_uri: str | None = None,
                 prompt_tokens: int = PROMPT_TOKENS, max_tokens: int = MAX_TOKENS,
                 react_llm_url: str | None = None, react_model: str | None = None, react_api: str = "auto") -> None:
        import os

        from ringbit.llm.context import ContextTooSmallError

        for key, value in (("api", api), ("react_api", react_api)):
            if value not in ("auto", "completions", "chat"):
                raise ValueError(f"{key}: {value!r} is not one of auto, completions, chat")
        # api "auto": chat for a model with a chat template (SmolLM2-Instruct), else completions
        # (the FireAct fine-tunes are trained on the bare prompts); settled when the endpoint answers.
        # ReAct may think with its own LM (react_llm_url: the FireAct fine-tune), the others with llm_url.
        self.api_settings = {"agents": api, "react": react_api}
        self.llm_cfgs = {"agents": AgentLLMConfig(url=llm_url, model=model, api="completions" if api == "auto" else api,
                                                  api_key_env=api_key_env, timeout_s=timeout_s)}
        if react_llm_url:
            self.llm_cfgs["react"] = AgentLLMConfig(
                url=react_llm_url, model=react_model, api="completions" if react_api == "auto" else react_api,
                api_key_env=api_key_env, timeout_s=timeout_s)
        self.prompt_tokens, self.max_tokens = prompt_tokens, max_tokens
        # A model too small for the agents' prompts fails the deployment (DEPLOY_FAILED, with the
        # reason); an endpoint that does not answer yet is checked before each new run (503).
        self._settled: set[str] = set()
        for which in self.llm_cfgs:
            if problem := self._settle(which):
                raise ContextTooSmallError(problem)
        from ringbit.agents.react.tools import search_file

        if (file := search_file(search)) and not os.path.exists(file):
            raise FileNotFoundError(f"search {search!r}: no file {file} (the replica runs in {os.getcwd()}): "
                                    "give an absolute path, or a path that exists where `ringbit serve up` runs")
        self.browsers, self.cpus_per_browser = browsers, cpus_per_browser
        self.episode_max_s = episode_max_s  # MiniWoB's own 10 s limit counts LLM thinking time
        self.search_spec, self.max_document_chars = search, max_document_chars
        self.experiment = mlflow_experiment
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        self.max_runs_kept = max_runs_kept
        self.runs: dict[str, Run] = {}
        self.lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_concurrent_runs)
        self._pool = self._tools = None
        self._trees: dict[str, Any] = {}
        self._llm_ok_until: dict[str, float] = {}

    # ---------------------------------------------------------------- shared machinery

    @property
    def llm_cfg(self) -> AgentLLMConfig:
        """The LM of the computer-control agent and MemWalker (and ReAct without its own)."""
        return self.llm_cfgs["agents"]

    def _endpoint(self, agent: str) -> str:
        """Which LM an agent thinks with: "react" when ReAct has its own, else "agents"."""
        return agent if agent in self.llm_cfgs else "agents"

    def _need(self, api: str) -> int:
        from ringbit.llm.context import CHAT_OVERHEAD_TOKENS

        chat = CHAT_OVERHEAD_TOKENS if api == "chat" else 0
        return context_needed(self.prompt_tokens, self.max_tokens) + chat

    @property
    def need(self) -> int:
        return self._need(self.llm_cfg.api)

    def _settle(self, which: str = "agents") -> str | None:
        """Ask the endpoint for its model: pick the api ("auto") and check the context. Returns
        why the model does not fit, else None (also when the endpoint does not answer yet)."""
        import os

        from ringbit.llm.client import LLMClient
        from ringbit.llm.context import context_problem, endpoint_context, resolve_api

        cfg = self.llm_cfgs[which]
        found = endpoint_context(LLMClient(cfg.url, api_key=os.environ.get(cfg.api_key_env), model=cfg.model,
                                           timeout_s=10, retries=1, backoff_s=0.5))
        if found is None:
            return None
        cfg = self.llm_cfgs[which] = cfg.model_copy(update={"api": resolve_api(self.api_settings[which], found)})
        app = "agents app" if which == "agents" else "agents app's ReAct LM (react_llm_url)"
        problem = context_problem(found, self._need(cfg.api), app, cfg.url, self._why(cfg.api), self._fix_hint)
        if problem is None:
            self._settled.add(which)
        return problem

    def _why(self, api: str) -> str:
        chat = " + the chat template" if api == "chat" else ""
        return (f"prompts of up to prompt_tokens {self.prompt_tokens}{chat} plus 2 x max_tokens {self.max_tokens} "
                "generated (ReAct's retry)")

    def _fix_hint(self, context: int) -> str:
        from ringbit.llm.context import app_name

        app = app_name("agents")
        hint = ("serve a model with a longer context (the default config's lm: "
                "models:/smollm2-135m-instruct@base, 8192 tokens; or one fine-tuned with max_seq_len 1024, "
                "jobs/configs/finetune-react.yaml)")
        tokens = min(self.max_tokens, context // 4)
        prompt = context - 2 * tokens - (self.need - context_needed(self.prompt_tokens, self.max_tokens))
        if prompt < MIN_PROMPT_TOKENS:
            return (f"{hint}; no agents args make it fit: agent prompts need {MIN_PROMPT_TOKENS}+ tokens "
                    "plus the generation")
        sets = f"--set {app}.prompt_tokens={prompt}"
        if tokens != self.max_tokens:
            sets += f" --set {app}.max_tokens={tokens}"
        return f"{hint} or lower the agents' args, e.g. {sets}"

    def _llm(self, agent: str = "agents"):
        from ringbit.agents.llm import build_agent_llm

        return build_agent_llm(self.llm_cfgs[self._endpoint(agent)], check=False)

    def _llm_unavailable(self, agent: str = "agents") -> JSONResponse | None:
        """503 at once when the LLM endpoint is down, rather than a run that fails later."""
        from ringbit.agents.llm import LLMUnavailable, build_agent_llm

        which = self._endpoint(agent)
        if time.monotonic() < self._llm_ok_until.get(which, 0.0):
            return None
        try:
            llm = build_agent_llm(self.llm_cfgs[which].model_copy(update={"retries": 0, "timeout_s": 10}), check=True)
        except LLMUnavailable as exc:
            return JSONResponse(status_code=503, content=error_body(str(exc), None, "llm_unavailable"))
        if which not in self._settled and (problem := self._settle(which)):  # not answering at deploy time
            return JSONResponse(status_code=503, content=error_body(problem, None, "llm_context_too_small"))
        if self.llm_cfgs[which].model is None:
            self.llm_cfgs[which] = self.llm_cfgs[which].model_copy(update={"model": llm.client.model})
        self._llm_ok_until[which] = time.monotonic() + 30
        return None

    def _start(self, agent: str, params: dict[str, Any], work) -> JSONResponse:
        run = Run(agent, params)
        with self.lock:
            self.runs[run.id] = run
            finished = [r for r in self.runs.values() if r.status != "running"]
            for old in finished[: max(0, len(self.runs) - self.max_runs_kept)]:
                del self.runs[old.id]
        self.executor.submit(self._execute, run, work)
        return JSONResponse(status_code=202, content={
            "id": run.id, "agent": agent, "status": run.status,
            "poll": f"/v1/agents/{ROUTES[agent]}/{run.id}"})

    def _execute(self, run: Run, work) -> None:
        try:
            result = work(run)
            error = result.get("error")
            # The agent's own outcome (no answer, failed task) is a result; a dead LLM or browser is not.
            status = "failed" if str(error or "").startswith(INFRA_ERRORS) else "succeeded"
        except Exception as exc:  # the run failed; the service goes on
            error = f"{type(exc).__name__}: {exc}"
            result, status = {"error": error}, "failed"
        if self.tracking_uri:
            try:
                from ringbit.agents.runs import record_request_run

                llm_cfg = self.llm_cfgs[self._endpoint(run.agent)]
                run.mlflow_run_id = record_request_run(
                    self.tracking_uri, self.experiment, run.agent, run.id,
                    {**run.params, "llm_url": llm_cfg.url, "llm_model": llm_cfg.model},
                    {**result, "trajectory": run.events}, status, trace_ids=run.trace_ids)
            except Exception as exc:  # tracking must not lose the run's answer
                run.events.append({"type": "warning", "message": f"MLflow record failed: {exc}"})
        # Published last: a poller that sees the final status also sees the result and MLflow id.
        run.result, run.error, run.finished = result, error, time.time()
        run.status = status

    def _get(self, agent: str, run_id: str):
        run = self.runs.get(run_id)
        if run is None or run.agent != agent:
            return JSONResponse(status_code=404, content=error_body(
                f"no {agent} run {run_id!r} (runs are kept in memory: up to {self.max_runs_kept})",
                "id", "not_found"))
        return run.view()

    # ---------------------------------------------------------------- computer control

    @agents_api.post("/computer/episodes")
    def computer_episode(self, body: ComputerEpisodeRequest):
        from ringbit.agents.computer.env import resolve_task

        try:
            task = resolve_task(body.task)
        except ValueError as exc:
            return unprocessable(str(exc), "task")
        if (down := self._llm_unavailable()) is not None:
            return down
        llm = self.llm_cfg.model_dump()

        def work(run: Run) -> dict[str, Any]:
            if self._pool is None:
                from ringbit.agents.browsers import BrowserPool

                self._pool = BrowserPool(self.browsers, self.cpus_per_browser)
            return self._pool.run(task, body.seed, llm, body.trials, body.max_steps, self.episode_max_s,
                                  on_event=run.events.append)

        return self._start("computer", body.model_dump(), work)

    @agents_api.get("/computer/episodes/{run_id}")
    def computer_get(self, run_id: str):
        return self._get("computer", run_id)

    @agents_api.get("/computer/tasks")
    def computer_tasks(self) -> dict[str, Any]:
        from ringbit.agents.computer.agent import TASKS_DEFAULT
        from ringbit.agents.computer.env import task_names

        return {"suggested": list(TASKS_DEFAULT), "all": task_names()}

    # ---------------------------------------------------------------- ReAct

    @agents_api.post("/react/runs")
    def react_run(self, body: ReactRunRequest):
        if (down := self._llm_unavailable("react")) is not None:
            return down

        def work(run: Run) -> dict[str, Any]:
            from ringbit.agents.react.react import run_react
            from ringbit.agents.react.tools import search_tool

            if self._tools is None:
                self._tools = {"search": search_tool(self.search_spec)}
            llm = self._llm("react")

            def react(agent_llm, tools) -> dict[str, Any]:
                return run_react(body.question.strip(), agent_llm, tools, max_iterations=body.max_iterations,
                                 on_event=lambda e: run.events.append({"type": "step", **e}),
                                 max_tokens=self.max_tokens).to_dict()

            if self.tracking_uri:  # the run as an MLflow trace: a span per LLM and tool call
                import mlflow
                from mlflow.tracking import MlflowClient

                from ringbit import tracking
                from ringbit.agents.tracing import TracedLLM, episode_trace, traced_tools

                mlflow.set_tracking_uri(self.tracking_uri)
                experiment = tracking.experiment_id(MlflowClient(self.tracking_uri), self.experiment)
                with episode_trace("react", {"question": body.question.strip()}, None, experiment,
                                   {"ringbit.agent": "react", "ringbit.agent_run": run.id}) as span:
                    result = react(TracedLLM(llm), traced_tools(self._tools))
                    span.set_outputs({k: result.get(k) for k in ("answer", "finished", "error")})
                run.trace_ids.append(span.trace_id)
            else:
                result = react(llm, self._tools)
            return {**result, "steps": len(result.get("steps", [])), **llm.usage.as_dict()}

        return self._start("react", body.model_dump(), work)

    @agents_api.get("/react/runs/{run_id}")
    def react_get(self, run_id: str):
        return self._get("react", run_id)

    # ---------------------------------------------------------------- MemWalker

    @agents_api.post("/memwalker/queries")
    def memwalker_query(self, body: MemWalkerQueryRequest):
        if len(body.document) > self.max_document_chars:
            return unprocessable(f"{len(body.document)} characters exceed the limit of "
                                 f"{self.max_document_chars}", "document")
        leaves = -(-len(body.document.split()) // body.segment_words)
        if leaves > MAX_LEAVES:
            need = -(-len(body.document.split()) // MAX_LEAVES)
            return unprocessable(f"{body.segment_words} words per segment cut this document into {leaves:,} "
                                 f"leaves, each an LLM call (at most {MAX_LEAVES:,}): use segment_words >= {need}",
                                 "segment_words")
        if (down := self._llm_unavailable()) is not None:
            return down

        def work(run: Run) -> dict[str, Any]:
            from ringbit.agents.memwalker import build_tree, doc_hash, navigate

            llm = self._llm()
            key = f"{doc_hash(body.document)}:{body.segment_words}:{body.fanout}"
            tree = self._trees.get(key)
            if tree is None:  # summarising is the expensive part: one tree per document, reused
                tree = build_tree(body.document, llm, body.segment_words, body.fanout,
                                  on_event=lambda e: run.events.append({"type": "tree", **e}),
                                  summary_tokens=self.max_tokens)
                self._trees[key] = tree
            walk = navigate(tree, body.question.strip(), llm, max_steps=body.max_steps,
                            on_event=lambda e: run.events.append({"type": "walk", **e}),
                            max_tokens=self.max_tokens).to_dict()
            walk.pop("llm_calls", None)
            return {**walk, "tree_nodes": len(tree.nodes), **llm.usage.as_dict()}

        params = body.model_dump(exclude={"document"})
        params["document_chars"] = len(body.document)
        return self._start("memwalker", params, work)

    @agents_api.get("/memwalker/queries/{run_id}")
    def memwalker_get(self, run_id: str):
        return self._get("memwalker", run_id)

    # ---------------------------------------------------------------- listing

    @agents_api.get("/runs")
    def list_runs(self, agent: str | None = None,
                  limit: int = Query(50, ge=1, le=MAX_RUNS_LISTED)) -> dict[str, Any]:
        runs = [r for r in self.runs.values() if agent in (None, r.agent)]
        return {"runs": [r.view(with_events=False) for r in runs[-limit:]]}

    @agents_api.get("/")
    def index(self) -> dict[str, Any]:
        llms = {which: {"url": c.url, "model": c.model, "api": c.api} for which, c in self.llm_cfgs.items()}
        return {"agents": {name: f"/v1/agents/{route}" for name, route in ROUTES.items()},
                "llm": llms["agents"], "react_llm": llms.get("react", llms["agents"]),
                "search": self.search_spec, "browsers": self.browsers}


def build_agents_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder (`import_path: serving.agents:app`)."""
    from ringbit.serving import llm_url_from_args

    from ringbit.agents.react.tools import absolute_search

    llm_url = llm_url_from_args(args, "agents")
    if "search" in args:  # the builder runs where `ringbit serve up` runs: a relative file is found here
        args = {**args, "search": absolute_search(str(args["search"]))}
    keys = ("model", "api", "api_key_env", "timeout_s", "browsers", "cpus_per_browser", "episode_max_s", "search",
            "max_concurrent_runs", "max_runs_kept", "max_document_chars", "mlflow_experiment", "tracking_uri",
            "prompt_tokens", "max_tokens", "react_model", "react_api")
    options = {k: args[k] for k in keys if k in args}
    return AgentsServer.bind(llm_url, react_llm_url=llm_url_from_args(args, "agents", "react_"), **options)
