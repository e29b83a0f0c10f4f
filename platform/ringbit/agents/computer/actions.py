"""The agent's atomic actions (Li et al. 2023, Sec. 3.1): parse one plan line, print it back, and
map it onto MiniWoB++ actions.

    click id=N
    enter "TEXT" to id=N        types TEXT into element N, replacing what is there
    press KEY [x N]             Enter, Tab, ArrowDown, ctrl+a, ...; "x N" presses it N times
    hold CTRL|SHIFT / release CTRL|SHIFT
                                keep a modifier down across clicks (multi-select lists);
                                executed by MiniWoBEnv with WebDriver key and pointer actions,
                                since MiniWoB's own PRESS_KEY releases modifiers at once and its
                                element clicks are synthetic JS clicks that carry no modifiers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Literal

from miniwob.action import ActionTypes
from miniwob.constants import ALL_POSSIBLE_KEYS, WEBDRIVER_MODIFIER_KEYS, WEBDRIVER_SPECIAL_KEYS

Kind = Literal["click", "enter", "press", "hold", "release"]
MODIFIERS = ("CTRL", "SHIFT")
MAX_REPEAT = 20

_KEYS = frozenset(ALL_POSSIBLE_KEYS)
_SPECIAL = {name[1:-1].lower(): name for name in WEBDRIVER_SPECIAL_KEYS}
_SPECIAL.update({"return": "<Enter>", "esc": "<Escape>", "del": "<Delete>", "up": "<ArrowUp>",
                 "down": "<ArrowDown>", "left": "<ArrowLeft>", "right": "<ArrowRight>",
                 "pgup": "<PageUp>", "pgdn": "<PageDown>", "spacebar": "<Space>"})
_MOD_PREFIX = {"ctrl": "C-", "control": "C-", "c": "C-", "shift": "S-", "s": "S-", "alt": "A-",
               "a": "A-", "meta": "M-", "cmd": "M-", "m": "M-"}
_MOD_NAME = {"C-": "ctrl", "S-": "shift", "A-": "alt", "M-": "meta"}
_MOD_ORDER = list(WEBDRIVER_MODIFIER_KEYS)  # the order ALL_POSSIBLE_KEYS spells combos in

_CLICK = re.compile(r"^click\s+(?:on\s+)?id\s*=\s*(\d+)$", re.I)
_ENTER = re.compile(r"""^(?:enter|type)\s+(?P<q>["'])(?P<text>.*)(?P=q)"""
                    r"\s+(?:to|into|in)\s+id\s*=\s*(?P<ref>\d+)$", re.I | re.S)
_PRESS = re.compile(r"^press\s+(?P<key>.+?)(?:\s+x\s*(?P<n>\d+))?$", re.I)
_HOLD = re.compile(r"^(hold|release)\s+(ctrl|control|shift)$", re.I)
_BULLET = re.compile(r"^\s*(?:[-*•]\s+|\d+[.)]\s+|step\s+\d+\s*[:.]\s*)", re.I)


class ActionParseError(ValueError):
    """A plan line that is not one of the atomic actions."""


@dataclass(frozen=True)
class Action:
    """One atomic action. `key` is in MiniWoB syntax for press ("<Enter>", "C-a") and "CTRL" /
    "SHIFT" for hold/release."""

    kind: Kind
    ref: int | None = None
    text: str | None = None
    key: str | None = None
    repeat: int = 1

    def __str__(self) -> str:
        return format_action(self)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ref": self.ref, "text": self.text, "key": self.key,
                "repeat": self.repeat}


def parse_key(raw: str) -> str:
    """A key name as a model writes it ("Enter", "ARROWDOWN", "ctrl+a", "C-a", "<Tab>") in
    MiniWoB's key syntax; ActionParseError if MiniWoB cannot press it."""
    raw = raw.strip().strip("`'\"")
    if raw in _KEYS:
        return raw
    mods: list[str] = []
    rest = raw
    # "C-a" / "S-<Tab>" (MiniWoB) and "ctrl+a" / "Shift+Tab" (what models write)
    while True:
        m = re.match(r"^(ctrl|control|shift|alt|meta|cmd|[csam])\s*[+-]\s*(?=\S)", rest, re.I)
        if not m or (len(m.group(1)) == 1 and not rest[1:2] == "-"):
            break
        mods.append(_MOD_PREFIX[m.group(1).lower()])
        rest = rest[m.end():]
    if len(rest) == 1:
        base = rest.lower() if mods else rest  # "ctrl+A" means ctrl+a, not ctrl+shift+a
    else:
        base = _SPECIAL.get(rest.strip("<>").lower().replace("_", "").replace(" ", ""), "")
        if not base:
            raise ActionParseError(f"unknown key {raw!r}")
    key = "".join(p for p in _MOD_ORDER if p in mods) + base
    if key not in _KEYS:
        raise ActionParseError(f"MiniWoB cannot press {raw!r}")
    return key


