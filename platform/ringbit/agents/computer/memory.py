"""Structured thought management (Li et al. 2023, Sec. 3.3): the reflection memory.

One slot per time step holds the action a reflection said to take there. Writing slot A clears
every later slot (and their disabled sets): a new earliest mistake changes the trajectory after
A, so advice about later steps no longer applies. Each step also has a set of disabled element
ids: when the mistaken and the suggested action are clicks on different elements, the clicked
element is disabled at that step, i.e. removed from the screen the planner sees there (the
paper's action-space constraint, worth 4-8 points over prompting alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ringbit.agents.computer.actions import Action


@dataclass
class ReflectionMemory:
    slots: dict[int, Action] = field(default_factory=dict)
    disabled: dict[int, set[int]] = field(default_factory=dict)

    def write(self, index: int, action: Action, taken: Action | None = None) -> None:
        """Store `action` for step `index`, replacing what the trial did there (`taken`)."""
        if index < 0:
            raise ValueError(f"step index must be >= 0, got {index}")
        for step in [s for s in self.slots if s > index]:
            del self.slots[step]
        for step in [s for s in self.disabled if s > index]:
            del self.disabled[step]
        self.slots[index] = action
        ids = self.disabled.setdefault(index, set())
        if action.kind == "click":
            ids.discard(int(action.ref))  # the newest advice wins over an older constraint
        if (taken is not None and taken.kind == "click" and action.kind == "click"
                and taken.ref != action.ref):
            ids.add(int(taken.ref))
        if not ids:
            del self.disabled[index]

    def get(self, index: int) -> Action | None:
        """The action to replay at step `index`, if a reflection set one."""
        return self.slots.get(index)

    def disabled_at(self, index: int) -> frozenset[int]:
        """Element ids the planner must not see (or click) at step `index`."""
        return frozenset(self.disabled.get(index, ()))

    def __len__(self) -> int:
        return len(self.slots)

    def to_dict(self) -> dict[str, Any]:
        return {"slots": {str(i): str(a) for i, a in sorted(self.slots.items())},
                "disabled": {str(i): sorted(ids) for i, ids in sorted(self.disabled.items())}}
