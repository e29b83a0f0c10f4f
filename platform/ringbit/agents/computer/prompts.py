"""The two zero-shot prompts of Li et al. 2023 and the parser for the reflection's answer.

Planning (Sec. 3.2, staged planning): given the goal, the actions taken so far and the current
screen, list every action that can be executed on this screen, one per line, in order.
Structured reflection (Sec. 3.3): given the whole failed trajectory (screens and actions by
index), name the earliest critical mistake as "For action index=A, you should B."
No examples of the task are given: the agent is zero-shot.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ringbit.agents.computer.actions import Action, ActionParseError, clean_line, parse_action

PLAN_STOP = ["\n\n\n", "\nGoal:", "\nCurrent screen:", "\nPrevious actions:"]
REFLECT_STOP = ["\nGoal:", "\nAction index=", "\n\n\n"]

ACTIONS_HELP = """You can perform these atomic actions, one per line:
- click id=N : click the element with id N.
- enter "TEXT" to id=N : type TEXT into the input with id N (it replaces what is there). Always wrap TEXT in double quotes.
- press KEY : press a key such as Enter, Tab, Backspace, ArrowUp, ArrowDown or ctrl+a; "press ArrowDown x 3" presses it 3 times.
- hold CTRL and release CTRL (or SHIFT) : hold the key down across several clicks, e.g. to select several items of a list."""

PLAN_TEMPLATE = """You are operating a web page to accomplish a goal. The screen is a list of elements, one per line, such as <button id=5 pos="top left">okay</button>: id is what actions refer to and pos is the element's cell in a 3x3 grid over the page.
{actions}
Plan every action that can be executed on the current screen to make progress on the goal, in order, one action per line and nothing else. Do not plan actions on elements that are not on the current screen yet.

Goal: {goal}
Previous actions:
{history}
Current screen:
{screen}
Plan:
"""

REFLECT_TEMPLATE = """You tried to accomplish a goal on a web page and failed. Below is the whole trajectory: for each action index, the screen right before the action and the action taken.
{actions}

Goal: {goal}
{trajectory}
Outcome: {outcome}

Find the earliest critical mistake: the first action index where a different action would have led to success (if the goal was left unfinished, it may be the index right after the last action). Answer with exactly one line in this format:
For action index=A, you should B.
where B is one atomic action.
Answer:
"""


def format_history(steps: Sequence[dict[str, Any]]) -> str:
    """The actions taken so far in this trial, with failures marked."""
    if not steps:
        return "(none)"
    lines = []
    for s in steps:
        note = "" if s.get("ok", True) else f"  [failed: {s.get('error')}]"
        lines.append(f"{s['index']}: {s['action']}{note}")
    return "\n".join(lines)


def planning_prompt(goal: str, screen: Sequence[str], history: Sequence[dict[str, Any]]) -> str:
    return PLAN_TEMPLATE.format(actions=ACTIONS_HELP, goal=goal, history=format_history(history),
                                screen="\n".join(screen) or "(empty)")


def plan_lines(text: str) -> list[str]:
    """The candidate action lines of a plan: blank lines, code fences and headers ("Plan:")
    are dropped; everything else must parse as an action (the agent checks)."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("```") or (line.endswith(":") and '"' not in line):
            continue
        out.append(line)
    return out


def reflection_prompt(goal: str, steps: Sequence[dict[str, Any]], outcome: str) -> str:
    """The whole trajectory by index; a screen identical to the previous step's is not repeated."""
    parts, previous = [], None
    for s in steps:
        screen = list(s.get("screen") or [])
        shown = "(same as before the previous action)" if screen == previous else (
            "\n".join(screen) or "(empty)")
        previous = screen
        note = "" if s.get("ok", True) else f"  [failed: {s.get('error')}]"
        parts.append(f"Action index={s['index']}\nScreen:\n{shown}\nAction: {s['action']}{note}")
    trajectory = "\n\n".join(parts) if parts else "(no action was taken)"
    return REFLECT_TEMPLATE.format(actions=ACTIONS_HELP, goal=goal, trajectory=trajectory,
                                   outcome=outcome)


@dataclass(frozen=True)
class ReflectionAnswer:
    index: int
    action: Action


_LEADING_ACTION = re.compile(
    r"""^(click\s+id\s*=\s*\d+|(?:enter|type)\s+(["']).*\2\s+(?:to|into|in)\s+id\s*=\s*\d+"""
    r"""|press\s+\S+(?:\s+x\s*\d+)?|(?:hold|release)\s+\w+)""", re.I)
_ANSWER = re.compile(r"for\s+action\s+index\s*=?\s*(\d+)\s*,?\s*you\s+should\s+(.+)", re.I)


def parse_reflection(text: str) -> ReflectionAnswer | None:
    """The first line of the form "For action index=A, you should B." whose B is an action;
    None when there is none (the trial then leaves memory unchanged)."""
    for line in text.splitlines():
        m = _ANSWER.search(line)
        if not m:
            continue
        advice = clean_line(m.group(2))
        try:
            action = parse_action(advice)
        except ActionParseError:
            # "you should click id=4 instead of id=6" -> take the leading action
            head = _LEADING_ACTION.match(advice)
            if not head:
                continue
            try:
                action = parse_action(head.group(1))
            except ActionParseError:
                continue
        return ReflectionAnswer(int(m.group(1)), action)
    return None
