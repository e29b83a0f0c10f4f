"""The structured-reflection computer-control agent against REAL MiniWoB++ in headless Chromium.

The LLM is replaced by `ScriptedPolicy`, a test double: it reads the prompt the agent sends (goal,
previous actions, screen lines, or the reflection trajectory) and answers with plan lines or a
reflection, like a model would. Browser-backed tests share one module-scoped browser (about 1 s
and 400 MiB each) and switch tasks in it; the crash test gets its own.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Callable

import psutil
import pytest

from ringbit.agents.computer import (BrowserError, MiniWoBEnv, browser_missing, format_screen,
                                     run_episode)
from ringbit.agents.llm import FunctionLLM

_missing = browser_missing()
if _missing:
    pytest.skip(f"chromium not installed: run `make system-deps` ({_missing})",
                allow_module_level=True)

_LINE = re.compile(r'^<(?P<tag>[\w-]+) id=(?P<id>\d+)[^>]*>(?P<text>.*)</(?P=tag)>$')


@dataclass
class PlanView:
    """What the planner received: the goal, the actions done so far and the screen lines."""

    goal: str
    history: list[str]
    screen: list[str]

    @classmethod
    def parse(cls, prompt: str) -> PlanView:
        goal = re.search(r"^Goal: (.*)$", prompt, re.M).group(1)
        hist = prompt.split("Previous actions:\n", 1)[1].split("\nCurrent screen:\n", 1)
        screen = hist[1].split("\nPlan:", 1)[0]
        done = [re.sub(r"^\d+: ", "", h) for h in hist[0].splitlines() if h != "(none)"]
        return cls(goal, [h for h in done if "[failed" not in h],
                   [s for s in screen.splitlines() if s != "(empty)"])

    def ids(self, tag: str | None = None, text: str | None = None) -> list[int]:
        out = []
        for line in self.screen:
            m = _LINE.match(line)
            if m and (tag is None or m["tag"] == tag) and (text is None or m["text"] == text):
                out.append(int(m["id"]))
        return out


@dataclass
class ScriptedPolicy:
    """TEST DOUBLE standing in for the LLM (wrap it in FunctionLLM).

    plan(view) -> the full list of actions it wants on this screen; the policy answers with the
    part not done yet (so a re-plan after a stage continues where the last one stopped).
    reflect(prompt, n) -> the reflection text for the n-th reflection."""

    plan: Callable[[PlanView], list[str]]
    reflect: Callable[[str, int], str] = lambda prompt, n: "I do not know."
    plan_views: list[PlanView] = field(default_factory=list)
    reflection_prompts: list[str] = field(default_factory=list)

    def __call__(self, prompt: str, stop: list[str] | None, max_tokens: int) -> str:
        if "earliest critical mistake" in prompt:
            self.reflection_prompts.append(prompt)
            return self.reflect(prompt, len(self.reflection_prompts) - 1)
        view = PlanView.parse(prompt)
        self.plan_views.append(view)
        wanted = self.plan(view)
        done = 0
        while done < len(wanted) and done < len(view.history) and \
                view.history[done] == wanted[done]:
            done += 1
        return "\n".join(wanted[done:])


def quoted(goal: str) -> list[str]:
    return re.findall(r'"([^"]*)"', goal)


@pytest.fixture(scope="module")
def env():
    with MiniWoBEnv("click-button") as e:
        yield e


def find_seed(env: MiniWoBEnv, task: str, ok: Callable[[PlanView], bool]) -> int:
    """A seed whose first screen satisfies `ok` (found on the real task, not hard-coded)."""
    env.set_task(task)
    for seed in range(40):
        obs = env.reset(seed)
        if ok(PlanView(obs.utterance, [], format_screen(obs.elements))):
            return seed
    raise AssertionError(f"no seed of {task} fits the test")


def first_button_is_wrong(view: PlanView) -> bool:
    target = quoted(view.goal)[0]
    buttons = view.ids("button")
    return len(buttons) >= 2 and buttons[0] not in view.ids("button", target) \
        and bool(view.ids("button", target))


# -- (a) staged planning ----------------------------------------------------------------------
def test_staged_plan_runs_in_order_from_one_llm_call(env):
    def login(view: PlanView) -> list[str]:
        user, password = quoted(view.goal)
        return [f'enter "{user}" to id={view.ids("input_text")[0]}',
                f'enter "{password}" to id={view.ids("input_password")[0]}',
                f'click id={view.ids("button", "Login")[0]}']

    policy = ScriptedPolicy(login)
    events: list[dict] = []
    result = run_episode(env, FunctionLLM(policy), "login-user", seed=0, on_event=events.append)
    assert env.task == "login-user"  # switched in the same browser
    assert result.success and result.error is None and result.trials_used == 1
    assert result.llm_calls == 1 and len(policy.plan_views) == 1
    steps = result.trials[0]["steps"]
    assert [s["action"] for s in steps] == login(policy.plan_views[0])
    assert all(s["source"] == "planner" and s["ok"] for s in steps)
    assert steps[0]["plan"] == steps[2]["plan"] and steps[0]["llm_s"] >= 0
    assert [e["type"] for e in events] == ["plan", "step", "step", "step", "trial_end"]
    assert result.reward > 0 and result.browser_s > 0
    json.dumps(result.to_dict())  # JSON-serialisable for the Serve layer


def test_enter_replaces_existing_text(env):
    def enter_text(view: PlanView) -> list[str]:
        box = view.ids("input_text")[0]
        return [f'enter "wrong words" to id={box}', f'enter "{quoted(view.goal)[0]}" to id={box}',
                f'click id={view.ids("button", "Submit")[0]}']

    result = run_episode(env, FunctionLLM(ScriptedPolicy(enter_text)), "enter-text", seed=1,
                         max_trials=1)
    assert result.success, result.trials[0]["reason"]


# -- (b) reflection then replay from memory -----------------------------------------------------
def test_reflection_fixes_the_first_trial(env):
    seed = find_seed(env, "click-button", first_button_is_wrong)

    def wrong_button(view: PlanView) -> list[str]:
        right = set(view.ids("button", quoted(view.goal)[0]))
        return [f"click id={next(i for i in view.ids('button') if i not in right)}"]

    def reflect(prompt: str, n: int) -> str:
        goal = re.search(r"^Goal: (.*)$", prompt, re.M).group(1)
        screen = prompt.split("Action index=0\nScreen:\n", 1)[1].split("\nAction:", 1)[0]
        view = PlanView(goal, [], screen.splitlines())
        return f"For action index=0, you should click id={view.ids('button', quoted(goal)[0])[0]}."

    policy = ScriptedPolicy(wrong_button, reflect)
    events: list[dict] = []
    result = run_episode(env, FunctionLLM(policy), "click-button", seed=seed, max_trials=3,
                         on_event=events.append)
    first, second = result.trials
    assert not first["success"] and first["reward"] == -1.0
    wrong = int(first["steps"][0]["action"].split("=")[1])
    right = first["reflection"]["action"]
    assert first["reflection"]["index"] == 0 and right.startswith("click id=")
    assert second["success"] and result.success and result.trials_used == 2
    step0 = second["steps"][0]
    assert step0["source"] == "memory" and step0["plan"] is None and step0["action"] == right
    # the planner was asked once (trial 1), never at step 0 of trial 2
    assert len(policy.plan_views) == 1 and result.llm_calls == 2
    # the clicked wrong button is disabled at step 0: gone from that step's screen
    assert not any(f"id={wrong} " in line for line in step0["screen"])
    assert any(f"id={wrong} " in line for line in first["steps"][0]["screen"])
    assert [e["type"] for e in events] == ["plan", "step", "trial_end", "reflection", "step",
                                           "trial_end"]
    assert events[3]["memory"]["slots"] == {"0": right}


def test_without_reflection_failed_trials_are_plain_retries(env):
    # the ablation: the same wrong plan, no reflection call, nothing replayed from memory
    seed = find_seed(env, "click-button", first_button_is_wrong)

    def wrong_button(view: PlanView) -> list[str]:
        right = set(view.ids("button", quoted(view.goal)[0]))
        return [f"click id={next(i for i in view.ids('button') if i not in right)}"]

    policy = ScriptedPolicy(wrong_button, lambda prompt, n: "For action index=0, you should click id=1.")
    result = run_episode(env, FunctionLLM(policy), "click-button", seed=seed, max_trials=3, reflection=False)
    assert not result.success and result.trials_used == 3
    assert policy.reflection_prompts == [] and all(t["reflection"] is None for t in result.trials)
    assert [t["steps"][0]["source"] for t in result.trials] == ["planner"] * 3
    assert len(policy.plan_views) == 3 and result.llm_calls == 3


# -- (c) the disabled id vanishes from the planner's screen ------------------------------------
def test_disabled_id_is_removed_from_the_planners_screen(env):
    seed = find_seed(env, "click-button", first_button_is_wrong)

    def first_button(view: PlanView) -> list[str]:
        return [f"click id={view.ids('button')[0]}"]

    # The reflection names an element that does not exist (a model slip): trial 2 cannot
    # replay it, so the planner plans step 0 again, on a screen without the disabled button.
    policy = ScriptedPolicy(first_button, lambda prompt, n: "For action index=0, you should "
                                                            "click id=99.")
    events: list[dict] = []
    result = run_episode(env, FunctionLLM(policy), "click-button", seed=seed, max_trials=2,
                         on_event=events.append)
    first_view, second_view = policy.plan_views
    wrong = first_view.ids("button")[0]
    assert not result.trials[0]["success"]
    assert wrong in first_view.ids() and wrong not in second_view.ids()
    assert not any(f"id={wrong} " in line for line in second_view.screen)
    assert len(second_view.screen) == len(first_view.screen) - 1
    assert result.trials[1]["steps"][0]["source"] == "planner"
    plan_events = [e for e in events if e["type"] == "plan"]
    assert "element id=99 is not on the screen" in plan_events[1]["memory_skipped"]
    # with the wrong first button gone, "click the first button" is now the right one
    assert result.success and result.trials_used == 2


def test_planner_cannot_click_a_disabled_id(env):
    seed = find_seed(env, "click-button", first_button_is_wrong)
    obs = env.reset(seed)
    wrong = PlanView(obs.utterance, [], format_screen(obs.elements)).ids("button")[0]
    # a planner that insists on the same element even when it is no longer on its screen
    stubborn = ScriptedPolicy(lambda view: [f"click id={wrong}"],
                              lambda prompt, n: "For action index=0, you should click id=99.")
    result = run_episode(env, FunctionLLM(stubborn), "click-button", seed=seed, max_trials=2)
    second = result.trials[1]
    assert not result.success
    # step 0: refused (disabled there); the same plan again on the same screen ends the trial
    assert [s["ok"] for s in second["steps"]] == [False]
    assert "disabled at this step" in second["steps"][0]["error"]
    assert second["reason"].startswith("stuck") and result.llm_calls == 4


# -- (d) a new reflection on an earlier step clears later slots --------------------------------
def test_reflection_on_an_earlier_step_clears_later_slots(env):
    def login(view: PlanView) -> list[str]:
        user, password = quoted(view.goal)
        user_box, pass_box = view.ids("input_text")[0], view.ids("input_password")[0]
        first = view.history[0] if view.history else f'enter "nobody" to id={user_box}'
        return [first, f'enter "{password}" to id={pass_box}',
                f'click id={view.ids("button", "Login")[0]}']

    def reflect(prompt: str, n: int) -> str:
        if n == 0:  # a poor first reflection about step 2 ...
            return "For action index=2, you should press Enter."
        user = quoted(re.search(r"^Goal: (.*)$", prompt, re.M).group(1))[0]
        box = re.search(r"<input_text id=(\d+)", prompt).group(1)
        return f'For action index=0, you should enter "{user}" to id={box}.'  # ... then step 0

    events: list[dict] = []
    policy = ScriptedPolicy(login, reflect)
    result = run_episode(env, FunctionLLM(policy), "login-user", seed=2, max_trials=3,
                         on_event=events.append)
    memories = [e["memory"]["slots"] for e in events if e["type"] == "reflection"]
    assert memories[0] == {"2": "press Enter"}
    assert list(memories[1]) == ["0"]  # writing slot 0 cleared slot 2
    t1, t2, t3 = result.trials
    assert [s["source"] for s in t2["steps"]][:3] == ["planner", "planner", "memory"]
    assert t2["steps"][2]["action"] == "press Enter" and not t2["success"]
    assert [s["source"] for s in t3["steps"]] == ["memory", "planner", "planner"]
    assert t3["success"] and result.success and result.trials_used == 3


# -- hold / release ------------------------------------------------------------------------
def test_hold_ctrl_multi_select(env):
    def two_targets(view: PlanView) -> bool:
        m = re.match(r"Select (\w+), (\w+) from the scroll list", view.goal)
        return bool(m) and all(view.ids("option", name) for name in m.groups())

    seed = find_seed(env, "click-scroll-list", two_targets)

    def multi_select(view: PlanView) -> list[str]:
        a, b = re.match(r"Select (\w+), (\w+) from", view.goal).groups()
        return ["hold CTRL", f"click id={view.ids('option', a)[0]}",
                f"click id={view.ids('option', b)[0]}", "release CTRL",
                f"click id={view.ids('button', 'Submit')[0]}"]

    result = run_episode(env, FunctionLLM(ScriptedPolicy(multi_select)), "click-scroll-list",
                         seed=seed, max_trials=1)
    assert result.success, result.trials[0]
    steps = result.trials[0]["steps"]
    assert [s["action"].split(" id=")[0] for s in steps] == [
        "hold CTRL", "click", "click", "release CTRL", "click"]
    # each ctrl+click shows on the screen (selected), so the whole plan is one stage
    assert result.llm_calls == 1
    assert sum(" selected " in line for line in steps[2]["screen"]) == 1
    assert sum(" selected " in line for line in steps[3]["screen"]) == 2


# -- failures ------------------------------------------------------------------------------
def test_unparsable_plans_are_failed_steps_and_limits_hold(env):
    calls = iter(range(100))
    chatty = ScriptedPolicy(lambda view: [f"Sure! Attempt {next(calls)}: I click the button."])
    result = run_episode(env, FunctionLLM(chatty), "click-button", seed=0, max_trials=1,
                         max_steps=2)
    steps = result.trials[0]["steps"]
    assert [s["ok"] for s in steps] == [False, False] and "not an action" in steps[0]["error"]
    assert result.trials[0]["reason"] == "step limit (2) reached"
    assert not result.success and result.error is None and result.reward == 0.0

    same = ScriptedPolicy(lambda view: ["I will click the button."])
    result = run_episode(env, FunctionLLM(same), "click-button", seed=0, max_trials=1)
    assert len(result.trials[0]["steps"]) == 1 and result.llm_calls == 2
    assert result.trials[0]["reason"] == "stuck: the same plan again on an unchanged screen"

    silent = ScriptedPolicy(lambda view: [])
    result = run_episode(env, FunctionLLM(silent), "click-button", seed=0, max_trials=1)
    assert result.trials[0]["reason"] == "the planner proposed no action"


def test_unknown_task_raises(env):
    with pytest.raises(ValueError, match="close matches: click-button"):
        run_episode(env, FunctionLLM(ScriptedPolicy(lambda v: [])), "click-buttn", seed=0)
    with pytest.raises(ValueError, match="unknown MiniWoB task"):
        MiniWoBEnv("no-such-task")


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


KILLS = {
    "driver session quit": lambda env: env.unwrapped.instance.driver.quit(),
    "chromedriver killed": lambda env: env.unwrapped.instance.driver.service.process.kill(),
}


@pytest.mark.parametrize("how", list(KILLS))
def test_killed_browser_ends_the_episode_with_a_reason(how):
    crash_env = MiniWoBEnv("login-user")
    pids = crash_env.browser_pids
    assert pids

    def kill_after_first_step(event: dict) -> None:
        if event["type"] == "step":
            KILLS[how](crash_env)

    def login(view: PlanView) -> list[str]:
        user, password = quoted(view.goal)
        return [f'enter "{user}" to id={view.ids("input_text")[0]}',
                f'enter "{password}" to id={view.ids("input_password")[0]}']

    try:
        start = time.perf_counter()
        result = run_episode(crash_env, FunctionLLM(ScriptedPolicy(login)), "login-user", seed=0,
                             on_event=kill_after_first_step)
        assert time.perf_counter() - start < 30
        assert not result.success and result.error.startswith("browser crashed: ")
        assert result.trials_used == 1 and result.trials[0]["reason"] == result.error
        assert len(result.trials[0]["steps"]) == 1
        assert not crash_env.healthy
        with pytest.raises(BrowserError):
            crash_env.reset(0)
        # a second episode on the broken browser fails at once, it does not hang
        again = run_episode(crash_env, FunctionLLM(ScriptedPolicy(login)), "login-user", seed=0)
        assert again.error and again.error.startswith("browser crashed: ")
        if how == "chromedriver killed":
            crash_env.close()  # quit cannot reach the browser: its processes are killed
            assert not [p for p in pids if running(p)]
        else:
            crash_env.restart()  # what a pool may do instead of replacing the actor
            assert crash_env.healthy and crash_env.reset(0).utterance
    finally:
        crash_env.close()
        crash_env.close()  # idempotent


def test_episode_time_limit_and_llm_failures(env):
    def slow(view: PlanView) -> list[str]:
        time.sleep(0.6)  # thinking longer than the episode may last
        return [f"click id={view.ids('button', quoted(view.goal)[0])[0]}"]

    env.episode_max_s = 0.3
    try:
        result = run_episode(env, FunctionLLM(ScriptedPolicy(slow)), "click-button", seed=0,
                             max_trials=1)
    finally:
        env.episode_max_s = None
    assert not result.success and result.trials[0]["reason"] == "timed out"
    assert result.trials[0]["raw_reward"] == -1.0

    def broken_endpoint(prompt: str, stop, max_tokens) -> str:
        raise ConnectionError("endpoint down")

    def bad_viewer(event: dict) -> None:
        raise RuntimeError("viewer bug")  # logged, never breaks the episode

    result = run_episode(env, FunctionLLM(broken_endpoint), "click-button", seed=0,
                         on_event=bad_viewer)
    assert not result.success and result.llm_calls == 1
    assert result.error == "llm failed: ConnectionError: endpoint down"
    assert result.trials[0]["reason"] == result.error and env.healthy
    # the benchmark's own limit is back: a normal episode succeeds
    ok = run_episode(env, FunctionLLM(ScriptedPolicy(lambda v: [
        f"click id={v.ids('button', quoted(v.goal)[0])[0]}"])), "click-button", seed=0)
    assert ok.success
