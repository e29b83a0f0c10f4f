"""The zero-shot computer-control agent with structured reflection (Li et al. 2023,
arXiv 2310.08740) on real MiniWoB++ in headless Chromium.

    env = MiniWoBEnv("click-button")            # one browser; replace it after a BrowserError
    result = run_episode(env, llm, "click-button", seed=0, max_trials=3)
    result.to_dict()                            # JSON: trials, steps, reflections, timings

Modules: screen (DOM -> screen lines), actions (plan lines <-> actions <-> MiniWoB), prompts
(planning and reflection prompts, reflection parser), memory (reflection memory), env
(the browser), agent (the loop).
"""

from ringbit.agents.computer.actions import Action, ActionParseError, format_action, parse_action
from ringbit.agents.computer.agent import TASKS_DEFAULT, EpisodeResult, run_episode
from ringbit.agents.computer.env import (BrowserError, MiniWoBEnv, Observation, StepResult,
                                         browser_missing, configure_browser, resolve_task,
                                         task_names)
from ringbit.agents.computer.memory import ReflectionMemory
from ringbit.agents.computer.prompts import ReflectionAnswer, parse_reflection
from ringbit.agents.computer.screen import format_screen, grid_cell

__all__ = [
    "TASKS_DEFAULT", "Action", "ActionParseError", "BrowserError", "EpisodeResult", "MiniWoBEnv",
    "Observation", "ReflectionAnswer", "ReflectionMemory", "StepResult", "browser_missing",
    "configure_browser", "format_action", "format_screen", "grid_cell", "parse_action",
    "parse_reflection", "resolve_task", "run_episode", "task_names",
]
