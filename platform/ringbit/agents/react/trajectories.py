"""FireAct ReAct trajectories: the `Thought/Action/Observation` text format, the action parser and
readers/writers for FireAct's released Alpaca (JSON list or JSONL) and chat ("messages" JSONL)
files.

One step is rendered as "Thought: ...\nAction: tool[arg]\nObservation: ...\n"; a trajectory is its
steps concatenated and ends with `finish[answer]` (FireAct's fine-tuning target, the Alpaca
"output"). Parsing then writing reproduces the released files record for record (the Alpaca JSON
byte for byte)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

# "Action:" (or ReAct's numbered "Action 1:"); a marker at a line start wins over one mid-line.
_ACTION_MARK = re.compile(r"Action(?: \d+)?[ \t]*:")
_ACTION_AT_LINE = re.compile(r"(?:^|\n)[ \t]*(Action(?: \d+)?[ \t]*:)")
_TOOL_OPEN = re.compile(r"\s*([A-Za-z_][\w\-]*)[ \t]*\[")
_STEP = re.compile(r"Thought: (.*?)\nAction: (.*?)\nObservation: (.*?)(?:\n(?=Thought: )|\n\Z|\Z)",
                   re.S)
_CHAT_TURN = re.compile(r"Thought: (.*?)\nAction: (.*)\Z", re.S)
OBSERVATION_PREFIX = "Observation: "


def find_action(text: str) -> re.Match[str] | None:
    """The first "Action:" marker in `text` (line-initial markers preferred), or None."""
    m = _ACTION_AT_LINE.search(text)
    if m:
        return _ACTION_MARK.match(text, m.start(1))
    return _ACTION_MARK.search(text)


def parse_action(text: str) -> tuple[str, str] | None:
    """Parse "Action: tool[arg]" -> (tool, arg), or None when no action is there.

    `text` may be a whole "Thought: ...\\nAction: ..." completion or just "tool[arg]" (what the
    model writes after an "Action:" prefix). Whitespace around the tool and the argument is
    dropped and text after the closing bracket is ignored; brackets inside the argument nest
    (search[Foo [band]]). An unclosed "[" (a completion cut by max_tokens) is no action."""
    marker = find_action(text)
    m = _TOOL_OPEN.match(text, marker.end() if marker else 0)
    if not m:
        return None
    tool, start = m.group(1), m.end()
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "[":
            depth += 1
        elif text[i] == "]":
            depth -= 1
            if depth == 0:
                return tool, text[start:i].strip()
    # Unbalanced nesting ("search[a [b]"): fall back to the last "]" on the action's line.
    line = text[start:].split("\n", 1)[0]
    if "]" in line:
        return tool, line[: line.rindex("]")].strip()
    return None


@dataclass
class Step:
    """One ReAct step. `action` is the action text as written, e.g. "search[query]"."""

    thought: str
    action: str
    observation: str

    def format(self) -> str:
        """The step as it appears in the prompt/target text."""
        return (f"Thought: {self.thought}\nAction: {self.action}\n"
                f"{OBSERVATION_PREFIX}{self.observation}\n")


@dataclass
class Trajectory:
    """A question and its ReAct steps; `answer` is the finish[...] argument (None if unfinished).
    `system` keeps a chat file's leading system message, if any, for exact round trips."""

    question: str
    steps: list[Step] = field(default_factory=list)
    answer: str | None = None
    system: str | None = None

    @classmethod
    def from_steps(cls, question: str, steps: list[Step],
                   system: str | None = None) -> "Trajectory":
        return cls(question=question, steps=steps, answer=finish_answer(steps), system=system)


def format_steps(steps: Iterable[Step]) -> str:
    """Steps rendered back to back: FireAct's Alpaca "output" text."""
    return "".join(s.format() for s in steps)


def parse_steps(text: str) -> list[Step]:
    """Inverse of `format_steps`; raises ValueError on text that is not in the step format."""
    steps: list[Step] = []
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if not m:
            raise ValueError(f"not a Thought/Action/Observation step at offset {pos}: "
                             f"{text[pos:pos + 80]!r}")
        steps.append(Step(*m.groups()))
        pos = m.end()
    return steps


def finish_answer(steps: Iterable[Step]) -> str | None:
    """The argument of the last finish[...] action, or None when there is none."""
    answer = None
    for s in steps:
        parsed = parse_action(s.action)
        if parsed and parsed[0].lower() == "finish":
            answer = parsed[1]
    return answer


# --- Alpaca format --------------------------------------------------------------------------

def from_alpaca(record: dict[str, Any]) -> Trajectory:
    """{"instruction": question, "input": "", "output": steps text} -> Trajectory.
    (FireAct's "input" is always empty; a non-empty one is not kept.)"""
    return Trajectory.from_steps(record["instruction"], parse_steps(record["output"]))


