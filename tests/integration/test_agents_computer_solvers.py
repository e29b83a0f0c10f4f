"""The scripted MiniWoB++ solvers and the demonstrations they teach, against REAL MiniWoB++ in
headless Chromium (one browser for the module, switching tasks).

A solver is the teacher of the computer-control fine-tune, so each one must actually solve its
task (raw reward 1) on every seed tried here; the demonstrations must be in the agent's own format
(its planning / reflection prompts, answers its parsers accept)."""

from __future__ import annotations

import re

import pytest

from ringbit.agents.computer import MiniWoBEnv, browser_missing
from ringbit.agents.computer.actions import parse_action
from ringbit.agents.computer.config import SOLVED_TASKS
from ringbit.agents.computer.demos import check_example, demonstrate
from ringbit.agents.computer.prompts import parse_reflection, plan_lines
from ringbit.agents.computer.solvers import solve

_missing = browser_missing()
if _missing:
    pytest.skip(f"chromium not installed: run `make system-deps` ({_missing})", allow_module_level=True)


@pytest.fixture(scope="module")
def env():
    with MiniWoBEnv("click-button", episode_max_s=60) as e:
        yield e


def play(env: MiniWoBEnv, task: str, seed: int) -> tuple[float, list[str]]:
    """The solver alone, stage by stage, as the agent would run its plans; (raw reward, actions)."""
    env.set_task(task)
    obs = env.reset(seed=seed)
    history: list[str] = []
    for _stage in range(10):
        for action in solve(task, obs, history):
            result = env.step(action)
            history.append(str(action))
            obs = result.obs
            if result.done:
                return result.raw_reward, history
    return 0.0, history


@pytest.mark.parametrize("task", SOLVED_TASKS)
def test_solver_solves_its_task_on_three_seeds(env, task):
    for seed in (0, 1, 2):
        reward, actions = play(env, task, seed)
        assert reward == 1.0, f"{task} seed {seed}: raw reward {reward} after {actions}"


def test_drop_down_lists_show_their_options(env):
    # miniwob reports a <select> without its options; the agent's screen must list them
    env.set_task("choose-list")
    obs = env.reset(seed=3)
    target = dict(obs.fields)["target"]
    line = next(line for line in obs.screen() if line.startswith("<select id="))
    assert f"{target}" in re.search(r'options="([^"]*)"', line).group(1).split(" | ")


@pytest.mark.parametrize("task", ["login-user", "click-tab-2", "click-scroll-list", "enter-password"])
def test_plan_demonstrations_are_in_the_agents_format(env, task):
    demo = demonstrate(env, task, 1000)
    assert demo["usable"] and demo["success"] and not demo["error"], demo
    assert demo["examples"] and all(e["kind"] == "plan" for e in demo["examples"])
    for example in demo["examples"]:
        check_example(example)  # every line parses as the agent parses its LLM's plans
        prompt, plan = example["prompt"], example["completion"]
        assert prompt.endswith("Plan:\n") and "Current screen:\n" in prompt
        screen = prompt.split("Current screen:\n", 1)[1]
        for line in plan_lines(plan):
            action = parse_action(line)
            if action.ref is not None:  # the planner only names elements of the screen it saw
                assert f" id={action.ref} " in screen, (line, screen)


def test_reflection_demonstration_names_the_injected_mistake(env):
    demo = demonstrate(env, "click-button", 1001, reflection=True)
    assert demo["usable"], demo
    (example,) = demo["examples"]
    assert example["kind"] == "reflection" and "earliest critical mistake" in example["prompt"]
    answer = parse_reflection(example["completion"])
    assert answer is not None and answer.index == 0 and answer.action.kind == "click"
    # the trajectory in the prompt shows the wrong click, and the answer names another element
    wrong = re.search(r"Action index=0\n.*?\nAction: click id=(\d+)", example["prompt"], re.S).group(1)
    assert int(wrong) != answer.action.ref
