"""Navigation traces for fine-tuning MemWalker's reader: FireAct's recipe (arXiv 2310.05915)
applied to MemWalker (arXiv 2310.05029), as the scripted solvers are for computer control.

The synthetic generator (`ringbit.agents.longdoc`) knows every planted fact, so a teacher can play
the reader's LLM in the real `build_tree` and `navigate`: it summarises a segment to the fact
sentences it holds (or says it holds none), picks the child whose summary names the asked key,
answers at the leaf holding the fact, and — where a wrong move is injected on purpose — goes back
(`Action: -1`) from a subtree that does not hold it. Every prompt is the agent's own and every
reply goes through the agent's own parser, so the recorded (prompt, completion) pairs are exactly
what the fine-tuned model will be asked and must answer. Injected wrong moves are played but never
recorded as targets; the go-backs that follow them are.
"""

from __future__ import annotations

import random
import re
from typing import Any

from ringbit.agents.longdoc import Fact, make_document, make_fact
from ringbit.agents.memwalker import build_tree, navigate

__all__ = ["NO_FACTS", "KINDS", "TeacherLLM", "document_traces", "make_traces"]

NO_FACTS = "This part is filler text with no names, numbers or key facts."
KINDS = ("summary", "navigate", "answer")

# The generator's fact sentence and question (longdoc.make_fact).
_FACT = re.compile(r"The access code for the ([a-z]+ [a-z]+) is (\d{4})\.")
_QUESTION = re.compile(r"To answer the question: What is the access code for the ([a-z]+ [a-z]+)\?")
_LEAF_QUESTION = re.compile(r"answer the question: What is the access code for the ([a-z]+ [a-z]+)\?")
_SUMMARY = re.compile(r"^Summary (\d+): (.*)$", re.MULTILINE)


def _facts_in(text: str) -> list[str]:
    """The fact sentences in `text`, in order, each once."""
    seen: list[str] = []
    for m in _FACT.finditer(text):
        if m.group(0) not in seen:
            seen.append(m.group(0))
    return seen


class TeacherLLM:
    """Plays MemWalker's LLM from the generator's ground truth (the agent's prompts in, replies in
    the agent's format out) and records each call as {"kind", "prompt", "completion", "injected"}.

    `wrong_rate` is the chance that a navigation step descends into a child that does not hold the
    asked fact (only where one exists): the walk then has to come back, which teaches go-backs."""

    def __init__(self, rng: random.Random, wrong_rate: float = 0.0) -> None:
        self.rng, self.wrong_rate = rng, wrong_rate
        self.calls: list[dict[str, Any]] = []

    def __call__(self, prompt: str, *, stop: list[str] | None = None, max_tokens: int = 256) -> str:
        kind, reply, injected = self._answer(prompt)
        self.calls.append({"kind": kind, "prompt": prompt, "completion": reply, "injected": injected})
        return reply

    def _answer(self, prompt: str) -> tuple[str, str, bool]:
        if prompt.startswith("Summarize the following passage."):
            passage = prompt.split("Passage:\n", 1)[1].rsplit("\n\nSummary:", 1)[0]
            return "summary", " " + (" ".join(_facts_in(passage)) or NO_FACTS), False
        if prompt.startswith("Summarize the following summaries"):
            joined = prompt.split("Summaries:\n", 1)[1].rsplit("\n\nSummary:", 1)[0]
            return "summary", " " + (" ".join(_facts_in(joined)) or NO_FACTS), False
        if "Read the text in summary 0 and answer the question" in prompt:
            return ("answer", *self._leaf(prompt))
        if prompt.startswith("The following passage(s) are the summaries"):
            return ("navigate", *self._navigate(prompt))
        raise ValueError(f"TeacherLLM: a prompt MemWalker does not send: {prompt[:80]!r}")

    def _navigate(self, prompt: str) -> tuple[str, bool]:
        key = _QUESTION.search(prompt).group(1)
        body = prompt.split("\n\nReply in the format:", 1)[0]
        summaries = {int(i): s for i, s in _SUMMARY.findall(body)}
        holding = [i for i, s in sorted(summaries.items()) if f"the {key} is" in s]
        others = [i for i in sorted(summaries) if i not in holding]
        can_back = "to go back" in prompt
        if holding and others and self.rng.random() < self.wrong_rate:
            i = self.rng.choice(others)  # the injected mistake: played, never learned
            return f" Summary {i} looks promising.\nAction: {i}", True
        if holding:
            i = holding[0]
            return f" Summary {i} mentions the access code for the {key}.\nAction: {i}", False
        if can_back:
            return f" None of the summaries mentions the access code for the {key}.\nAction: -1", False
        # At the root with no summary naming the key (a summary lost it): read in text order.
        return f" No summary mentions the {key}; start with the first part.\nAction: 0", False

    def _leaf(self, prompt: str) -> tuple[str, bool]:
        key = _LEAF_QUESTION.search(prompt).group(1)
        text = prompt.split("Summary 0:\n", 1)[1].split("\n\nRead the text in summary 0", 1)[0]
        for sentence in _facts_in(text):
            m = _FACT.fullmatch(sentence)
            if m.group(1) == key:
                return f" The text says the access code for the {key} is {m.group(2)}.\nAnswer: {m.group(2)}", False
        return f" The text does not mention the access code for the {key}.\nAction: -1", False


