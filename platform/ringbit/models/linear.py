"""The linear-layer seam: every projection inside the blocks is built by one factory.

Embeddings and the LM head are not built here: low-bit schemes keep them in high precision.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

LinearFactory = Callable[[int, int], nn.Module]


def dense_linear(in_features: int, out_features: int) -> nn.Module:
    return nn.Linear(in_features, out_features, bias=False)


LINEAR_FACTORIES: dict[str, LinearFactory] = {"dense": dense_linear}


def get_linear_factory(name: str) -> LinearFactory:
    try:
        return LINEAR_FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown linear factory {name!r}; choose one of {sorted(LINEAR_FACTORIES)}"
        ) from None
