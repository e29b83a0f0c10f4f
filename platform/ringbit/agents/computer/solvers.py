"""Scripted solvers for MiniWoB++ tasks: the teacher of the computer-control demonstrations.

FireAct's recipe (arXiv 2310.05915) applied to computer control: a strong teacher writes
trajectories, a small model is fine-tuned on them. Here the teacher is a solver per task, written
from what the agent itself reads — the utterance, miniwob's extracted fields and the screen's
elements — never from the benchmark's reward. Like the agent's planner (Li et al. 2023,
arXiv 2310.08740, Sec. 3.2) a solver is called once per stage: given the current observation and
the actions taken so far in the trial, it returns every action to run on this screen, in the
agent's own action syntax (actions.py). Multi-screen tasks (tabs, trees, accordions) are solved
stage by stage: the next call sees the new screen.

`solve(task, obs, history)` raises NoSolution when a solver cannot find its target on the screen
(the demonstration is then dropped: a teacher never guesses).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ringbit.agents.computer.actions import Action, parse_action
from ringbit.agents.computer.env import Observation
from ringbit.agents.computer.screen import screen_elements

Solver = Callable[[Observation, Sequence[str]], list[Action]]
SOLVERS: dict[str, Solver] = {}


class NoSolution(RuntimeError):
    """The solver found no way forward on this screen (its target is missing)."""


def solver(*tasks: str) -> Callable[[Solver], Solver]:
    def register(fn: Solver) -> Solver:
        for task in tasks:
            SOLVERS[task] = fn
        return fn
    return register


def solve(task: str, obs: Observation, history: Sequence[str] = ()) -> list[Action]:
    """The actions to run on this screen for `task`; history holds the trial's earlier actions
    as plan lines ("click id=5"). KeyError for a task without a solver, NoSolution when stuck."""
    if task not in SOLVERS:
        raise KeyError(f"no solver for {task!r}; solvers exist for: {', '.join(sorted(SOLVERS))}")
    actions = SOLVERS[task](obs, list(history))
    if not actions:
        raise NoSolution(f"{task}: nothing to do on this screen")
    return actions


# -- reading the screen ------------------------------------------------------------------------
def _field(obs: Observation, name: str) -> str:
    for key, value in obs.fields:
        if key == name:
            return value
    raise NoSolution(f"the task has no field {name!r} (fields: {obs.fields})")


def _fields(obs: Observation, prefix: str) -> list[str]:
    return [v for k, v in obs.fields if k == prefix or k.startswith(prefix + " ")]


def _elements(obs: Observation) -> list[Mapping[str, Any]]:
    """The elements on the agent's screen (visible leaves, selects), in document order."""
    return screen_elements(obs.elements)


def _text(el: Mapping[str, Any]) -> str:
    return " ".join(str(el.get("text") or "").split())


def _classes(el: Mapping[str, Any]) -> list[str]:
    return str(el.get("classes") or "").split()


def _find(obs: Observation, *, tag: str | Sequence[str] | None = None, text: str | None = None,
          cls: str | None = None, fold: bool = False) -> list[Mapping[str, Any]]:
    tags = (tag,) if isinstance(tag, str) else tag
    out = []
    for el in _elements(obs):
        if el.get("tag") == "t":
            continue  # text pseudo-elements have no id to act on
        if tags is not None and el.get("tag") not in tags:
            continue
        if cls is not None and cls not in _classes(el):
            continue
        if text is not None:
            mine = _text(el)
            if (mine.casefold() != text.casefold()) if fold else (mine != text):
                continue
        out.append(el)
    return out


def _one(obs: Observation, what: str, **kw: Any) -> Mapping[str, Any]:
    found = _find(obs, **kw)
    if not found:
        raise NoSolution(f"no {what} on the screen")
    return found[0]


def _labelled(obs: Observation, tag: str) -> list[tuple[Mapping[str, Any], str]]:
    """(input, label text) for checkboxes / radios: the label is the text right after the input."""
    els, out = _elements(obs), []
    for i, el in enumerate(els):
        if el.get("tag") == tag:
            label = next((_text(e) for e in els[i + 1:] if e.get("tag") in ("t", "label", "span")), "")
            out.append((el, label))
    return out