def document_traces(n_words: int, seed: str, *, distractors: int, filler: str, segment_words: int,
                    fanout: int, wrong_rate: float, max_steps: int) -> list[dict[str, Any]]:
    """One synthetic document (a target fact at a random depth, `distractors` other facts) built
    into a tree and walked by the teacher; its recorded calls, with the walk's outcome checked: a
    teacher that does not answer correctly is a bug, not data."""
    rng = random.Random(seed)
    taken: set[str] = set()
    target = make_fact(rng, round(rng.uniform(0.0, 1.0), 4), taken)
    facts = [target, *(make_fact(rng, round(rng.uniform(0.0, 1.0), 4), taken) for _ in range(distractors))]
    doc = make_document(n_words, facts, seed=rng.randrange(2**31), filler=filler)
    teacher = TeacherLLM(rng, wrong_rate)
    tree = build_tree(doc, teacher, segment_words, fanout)
    walk = navigate(tree, target.question, teacher, max_steps=max_steps)
    if walk.answer != target.answer:
        raise RuntimeError(f"teacher walk on {seed!r} answered {walk.answer!r}, not {target.answer!r}: "
                           f"{walk.error}")
    return [{**c, "doc": seed, "n_words": n_words} for c in teacher.calls]


def make_traces(n_docs: int, n_words: list[int], seed: int, *, distractors: int = 2,
                fillers: tuple[str, ...] = ("lorem",), segment_words: int = 300, fanout: int = 4,
                wrong_rate: float = 0.3, max_steps: int = 24, empty_summary_keep: float = 0.2,
                ) -> list[dict[str, Any]]:
    """Training examples from `n_docs` documents of each length (seeds in their own namespace,
    never the evaluation's `memwalker-eval:` documents). Summaries of fact-free text are most of a
    tree; only `empty_summary_keep` of them are kept, so facts and navigation are not drowned."""
    out: list[dict[str, Any]] = []
    for n in n_words:
        for i in range(n_docs):
            doc_seed = f"memwalker-train:{seed}:{n}:{i}"
            rng = random.Random(doc_seed + ":keep")
            calls = document_traces(n, doc_seed, distractors=distractors, filler=fillers[i % len(fillers)],
                                    segment_words=segment_words, fanout=fanout, wrong_rate=wrong_rate,
                                    max_steps=max_steps)
            for c in calls:
                if c["injected"]:
                    continue
                if c["kind"] == "summary" and c["completion"].strip() == NO_FACTS and rng.random() >= empty_summary_keep:
                    continue
                out.append(c)
    return out
