"""The zero-shot computer-control agent with structured reflection (Li et al. 2023,
arXiv 2310.08740) on MiniWoB++.

A trial runs in stages (Sec. 3.2): one LLM call plans every action executable on the current
screen, one per line, and they run in order. A stage ends when the plan is exhausted, an action
leaves the screen unchanged or brings back an earlier screen (cycle), an action fails (no parse,
element missing or disabled), the episode ends or the step limit is hit; the next stage plans on
the new screen, seeing the actions taken so far.

After a failed trial the model reflects over the whole trajectory (Sec. 3.3) and names the
earliest critical mistake, "For action index=A, you should B."; B goes into memory slot A
(clearing later slots) and, when A was a click on another element, that element is disabled at
step A. The next trial resets the task with the same seed and, at step A, executes B directly
instead of asking the planner. If B cannot run there (its element is missing) the planner plans
step A on the screen without the disabled elements.

A BrowserError ends the episode at once (success False, `error` says why); the env is then
broken and the caller (the actor pool) must replace the browser.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ringbit.agents.computer.actions import Action, ActionParseError, parse_action
from ringbit.agents.computer.env import BrowserError, Observation, resolve_task
from ringbit.agents.computer.memory import ReflectionMemory
from ringbit.agents.computer.prompts import (PLAN_STOP, REFLECT_STOP, parse_reflection,
                                             plan_lines, planning_prompt, reflection_prompt)

log = logging.getLogger(__name__)

# Simple MiniWoB++ tasks (one or two screens) for demos and evaluation; all exist in miniwob 1.1.
TASKS_DEFAULT = ["click-button", "click-link", "click-dialog", "focus-text", "enter-text",
                 "enter-password", "login-user", "click-checkboxes"]

LLM = Callable[..., str]  # llm(prompt, stop=[...], max_tokens=N) -> str


@dataclass
class EpisodeResult:
    """One episode (up to max_trials trials of the same seeded task)."""

    task: str
    seed: int
    success: bool = False
    reward: float = 0.0
    trials_used: int = 0
    trials: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    llm_calls: int = 0
    llm_s: float = 0.0
    browser_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["llm_s"], out["browser_s"] = round(self.llm_s, 4), round(self.browser_s, 4)
        return out


class _LLMFailed(RuntimeError):
    pass


def _screen_key(obs: Observation) -> tuple[str, ...]:
    """What "the screen changed" compares: the full screen as the agent renders it."""
    return tuple(obs.screen())


class _Episode:
    """The state of one run_episode call."""

    def __init__(self, env: Any, llm: LLM, task: str, seed: int, max_trials: int,
                 max_steps: int, on_event: Callable[[dict], None] | None,
                 plan_max_tokens: int, reflect_max_tokens: int, reflection: bool = True):
        self.env, self.llm, self.seed = env, llm, seed
        self.reflection = reflection
        self.max_trials, self.max_steps = max_trials, max_steps
        self.on_event = on_event
        self.plan_max_tokens, self.reflect_max_tokens = plan_max_tokens, reflect_max_tokens
        self.memory = ReflectionMemory()
        self.result = EpisodeResult(task=task, seed=seed)

    # -- plumbing ----------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a broken viewer must not break the episode
            log.exception("on_event callback failed")

    def ask(self, prompt: str, stop: list[str], max_tokens: int) -> tuple[str, float]:
        start = time.perf_counter()
        try:
            text = self.llm(prompt, stop=stop, max_tokens=max_tokens)
        except Exception as exc:
            raise _LLMFailed(f"{type(exc).__name__}: {exc}") from exc
        finally:
            elapsed = time.perf_counter() - start
            self.result.llm_calls += 1
            self.result.llm_s += elapsed
        return str(text or ""), elapsed

    def step_record(self, trial: dict[str, Any], *, screen: list[str], plan: str | None,
                    action: str, source: str, ok: bool, error: str | None, llm_s: float,
                    browser_s: float) -> dict[str, Any]:
        step = {"index": len(trial["steps"]), "screen": screen, "plan": plan, "action": action,
                "source": source, "ok": ok, "error": error, "llm_s": round(llm_s, 4),
                "browser_s": round(browser_s, 4)}
        trial["steps"].append(step)
        self.emit({"type": "step", "trial": trial["trial"], **step})
        return step

    @staticmethod
    def problem(action: Action, obs: Observation, disabled: frozenset[int]) -> str | None:
        """Why `action` cannot run on this screen, or None."""
        if action.kind not in ("click", "enter"):
            return None
        if obs.element(int(action.ref)) is None:
            return f"element id={action.ref} is not on the screen"
        if action.ref in disabled:
            return f"element id={action.ref} is disabled at this step by an earlier reflection"
        return None

    # -- a trial -----------------------------------------------------------------------------
    def run_trial(self, k: int, trial: dict[str, Any], taken: list[Action | None]) -> None:
        """Fill `trial` (steps, success, reward, reason); `taken` gets each step's Action."""
        obs = self.env.reset(seed=self.seed)
        goal = trial["goal"] = obs.utterance
        seen = {_screen_key(obs)}
        last_stage: tuple[tuple[str, ...], str] | None = None

        def execute(action: Action, screen: list[str], plan: str | None, source: str,
                    llm_s: float) -> Observation | None:
            """Run one action; None when the episode ended (trial filled in)."""
            res = self.env.step(action)
            taken.append(action)
            self.step_record(trial, screen=screen, plan=plan, action=str(action),
                             source=source, ok=True, error=None, llm_s=llm_s,
                             browser_s=res.browser_s)
            if res.done:
                trial["success"] = res.raw_reward == 1.0
                trial["reward"] = res.reward
                trial["reason"] = (res.reason if isinstance(res.reason, str) and res.reason
                                   else ("task solved" if trial["success"] else "task failed"))
                trial["raw_reward"] = res.raw_reward
                return None
            return res.obs

        def fail(action_text: str, error: str, screen: list[str], plan: str | None,
                 llm_s: float) -> None:
            taken.append(None)
            self.step_record(trial, screen=screen, plan=plan, action=action_text,
                             source="planner", ok=False, error=error, llm_s=llm_s, browser_s=0.0)

        while True:
            t = len(trial["steps"])
            if t >= self.max_steps:
                trial["reason"] = f"step limit ({self.max_steps}) reached"
                return
            disabled = self.memory.disabled_at(t)
            screen = obs.screen(disabled)

            # Replay: a reflection fixed this step, so skip the planner (Sec. 3.3).
            replay, skipped = self.memory.get(t), None
            if replay is not None:
                skipped = self.problem(replay, obs, frozenset())
                if skipped is None:
                    nxt = execute(replay, screen, None, "memory", 0.0)
                    if nxt is None:
                        return
                    obs = nxt
                    seen.add(_screen_key(obs))
                    continue

            # A stage: one LLM call plans every action executable on this screen.
            plan, llm_s = self.ask(planning_prompt(goal, screen, trial["steps"]), PLAN_STOP,
                                   self.plan_max_tokens)
            event = {"type": "plan", "trial": k, "index": t, "screen": screen, "plan": plan,
                     "llm_s": round(llm_s, 4)}
            if skipped is not None:
                event["memory_skipped"] = f"{replay}: {skipped}"
            self.emit(event)
            lines = plan_lines(plan)
            if not lines:
                trial["reason"] = "the planner proposed no action"
                return
            stage = (_screen_key(obs), plan)
            if stage == last_stage:  # same plan on an unchanged screen: it would loop
                trial["reason"] = "stuck: the same plan again on an unchanged screen"
                return
            last_stage = stage
            for i, line in enumerate(lines):
                t = len(trial["steps"])
                if t >= self.max_steps or (i > 0 and self.memory.get(t) is not None):
                    break  # the outer loop reports the limit / replays the reflected step
                cost = llm_s if i == 0 else 0.0
                if i > 0:
                    screen = obs.screen(self.memory.disabled_at(t))
                try:
                    action = parse_action(line)
                except ActionParseError as exc:
                    fail(line, str(exc), screen, plan, cost)
                    break
                why = self.problem(action, obs, self.memory.disabled_at(t))
                if why is not None:
                    fail(str(action), why, screen, plan, cost)
                    break
                before = _screen_key(obs)
                nxt = execute(action, screen, plan, "planner", cost)
                if nxt is None:
                    return
                obs = nxt
                if action.kind in ("hold", "release"):
                    continue  # a held key is not meant to change the screen
                after = _screen_key(obs)
                if after == before or after in seen:
                    break  # unchanged or back to an earlier screen (cycle): re-plan
                seen.add(after)

    def reflect(self, k: int, trial: dict[str, Any], taken: list[Action | None]) -> None:
        steps = trial["steps"]
        if trial["raw_reward"] is not None:
            outcome = (f"failed, the episode ended with raw reward {trial['raw_reward']:g} "
                       f"({trial['reason']})")
        else:
            outcome = f"failed, the trial stopped before the goal was reached: {trial['reason']}"
        text, llm_s = self.ask(reflection_prompt(trial.get("goal", ""), steps, outcome),
                               REFLECT_STOP, self.reflect_max_tokens)
        reflection: dict[str, Any] = {"index": None, "action": None, "raw": text,
                                      "llm_s": round(llm_s, 4)}
        answer = parse_reflection(text)
        if answer is not None and 0 <= answer.index <= len(steps):
            before = taken[answer.index] if answer.index < len(taken) else None
            self.memory.write(answer.index, answer.action, before)
            reflection.update(index=answer.index, action=str(answer.action))
        trial["reflection"] = reflection
        self.emit({"type": "reflection", "trial": k, **reflection,
                   "memory": self.memory.to_dict()})

    # -- the episode -------------------------------------------------------------------------
    def run(self) -> EpisodeResult:
        res = self.result
        browser_start = float(getattr(self.env, "browser_s", 0.0))
        try:
            if getattr(self.env, "task", res.task) != res.task:
                self.env.set_task(res.task)
            for k in range(self.max_trials):
                trial: dict[str, Any] = {"trial": k, "success": False, "reward": 0.0,
                                         "raw_reward": None, "reason": None, "goal": "",
                                         "steps": [], "reflection": None}
                res.trials.append(trial)
                res.trials_used = k + 1
                taken: list[Action | None] = []
                self.run_trial(k, trial, taken)
                res.reward = float(trial["reward"])
                self.emit({"type": "trial_end", "trial": k, "success": trial["success"],
                           "reward": trial["reward"], "reason": trial["reason"],
                           "steps": len(trial["steps"])})
                if trial["success"]:
                    res.success = True
                    break
                if k + 1 < self.max_trials and self.reflection:
                    self.reflect(k, trial, taken)
        except BrowserError as exc:
            res.error = f"browser crashed: {exc.reason}"
            self._close_open_trial(res.error)
        except _LLMFailed as exc:
            res.error = f"llm failed: {exc}"
            self._close_open_trial(res.error)
        finally:
            res.browser_s = float(getattr(self.env, "browser_s", 0.0)) - browser_start
        return res

    def _close_open_trial(self, reason: str) -> None:
        if self.result.trials and self.result.trials[-1]["reason"] is None:
            trial = self.result.trials[-1]
            trial["reason"] = reason
            self.emit({"type": "trial_end", "trial": trial["trial"], "success": False,
                       "reward": trial["reward"], "reason": reason,
                       "steps": len(trial["steps"])})


def run_episode(env: Any, llm: LLM, task: str, seed: int, max_trials: int = 3,
                max_steps: int = 12, on_event: Callable[[dict], None] | None = None, *,
                plan_max_tokens: int = 256, reflect_max_tokens: int = 96,
                reflection: bool = True) -> EpisodeResult:
    """Run the agent on `task` (a MiniWoB++ task name) with `seed` for up to `max_trials` trials.

    reflection=False is the ablation: a failed trial is simply tried again on the same seed, with
    no reflection call and nothing in memory (the paper's prompting-only baseline).

    env: a MiniWoBEnv (switched to `task` if it holds another one); llm: any
    `llm(prompt, stop=[...], max_tokens=N) -> str` (AgentLLM, FunctionLLM); on_event receives
    each "plan", "step", "reflection" and "trial_end" event as it happens. Never raises for
    browser or LLM failures: they end the episode with success False and `error` set (after a
    browser failure the caller must replace the env). ValueError for an unknown task."""
    if max_trials < 1 or max_steps < 1:
        raise ValueError("max_trials and max_steps must be >= 1")
    name = resolve_task(task)
    return _Episode(env, llm, name, seed, max_trials, max_steps, on_event, plan_max_tokens,
                    reflect_max_tokens, reflection).run()
