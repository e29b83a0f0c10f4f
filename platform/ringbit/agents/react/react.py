"""The FireAct ReAct loop: prompt, step parsing and `run_react`.

The prompt the agent sends is exactly the text FireAct fine-tunes on: `format_prompt(question)`
(the Alpaca instruction template around the bare question) followed by the steps so far, each
"Thought: ...\\nAction: tool[arg]\\nObservation: ...\\n" as in `format_target`. Every LLM call
ends the prompt with "Thought:" and stops at "\\nObservation:", so the model writes one
thought/action pair; the loop runs the tool and appends the observation itself."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

from ringbit.agents.react.trajectories import (
    Step, Trajectory, find_action, format_steps, parse_action)

__all__ = ["ALPACA_TEMPLATE", "FINISH_OBSERVATION", "STOP", "LLM", "ReactResult", "few_shot_prefix",
           "format_prompt", "format_target", "parse_action", "run_react", "split_step"]

# Stanford Alpaca's no-input template, which FireAct's Llama fine-tuning scripts train on.
ALPACA_TEMPLATE = ("Below is an instruction that describes a task. Write a response that "
                   "appropriately completes the request.\n\n### Instruction:\n{instruction}"
                   "\n\n### Response:\n")
THOUGHT_PREFIX = "Thought:"
STOP = ["\nObservation:"]
FINISH_OBSERVATION = "Episode finished"
REACT_INSTRUCTIONS = (
    "Answer the question by interleaving Thought, Action and Observation steps. A Thought reasons "
    "about the current situation; an Action is one of:\n"
    "(1) search[query]: searches the web and returns a short snippet, which may or may not hold "
    "the answer (if it does not, try another query);\n"
    "(2) finish[answer]: gives the answer and ends the task.\n")
FEW_SHOT_HEADER = REACT_INSTRUCTIONS + "Examples:\n\n\n"
ZERO_SHOT_HEADER = REACT_INSTRUCTIONS + "\nQuestion: "
_THOUGHT_LABEL = re.compile(r"^\s*(?:Thought(?: \d+)?\s*:\s*)?")


class LLM(Protocol):
    """What the loop needs from `ringbit.agents.llm.AgentLLM` / `FunctionLLM`."""

    def __call__(self, prompt: str, *, stop: list[str] | None = None,
                 max_tokens: int = 256) -> str: ...


def format_prompt(question: str, few_shot: str | None = None) -> str:
    """The prompt before the first step. Fine-tuned models (few_shot=None) get the Alpaca template
    around the question; prompted models get `few_shot` + question + newline (FireAct's prompted
    baseline). The question is stripped because FireAct strips it at inference: `sft.sft_pairs`
    uses this same function, so training and inference see identical text."""
    q = question.strip()
    if few_shot is None:
        return ALPACA_TEMPLATE.format(instruction=q)
    return f"{few_shot}{q}\n"


def format_target(trajectory: Trajectory) -> str:
    """The fine-tuning target (FireAct's Alpaca "output"): all steps, ending with the finish step
    and its "Observation: Episode finished, reward = ..." line."""
    return format_steps(trajectory.steps)


def few_shot_prefix(trajectories: Sequence[Trajectory], header: str = FEW_SHOT_HEADER) -> str:
    """A few-shot prompt for non-fine-tuned models from example trajectories: `header`, then each
    question followed by its steps, separated by blank lines (the layout of FireAct's prompt)."""
    examples = "".join(f"{t.question.strip()}\n{format_steps(t.steps)}\n\n" for t in trajectories)
    return header + examples


def split_step(text: str) -> tuple[str, tuple[str, str] | None]:
    """A completion "[Thought:] thought\\nAction: tool[arg]" -> (thought, (tool, arg) | None).
    Without an "Action:" marker the whole text is the thought."""
    marker = find_action(text)
    thought = text[: marker.start()] if marker else text
    thought = _THOUGHT_LABEL.sub("", thought, count=1).strip()
    return thought, parse_action(text) if marker else None


@dataclass
class ReactResult:
    """The outcome of one episode. `steps` are dicts {thought, action, observation, llm_s, tool_s};
    `action` is the canonical "tool[arg]" the loop ran (and put in the prompt)."""

    question: str
    answer: str = ""
    finished: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)
    iterations: int = 0
    error: str | None = None
    retries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_trajectory(self, reward: bool | None = None) -> Trajectory:
        """The episode as a Trajectory (e.g. to fine-tune on successful runs, as FireAct does);
        with `reward` the finish observation reads "Episode finished, reward = <reward>"."""
        steps = [Step(s["thought"], s["action"], s["observation"]) for s in self.steps]
        if reward is not None and steps and steps[-1].observation == FINISH_OBSERVATION:
            steps[-1].observation = f"{FINISH_OBSERVATION}, reward = {reward}"
        return Trajectory.from_steps(self.question, steps)


def run_react(question: str, llm: LLM, tools: Mapping[str, Callable[[str], str]],
              max_iterations: int = 11, max_retries: int = 3,
              on_event: Callable[[dict[str, Any]], None] | None = None, *,
              few_shot: str | None = None, max_tokens: int = 256) -> ReactResult:
    """Answer `question` with a ReAct loop of at most `max_iterations` LLM steps.

    Each step: generate "Thought ... Action: tool[arg]" (stop at "\\nObservation:"), run the tool
    (names match case-insensitively; an unknown tool yields an observation listing the tools),
    append "Observation: ..." and go on; finish[answer] ends the episode with `answer`. When no
    action parses the LLM is re-asked up to `max_retries` times; after that the episode ends with
    finish[] and an empty answer, like FireAct. `on_event` gets each step dict as it happens.
    An LLM exception ends the episode with `error` set, keeping the steps so far."""
    context = format_prompt(question, few_shot)
    lookup = {name.lower(): tool for name, tool in tools.items()}
    result = ReactResult(question=question)

    def record(step: dict[str, Any]) -> None:
        result.steps.append(step)
        result.iterations = len(result.steps)
        if on_event is not None:
            on_event(step)

    for _ in range(max_iterations):
        t0 = time.perf_counter()
        try:
            thought, parsed, retries = _generate_step(llm, context, max_retries, max_tokens)
        except Exception as exc:  # noqa: BLE001 - an endpoint failure ends this episode only
            result.error = f"llm error: {type(exc).__name__}: {exc}"
            return result
        llm_s = time.perf_counter() - t0
        result.retries += retries
        if parsed is None:
            record(_step(thought, "finish[]", FINISH_OBSERVATION, llm_s, 0.0))
            result.error = f"no parsable action after {max_retries} retries"
            return result
        tool, arg = parsed
        action = f"{tool}[{arg}]"
        if tool.lower() == "finish":
            record(_step(thought, action, FINISH_OBSERVATION, llm_s, 0.0))
            result.answer, result.finished = arg, True
            return result
        t1 = time.perf_counter()
        observation = _call_tool(lookup, tool, arg)
        record(_step(thought, action, observation, llm_s, time.perf_counter() - t1))
        context += Step(thought, action, observation).format()
    result.error = f"no finish[] within {max_iterations} iterations"
    return result


def _generate_step(llm: LLM, context: str, max_retries: int,
                   max_tokens: int) -> tuple[str, tuple[str, str] | None, int]:
    """One thought/action from the LLM, re-asking when no action parses. Retries alternate
    between FireAct's repair (keep the thought, prompt "Action:" for the action alone) and a
    fresh generation with twice the token budget (the action may have been cut off)."""
    thought, parsed = split_step(llm(context + THOUGHT_PREFIX, stop=STOP, max_tokens=max_tokens))
    retries = 0
    while parsed is None and retries < max_retries:
        retries += 1
        if thought and retries % 2 == 1:
            text = llm(f"{context}Thought: {thought}\nAction:", stop=STOP, max_tokens=max_tokens)
            parsed = parse_action(text)
        else:
            text = llm(context + THOUGHT_PREFIX, stop=STOP, max_tokens=2 * max_tokens)
            thought, parsed = split_step(text)
    return thought, parsed, retries


def _call_tool(lookup: Mapping[str, Callable[[str], str]], tool: str, arg: str) -> str:
    fn = lookup.get(tool.lower())
    if fn is None:
        names = ", ".join(sorted({*lookup, "finish"}))
        return f"Invalid action: there is no tool '{tool}'. Available tools: {names}."
    try:
        obs = str(fn(arg))
    except Exception as exc:  # noqa: BLE001 - the model sees the failure and can react to it
        return f"Tool error ({tool}): {type(exc).__name__}: {exc}"
    # One line per observation, as in the training text.
    return re.sub(r"\s*\n\s*", " ", obs) if "\n" in obs else obs


def _step(thought: str, action: str, observation: str, llm_s: float,
          tool_s: float) -> dict[str, Any]:
    return {"thought": thought, "action": action, "observation": observation,
            "llm_s": round(llm_s, 6), "tool_s": round(tool_s, 6)}
