"""InstructScore diagnostic reports: lenient parsing, scoring and the canonical format.

The canonical report (what the released checkpoints write; see InstructScore_SEScore3's
reproduce/ outputs)::

    Your Translation contains 2 errors:
    Error type 1: Incorrect translation is missing content from the correct translation
    Major/minor: Major
    Error location 1: "Or how long before the restaurant is ready?"
    Explanation for error 1: ...
    Error type 2: ...

Data-to-text reports put ``Error dimension N: ...`` before each error type, and a report with
no error reads ``Your generation contains no error.``. Older checkpoints wrote free-form
variants, which ``parse_report`` also reads::

    1. Error Type: ...              Error 1:
       Label: Minor                 - Error Type: ...
       Error Location: "..."        - Major/Minor: Major
       Explanation: ...             - Error Location: "..." in the model generated translation

Parsing rule for incomplete blocks: an error block counts only when it carries a recognisable
severity (a ``Major/minor:``, ``Label:`` or ``Severity:`` line whose value contains "major" or
"minor"). A block without one, typically the last one of a report cut off at the generation
limit, is dropped. This is what the original scorer does: it counts the ``Major/minor: Major``
and ``Major/minor: Minor`` lines, so a block without that line adds nothing to its score.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

MAX_ERRORS = 5
PENALTY = {"major": -5.0, "minor": -1.0}


@dataclass
class ReportError:
    type: str  # error type text, "" if missing
    severity: str  # "major" or "minor" (lower case)
    location: str  # quoted span without the quotes, "" if missing
    explanation: str  # "" if missing
    dimension: str | None = None  # data2text's error dimension when present

    def __post_init__(self) -> None:
        severity = str(self.severity).strip().lower()
        if severity not in PENALTY:
            raise ValueError(f"severity: {self.severity!r} is neither 'major' nor 'minor'")
        self.severity = severity

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ReportError:
        return cls(
            type=data.get("type", ""),
            severity=data["severity"],
            location=data.get("location", ""),
            explanation=data.get("explanation", ""),
            dimension=data.get("dimension"),
        )


# --------------------------------------------------------------------------------- parsing

# "key [N]: value", key made of letters, spaces and / _ - (bounded, so no costly backtracking).
_FIELD = re.compile(
    r"^(?P<key>[A-Za-z][A-Za-z /_-]{0,40}?)\s*(?P<num>\d{1,3})?\s*:\s*(?P<value>.*)$"
)
# A list marker in front of a field: "1. Error Type: ..." (the number starts a new error),
# or a bullet: "- Major/Minor: Major".
_LIST_NUMBER = re.compile(r"^\(?(?P<num>\d{1,3})[.)]\s+(?P<rest>.*)$")
_BULLET = re.compile(r"^[-*\u2022\u2013>]+\s*")
# Canonical keys glued onto the previous line ("... Major/minor: Major Error location 1: ...").
_GLUED = re.compile(
    r"(?<=\S)[ \t,;]+(?=(?:error\s+(?:type|location|dimension)\s*\d{0,3}|major/minor|"
    r"explanation\s+for\s+error\s*\d{0,3}|severity)\s*:)",
    re.IGNORECASE,
)

_KEYS = {
    "type": {"error type", "type", "error category", "category"},
    "severity": {"major/minor", "minor/major", "major or minor", "major/minor label", "label",
                 "severity", "error severity", "severity label"},
    "location": {"error location", "location", "error span", "span"},
    "explanation": {"explanation for error", "explanation", "error explanation", "reason"},
    "dimension": {"error dimension", "dimension"},
}
_KEY_TO_FIELD = {key: field for field, keys in _KEYS.items() for key in keys}
_QUOTES = {'"': '"', "\u201c": "\u201d", "\u201d": "\u201d", "'": "'", "\u2018": "\u2019"}


def _unquote(value: str) -> str:
    """'"span"' -> 'span'; '"span" in the model generated translation' -> 'span'."""
    value = value.strip()
    if not value or value[0] not in _QUOTES:
        return value
    closing = _QUOTES[value[0]]
    if len(value) >= 2 and value[-1] in (closing, '"'):
        return value[1:-1]
    end = value.rfind(closing, 1)
    return value[1:end] if end > 0 else value[1:]


def _severity(value: str) -> str | None:
    match = re.search(r"major|minor", value, re.IGNORECASE)
    return match.group(0).lower() if match else None


class _Block:
    def __init__(self, number: int | None = None) -> None:
        self.number = number
        self.fields: dict[str, str] = {}
        self.header_type = ""  # text after an "Error 1:" header, used when no type line follows

    def to_error(self) -> ReportError | None:
        severity = _severity(self.fields.get("severity", ""))
        if severity is None:
            return None
        return ReportError(
            type=self.fields.get("type", self.header_type),
            severity=severity,
            location=_unquote(self.fields.get("location", "")),
            explanation=self.fields.get("explanation", ""),
            dimension=self.fields.get("dimension"),
        )


def parse_report(text: str) -> list[ReportError]:
    """The errors of a report, in order, at most MAX_ERRORS of them.

    Lenient: reads the canonical format and the older free-form variants (see the module
    docstring); ignores headers, blank lines and any line it does not recognise; never raises on
    a string. Blocks without a recognisable severity are dropped (module docstring).
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a string, got {type(text).__name__}")
    blocks: list[_Block] = []
    current: _Block | None = None

    def start(number: int | None) -> _Block:
        block = _Block(number)
        blocks.append(block)
        return block

    for raw in _GLUED.sub("\n", text).splitlines():
        line = raw.strip()
        if not line:
            continue
        list_number = None
        numbered = _LIST_NUMBER.match(line)
        if numbered:
            list_number = int(numbered.group("num"))
            line = numbered.group("rest")
        line = _BULLET.sub("", line)
        match = _FIELD.match(line)
        if not match:
            continue
        key = " ".join(match.group("key").lower().split())
        number = int(match.group("num")) if match.group("num") else None
        value = match.group("value").strip()
        if key == "error" and number is not None:  # "Error 1:" header, maybe with a type after it
            current = start(number)
            current.header_type = value
            continue
        field = _KEY_TO_FIELD.get(key)
        if field is None:
            continue
        number = number if number is not None else list_number
        if (
            current is None
            or list_number is not None
            or field in current.fields
            or (number is not None and current.number is not None and number != current.number)
        ):
            current = start(number)
        elif current.number is None:
            current.number = number
        current.fields[field] = value

    errors = [e for e in (block.to_error() for block in blocks) if e is not None]
    return errors[:MAX_ERRORS]


