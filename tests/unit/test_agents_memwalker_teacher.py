"""The MemWalker teacher (agents/memwalker_teacher.py): it plays the reader in the real tree
builder and walker from the generator's ground truth, so its recorded replies must be what the
agent's own parsers accept, choose the child that holds the asked fact, go back from the ones that
do not, and never teach the mistakes injected on purpose. Also the fine-tune's config and split."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from ringbit.agents.longdoc import make_eval_set
from ringbit.agents.memwalker import parse_action, parse_leaf
from ringbit.agents.memwalker_config import MemWalkerFinetuneConfig
from ringbit.agents.memwalker_finetune import memwalker_pairs
from ringbit.agents.memwalker_teacher import NO_FACTS, TeacherLLM, document_traces, make_traces

KW = dict(distractors=2, filler="lorem", segment_words=60, fanout=3, max_steps=40)


def _summaries(prompt: str) -> list[str]:
    body = prompt.split("\n\nReply in the format:", 1)[0]
    return [line.split(": ", 1)[1] for line in body.splitlines() if line.startswith("Summary ")]


@pytest.mark.parametrize("seed", ["a", "b", "c"])
def test_teacher_replies_parse_and_choose_the_child_holding_the_fact(seed: str) -> None:
    calls = document_traces(1200, seed, wrong_rate=0.0, **KW)
    key = None
    for c in calls:
        if c["kind"] == "navigate":
            key = c["prompt"].split("access code for the ", 1)[1].split("?", 1)[0]
            n = len(_summaries(c["prompt"]))
            choice = parse_action(c["completion"], n, "to go back" in c["prompt"])
            assert choice is not None and choice >= 0  # no mistakes: straight down to the fact
            assert f"the {key} is" in _summaries(c["prompt"])[choice]
        elif c["kind"] == "answer":
            kind, answer = parse_leaf(c["completion"])
            assert kind == "answer" and f"the {key} is {answer}." in c["prompt"]
        else:  # a summary keeps exactly the fact sentences of what it summarises
            passage = c["prompt"].rsplit("\n\nSummary:", 1)[0]
            kept = c["completion"].strip()
            assert kept == NO_FACTS or all(s + "." in passage for s in kept.rstrip(".").split(". "))
    assert [c["kind"] for c in calls].count("answer") == 1  # one leaf read: the right one


def test_injected_mistakes_are_played_then_undone_but_never_learned() -> None:
    calls = document_traces(2400, "wrong", wrong_rate=1.0, **KW)
    injected = [c for c in calls if c["injected"]]
    assert injected  # the walk was sent astray ...
    backs = [c for c in calls if not c["injected"] and "Action: -1" in c["completion"]]
    assert backs  # ... and came back, and those go-backs are examples
    for c in backs:
        if c["kind"] == "navigate":
            assert parse_action(c["completion"], len(_summaries(c["prompt"])), True) == -1
        else:
            assert parse_leaf(c["completion"]) == ("back", "")
    rows = make_traces(2, [2400], 0, distractors=2, segment_words=60, fanout=3, wrong_rate=1.0)
    assert rows and not any(r["injected"] for r in rows)
    assert any("Action: -1" in r["completion"] for r in rows)


def test_fact_free_summaries_are_thinned_and_documents_are_not_the_evaluations() -> None:
    full = make_traces(3, [1500], 0, empty_summary_keep=1.0)
    thin = make_traces(3, [1500], 0, empty_summary_keep=0.0)
    empty = [r for r in full if r["kind"] == "summary" and r["completion"].strip() == NO_FACTS]
    assert empty and not any(r["kind"] == "summary" and r["completion"].strip() == NO_FACTS for r in thin)
    assert len(full) - len(thin) == len(empty)
    assert make_traces(3, [1500], 0) == make_traces(3, [1500], 0)  # deterministic by seed
    eval_docs = {ex["document"][:200] for ex in make_eval_set(3, 1500, 0)}
    assert not any(r["prompt"].split("Passage:\n", 1)[-1][:200] in eval_docs for r in full)


def test_teacher_refuses_a_prompt_memwalker_does_not_send() -> None:
    with pytest.raises(ValueError, match="does not send"):
        TeacherLLM(random.Random(0))("Tell me a joke.")


def test_finetune_config_and_the_split_by_document() -> None:
    cfg = MemWalkerFinetuneConfig.model_validate(
        {"data": {"n_docs": 4, "n_words": [600], "val_fraction": 0.25, "segment_words": 60, "fanout": 3}})
    assert cfg.mlflow.registered_model == "memwalker-reader"
    train, val = memwalker_pairs(cfg, log=lambda _m: None)
    assert train and val
    assert not {p for p, _ in train} & {p for p, _ in val if not p.startswith("Summarize")}
    with pytest.raises(ValidationError, match="n_words"):
        MemWalkerFinetuneConfig.model_validate({"data": {"n_words": [50]}})
    with pytest.raises(ValidationError, match="kinds"):
        MemWalkerFinetuneConfig.model_validate({"data": {"kinds": ["plan"]}})
