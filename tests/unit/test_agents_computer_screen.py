"""Pure unit tests of the computer-control agent (no browser): screen lines, action parsing,
the reflection answer, the reflection memory and task-name validation."""

from __future__ import annotations

import numpy as np
import pytest

from ringbit.agents.computer import (TASKS_DEFAULT, Action, ActionParseError, ReflectionMemory,
                                     format_action, format_screen, grid_cell, parse_action,
                                     parse_reflection, resolve_task, task_names)
from ringbit.agents.computer.actions import parse_key
from ringbit.agents.computer.prompts import plan_lines, planning_prompt, reflection_prompt


def el(ref, tag, left, top, width=20.0, height=10.0, text="", value="", classes="", leaf=True):
    """A DOM element dict shaped like miniwob's obs["dom_elements"] entries."""
    arr = lambda v: np.array([v], dtype=np.float32)  # noqa: E731
    return {"ref": ref, "parent": 1, "tag": tag, "left": arr(left), "top": arr(top),
            "width": arr(width), "height": arr(height), "text": text, "value": value, "id": "",
            "classes": classes, "flags": np.array([0, 0, 0, int(leaf)], dtype=np.int8)}


# -- screen ---------------------------------------------------------------------------------
@pytest.mark.parametrize("x,y,cell", [
    (0, 0, "top left"), (80, 20, "top center"), (150, 60, "top right"),
    (10, 100, "middle left"), (80, 105, "middle center"), (159, 139, "middle right"),
    (5, 150, "bottom left"), (79, 200, "bottom center"), (159, 209, "bottom right"),
    (500, 900, "bottom right"), (-40, -10, "top left"),  # clamped to the task area
])
def test_grid_cell_3x3_over_160x210(x, y, cell):
    assert grid_cell(x, y, 0, 0) == cell


def test_grid_cell_uses_the_element_centre():
    # left edge in the left column, centre in the middle column
    assert grid_cell(40, 60, 30, 30) == "middle center"


def test_format_screen_lines():
    dom = [
        el(1, "body", 0, 0, 780, 210, leaf=False),
        el(3, "div", 0, 50, 160, 100, leaf=False),
        el(5, "button", 2, 40, 44, 21, text="okay"),
        el(7, "input_text", 2, 84, 150, 21, value='say "hi"', classes="form-control wide"),
        el(-1, "t", 2, 130, 40, 11, text="Some   text"),
        el(8, "span", -4916, 92, 25, 11, text="Close"),    # parked off-screen by jQuery UI
        el(9, "div", 10, 100, 0, 0, text="hidden"),        # zero size
        el(10, "circle", 120, 180, 10, 10, classes="SVG_CLASS"),
        el(11, "input_checkbox", 2, 150, 10, 10, value=False),
    ]
    lines = format_screen(dom, placeholders={7: "Search"})
    assert lines == [
        '<button id=5 pos="top left">okay</button>',
        '<input_text id=7 class="form-control wide" placeholder="Search" value="say \'hi\'" '
        'pos="middle center"></input_text>',
        '<text pos="middle left">Some text</text>',
        '<circle id=10 pos="bottom right"></circle>',
        '<input_checkbox id=11 pos="bottom left"></input_checkbox>',
    ]


def test_format_screen_marks_selected_options():
    dom = [el(5, "option", 3, 58, 133, 17, text="Ora"), el(6, "option", 3, 75, 133, 17,
                                                           text="Lia")]
    assert format_screen(dom, selected={6}) == ['<option id=5 pos="top center">Ora</option>',
                                                '<option id=6 selected pos="middle center">Lia'
                                                '</option>']


def test_format_screen_leaves_out_disabled_ids():
    dom = [el(5, "button", 2, 63, text="one"), el(6, "button", 50, 63, text="two")]
    assert format_screen(dom, disabled={5}) == ['<button id=6 pos="top center">two</button>']
    assert len(format_screen(dom, disabled=set())) == 2


