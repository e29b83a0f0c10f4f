"""Demonstration bookkeeping without a browser: the solvers' task list, the config checks, the
history read back from a planning prompt, the injected mistakes and the teacher's answers."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from ringbit.agents.computer.actions import Action
from ringbit.agents.computer.config import SOLVED_TASKS, ComputerDemosConfig, ComputerFinetuneConfig
from ringbit.agents.computer.demos import Teacher, check_example, prompt_history, wrong_action
from ringbit.agents.computer.env import Observation
from ringbit.agents.computer.prompts import planning_prompt, reflection_prompt
from ringbit.agents.computer.screen import format_screen
from ringbit.agents.computer.solvers import SOLVERS, NoSolution, solve


def el(ref, tag, text="", left=10.0, top=60.0, classes="", value=""):
    return {"ref": ref, "tag": tag, "text": text, "left": [left], "top": [top], "width": [40.0],
            "height": [20.0], "classes": classes, "value": value, "flags": [0, 0, 0, 1]}


def login_screen(user_value=""):
    return Observation('Enter the username "ann" and the password "pw" into the text fields and press login.',
                       [("username", "ann"), ("password", "pw")],
                       [el(7, "input_text", value=user_value), el(10, "input_password", top=100.0),
                        el(11, "button", "Login", top=150.0)])


class FakeEnv:
    def __init__(self, obs):
        self.observation = obs


def test_the_config_lists_exactly_the_solvers():
    assert SOLVED_TASKS == sorted(SOLVERS) and len(SOLVED_TASKS) >= 20


def test_config_checks_tasks_and_seeds():
    assert ComputerDemosConfig(seeds="1000-1002").seeds == [1000, 1001, 1002]
    with pytest.raises(ValidationError, match="no scripted solver for \\['click-pie'\\]"):
        ComputerDemosConfig(tasks=["click-pie"])
    with pytest.raises(ValidationError, match="out of range"):
        ComputerDemosConfig(seeds=[-1])


def test_solvers_plan_from_the_screen_as_it_is():
    assert [str(a) for a in solve("login-user", login_screen())] == [
        'enter "ann" to id=7', 'enter "pw" to id=10', "click id=11"]
    # after a mistake, a field that already holds its text is not typed again
    assert [str(a) for a in solve("login-user", login_screen("ann"))] == ['enter "pw" to id=10', "click id=11"]
    with pytest.raises(NoSolution, match="button"):
        solve("click-button", Observation('Click on the "okay" button.', [("target", "okay")],
                                          [el(5, "button", "cancel")]))
    with pytest.raises(KeyError, match="no solver for 'click-pie'"):
        solve("click-pie", login_screen())


def test_history_is_read_back_from_the_planning_prompt():
    steps = [{"index": 0, "action": 'enter "ann" to id=7', "ok": True},
             {"index": 1, "action": "click id=99", "ok": False, "error": "not on the screen"}]
    prompt = planning_prompt("goal", ["<button id=11>Login</button>"], steps)
    assert prompt_history(prompt) == ['enter "ann" to id=7', "click id=99"]
    assert prompt_history(planning_prompt("goal", [], [])) == []


def test_wrong_actions_are_other_elements_or_other_text():
    obs = login_screen()
    rng = random.Random(0)
    wrong = wrong_action(Action("click", ref=11), obs, rng)
    assert wrong.kind == "click" and wrong.ref in (7, 10)
    assert wrong_action(Action("enter", ref=7, text="ann"), obs, rng) == Action("enter", ref=7, text="nna")
    assert wrong_action(Action("enter", ref=7, text="aa"), obs, rng).text == "aaa"  # a palindrome
    assert wrong_action(Action("press", key="<Enter>"), obs, rng) is None


def test_teacher_spoils_one_action_then_names_it_in_its_reflection():
    obs = login_screen()
    teacher = Teacher(FakeEnv(obs), "login-user", inject=(0, 1), seed=0)
    plan = teacher(planning_prompt(obs.utterance, format_screen(obs.elements), []))
    assert plan.splitlines() == ['enter "ann" to id=7', 'enter "wp" to id=10', "click id=11"]
    assert teacher.examples == []  # a spoiled plan is never a training example
    answer = teacher(reflection_prompt(obs.utterance, [], "failed"))
    assert answer == 'For action index=1, you should enter "pw" to id=10.'
    (example,) = teacher.examples
    assert example["kind"] == "reflection"
    check_example(example)
    # after the reflection, plans are examples again
    teacher(planning_prompt(obs.utterance, format_screen(obs.elements), []))
    assert [e["kind"] for e in teacher.examples] == ["reflection", "plan"]


def test_a_teacher_that_spoiled_nothing_does_not_reflect():
    with pytest.raises(NoSolution):
        Teacher(FakeEnv(login_screen()), "login-user")(reflection_prompt("g", [], "failed"))


def test_check_example_refuses_what_the_agent_could_not_parse():
    with pytest.raises(ValueError):
        check_example({"kind": "plan", "completion": "click the login button"})
    with pytest.raises(ValueError, match="not a reflection"):
        check_example({"kind": "reflection", "completion": "I clicked the wrong thing."})


def demo_rows(n_episodes: int) -> list[dict]:
    rows = []
    for seed in range(n_episodes):
        rows += [{"task": "click-button", "seed": seed, "kind": "plan", "prompt": f"p{seed}", "completion": "click id=5"},
                 {"task": "click-button", "seed": seed, "kind": "reflection", "prompt": f"r{seed}",
                  "completion": "For action index=0, you should click id=5."}]
    return rows


def test_demonstrations_are_split_by_whole_episodes():
    from ringbit.agents.computer.finetune import split_demos

    train, val = split_demos(demo_rows(10), 0.2, seed=0)
    assert len(val) == 4 and len(train) == 16  # 2 of 10 episodes, both examples of each
    assert not {r["seed"] for r in train} & {r["seed"] for r in val}
    assert split_demos(demo_rows(10), 0.2, seed=0) == (train, val)  # seeded
    with pytest.raises(ValueError, match="too few"):
        split_demos(demo_rows(1), 0.5, seed=0)


def test_demos_file_is_read_and_checked(tmp_path):
    import json

    from ringbit.agents.computer.finetune import demos_uri, read_demos

    path = tmp_path / "demos.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in demo_rows(2)))
    assert len(read_demos(str(path))) == 4
    assert demos_uri(str(path), "ringbit-agents") == str(path)  # files and runs:/ URIs pass as they are
    bad = {"task": "t", "seed": 0, "kind": "plan", "prompt": "p", "completion": "press the button"}
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match="line 1"):
        read_demos(str(path))
    path.write_text(json.dumps(demo_rows(1)[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match="line 2"):  # a broken line is named, not a raw traceback
        read_demos(str(path))


def test_finetune_config_checks_a_demos_file_but_not_a_run(tmp_path):
    base = {"base_model": "models:/smollm2-135m-instruct@base"}
    with pytest.raises(ValidationError, match="data.demos: no file"):
        ComputerFinetuneConfig(**base, data={"demos": str(tmp_path / "missing.jsonl")})
    for ref in ("computer-demos", "runs:/0123abcd/demos.jsonl"):  # resolved in MLflow when the job starts
        assert ComputerFinetuneConfig(**base, data={"demos": ref}).data.demos == ref