def click(el: Mapping[str, Any]) -> Action:
    return Action("click", ref=int(el["ref"]))


def enter(text: str, el: Mapping[str, Any]) -> Action:
    return Action("enter", ref=int(el["ref"]), text=text)


def fill(text: str, el: Mapping[str, Any]) -> list[Action]:
    """Type `text` into a field unless it already holds it (solvers plan again after a
    mistake, from the screen as it is)."""
    return [] if str(el.get("value") or "") == text else [enter(text, el)]


def _clicked(history: Sequence[str]) -> set[int]:
    refs = set()
    for line in history:
        try:
            action = parse_action(line)
        except ValueError:
            continue
        if action.kind == "click":
            refs.add(int(action.ref))
    return refs


def _submit(obs: Observation, label: str = "submit") -> Action:
    return click(_one(obs, f"{label!r} button", tag="button", text=label, fold=True))


# -- one-screen tasks --------------------------------------------------------------------------
@solver("click-button", "click-test-2", "unicode-test")
def _click_button(obs, history):
    return [click(_one(obs, "target button", tag="button", text=_field(obs, "target")))]


@solver("click-test")
def _click_test(obs, history):
    return [click(_one(obs, "button", tag="button"))]


@solver("click-link")
def _click_link(obs, history):
    return [click(_one(obs, "target link", cls="alink", text=_field(obs, "target")))]


@solver("click-dialog")
def _click_dialog(obs, history):
    return [click(_one(obs, "close icon", cls="ui-icon-closethick"))]


@solver("click-dialog-2")
def _click_dialog_2(obs, history):
    target = _field(obs, "target")
    if target == "x":
        return [click(_one(obs, "close icon", cls="ui-icon-closethick"))]
    return [click(_one(obs, "dialog button", tag="button", text=target))]


@solver("click-button-sequence")
def _click_button_sequence(obs, history):
    # Clicking ONE leaves the screen as it was, so the agent plans again: go on from the history.
    one = click(_one(obs, "button ONE", tag="button", text="ONE"))
    two = click(_one(obs, "button TWO", tag="button", text="TWO"))
    return [two] if str(one) in history else [one, two]


def _checked(el: Mapping[str, Any]) -> bool:
    return el.get("value") in (True, "true", "True")


@solver("click-checkboxes", "click-checkboxes-large")
def _click_checkboxes(obs, history):
    # From the boxes' state on screen: tick the targets, untick a wrong one (after a mistake).
    targets = set(_fields(obs, "target"))
    boxes = _labelled(obs, "input_checkbox")
    if sum(label in targets for _, label in boxes) != len(targets):
        raise NoSolution(f"not every one of {sorted(targets)} has a checkbox")
    flips = [box for box, label in boxes if (label in targets) != _checked(box)]
    return [*map(click, flips), _submit(obs)]


@solver("click-option")
def _click_option(obs, history):
    target = _field(obs, "target")
    radios = [r for r, label in _labelled(obs, "input_radio") if label == target]
    if not radios:
        raise NoSolution(f"no radio button labelled {target!r}")
    return [click(radios[0]), _submit(obs)]


@solver("click-tab")
def _click_tab(obs, history):
    return [click(_one(obs, "tab", cls="ui-tabs-anchor", text=f"Tab #{_field(obs, 'target')}"))]


@solver("click-widget")
def _click_widget(obs, history):
    tag = {"radio": "input_radio", "checkbox": "input_checkbox", "text": "input_text",
           "textarea": "textarea", "button": "button"}[_field(obs, "target")]
    return [click(_one(obs, f"{tag} widget", tag=tag))]


@solver("enter-text", "enter-text-dynamic")
def _enter_text(obs, history):
    return [*fill(_field(obs, "target"), _one(obs, "text field", tag="input_text")), _submit(obs)]


@solver("enter-text-2")
def _enter_text_2(obs, history):
    text = _field(obs, "text")
    text = text.upper() if _field(obs, "case") == "upper" else text.lower()
    return [*fill(text, _one(obs, "text field", tag="input_text")), _submit(obs)]


@solver("enter-password")
def _enter_password(obs, history):
    fields = _find(obs, tag="input_password")
    if len(fields) != 2:
        raise NoSolution(f"expected two password fields, found {len(fields)}")
    return [*(a for f in fields for a in fill(_field(obs, "target"), f)), _submit(obs)]


