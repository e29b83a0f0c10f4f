"""Plain-PyTorch decoder LM. Knows nothing about Ray or DeepSpeed.

`Transformer` and `count_parameters` load on first use, so light submodules (the model catalog,
the configs) import without torch: the CLI reads the catalog for its --help.
"""

from __future__ import annotations

__all__ = ["Transformer", "count_parameters"]


def __getattr__(name: str):
    if name in __all__:
        from ringbit.models import transformer

        return getattr(transformer, name)
    raise AttributeError(f"module 'ringbit.models' has no attribute {name!r}")