# -- actions --------------------------------------------------------------------------------
@pytest.mark.parametrize("line,expected", [
    ("click id=5", Action("click", ref=5)),
    ("  2. Click id = 12.", Action("click", ref=12)),
    ('enter "Agustina" to id=5', Action("enter", ref=5, text="Agustina")),
    ('- type "a, b. c" into id=3.', Action("enter", ref=3, text="a, b. c")),
    ('enter "" to id=4', Action("enter", ref=4, text="")),
    ("press Enter", Action("press", key="<Enter>")),
    ("press ENTER", Action("press", key="<Enter>")),
    ("press ARROWDOWN x 3", Action("press", key="<ArrowDown>", repeat=3)),
    ("press ctrl+a", Action("press", key="C-a")),
    ("press C-c", Action("press", key="C-c")),
    ("press shift+Tab", Action("press", key="S-<Tab>")),
    ("press .", Action("press", key=".")),
    ("hold CTRL", Action("hold", key="CTRL")),
    ("release shift", Action("release", key="SHIFT")),
])
def test_parse_action_good_lines(line, expected):
    action = parse_action(line)
    assert action == expected
    assert parse_action(format_action(action)) == action  # round trip


@pytest.mark.parametrize("line", [
    "click 5", "click id=", "click id=-3", "enter Agustina to id=5", 'enter "x" to 5', "press",
    "press Foo", "press a x 99", "hold ALT", "scroll down", "I will click the button", "",
])
def test_parse_action_bad_lines(line):
    with pytest.raises(ActionParseError):
        parse_action(line)


def test_format_action():
    assert format_action(Action("click", ref=5)) == "click id=5"
    assert format_action(Action("enter", ref=5, text="hi")) == 'enter "hi" to id=5'
    assert format_action(Action("press", key="C-a")) == "press ctrl+a"
    assert format_action(Action("press", key="<ArrowUp>", repeat=2)) == "press ArrowUp x 2"
    assert format_action(Action("hold", key="CTRL")) == "hold CTRL"
    assert str(Action("release", key="SHIFT")) == "release SHIFT"


def test_parse_key_aliases():
    assert parse_key("esc") == "<Escape>"
    assert parse_key("<Backspace>") == "<Backspace>"
    assert parse_key("ctrl+A") == "C-a"
    assert parse_key("A") == "A"


def test_plan_lines_drop_headers_and_fences():
    text = 'Plan:\n```\n1. enter "x" to id=3\n\nclick id=4\n```\n'
    assert plan_lines(text) == ['1. enter "x" to id=3', "click id=4"]


# -- prompts / reflection -------------------------------------------------------------------
def test_planning_prompt_has_goal_history_and_screen():
    prompt = planning_prompt("Click on the okay button.", ['<button id=5 pos="top left">okay'
                                                           '</button>'],
                             [{"index": 0, "action": "click id=9", "ok": False,
                               "error": "element id=9 is not on the screen"}])
    assert "Goal: Click on the okay button." in prompt
    assert "0: click id=9  [failed: element id=9 is not on the screen]" in prompt
    assert prompt.rstrip().endswith('<button id=5 pos="top left">okay</button>\nPlan:')


def test_reflection_prompt_indexes_the_trajectory():
    steps = [{"index": 0, "screen": ["<a id=1>x</a>"], "action": "click id=1", "ok": True},
             {"index": 1, "screen": ["<a id=1>x</a>"], "action": "click id=1", "ok": True}]
    prompt = reflection_prompt("Do it.", steps, "failed")
    assert "Action index=0\nScreen:\n<a id=1>x</a>\nAction: click id=1" in prompt
    assert "Action index=1\nScreen:\n(same as before the previous action)" in prompt
    assert "For action index=A, you should B." in prompt


@pytest.mark.parametrize("text,index,action", [
    ("For action index=0, you should click id=6.", 0, Action("click", ref=6)),
    ("The goal needs okay.\nFor action index=2, you should press Enter.", 2,
     Action("press", key="<Enter>")),
    ('for action index = 1, you should enter "a.b" to id=3.', 1,
     Action("enter", ref=3, text="a.b")),
    ("For action index=1, you should click id=4 instead of id=6.", 1, Action("click", ref=4)),
])
def test_parse_reflection(text, index, action):
    answer = parse_reflection(text)
    assert answer is not None and (answer.index, answer.action) == (index, action)