@solver("login-user")
def _login_user(obs, history):
    return [*fill(_field(obs, "username"), _one(obs, "username field", tag="input_text")),
            *fill(_field(obs, "password"), _one(obs, "password field", tag="input_password")),
            _submit(obs, "login")]


@solver("focus-text")
def _focus_text(obs, history):
    return [click(_one(obs, "text field", tag="input_text"))]


@solver("focus-text-2")
def _focus_text_2(obs, history):
    fields = _find(obs, tag="input_text")
    n = int(_field(obs, "target"))
    if not 1 <= n <= len(fields):
        raise NoSolution(f"no text field number {n} among {len(fields)}")
    return [click(fields[n - 1])]


@solver("choose-list")
def _choose_list(obs, history):
    target = _field(obs, "target")
    lists = [el for el in _find(obs, tag="select") if target in obs.options.get(int(el["ref"]), ())]
    if not lists:
        raise NoSolution(f"no list with the option {target!r}")
    choose = enter(target, lists[0])
    return [_submit(obs)] if str(choose) in history else [choose, _submit(obs)]


@solver("click-scroll-list")
def _click_scroll_list(obs, history):
    targets = [t.strip() for t in _field(obs, "target").split(",")]
    options = [_one(obs, f"option {t!r}", tag="option", text=t) for t in targets]
    return [Action("hold", key="CTRL"), *map(click, options), Action("release", key="CTRL"),
            _submit(obs)]


_OPS = {"+": operator.add, "-": operator.sub, "x": operator.mul, "*": operator.mul}


@solver("simple-arithmetic")
def _simple_arithmetic(obs, history):
    for el in _elements(obs):
        m = re.fullmatch(r"(-?\d+)\s*([-+x*])\s*(-?\d+)\s*=", _text(el))
        if m:
            value = _OPS[m.group(2)](int(m.group(1)), int(m.group(3)))
            return [*fill(str(value), _one(obs, "answer field", tag="input_text")), _submit(obs)]
    raise NoSolution("no arithmetic problem on the screen")


@solver("enter-date")
def _enter_date(obs, history):
    month, day, year = _field(obs, "target").split("/")
    # A date input takes typed digits field by field (mm, dd, yyyy) in Chromium.
    return [enter(f"{month}{day}{year}", _one(obs, "date field", tag="input_date")), _submit(obs)]


@solver("use-spinner")
def _use_spinner(obs, history):
    # The page refuses typed text; the spinner's arrow keys step its value by one.
    spinner = _one(obs, "spinner", cls="ui-spinner-input")
    delta = int(_field(obs, "target")) - int(str(spinner.get("value") or "0"))
    steps = [Action("press", key="<ArrowUp>" if delta > 0 else "<ArrowDown>", repeat=abs(delta))]
    focus = [] if str(click(spinner)) in history else [click(spinner)]  # focusing changes no screen
    return [*focus, *(steps if delta else []), _submit(obs)]


# -- multi-screen tasks ------------------------------------------------------------------------
@solver("click-collapsible")
def _click_collapsible(obs, history):
    header = _one(obs, "section header", cls="ui-accordion-header")
    if "ui-accordion-header-collapsed" in _classes(header):
        return [click(header)]
    return [_submit(obs)]


@solver("click-tab-2", "click-tab-2-hard")
def _click_tab_2(obs, history):
    target = _field(obs, "target")
    links = _find(obs, cls="alink", text=target)
    if links:
        return [click(links[0])]
    clicked = _clicked(history)
    tabs = [t for t in _find(obs, cls="ui-tabs-anchor") if int(t["ref"]) not in clicked]
    if not tabs:
        raise NoSolution(f"the link {target!r} is on no tab")
    return [click(tabs[0])]


@solver("navigate-tree")
def _navigate_tree(obs, history):
    target = _field(obs, "target")
    found = _find(obs, tag="span", text=target)
    if found:
        return [click(found[0])]
    # depth first: open the first closed folder not opened yet
    clicked = _clicked(history)
    closed = [h for h in _find(obs, cls="expandable-hitarea") if int(h["ref"]) not in clicked]
    if not closed:
        raise NoSolution(f"{target!r} is in no folder")
    return [click(closed[0])]