_NO_ERROR = re.compile(r"\bcontains\s+(?:no|0|zero)\s+errors?\b", re.IGNORECASE)


def is_well_formed(text: str, errors: list[ReportError]) -> bool:
    """A report the scorer can trust: at least one error block with a severity, or the explicit
    "contains no error" statement. An empty, cut-off or free-text answer is not: scoring it 0
    would call the translation perfect."""
    return bool(errors) or bool(_NO_ERROR.search(text))


def read_report(text: str) -> dict:
    """`{"score", "parsed", "errors"}` for a generated report: `score` is None and `parsed` False
    when the report is not well formed (see is_well_formed)."""
    errors = parse_report(text)
    parsed = is_well_formed(text, errors)
    return {"score": score(errors) if parsed else None, "parsed": parsed,
            "errors": [e.to_dict() for e in errors]}


# --------------------------------------------------------------------------------- scoring


def score(errors: list[ReportError]) -> float:
    """-5 per major and -1 per minor error over the first MAX_ERRORS errors: in [-25, 0]."""
    return float(sum(PENALTY[e.severity] for e in errors[:MAX_ERRORS]))


# --------------------------------------------------------------------------------- formatting


def _one_line(text: str) -> str:
    return " ".join(str(text).splitlines()).strip()


def format_report(errors: list[ReportError], noun: str = "Translation") -> str:
    """The canonical report for ``errors`` (the inverse of parse_report for one-line fields).

    With no error: ``Your {noun} contains no error.``; otherwise
    ``Your {noun} contains N error(s):`` and one block per error, ``Error dimension i`` first
    when the error has a dimension. Newlines inside a field are replaced by spaces.
    """
    if len(errors) > MAX_ERRORS:
        raise ValueError(f"errors: a report holds at most {MAX_ERRORS} errors, got {len(errors)}")
    if not errors:
        return f"Your {noun} contains no error."
    lines = [f"Your {noun} contains {len(errors)} error{'s' if len(errors) > 1 else ''}:"]
    for i, error in enumerate(errors, start=1):
        if error.dimension is not None:
            lines.append(f"Error dimension {i}: {_one_line(error.dimension)}")
        lines.append(f"Error type {i}: {_one_line(error.type)}")
        lines.append(f"Major/minor: {error.severity.capitalize()}")
        lines.append(f'Error location {i}: "{_one_line(error.location)}"')
        lines.append(f"Explanation for error {i}: {_one_line(error.explanation)}")
    return "\n".join(lines)