@pytest.mark.parametrize("text", ["", "I made no mistake.",
                                  "For action index=1, you should be more careful.",
                                  "For action index=x, you should click id=3."])
def test_parse_reflection_rejects_other_answers(text):
    assert parse_reflection(text) is None


# -- memory ---------------------------------------------------------------------------------
def test_memory_writing_a_slot_clears_later_slots():
    mem = ReflectionMemory()
    mem.write(3, Action("click", ref=7), taken=Action("click", ref=6))
    mem.write(5, Action("press", key="<Enter>"), taken=Action("click", ref=2))
    assert mem.get(3) == Action("click", ref=7) and mem.get(5) is not None
    mem.write(1, Action("click", ref=4), taken=Action("click", ref=9))
    assert mem.get(1) == Action("click", ref=4)
    assert mem.get(3) is None and mem.get(5) is None and len(mem) == 1
    assert mem.disabled_at(3) == frozenset() and mem.disabled_at(1) == {9}


def test_memory_disabled_sets():
    mem = ReflectionMemory()
    mem.write(0, Action("click", ref=5), taken=Action("click", ref=4))
    assert mem.disabled_at(0) == {4}
    mem.write(0, Action("click", ref=6), taken=Action("click", ref=5))
    assert mem.disabled_at(0) == {4, 5}  # the set grows across trials at the same step
    mem.write(0, Action("click", ref=4), taken=Action("click", ref=6))
    assert mem.disabled_at(0) == {5, 6}  # the newest advice re-enables its own element
    mem.write(2, Action("enter", ref=3, text="x"), taken=Action("click", ref=3))
    assert mem.disabled_at(2) == frozenset()  # only click-vs-click disables
    mem.write(4, Action("click", ref=3), taken=Action("click", ref=3))
    assert mem.disabled_at(4) == frozenset()  # same element: nothing to disable
    assert mem.to_dict()["slots"] == {"0": "click id=4", "2": 'enter "x" to id=3',
                                      "4": "click id=3"}
    with pytest.raises(ValueError):
        mem.write(-1, Action("click", ref=1))


# -- tasks ----------------------------------------------------------------------------------
def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown MiniWoB task 'click-buton'.*click-button"):
        resolve_task("click-buton")
    with pytest.raises(ValueError, match="no close match"):
        resolve_task("zzzzzzzz")


def test_task_names_and_defaults():
    names = task_names()
    assert len(names) > 100 and "click-button" in names
    assert resolve_task("miniwob/login-user-v1") == resolve_task("login-user-v1") == "login-user"
    assert TASKS_DEFAULT and all(t in names for t in TASKS_DEFAULT)


def test_browser_health_watches_chromedriver_and_the_browser_not_its_helpers():
    """Chromium's renderer and utility processes come and go as pages load; only the processes
    without `--type=` (chromedriver, the browser itself) decide whether the browser is healthy."""
    import subprocess
    import sys
    import time

    import psutil

    from ringbit.agents.computer.env import _vital

    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    main = subprocess.Popen(sleep)
    helper = subprocess.Popen([*sleep, "--type=renderer"])
    try:
        procs = [psutil.Process(main.pid), psutil.Process(helper.pid)]
        deadline = time.monotonic() + 30  # until both have exec'd: a fork shows its parent's command line
        while not all("time.sleep(60)" in " ".join(p.cmdline()) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.pid for p in _vital(procs)] == [main.pid]
        helper.kill()
        helper.wait()
        assert [p.pid for p in _vital(procs)] == [main.pid]  # an exited helper is skipped
    finally:
        main.kill()
        helper.kill()
        main.wait()


def test_drop_down_lists_are_shown_with_their_options():
    select = {"ref": 4, "tag": "select", "text": "", "left": [2.0], "top": [57.0], "width": [150.0],
              "height": [19.0], "classes": "", "value": "", "flags": [0, 0, 0, 0]}  # not a leaf
    lines = format_screen([select], options={4: ["Ann", 'Bo "B"']})
    assert lines == ['<select id=4 options="Ann | Bo \'B\'" pos="top center"></select>']