def key_label(key: str) -> str:
    """MiniWoB key syntax back to the plan syntax ("C-a" -> "ctrl+a", "<Enter>" -> "Enter")."""
    mods = []
    while key[:2] in _MOD_NAME:
        mods.append(_MOD_NAME[key[:2]])
        key = key[2:]
    base = key[1:-1] if key.startswith("<") and key.endswith(">") else key
    return "+".join([*mods, base])


def clean_line(line: str) -> str:
    """Drop list markers and a trailing period or comment that models like to add."""
    line = _BULLET.sub("", line.strip()).strip().strip("`").strip()
    if line.endswith(".") and len(line) > 1 and not line[-2].isspace() and line[-2] != '"':
        line = line[:-1]  # "click id=5." -> "click id=5"; "press ." keeps its key
    return line


def parse_action(line: str) -> Action:
    """One plan line -> Action; ActionParseError (with the reason) when it is not an action."""
    text = clean_line(line)
    if m := _CLICK.match(text):
        return Action("click", ref=int(m.group(1)))
    if m := _ENTER.match(text):
        return Action("enter", ref=int(m.group("ref")), text=m.group("text"))
    if m := _HOLD.match(text):
        return Action(m.group(1).lower(), key="CTRL" if m.group(2).lower() != "shift" else "SHIFT")
    if m := _PRESS.match(text):
        n = int(m.group("n") or 1)
        if not 1 <= n <= MAX_REPEAT:
            raise ActionParseError(f"repeat count must be 1..{MAX_REPEAT}: {line.strip()!r}")
        return Action("press", key=parse_key(m.group("key")), repeat=n)
    raise ActionParseError(f"not an action: {line.strip()!r} (expected click id=N, "
                           'enter "TEXT" to id=N, press KEY, hold/release CTRL|SHIFT)')


def format_action(action: Action) -> str:
    """The plan-line form of an action (parse_action(format_action(a)) == a)."""
    if action.kind == "click":
        return f"click id={action.ref}"
    if action.kind == "enter":
        return f'enter "{action.text}" to id={action.ref}'
    if action.kind == "press":
        label = f"press {key_label(action.key or '')}"
        return label if action.repeat == 1 else f"{label} x {action.repeat}"
    return f"{action.kind} {action.key}"


MiniWoBAction = dict[str, Any]


def to_miniwob(action: Action, create_action: Callable[..., MiniWoBAction],
               current_value: str | None = None) -> list[MiniWoBAction]:
    """MiniWoB actions (via env.unwrapped.create_action) that carry out `action`.

    `enter` into a field that already holds text clicks it, selects all (ctrl+a) and types, so
    the text replaces the old value as the action promises; into an empty field it is MiniWoB's
    FOCUS_ELEMENT_AND_TYPE_TEXT. hold/release have no MiniWoB action: MiniWoBEnv runs them."""
    if action.kind == "click":
        return [create_action(ActionTypes.CLICK_ELEMENT, ref=action.ref)]
    if action.kind == "enter":
        if current_value:
            return [create_action(ActionTypes.CLICK_ELEMENT, ref=action.ref),
                    _press(create_action, "C-a"),
                    create_action(ActionTypes.TYPE_TEXT, text=action.text)]
        return [create_action(ActionTypes.FOCUS_ELEMENT_AND_TYPE_TEXT, ref=action.ref,
                              text=action.text)]
    if action.kind == "press":
        return [_press(create_action, action.key or "")] * action.repeat
    raise ValueError(f"{action.kind} has no MiniWoB action; MiniWoBEnv executes it")


# MiniWoBEnv configures allowed_keys=ALL_POSSIBLE_KEYS, so a key's index there is its action.
_KEY_INDEX = {key: i for i, key in enumerate(ALL_POSSIBLE_KEYS)}


def _press(create_action: Callable[..., MiniWoBAction], key: str) -> MiniWoBAction:
    return create_action(ActionTypes.PRESS_KEY, key=_KEY_INDEX[key])