def to_alpaca(traj: Trajectory) -> dict[str, str]:
    return {"instruction": traj.question, "input": "", "output": format_steps(traj.steps)}


# --- chat format ----------------------------------------------------------------------------

def from_chat(record: dict[str, Any]) -> Trajectory:
    """{"messages": [user question, assistant "Thought: ..\\nAction: ..", user "Observation: ..",
    ...]} -> Trajectory. A leading system message is kept in `Trajectory.system`."""
    msgs = list(record["messages"])
    system = msgs.pop(0)["content"] if msgs and msgs[0]["role"] == "system" else None
    if not msgs or msgs[0]["role"] != "user":
        raise ValueError("chat trajectory must start with the user's question")
    question = msgs[0]["content"]
    steps: list[Step] = []
    turns = msgs[1:]
    for i in range(0, len(turns), 2):
        assistant = turns[i]
        m = _CHAT_TURN.match(assistant["content"])
        if assistant["role"] != "assistant" or not m:
            raise ValueError(f"expected an assistant Thought/Action turn, got {assistant!r:.120}")
        obs = ""
        if i + 1 < len(turns):
            content = turns[i + 1]["content"]
            if turns[i + 1]["role"] != "user" or not content.startswith(OBSERVATION_PREFIX):
                raise ValueError(f"expected a user Observation turn, got {turns[i + 1]!r:.120}")
            obs = content[len(OBSERVATION_PREFIX):]
        steps.append(Step(m.group(1), m.group(2), obs))
    return Trajectory.from_steps(question, steps, system=system)


def to_chat(traj: Trajectory) -> dict[str, list[dict[str, str]]]:
    msgs = [{"role": "system", "content": traj.system}] if traj.system is not None else []
    msgs.append({"role": "user", "content": traj.question})
    for s in traj.steps:
        msgs.append({"role": "assistant", "content": f"Thought: {s.thought}\nAction: {s.action}"})
        msgs.append({"role": "user", "content": OBSERVATION_PREFIX + s.observation})
    return {"messages": msgs}


# --- files ----------------------------------------------------------------------------------

def from_record(record: dict[str, Any]) -> Trajectory:
    """One Alpaca or chat record -> Trajectory (format told by its keys)."""
    if "messages" in record:
        return from_chat(record)
    if "instruction" in record and "output" in record:
        return from_alpaca(record)
    raise ValueError(f"neither an Alpaca nor a chat trajectory record: keys {sorted(record)}")


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """A JSON list or JSONL file -> its records (told by the first non-blank character)."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def record_kind(record: Any) -> str:
    """"trajectory" (Alpaca or chat), "qa" ({question, answer}), "cache" ({query, result}),
    "passage" ({text}) or "unknown"."""
    if not isinstance(record, dict):
        return "unknown"
    if "instruction" in record or "messages" in record:
        return "trajectory"
    if "question" in record and "answer" in record:
        return "qa"
    if "query" in record and ("result" in record or "observation" in record):
        return "cache"
    return "passage" if "text" in record else "unknown"


def file_kind(path: str | Path) -> str:
    """What a JSON / JSONL file holds, told by its first record (record_kind); a JSON object of
    strings is a {query: result} cache (FireAct's tools/search.json)."""
    text = Path(path).read_text(encoding="utf-8").lstrip()
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = json.loads(text.splitlines()[0]) if text else None
        except json.JSONDecodeError:
            return "unknown"
    if isinstance(data, list):
        return record_kind(data[0]) if data else "unknown"
    if isinstance(data, dict) and record_kind(data) == "unknown" and data:
        return "cache" if all(isinstance(v, (str, type(None))) for v in data.values()) else "unknown"
    return record_kind(data)


def read_trajectories(path: str | Path) -> list[Trajectory]:
    """Read FireAct trajectories from an Alpaca JSON/JSONL or chat JSONL file (auto-detected)."""
    return [from_record(r) for r in read_records(path)]


def write_alpaca(path: str | Path, trajs: Iterable[Trajectory]) -> None:
    """Alpaca records: a JSON list indented like FireAct's file, or JSONL for a .jsonl path."""
    records = [to_alpaca(t) for t in trajs]
    path = Path(path)
    if path.suffix == ".jsonl":
        _write_jsonl(path, records)
    else:
        path.write_text(json.dumps(records, indent=4), encoding="utf-8")


def write_chat(path: str | Path, trajs: Iterable[Trajectory]) -> None:
    """Chat ("messages") records, one JSON object a line."""
    _write_jsonl(Path(path), [to_chat(t) for t in trajs])


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
