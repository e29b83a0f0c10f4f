"""The FireAct ReAct jobs' configs: fine-tuning on trajectories (`ringbit submit finetune-react`)
and evaluation on HotpotQA-style questions (`ringbit agents eval react`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ringbit.agents.config import AgentLLMConfig
from ringbit.agents.react.trajectories import file_kind
from ringbit.config import StrictModel, existing_user_file
from ringbit.train.config import SFTConfig, TrackingConfig


class ReactDataConfig(StrictModel):
    """FireAct trajectories (Alpaca JSON/JSONL or chat JSONL) to fine-tune a ReAct agent on."""

    trajectories: str = Field(..., description="Trajectory file; a relative path is read from where you submit.")
    n_val: int = Field(50, ge=1, description="Held-out trajectories (val_ppl over their tokens).")
    max_train: int | None = Field(None, ge=1, description="Use at most this many training trajectories.")
    seed: int = Field(0, description="Seed of the train/held-out split.")


class ReactFinetuneConfig(SFTConfig):
    """FireAct: fine-tune a platform LM on ReAct trajectories (question -> Thought/Action/
    Observation ... finish[answer]); the agent then runs with the same prompt format."""

    max_seq_len: int = Field(1024, ge=64, description="Prompt + trajectory tokens kept (RoPE extends to it).")
    data: ReactDataConfig
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(
        experiment="ringbit-agents", registered_model="ringbit-react"))

    @field_validator("data", mode="after")
    @classmethod
    def _file_exists(cls, data: ReactDataConfig) -> ReactDataConfig:
        path = existing_user_file(data.trajectories, "pass a FireAct trajectory file, e.g. "
                                  "--set data.trajectories=../shared/fireact/hotpotqa_alpaca.json", "data.trajectories")
        return data.model_copy(update={"trajectories": path})


class ReactEvalConfig(StrictModel):
    """Evaluate a ReAct agent (FireAct) on HotpotQA-style questions: EM and F1 to MLflow."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="Run name; None = timestamped.")
    questions: str = Field(..., description="FireAct trajectories (gold = their finish[] answers) or JSONL of "
                                            "{question, answer}; a relative path is read from where you submit.")
    split: Literal["all", "heldout"] = Field(
        "all", description="heldout = only the questions the fine-tuning job held out (same n_val and seed).")
    n_val: int = Field(50, ge=1, description="With split=heldout: the fine-tuning job's data.n_val.")
    split_seed: int = Field(0, description="With split=heldout: the fine-tuning job's data.seed.")
    n: int = Field(50, ge=1, le=100_000, description="Questions to evaluate (the first n of the split).")
    search: str = Field("cache", description="Search tool: 'cache' (query->result pairs of the trajectories "
                                             "file), cache:<file>, bm25:<passages.jsonl>, bm25:<trajectories> (a "
                                             "closed world: every observation they recorded plus the built-in docs) "
                                             "or bm25:builtin:python-docs.")
    prompting: Literal["finetuned", "zero-shot", "few-shot"] = Field(
        "finetuned", description="finetuned: the Alpaca template a FireAct fine-tune was trained on; zero-shot: "
                                 "the ReAct instructions alone; few-shot: the instructions and few_shot_examples "
                                 "trajectories (FireAct's prompted baseline), never questions that are evaluated.")
    few_shot_examples: int = Field(2, ge=1, le=20, description="With prompting=few-shot: example trajectories "
                                                              "in the prompt, from the training side of the split.")
    max_iterations: int = Field(11, ge=1, le=50, description="Thought/Action/Observation rounds (FireAct: 11).")
    max_tokens: int = Field(128, ge=8, le=4096, description="Tokens per Thought+Action generation.")
    workers: int = Field(2, ge=1, le=64, description="Questions run in parallel (Ray tasks).")
    traces: bool = Field(True, description="Record each question as an MLflow trace under the run (a span "
                                           "per LLM call with its tokens and per tool call).")
    llm: AgentLLMConfig = Field(default_factory=AgentLLMConfig)
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="ringbit-agents", registered_model=None))

    @field_validator("questions")
    @classmethod
    def _exists(cls, questions: str) -> str:
        return existing_user_file(questions, "e.g. --set questions=../shared/fireact/hotpotqa_alpaca.json")

    @field_validator("search")
    @classmethod
    def _search_spec(cls, search: str) -> str:
        kind, _, path = search.partition(":")
        if kind not in ("cache", "bm25") or (kind == "bm25" and not path):
            raise ValueError(f"{search!r}: use 'cache', 'cache:<file>', 'bm25:<passages.jsonl>' or "
                             "'bm25:builtin:python-docs'")
        if not path or path.startswith("builtin:"):
            return search
        return f"{kind}:{existing_user_file(path, 'a passage JSONL or a query->result cache', repr(search))}"

    @model_validator(mode="after")
    def _files_fit_together(self) -> "ReactEvalConfig":
        """Every question file works with every search, or the combination is refused here."""
        questions = file_kind(self.questions)
        if questions not in ("trajectory", "qa"):
            raise ValueError(f"questions: {self.questions} holds neither FireAct trajectories nor "
                             "{question, answer} JSONL records")
        if questions == "qa" and self.split == "heldout":
            raise ValueError("split: heldout needs the fine-tuning job's trajectories file as questions; "
                             f"{self.questions} is a question/answer file: use --set split=all")
        if self.prompting == "few-shot" and questions != "trajectory":
            raise ValueError("prompting: few-shot takes its examples from a trajectories file, and "
                             f"{self.questions} is a question/answer file; pass a FireAct trajectories file "
                             "as questions, or --set prompting=zero-shot")
        kind, _, path = self.search.partition(":")
        if kind == "cache" and not path and questions == "qa":
            raise ValueError(
                f"search: the bare 'cache' replays the searches recorded in a trajectories file, and "
                f"{self.questions} is a question/answer file without any; pass "
                "--set search=bm25:builtin:python-docs, bm25:<passages.jsonl> or cache:<trajectories "
                "or query->result file>")
        expected = {"cache": ("trajectory", "cache"), "bm25": ("passage", "trajectory")}[kind]
        if path and not path.startswith("builtin:") and (found := file_kind(path)) not in expected:
            raise ValueError(f"search: {path} holds {found} records; {kind}: needs "
                             f"{' or '.join(expected)} records ({type(self).model_fields['search'].description})")
        return self
