"""The zero-shot computer-control agent with structured reflection (Li et al. 2023,
arXiv 2310.08740) on real MiniWoB++ in headless Chromium.

    env = MiniWoBEnv("click-button")            # one browser; replace it after a BrowserError
    result = run_episode(env, llm, "click-button", seed=0, max_trials=3)
    result.to_dict()                            # JSON: trials, steps, reflections, timings

Modules: screen (DOM -> screen lines), actions (plan lines <-> actions <-> MiniWoB), prompts
(planning and reflection prompts, reflection parser), memory (reflection memory), env
(the browser), agent (the loop).
"""

from __future__ import annotations

import importlib

# name -> submodule; loaded on first use, so the job config (ringbit.agents.computer.config)
# imports without the browser stack (gymnasium, miniwob, selenium)
_EXPORTS = {
    "Action": "actions", "ActionParseError": "actions", "format_action": "actions", "parse_action": "actions",
    "TASKS_DEFAULT": "agent", "EpisodeResult": "agent", "run_episode": "agent",
    "BrowserError": "env", "MiniWoBEnv": "env", "Observation": "env", "StepResult": "env",
    "browser_missing": "env", "configure_browser": "env", "resolve_task": "env", "task_names": "env",
    "ReflectionMemory": "memory",
    "ReflectionAnswer": "prompts", "parse_reflection": "prompts",
    "format_screen": "screen", "grid_cell": "screen",
}

__all__ = [
    "TASKS_DEFAULT", "Action", "ActionParseError", "BrowserError", "EpisodeResult", "MiniWoBEnv",
    "Observation", "ReflectionAnswer", "ReflectionMemory", "StepResult", "browser_missing",
    "configure_browser", "format_action", "format_screen", "grid_cell", "parse_action",
    "parse_reflection", "resolve_task", "run_episode", "task_names",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
