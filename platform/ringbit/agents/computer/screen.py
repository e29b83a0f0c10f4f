"""The compact screen representation of Li et al. 2023 (arXiv 2310.08740, Sec. 3.1).

Only leaf DOM elements are kept, one line each, e.g. `<button id=5 pos="top left">okay</button>`:
id is the MiniWoB element ref (what actions name), pos is the cell of a 3x3 grid over the 160x210
task area, and class / placeholder / value are added where present. The paper argues this is
enough for zero-shot planning while staying close to what a user sees. Selected options of
multi-select lists get a bare `selected` attribute (miniwob reports no state for them).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

TASK_WIDTH = 160.0
TASK_HEIGHT = 210.0
_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "center", "right")
_LEAF_FLAG = 3  # obs["dom_elements"][i]["flags"] = (focused, tampered, targeted, is_leaf)


def _scalar(value: Any) -> float:
    """MiniWoB stores geometry as 1-element numpy arrays; accept plain numbers too."""
    try:
        return float(value[0])
    except (TypeError, IndexError):
        return float(value)


def grid_cell(left: float, top: float, width: float, height: float) -> str:
    """The 3x3 grid cell ("top left" ... "bottom right") holding the element's centre.

    Centres outside the task area are clamped to the nearest border cell."""
    cx = min(max(left + width / 2, 0.0), TASK_WIDTH - 1e-6)
    cy = min(max(top + height / 2, 0.0), TASK_HEIGHT - 1e-6)
    return f"{_ROWS[int(cy * 3 // TASK_HEIGHT)]} {_COLS[int(cx * 3 // TASK_WIDTH)]}"


def _visible(left: float, top: float, width: float, height: float) -> bool:
    """In the task area at all (jQuery UI parks hidden text far off-screen, e.g. left=-4916)."""
    return (width > 0 and height > 0 and left < TASK_WIDTH and top < TASK_HEIGHT
            and left + width > 0 and top + height > 0)


def _attr(value: str) -> str:
    # One line per element and attribute values in double quotes: keep both intact.
    return " ".join(value.replace('"', "'").split())


def is_leaf(element: Mapping[str, Any]) -> bool:
    flags = element.get("flags")
    if flags is not None and len(flags) > _LEAF_FLAG:
        return bool(flags[_LEAF_FLAG])
    return True


def format_element(element: Mapping[str, Any], placeholder: str | None = None,
                   selected: bool = False, options: Sequence[str] | None = None) -> str:
    """One leaf element as one line. Text pseudo-elements (tag "t") get no id: MiniWoB gives
    them a new negative ref on every observation and they cannot be clicked by ref."""
    tag = str(element.get("tag", "")).lower() or "div"
    left, top = _scalar(element["left"]), _scalar(element["top"])
    width, height = _scalar(element["width"]), _scalar(element["height"])
    text = " ".join(str(element.get("text") or "").split())
    parts = []
    if tag == "t":
        tag = "text"
    else:
        parts.append(f"id={int(element['ref'])}")
    classes = " ".join(c for c in str(element.get("classes") or "").split() if c != "SVG_CLASS")
    if classes:
        parts.append(f'class="{_attr(classes)}"')
    if placeholder:
        parts.append(f'placeholder="{_attr(placeholder)}"')
    value = element.get("value")
    if value not in (None, "", False):
        parts.append(f'value="{_attr(str(value))}"')
    if options:
        parts.append(f'options="{_attr(" | ".join(options))}"')
    if selected:
        parts.append("selected")
    parts.append(f'pos="{grid_cell(left, top, width, height)}"')
    return f"<{tag} {' '.join(parts)}>{text}</{tag}>"


def screen_elements(dom_elements: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The visible leaf elements and drop-down lists (whose options miniwob does not report as
    elements), in document order."""
    out = []
    for el in dom_elements:
        if not is_leaf(el) and el.get("tag") != "select":
            continue
        if _visible(_scalar(el["left"]), _scalar(el["top"]), _scalar(el["width"]),
                    _scalar(el["height"])):
            out.append(el)
    return out


def format_screen(dom_elements: Sequence[Mapping[str, Any]], disabled: Collection[int] = (),
                  placeholders: Mapping[int, str] | None = None,
                  selected: Collection[int] = (),
                  options: Mapping[int, Sequence[str]] | None = None) -> list[str]:
    """The screen as the planner sees it: one line per visible leaf element, leaving out the
    ids in `disabled` (the paper's action-space constraint after reflection, Sec. 3.3).
    `placeholders` (ref -> text) and `selected` (refs of selected list options) add what
    miniwob's DOM info does not carry, `options` (ref -> option texts) a drop-down's choices."""
    placeholders, options = placeholders or {}, options or {}
    lines = []
    for el in screen_elements(dom_elements):
        ref = int(el["ref"])
        if ref in disabled and el.get("tag") != "t":
            continue
        lines.append(format_element(el, placeholders.get(ref), ref in selected, options.get(ref)))
    return lines
