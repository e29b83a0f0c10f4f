"""Demonstrations for the computer-control agent, in its own prompt and action format.

The scripted solvers (solvers.py) stand in for the agent's LLM: the agent itself runs the episode
(run_episode: staged planning, screens, history, reflection), and `Teacher` answers each of its
prompts. What the teacher was asked and what it answered are the supervised examples, so a model
fine-tuned on them sees exactly the prompts the agent will send it (FireAct's recipe,
arXiv 2310.05915, applied to Li et al. 2023, arXiv 2310.08740).

Two kinds of example:
- "plan": a planning prompt and the solver's plan for that screen, from episodes the teacher
  solved at the first trial (raw reward 1; other episodes are dropped).
- "reflection": the teacher injects one wrong action in the first trial (a click on another
  element, or a wrong text); when that trial fails, the agent's reflection prompt over the whole
  trajectory is answered "For action index=A, you should B." with B the solver's action. The
  example is kept only when the next trial, replaying B from memory, succeeds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ringbit.agents.computer.actions import Action, parse_action
from ringbit.agents.computer.agent import run_episode
from ringbit.agents.computer.prompts import parse_reflection, plan_lines
from ringbit.agents.computer.solvers import NoSolution, solve
from ringbit.agents.computer.screen import screen_elements

REFLECT_END = "Answer:"  # how the reflection prompt ends (a planning prompt ends "Plan:")
_HISTORY, _SCREEN = "\nPrevious actions:\n", "\nCurrent screen:\n"


def prompt_history(prompt: str) -> list[str]:
    """The actions taken so far, as the planning prompt lists them ("3: click id=5")."""
    block = prompt.split(_HISTORY, 1)[1].split(_SCREEN, 1)[0]
    out = []
    for line in block.splitlines():
        index, sep, action = line.partition(": ")
        if sep and index.strip().isdigit():
            out.append(action.split("  [failed:", 1)[0].strip())
    return out


def wrong_action(right: Action, obs: Any, rng: random.Random) -> Action | None:
    """A plausible mistake in place of `right`: a click on another element with an id (the same
    kind of element first), or another text; None when the screen offers none."""
    if right.kind == "click":
        me = obs.element(int(right.ref))
        others = [el for el in screen_elements(obs.elements)
                  if el.get("tag") != "t" and int(el["ref"]) != right.ref]
        same = [el for el in others if me is not None and el.get("tag") == me.get("tag")]
        pool = same or others
        return Action("click", ref=int(rng.choice(pool)["ref"])) if pool else None
    if right.kind == "enter" and right.text:
        text = right.text
        wrong = text[::-1] if text[::-1] != text else text + text[-1]
        return Action("enter", ref=right.ref, text=wrong)
    return None


@dataclass
class Teacher:
    """The agent's LLM, played by a solver. `inject`: (stage, position) in the first trial whose
    action is replaced by a wrong one (stage 0 = the first planning call); None: no mistake.
    `plans` records every plan the teacher gave, by stage."""

    env: Any
    task: str
    inject: tuple[int, int] | None = None
    seed: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    plans: list[list[Action]] = field(default_factory=list)
    injected: dict[str, Any] | None = None
    _reflected: bool = False

    def __call__(self, prompt: str, stop: Any = None, max_tokens: int | None = None) -> str:
        if prompt.rstrip().endswith(REFLECT_END):
            return self._reflect(prompt)
        history = prompt_history(prompt)
        plan = solve(self.task, self.env.observation, history)
        self.plans.append(plan)
        if (self.inject is not None and self.inject[0] == len(self.plans) - 1
                and self.injected is None and self.inject[1] < len(plan)):
            pos = self.inject[1]
            wrong = wrong_action(plan[pos], self.env.observation, random.Random(self.seed))
            if wrong is not None:
                self.injected = {"index": len(history) + pos, "wrong": wrong, "right": plan[pos]}
                # a wrong click may change the screen: the rest is planned again after it
                plan = [*plan[:pos], wrong, *(plan[pos + 1:] if wrong.kind == "enter" else [])]
        text = "\n".join(str(a) for a in plan)
        if self.injected is None or self._reflected:
            self.examples.append({"kind": "plan", "prompt": prompt, "completion": text,
                                  "trial": int(self._reflected)})
        return text

    def _reflect(self, prompt: str) -> str:
        if self.injected is None or self._reflected:
            raise NoSolution("the teacher does not reflect on a trial it did not spoil")
        self._reflected = True
        answer = f"For action index={self.injected['index']}, you should {self.injected['right']}."
        self.examples.append({"kind": "reflection", "prompt": prompt, "completion": answer,
                              "trial": 0})
        return answer


def demonstrate(env: Any, task: str, seed: int, *, reflection: bool = False,
                max_steps: int = 24) -> dict[str, Any]:
    """One episode with the teacher. Returns {task, seed, kind, success, usable, examples, error}:
    the examples are kept only from a usable episode (plan: solved at trial 1; reflection: the
    spoiled trial failed and the reflected one succeeded). A reflection episode first solves the
    task cleanly to learn its plans, then spoils one click or text of them, chosen by the seed."""
    teacher = Teacher(env, task, seed=seed)
    result = run_episode(env, teacher, task, seed, max_trials=1, max_steps=max_steps)
    usable = result.success and result.error is None
    if reflection and usable:
        spots = [(stage, pos) for stage, plan in enumerate(teacher.plans)
                 for pos, action in enumerate(plan) if action.kind in ("click", "enter")]
        teacher = Teacher(env, task, inject=random.Random(f"{task}:{seed}").choice(spots), seed=seed)
        result = run_episode(env, teacher, task, seed, max_trials=2, max_steps=max_steps)
        usable = (teacher.injected is not None and len(result.trials) == 2 and result.success
                  and not result.trials[0]["success"])
    examples = [e for e in teacher.examples if e["kind"] == ("reflection" if reflection else "plan")]
    return {"task": task, "seed": seed, "kind": "reflection" if reflection else "plan",
            "success": result.success, "usable": usable, "error": result.error,
            "examples": [{"task": task, "seed": seed, **e} for e in examples] if usable else []}


def check_example(example: dict[str, Any]) -> None:
    """ValueError unless the completion parses as the agent parses its LLM's answers."""
    if example["kind"] == "plan":
        for line in plan_lines(example["completion"]):
            parse_action(line)
    elif parse_reflection(example["completion"]) is None:
        raise ValueError(f"not a reflection answer: {example['completion']!r}")
